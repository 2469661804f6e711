"""`run`: config -> prompts -> generations -> scores -> summary, resumable at every step."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

import evalharness
from evalharness.builtin.corpora import get_corpus
from evalharness.errors import UserError
from evalharness.experiment.config import ExperimentConfig, build_sampler
from evalharness.experiment.data import build_prompts, read_documents
from evalharness.experiment.parallel import World, for_each_share, rank_device
from evalharness.experiment.provenance import git_commit, machine, versions
from evalharness.experiment.scoring import score_experiment, share_featurisation, share_judging
from evalharness.generation import human_logprobs
from evalharness.generation.decoding import decode, row_seed
from evalharness.generation.models import LoadedModel, load_model
from evalharness.records import HUMAN_RUN, Generation, Prompt, RunSpec
from evalharness.report.folder import write_report
from evalharness.report.summary import write_summary
from evalharness.store import (LOCK_FILES, ResultsDir, changed_keys, ensure_writable, fingerprint, read_json,
                               results_lock, write_json)


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of `run`."""

    limit: int | None = None
    device: str | None = None
    batch_size: int | None = None
    output: Path | None = None
    overwrite: bool = False


def run_experiment(cfg: ExperimentConfig, opts: RunOptions, world: World | None = None) -> Path:
    """Everything that can fail on user input is checked before the results folder is touched.

    Under torchrun (`world` of several ranks) every rank loads the model and generates its share
    of each run's batches; rank 0 alone reads the data, owns the results folder, scores and
    reports (see evalharness.experiment.parallel). The files it writes are those of a single
    process, which holds the folder's lock from opening it to the end (store.results_lock)."""
    with contextlib.ExitStack() as held:
        return _run_experiment(cfg, opts, world or World(), held)


def _run_experiment(cfg: ExperimentConfig, opts: RunOptions, world: World, held: contextlib.ExitStack) -> Path:
    started = time.time()
    device = rank_device(opts.device or cfg.model.device, world)
    documents = world.on_main(lambda: read_documents(cfg.data))  # before the model: fail fast
    loaded = world.everywhere(lambda: load_model(
        cfg.model.name, device, cfg.model.dtype, cfg.model.trust_remote_code, cfg.model.use_safetensors,
        device_map=cfg.model.device_map, max_memory=cfg.model.max_memory,
        offload_folder=cfg.model.offload_folder, world=world, compile=cfg.model.compile))
    fingerprints = world.gather_to_main(lambda: loaded.fingerprint)
    world.on_main(lambda: check_same_weights(fingerprints))
    prompts = world.on_main(lambda: checked_prompts(documents, cfg, opts, loaded))
    world.everywhere(lambda: preflight(cfg))
    root = Path(opts.output) if opts.output else Path("results") / cfg.name
    store = ResultsDir(root)
    key = experiment_key(cfg, loaded)
    world.on_main(lambda: open_results(store, prompts, key, cfg, opts, started, held))
    batch_size = opts.batch_size or cfg.model.batch_size
    human_logits = human_logprobs.HumanLogits()  # one forward pass per batch, shared by the runs
    generate_human(world, store, prompts, loaded, batch_size, key, human_logits)
    for spec in cfg.samplers:
        generate_run(world, store, spec, prompts, loaded, cfg, batch_size, key, human_logits)
    del human_logits
    device = loaded.device
    del loaded  # free the model before scorers load theirs
    share_featurisation(world, store, cfg, prompts, device)
    share_judging(world, store, cfg, prompts, device)
    if not world.is_main:
        return root
    rows = score_experiment(store, cfg, prompts, device=device)
    write_summary(root, rows, cfg)
    write_json(root / "manifest.json", manifest(cfg, opts, key, started, time.time(), world))
    write_report(root)  # reads only the folder: `python -m evalharness report DIR` redoes it
    return root


def check_same_weights(fingerprints: list[str]) -> None:
    """Under torchrun on several machines, every rank must have loaded the same weights."""
    for rank, found in enumerate(fingerprints):
        if found != fingerprints[0]:
            raise UserError(f"model.name: rank {rank} loaded other weights than rank 0 (fingerprint {found} vs "
                            f"{fingerprints[0]}); give every machine the same model files")


def checked_prompts(documents, cfg: ExperimentConfig, opts: RunOptions, loaded: LoadedModel) -> list[Prompt]:
    prompts = build_prompts(documents, loaded.tokenizer, cfg.data, cfg.seed, loaded.eos_id, opts.limit)
    check_lengths(prompts, cfg, loaded)
    return prompts


def preflight(cfg: ExperimentConfig) -> None:
    """e.g. a MAUVE featuriser on an unreachable Hub: fail before generating."""
    for spec in cfg.scorers:
        getattr(spec.build(), "preflight", lambda: None)()


