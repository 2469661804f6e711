"""The `train-builtin` command. Every CLI start imports this module (for --help too), so it
stays without torch; the training itself (evalharness.builtin.train) is imported when it runs."""

from __future__ import annotations

import argparse

from evalharness.builtin.train_config import DESCRIPTION, TrainConfig, add_options


def register_command(subparsers) -> None:
    """`python -m evalharness train-builtin [--steps N ...]`."""
    parser = subparsers.add_parser("train-builtin", help="retrain the builtin model (deterministic)",
                                   description=DESCRIPTION)
    add_options(parser)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from evalharness.builtin.train import run_training  # imports torch

    return run_training(TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}))
