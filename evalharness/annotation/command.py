"""`python -m evalharness annotate`: plan and serve a rating study, or export / crowd files / import.

One parser serves both forms, `annotate RESULTS_DIR [...]` (serve) and `annotate ACTION
RESULTS_DIR [...]`: the first word picks the action when it is one of ACTIONS (a results
folder literally named like an action can be given as ./export). Options that do not apply
to the chosen action are refused, naming the option.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from evalharness.errors import UserError
from evalharness.annotation.crowd import import_results, write_crowd_files
from evalharness.annotation.export import csv_text, export_judgements
from evalharness.annotation.plan import ensure_plan, load_plan
from evalharness.annotation.store import HOLD_SECONDS, SERVER_BUSY_SECONDS, JudgementStore
from evalharness.store import write_atomic

ACTIONS = ("export", "mturk", "import")
PLAN_OPTIONS = ("runs", "prompts", "per_item", "hit_size", "with_context", "seed")
APPLIES = {"serve": {*PLAN_OPTIONS, "annotators", "host", "port", "public_url", "hold_minutes"},
           "mturk": {*PLAN_OPTIONS, "public_url"},
           "export": {"output", "runs", "include_pending"},
           "import": set()}
FLAGS = {"runs": "--runs", "prompts": "--prompts", "per_item": "--per-item", "hit_size": "--hit-size", "with_context": "--with-context",
         "seed": "--seed", "annotators": "--annotators", "host": "--host", "port": "--port",
         "public_url": "--public-url", "output": "--output", "hold_minutes": "--hold-minutes",
         "include_pending": "--include-pending"}
USAGE = """python -m evalharness annotate RESULTS_DIR [--runs R1,R2] [--prompts N] [--per-item 20] [--hit-size 25]
                    [--with-context] [--seed S] [--annotators N] [--host 127.0.0.1] [--port 8000]
                    [--public-url URL] [--hold-minutes 120]
       python -m evalharness annotate export RESULTS_DIR [--output FILE] [--runs R1,R2] [--include-pending]
       python -m evalharness annotate mturk RESULTS_DIR [plan options] [--public-url URL]
       python -m evalharness annotate import RESULTS_DIR RESULTS_CSV"""
DESCRIPTION = """Typicality ratings (1 Invalid ... 6 Very typical, Holtzman et al.'s scale) of human and
generated texts, from people, for HUSE and human-evaluation tables.

  annotate RESULTS_DIR          plan the study (first time; stored in RESULTS_DIR/annotation/plan.json)
                                and serve the rating page; prints one personal link per annotator
                                (also in RESULTS_DIR/annotation/links.csv). Run it again to continue.
  annotate export RESULTS_DIR   write RESULTS_DIR/judgements.csv (run,prompt_id,annotator,typicality),
                                the file the huse scorer reads: lab ratings, and crowd ratings
                                the platform approved (--include-pending: also those awaiting review)
  annotate mturk RESULTS_DIR    write an MTurk batch CSV and question template, and Prolific study
                                links, for the same plan, into RESULTS_DIR/annotation/
  annotate import RESULTS_DIR RESULTS_CSV
                                read MTurk's batch results or Prolific's submissions export into the
                                same store (all rows or none): approved work counts, rejected,
                                returned or timed-out work is withdrawn; import again when
                                statuses change"""


def comma_list(value: str) -> list[str]:
    runs = [part.strip() for part in value.split(",") if part.strip()]
    if not runs:
        raise argparse.ArgumentTypeError("expected run names separated by commas")
    return runs


def register_command(subparsers) -> None:
    parser = subparsers.add_parser("annotate", help="rating page for human typicality judgements; MTurk/Prolific "
                                   "files; export judgements.csv", usage=USAGE, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("words", nargs="+", metavar="[ACTION] RESULTS_DIR",
                        help="ACTION is export, mturk or import (none: serve the page); import also takes "
                             "the MTurk or Prolific results CSV")
    plan = parser.add_argument_group("plan options (serving and mturk; fixed once annotation/plan.json exists)")
    plan.add_argument("--runs", type=comma_list, help="runs to rate, comma separated (default: every run, human "
                                                      "included); with export: the runs to write")
    plan.add_argument("--prompts", type=int, help="rate the texts of N prompts only (a seeded sample, the same "
                                                   "prompts in every run; default: all)")
    plan.add_argument("--per-item", type=int, help="ratings per text, from different people (default 20)")
    plan.add_argument("--hit-size", type=int, help="texts per HIT, all from one run (default 25)")
    plan.add_argument("--with-context", action="store_true", default=None, help="show each text's context too")
    plan.add_argument("--seed", type=int, help="seed of the shuffles (default 0)")
    serve = parser.add_argument_group("serving")
    serve.add_argument("--annotators", type=int,
                       help="personal links to have (default 1; existing links are kept, a larger N adds more)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; anything else is reachable "
                                      "from the network)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0: any free port, printed)")
    serve.add_argument("--public-url", help="base URL people reach the page at, for the links (default "
                                            "http://HOST:PORT)")
    serve.add_argument("--hold-minutes", type=float, help="an unfinished HIT passes to someone else after this "
                                                          "long without a rating from its holder (default 120)")
    export = parser.add_argument_group("export")
    export.add_argument("--output", help="file to write (default RESULTS_DIR/judgements.csv)")
    export.add_argument("--include-pending", action="store_true", default=None,
                        help="also write crowd ratings the platform has not approved yet")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.set_defaults(func=cmd_annotate)


def cmd_annotate(args: argparse.Namespace) -> int:
    words = args.words
    action, rest = (words[0], words[1:]) if words[0] in ACTIONS else ("serve", words)
    expected = 2 if action == "import" else 1
    if len(rest) != expected:
        wanted = "RESULTS_DIR RESULTS_CSV" if action == "import" else "RESULTS_DIR"
        raise UserError(f"annotate{'' if action == 'serve' else ' ' + action}: expected {wanted}, got "
                        f"{' '.join(rest) or 'nothing'}")
    for name, flag in FLAGS.items():
        if getattr(args, name) is not None and name not in APPLIES[action]:
            raise UserError(f"{flag}: does not apply to `annotate{'' if action == 'serve' else ' ' + action}`")
    root = Path(rest[0])
    if not root.is_dir():
        raise UserError(f"{root}: no such results folder")
    return HANDLERS[action](root, args, *rest[1:])


def requested_plan(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in PLAN_OPTIONS}


def public_url(args: argparse.Namespace, port: int | None = None) -> str:
    if args.public_url:
        if not args.public_url.startswith(("http://", "https://")):
            raise UserError("--public-url: must start with http:// or https://")
        return args.public_url.rstrip("/")
    host = args.host or "127.0.0.1"
    port = port or args.port or 8000
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def cmd_serve(root: Path, args: argparse.Namespace) -> int:
    from evalharness.annotation.app import listen, serve
    if args.annotators is not None and args.annotators < 1:
        raise UserError("--annotators: must be an integer >= 1")
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UserError("--port: must be from 0 (any free port) to 65535")
    if args.hold_minutes is not None and not args.hold_minutes > 0:
        raise UserError("--hold-minutes: must be a number of minutes > 0")
    hold = args.hold_minutes * 60 if args.hold_minutes is not None else HOLD_SECONDS
    host = args.host or "127.0.0.1"
    plan, created = ensure_plan(root, requested_plan(args))
    sock = listen(host, 8000 if args.port is None else args.port)
    port = sock.getsockname()[1]  # the one chosen, for --port 0
    store = JudgementStore(root, plan, busy_seconds=SERVER_BUSY_SECONDS, hold_seconds=hold)
    try:
        links = store.ensure_lab_annotators(args.annotators or 1)
        describe_plan(plan, created, len(links))
        write_links(root, public_url(args, port), links)
        if host in ("0.0.0.0", "::") and not args.public_url:
            print(f"note: the links above name {host}; give --public-url with the address people reach this "
                  "machine at to print usable ones")
        shown = f"[{host}]" if ":" in host else host
        print(f"serving on http://{shown}:{port} (Ctrl-C to stop; run the same command again to continue)", flush=True)
        serve(plan, store, sock, host)
    finally:
        store.close()
        sock.close()
    return 0


def describe_plan(plan, created: bool, annotators: int) -> None:
    o = plan.options
    prompts = f"{o.prompts} prompts" if o.prompts else "all prompts"
    print(f"{'new' if created else 'continuing'} study: {len(plan.items)} texts ({prompts}) from {len(o.runs)} runs "
          f"({', '.join(o.runs)}), {len(plan.groups)} groups of <= {o.hit_size}, {o.per_item} ratings per text "
          f"= {len(plan.hits)} HITs; context {'shown' if o.with_context else 'hidden'}; seed {o.seed}")
    if annotators < o.per_item:
        print(f"note: {annotators} personal link(s): each text can get at most {annotators} of its {o.per_item} "
              "ratings from them; add links with --annotators N, or recruit on Prolific (`annotate mturk`)")


def write_links(root: Path, base_url: str, links: list[tuple[str, str]]) -> None:
    rows = [(name, f"{base_url}/#token={token}") for name, token in links]  # a fragment never reaches a server
    path = root / "annotation" / "links.csv"
    write_atomic(path, csv_text(("annotator", "url"), rows))
    os.chmod(path, 0o600)  # the links are the annotators' passwords
    for name, url in rows:
        print(f"  {name}  {url}")
    print(f"links: {path}")


def open_study(root: Path):
    plan = load_plan(root)
    if plan is None:
        raise UserError(f"{root / 'annotation' / 'plan.json'}: no study planned here yet; start one with "
                        f"`python -m evalharness annotate {root}` or `annotate mturk {root}`")
    return plan, JudgementStore(root, plan)


def cmd_export(root: Path, args: argparse.Namespace) -> int:
    plan, store = open_study(root)
    try:
        done = export_judgements(root, plan, store, Path(args.output) if args.output else None, args.runs,
                                 bool(args.include_pending))
    finally:
        store.close()
    print(f"{done.rows} ratings -> {done.path}")
    if done.pending_left_out:
        print(f"note: {done.pending_left_out} crowd ratings awaiting approval left out (import the platform's "
              "results with `annotate import`, or export with --include-pending)")
    return 0


def cmd_mturk(root: Path, args: argparse.Namespace) -> int:
    plan, created = ensure_plan(root, requested_plan(args))
    describe_plan(plan, created, annotators=plan.options.per_item)
    for path in write_crowd_files(root, plan, public_url(args)):
        print(f"wrote {path}")
    print(f"MTurk: one HIT per row, {plan.options.per_item} assignments per HIT; Prolific: one study per row, "
          "served by `annotate` at the study URL")
    return 0


def cmd_import(root: Path, args: argparse.Namespace, results_csv: str) -> int:
    path = Path(results_csv)
    if not path.is_file():
        raise UserError(f"{path}: no such file (MTurk's batch results or Prolific's submissions export)")
    plan, store = open_study(root)
    try:
        summary = import_results(plan, store, path)
    finally:
        store.close()
    print(import_summary(summary))
    return 0


def import_summary(s: dict) -> str:
    line = (f"{s['platform']}: {s['rows']} rows; {s['new']} new, {s['changed']} changed status, {s['unchanged']} "
            "unchanged")
    if s["platform"] == "MTurk":
        return line + f"; {s['ratings_added']} ratings added, {s['ratings_withdrawn']} withdrawn"
    line += f"; {s['ratings_withdrawn']} ratings withdrawn; {s['never_joined']} never opened the page"
    if s["not_restored"]:
        line += (f"; {s['not_restored']} approved after a withdrawal but not restored (their HIT copy went to "
                 "someone else)")
    return line


HANDLERS = {"serve": cmd_serve, "export": cmd_export, "mturk": cmd_mturk, "import": cmd_import}