def open_results(store: ResultsDir, prompts: list[Prompt], key: dict, cfg: ExperimentConfig,
                 opts: RunOptions, started: float, held: contextlib.ExitStack | None = None) -> None:
    """Take the folder's lock (kept by `held` until the run ends), then check and start it."""
    if held is not None:
        held.enter_context(results_lock(store.root))
    prepare_output(store.root, opts.overwrite)
    store.remove_stale_temporaries()
    check_same_experiment(store.root, key)
    store.check_prompts(prompts)
    for spec in (RunSpec(HUMAN_RUN, HUMAN_RUN), *cfg.samplers):  # refuse before writing anything
        store.check_run(spec.name, run_meta(spec, key))
    store.write_prompts(prompts)
    write_json(store.root / "manifest.json", manifest(cfg, opts, key, started, None))


def check_lengths(prompts: list[Prompt], cfg: ExperimentConfig, loaded: LoadedModel) -> None:
    longest = max(len(p.context_ids) for p in prompts) + cfg.data.max_new_tokens
    if loaded.max_positions is not None and longest > loaded.max_positions:
        raise UserError(f"data.context_tokens + data.max_new_tokens = {longest} tokens exceeds the model's "
                        f"maximum length of {loaded.max_positions}; lower one of them")


def prepare_output(root: Path, overwrite: bool) -> None:
    if overwrite and root.exists():
        if any(p.name not in LOCK_FILES for p in root.iterdir()) and not (root / "manifest.json").exists():
            raise UserError(f"--overwrite: {root} is not an evalharness results folder; refusing to delete it")
        remove_results(root)
    ensure_writable(root)


OWN_FILES = ("manifest.json", "prompts.jsonl", "summary.json", "summary.csv", "summary.md", "summary.tex",
             "report.html")
OWN_FOLDERS = ("plots", "cache")


def remove_results(root: Path) -> None:
    """--overwrite removes what `run` wrote (run folders, prompts, summaries, report, caches) and
    keeps anything else a person put there (a README, notes, an oracle/ analysis)."""
    for path in root.iterdir():
        if path.is_file() and path.name in OWN_FILES:
            path.unlink()
        elif path.is_dir() and (path.name in OWN_FOLDERS or (path / "run.json").exists()
                                or (path / "generations.jsonl").exists()):
            shutil.rmtree(path)


def experiment_key(cfg: ExperimentConfig, loaded: LoadedModel) -> dict:
    """Everything besides the sampler that determines a generation (the weights included:
    a retrained model under the same name must not reuse old generations)."""
    data = asdict(cfg.data)
    data.pop("num_prompts")  # prompt i does not depend on how many prompts are taken
    key = {"model": cfg.model.name, "weights": loaded.fingerprint, "dtype": cfg.model.dtype, "data": data,
           "seed": cfg.seed}
    if cfg.model.compile:  # the GPU fast path's attention may round differently: never mix the two
        key["compile"] = True
    return key


def check_same_experiment(root: Path, key: dict) -> None:
    """A results folder holds one experiment: refuse to mix in generations made otherwise.
    A folder with summaries but no generations (as committed to git) has nothing to mix."""
    path = root / "manifest.json"
    if not path.exists() or not any(root.glob("*/generations.jsonl")):
        return
    changed = changed_keys(read_json(path).get("determined_by", {}), key)
    if changed:
        named = [YAML_KEYS.get(k, k) for k in changed]
        raise UserError(f"{root}: holds generations made with other settings ({', '.join(named)}); "
                        "rerun with --overwrite or choose another --output")


YAML_KEYS = {"model": "model.name", "dtype": "model.dtype", "compile": "model.compile"}
"""experiment_key's names as the YAML spells them (data.* and seed already are; `weights` are
the files under model.name)."""


def run_meta(spec: RunSpec, key: dict) -> dict:
    determined_by = {**key, "sampler": spec.sampler, "params": dict(spec.params)}
    return {"run": spec.name, "sampler": spec.sampler, "params": dict(spec.params),
            "fingerprint": fingerprint(determined_by), "determined_by": determined_by}


def generate_human(world: World, store: ResultsDir, prompts: list[Prompt], loaded: LoadedModel,
                   batch_size: int, key: dict, human_logits: human_logprobs.HumanLogits) -> None:
    """The human continuations as one more run; logprobs_model = the model's log-probability of
    each human token given the same context. logprobs_sampler repeats them (no sampler drew them).
    The teacher-forced logits are `human_logits`' (kept for the runs' human_logprobs)."""
    spec = RunSpec(HUMAN_RUN, HUMAN_RUN)

    def compute(batch: list[Prompt]) -> list[Generation]:
        logprobs = human_logprobs.model_logprobs_of_human(loaded, batch, human_logits)
        return [Generation(p.prompt_id, HUMAN_RUN, p.human_text, p.human_ids, len(p.human_ids), p.human_ended,
                           tuple(lp), tuple(lp)) for p, lp in zip(batch, logprobs)]

    produce(world, HUMAN_RUN, prompts, batch_size, lambda: set(store.open_run(HUMAN_RUN, run_meta(spec, key))),
            compute, lambda records: store.append_generations(HUMAN_RUN, records))


