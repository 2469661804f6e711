"""`report` and `compare`: what people read, built only from results folders (never regenerating).

    python -m evalharness report RESULTS_DIR
        (re)writes RESULTS_DIR/summary.tex, RESULTS_DIR/plots/*.png and RESULTS_DIR/report.html
    python -m evalharness compare DIR1 DIR2 ... [--output DIR]
        one table across experiments (rows: experiment / run), printed as Markdown and, with
        --output, written as comparison.{json,csv,md,tex}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evalharness.errors import UserError
from evalharness.report import SAMPLE_PROMPTS



def cmd_report(args: argparse.Namespace) -> int:
    if args.samples < 0:
        raise UserError("--samples: must be an integer >= 0")
    from evalharness.report.folder import write_report  # imports torch (via the scorers' registry)

    paths = write_report(Path(args.results), ci=not args.no_ci, samples=args.samples)
    for path in paths:
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from evalharness.report.compare import write_comparison  # imports torch (via the scorers' registry)

    markdown, paths = write_comparison([Path(f) for f in args.results], Path(args.output) if args.output else None,
                                       ci=not args.no_ci)
    print(markdown)
    for path in paths:
        print(path)
    return 0


def register_command(subparsers) -> None:
    report = subparsers.add_parser("report", help="(re)write summary.tex, plots/ and report.html of a results folder",
                                   description="Write summary.tex (booktabs, Holtzman et al. Table 1 layout), "
                                               "plots/*.png and a self-contained report.html from a results "
                                               "folder. Reads only the folder; generates nothing.")
    report.add_argument("results", help="results folder (the --output of `run`, default results/<name>)")
    report.add_argument("--no-ci", action="store_true", help="summary.tex without ± interval half-widths")
    report.add_argument("--samples", type=int, default=SAMPLE_PROMPTS,
                        help=f"prompts in the HTML sample browser (default {SAMPLE_PROMPTS})")
    report.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    report.set_defaults(func=cmd_report)

    compare = subparsers.add_parser("compare", help="one table across experiments (e.g. two models, same grid)",
                                    description="Rows experiment / run from several results folders; prints "
                                                "Markdown, and with --output writes comparison.{json,csv,md,tex}.")
    compare.add_argument("results", nargs="+", help="two or more results folders")
    compare.add_argument("--output", help="folder for comparison.{json,csv,md,tex}")
    compare.add_argument("--no-ci", action="store_true", help="comparison.tex without ± interval half-widths")
    compare.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    compare.set_defaults(func=cmd_compare)
