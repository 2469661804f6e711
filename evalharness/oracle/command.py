"""`python -m evalharness oracle FILE`: the command line (flags over the experiment's oracle section,
the printed summary); the work is `oracle.run.run_oracle`."""

from __future__ import annotations

import argparse
from pathlib import Path

from evalharness.errors import UserError
from evalharness.oracle.plan import OracleSettings


def resolve_settings(cfg, args: argparse.Namespace) -> OracleSettings:
    """The experiment's oracle section with the command-line flags on top."""
    for flag, value in (("--num-tokens", args.num_tokens), ("--context-tokens", args.context_tokens),
                        ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: must be an integer >= 1 (got {value})")
    device = args.device or cfg.model.device
    if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UserError(f"--device: must be auto, cpu, cuda, cuda:N or mps (got {device!r})")
    base = cfg.oracle
    pick = lambda flag, value: value if flag is None else flag  # noqa: E731
    return OracleSettings(context_tokens=pick(args.context_tokens, base.context_tokens),
                          mode=pick(args.mode, base.mode), num_tokens=pick(args.num_tokens, base.num_tokens),
                          batch_size=pick(args.batch_size, base.batch_size), device=device)


def format_summary(summary: dict, out: Path) -> str:
    s, k, p = summary["settings"], summary["k"], summary["p"]
    cov = summary["coverage"]
    at = lambda curve, key, x: curve["fraction"][curve[key].index(x)] if x in curve[key] else None  # noqa: E731
    where = f"window of {s['context_tokens']} tokens" if s["mode"] == "window" else "whole prefix"
    lines = [f"oracle: {summary['count']} tokens of {s['source']} ({s['documents_scored']} documents), "
             f"{where}, {s['tokens_per_second']} tokens/s",
             f"  k: median {k['median']}, mean {k['mean']:.2f}, max {k['max']}",
             f"  p: median {p['median']:.3f}, mean {p['mean']:.3f}"]
    k40, p95 = at(cov["top_k"], "K", 40), at(cov["top_p"], "P", 0.95)
    if k40 is not None:
        lines.append(f"  top-k 40 allows {k40:.1%} of human tokens; top-p 0.95 allows {p95:.1%}")
    if s["num_tokens_requested"] and s["num_tokens"] < s["num_tokens_requested"]:
        lines.append(f"  note: only {s['num_tokens']} of the {s['num_tokens_requested']} tokens asked for exist")
    lines.append(f"results: {out}")
    return "\n".join(lines)


def cmd_oracle(args: argparse.Namespace) -> int:
    # config and parallel import torch: loaded here, so that `--help` and `list` start without it
    from evalharness.experiment import config, parallel
    from evalharness.oracle.run import run_oracle

    cfg = config.load(args.experiment)
    settings = resolve_settings(cfg, args)
    out = Path(args.output) if args.output else Path("results") / cfg.name / "oracle"
    world = parallel.start(settings.device)
    try:
        summary = run_oracle(cfg, settings, out, overwrite=args.overwrite, world=world)
    finally:
        world.shutdown()
    if world.is_main:
        print(format_summary(summary, out))
    return 0


def register_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "oracle", help="rank and cumulative probability of every human token (smallest top-k / top-p allowing it)",
        description="For every token of held-out human text: its rank under the model and the probability "
                    "mass at or above it. Writes oracle.json, oracle_tokens.jsonl and plots.")
    parser.add_argument("experiment", help="path to the experiment YAML (model, data, oracle section)")
    parser.add_argument("--output", help="folder for the results (default results/<name>/oracle)")
    parser.add_argument("--num-tokens", type=int, help="override oracle.num_tokens (stop after N scored tokens)")
    parser.add_argument("--context-tokens", type=int, help="override oracle.context_tokens (window mode)")
    parser.add_argument("--mode", choices=("window", "prefix"), help="override oracle.mode")
    parser.add_argument("--device", help="override model.device (cpu, cuda, cuda:N, auto)")
    parser.add_argument("--batch-size", type=int, help="override oracle.batch_size")
    parser.add_argument("--overwrite", action="store_true", help="replace oracle results already in the folder")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.set_defaults(func=cmd_oracle)
