"""Stage `report`: what people read, built only from a results folder (never regenerating, never
importing the experiment or generation stages).

Entry points:
  folder.write_report(root)      summary.tex, plots/*.png and report.html of a results folder
                                 (`run` calls it at its end; `python -m evalharness report DIR`)
  summary.write_summary(...)     summary.{json,csv,md} from the scored rows
  compare.write_comparison(...)  `python -m evalharness compare DIR1 DIR2 ...`
  command.register_command       the `report` and `compare` subcommands
Modules: summary (tables and "best" marks), latex, plots (Figure API), html (report.html),
oracle_coverage (what an oracle folder says about a sampler's support).
"""

SAMPLE_PROMPTS = 10
"""Prompts shown in the HTML sample browser: the first ones by prompt id (`report --samples`)."""
