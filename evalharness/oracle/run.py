"""The oracle's run: check, load the model, plan, score (shared among torchrun ranks), summarise, write."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from evalharness import __version__
from evalharness.errors import UserError
from evalharness.experiment.data import read_documents
from evalharness.experiment.parallel import World, rank_device
from evalharness.experiment.provenance import git_commit, machine, versions
from evalharness.generation.models import load_model
from evalharness.oracle.plan import OracleSettings, Plan, plan_documents
from evalharness.oracle.plots import write_plots
from evalharness.oracle.score import vocab_size, write_token_records
from evalharness.oracle.stats import summarize
from evalharness.store import ensure_writable, write_json

OUTPUT_FILES = ("oracle.json", "oracle_tokens.jsonl", "oracle_k_hist.png", "oracle_p_hist.png",
                "oracle_topk_coverage.png", "oracle_topp_coverage.png")


def settings_record(cfg, settings: OracleSettings, plan: Plan, loaded, seconds: float, n_docs: int) -> dict:
    scored = plan.num_tokens
    return {
        "experiment": cfg.name, "config_file": cfg.path, "model": cfg.model.name, "dtype": cfg.model.dtype,
        "source": cfg.data.source, "split": cfg.data.split, "seed": cfg.seed, "mode": settings.mode,
        "context_tokens": settings.context_tokens if settings.mode == "window" else None,
        "num_tokens_requested": settings.num_tokens, "num_tokens": scored,
        "documents_scored": len(plan.docs), "documents_read": plan.documents_seen, "documents_in_source": n_docs,
        "tokens_beyond_max_length": plan.tokens_beyond_max_length,
        "vocab_size": vocab_size(loaded.model), "max_positions": loaded.max_positions,
        "device": settings.device, "batch_size": settings.batch_size,
        "seconds": round(seconds, 3), "tokens_per_second": round(scored / seconds, 1) if seconds > 0 else None,
        "evalharness_version": __version__, "git_commit": git_commit(), "versions": versions(),
        "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def check_output(out: Path, overwrite: bool) -> None:
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(f"--output: {out} already holds oracle results ({existing[0]}); "
                        "rerun with --overwrite or choose another --output")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output: {out} is a file, not a folder")


def check_context(settings: OracleSettings, max_positions: int | None) -> None:
    if settings.mode == "window" and max_positions is not None and settings.context_tokens > max_positions:
        raise UserError(f"oracle.context_tokens: {settings.context_tokens} exceeds the model's maximum length "
                        f"of {max_positions} tokens; use at most {max_positions} (or --context-tokens)")


def check_plan(plan: Plan, cfg, settings: OracleSettings) -> None:
    source = cfg.data.source
    if not plan.docs and settings.mode == "window":
        raise UserError(f"oracle.context_tokens: no document of {source} has more than "
                        f"{settings.context_tokens} tokens; lower it (or --context-tokens)")
    if not plan.docs:
        raise UserError(f"data.source: no document of {source} has 2 or more tokens")


def run_oracle(cfg, settings: OracleSettings, out: Path, overwrite: bool = False, world=None) -> dict | None:
    """Everything that can fail on user input is checked before the results folder is touched.
    Under torchrun every rank scores a share of the batches; rank 0 reads the data, writes the
    results and returns the summary (the other ranks return None)."""
    world = world or World()
    docs = world.on_main(lambda: checked_documents(cfg, out, overwrite))
    loaded = world.everywhere(lambda: load_model(
        cfg.model.name, rank_device(settings.device, world), cfg.model.dtype, cfg.model.trust_remote_code,
        cfg.model.use_safetensors, device_map=cfg.model.device_map, max_memory=cfg.model.max_memory,
        offload_folder=cfg.model.offload_folder, world=world))
    settings = replace(settings, device=loaded.device)
    check_context(settings, loaded.max_positions)
    plan = world.on_main(lambda: checked_plan(docs, loaded, cfg, settings, out))
    columns, seconds = write_token_records(out, plan, loaded, settings, world)
    if not world.is_main:
        return None
    summary = summarize(columns, vocab_size(loaded.model))
    summary = {"settings": settings_record(cfg, settings, plan, loaded, seconds, len(docs)), **summary}
    write_json(out / "oracle.json", summary)
    write_plots(out, summary)
    return summary


def checked_documents(cfg, out: Path, overwrite: bool) -> list:
    check_output(out, overwrite)
    docs = read_documents(cfg.data)
    if not docs:
        raise UserError(f"data.source: {cfg.data.source} holds no documents")
    return docs


def checked_plan(docs, loaded, cfg, settings: OracleSettings, out: Path) -> Plan:
    plan = plan_documents(docs, loaded.tokenizer, cfg.seed, settings, loaded.max_positions)
    check_plan(plan, cfg, settings)
    ensure_writable(out)
    return plan
