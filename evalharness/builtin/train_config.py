"""The builtin model's training settings (what decides its weights) and their command-line
options, without torch: the CLI builds its parser from them at every start."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

EOT = "<|endoftext|>"
MODEL_NAME = "pydocs-gpt2-small"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "models" / MODEL_NAME


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (plus where to write them)."""

    output: str = str(DEFAULT_OUTPUT)
    seed: int = 0
    steps: int = 700
    minutes: float | None = None
    threads: int = 2
    vocab_size: int = 8192
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    n_positions: int = 512
    dropout: float = 0.1
    seq_len: int = 256
    batch_size: int = 8
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    max_train_docs: int | None = None
    max_eval_docs: int | None = None


DESCRIPTION = f"Train the builtin model ({MODEL_NAME}) on the builtin:pydocs train split."


def add_options(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field, defaulting to the shipped run."""
    for field, value in asdict(TrainConfig()).items():
        kind = float if field in ("minutes",) else type(value) if value is not None else int
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=value)


def parse_args(argv: list[str] | None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m evalharness train-builtin", description=DESCRIPTION)
    add_options(parser)
    return TrainConfig(**vars(parser.parse_args(argv)))