def generate_run(world: World, store: ResultsDir, spec: RunSpec, prompts: list[Prompt], loaded: LoadedModel,
                 cfg: ExperimentConfig, batch_size: int, key: dict,
                 human_logits: human_logprobs.HumanLogits | None = None) -> None:
    sampler = build_sampler(spec)

    def compute(batch: list[Prompt]) -> list[Generation]:
        seeds = [row_seed(cfg.seed, p.prompt_id, spec.name) for p in batch]
        outs = decode(loaded.model, [p.context_ids for p in batch], sampler, cfg.data.max_new_tokens,
                      loaded.eos_id, loaded.pad_id, seeds, loaded.device)
        return [to_generation(p, spec.name, o, loaded) for p, o in zip(batch, outs)]

    produce(world, spec.name, prompts, batch_size, lambda: set(store.open_run(spec.name, run_meta(spec, key))),
            compute, lambda records: store.append_generations(spec.name, records))
    if human_logprobs.defines_distribution(sampler):  # how much of the human text the sampler allows
        run_dir = store.run_dir(spec.name)
        produce(world, f"{spec.name} (human text)", prompts, batch_size,
                lambda: set(human_logprobs.read(run_dir, repair=True)),
                lambda batch: human_logprobs.sampler_logprobs_of_human(loaded, sampler, batch, human_logits),
                lambda records: human_logprobs.append(run_dir, records))


def produce(world: World, label: str, prompts: list[Prompt], batch_size: int, done_on_main: Callable[[], set[str]],
            compute: Callable[[list[Prompt]], list], append: Callable[[list], None]) -> None:
    """Fill one per-prompt records file: `done_on_main` (run on rank 0) says which prompts have a
    record; the batches that miss some are shared among the ranks (`compute` gives one record per
    prompt of a batch) and rank 0 `append`s each batch's new records in batch order, as one
    process would."""
    done = world.on_main(done_on_main)
    tasks = pending_batches(prompts, done, batch_size)
    bar = tqdm(total=sum(len(todo) for _, todo in tasks), desc=label, unit="prompt",
               disable=None if world.is_main else True)

    def consume(task: tuple[list[Prompt], set[str]], records: list) -> None:
        batch, todo = task
        new = [record for prompt, record in zip(batch, records) if prompt.prompt_id in todo]
        append(new)
        bar.update(len(new))

    for_each_share(world, tasks, lambda task: compute(task[0]), consume)
    bar.close()


def pending_batches(prompts: list[Prompt], done: set[str], batch_size: int) -> list[tuple[list[Prompt], set[str]]]:
    """The batches that still miss generations, with the ids they miss.

    Batches are fixed by the prompt list alone (sorted by context length, for less padding),
    so a resumed run computes every batch with exactly the composition an uninterrupted run
    uses, and its records come out byte-identical (float rounding depends on batch shape)."""
    ordered = sorted(prompts, key=lambda p: len(p.context_ids))
    out = []
    for batch in batches(ordered, batch_size):
        todo = {p.prompt_id for p in batch if p.prompt_id not in done}
        if todo:
            out.append((batch, todo))
    return out


def to_generation(prompt: Prompt, run: str, out, loaded: LoadedModel) -> Generation:
    content = out.token_ids[:-1] if out.stopped_by_eos else out.token_ids
    return Generation(prompt.prompt_id, run, loaded.tokenizer.decode(content), tuple(out.token_ids),
                      len(out.token_ids), out.stopped_by_eos, tuple(out.logprobs_model), tuple(out.logprobs_sampler))


def batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def sampler_notes(cfg: ExperimentConfig) -> dict:
    """run -> what a sampler wants recorded about how it ran (the `hf` sampler: transformers'
    warper chain and the defaults it took); only runs whose sampler has a note."""
    samplers = {spec.name: build_sampler(spec) for spec in cfg.samplers}
    return {name: sampler.note() for name, sampler in samplers.items() if hasattr(sampler, "note")}


def manifest(cfg: ExperimentConfig, opts: RunOptions, key: dict, started: float, finished: float | None,
             world: World | None = None) -> dict:
    notes = sampler_notes(cfg)
    return {**({"sampler_notes": notes} if notes else {}),
        "experiment": cfg.name, "config_file": cfg.path, "config": asdict(cfg), "seed": cfg.seed,
        "determined_by": key, "data_fingerprint": data_fingerprint(cfg.data.source),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "evalharness_version": evalharness.__version__, "git_commit": git_commit(),
        "versions": versions(), "machine": machine(),
        "ranks": (world or World()).size,
        "started": iso(started), "finished": iso(finished) if finished else None,
        "wall_seconds": round(finished - started, 3) if finished else None,
    }


def data_fingerprint(source: str) -> str | None:
    """Builtin corpora depend on the Python that carries them: record which text was used."""
    if not source.startswith("builtin:"):
        return None
    corpus = get_corpus(source)
    return corpus.fingerprint() if hasattr(corpus, "fingerprint") else None


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
