"""evalharness run|list|... (or python -m evalharness) — user errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from evalharness.errors import RankFailure, UserError
from evalharness.experiment.torchrun import launched_by_torchrun, rank
from evalharness.generation.allocator import keep_freed_memory


def cmd_run(args: argparse.Namespace) -> int:
    """One process, or one rank of several under torchrun (then rank 0 prints the results)."""
    # config, parallel and the pipeline import torch: loaded here, so that --help starts without it
    from evalharness.experiment import config, parallel
    from evalharness.experiment.pipeline import RunOptions, run_experiment

    keep_freed_memory()

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit: must be an integer >= 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError("--batch-size: must be an integer >= 1")
    if args.timeout <= 0:
        raise UserError("--timeout: must be a number of seconds > 0")
    cfg = config.load(args.experiment, args.overrides)
    opts = RunOptions(limit=args.limit, device=args.device, batch_size=args.batch_size,
                      output=Path(args.output) if args.output else None, overwrite=args.overwrite)
    world = parallel.start(opts.device or cfg.model.device, args.timeout)
    root = run_experiment(cfg, opts, world)  # on an error a rank leaves at once: see leave_rank
    world.shutdown()
    if world.is_main:
        print(f"results: {root}")
        print((root / "summary.md").read_text(encoding="utf-8"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from evalharness.samplers import SAMPLERS
    from evalharness.scorers import SCORERS

    print("Samplers (YAML: samplers: [{name: NAME, PARAM: value or [grid]}]):")
    for name in SAMPLERS.names():
        cls = SAMPLERS.get(name)
        params = ", ".join(p if d is None else f"{p}={d}" for p, d in cls.parameters()) or "no parameters"
        print(f"  {name:<12} {params:<34} {cls.paper}")
        if cls.aliases:
            names = ", ".join(f"{alias} = {field}" for alias, field in cls.aliases.items())
            print(f"  {'':<12} transformers' names: {names}")
    print("\nScorers (YAML: scorers: [NAME or {name: NAME, OPTION: value}]):")
    for name in SCORERS.names():
        cls = SCORERS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<12} metrics: {', '.join(cls.metrics) or '(named by its options)'}")
        print(f"  {'':<12} options: {', '.join(cls.options()) or 'none'} — {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=program_name(),
                                     description="Compare decoding methods by how human-like their text is.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_verbosity(parser, default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment YAML end to end")
    run.add_argument("experiment", help="path to the experiment YAML")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a YAML key by its dotted path, value in YAML (repeatable): "
                          "--set model.name=gpt2 --set data.num_prompts=100 --set samplers.0.p=[0.9,0.95]")
    run.add_argument("--limit", type=int, help="use only the first N prompts")
    run.add_argument("--device", help="override model.device (cpu, cuda, cuda:N, auto)")
    run.add_argument("--batch-size", type=int, help="override model.batch_size")
    run.add_argument("--output", help="results folder (default results/<name>)")
    run.add_argument("--overwrite", action="store_true", help="delete an existing results folder first")
    run.add_argument("--timeout", type=float, default=1800.0,
                     help="under torchrun: seconds a rank waits for its peers before calling them hung (default 1800)")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    add_verbosity(run, default=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="list samplers and scorers with their parameters and papers")
    lst.set_defaults(func=cmd_list)
    for module in COMMAND_MODULES:
        command_module = importlib.import_module(module)
        command_module.register_command(sub)
    return parser


def program_name() -> str:
    """How the user started us, for --help and usage lines: the console script `evalharness`,
    or `python -m evalharness` (then sys.argv[0] is the package's __main__.py)."""
    return "python -m evalharness" if Path(sys.argv[0]).name == "__main__.py" else "evalharness"


# Further subcommands live beside the code they drive: each module has
# register_command(subparsers), which adds a parser and sets func=callable(args) -> exit status.
# Keep heavy imports (torch, transformers) inside the callables so `--help` stays fast.
COMMAND_MODULES: list[str] = [
    "evalharness.annotation.command",
    "evalharness.oracle.command",
    "evalharness.report.command",
    "evalharness.builtin.command",
]




def add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    """-q / -v: how much of the package's logging reaches stderr (after the command or before it)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
                       help="only warnings and errors")
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=default,
                       help="also debugging detail")


class NoteFormatter(logging.Formatter):
    """One line per record: informational notes as they are written, warnings prefixed."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (tests and embedding programs swap it;
    a handler holding the old stream would write into a closed one)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    """Send the package's log records (logger "evalharness" and its children) to stderr, one line
    each: INFO and up by default, WARNING and up with --quiet, DEBUG and up with --verbose.
    A library user who never calls this sees nothing (evalharness/__init__ adds a NullHandler)
    and can attach handlers of their own instead."""
    handler = StderrHandler()
    handler.setFormatter(NoteFormatter())
    logger = logging.getLogger("evalharness")
    logger.handlers = [h for h in logger.handlers if not getattr(h, "evalharness_cli", False)]
    handler.evalharness_cli = True  # type: ignore[attr-defined]  (replaced, not stacked, on the next call)
    logger.addHandler(handler)
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity])


def report_error(exc: Exception) -> None:
    """One line on stderr. Under torchrun an error every rank raised alike is printed by rank 0
    only; a rank's own error (say, rank 0 stopped answering) is printed by that rank."""
    if rank() == 0 or not getattr(exc, "agreed", False):
        print(f"error: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbosity)
    status = run_command(args)
    if launched_by_torchrun():
        leave_rank(status)
    return status


def leave_rank(status: int) -> None:
    """End a torchrun rank now, with its status, without the interpreter's teardown of c10d's
    threads. A failed rank's peers are failing at their own pace, and gloo torn down while a
    peer still talks to it can end the process in std::terminate (SIGABRT, seen in CI) instead of
    the status; a rank that succeeded has shut its process group down already, and its files are
    written atomically and closed. Output is flushed; the operating system closes the rest."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_command(args: argparse.Namespace) -> int:
    """The command's exit status: 0, 1 (a rank failed), 2 (a user error), 130 (interrupted)."""
    try:
        return args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        report_error(exc)
        return 2
    except RankFailure as exc:
        if args.debug:
            raise
        report_error(exc)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished prompts are saved; run the same command again to resume", file=sys.stderr)
        return 130
