"""The study plan: which texts are rated, grouped how, and how many times.

Holtzman et al. (2019, section 6) had each HIT hold texts from one decoding method only; so
does this plan. For every selected run (the human continuations are run `human`):

  items    one per generation: (run, prompt id, text, context). The item id is an HMAC of
           (run, prompt id) under a key made by `secrets` and kept in the plan: it names the
           text without revealing its run (blind rating), and cannot be guessed.
  groups   the run's items in a seeded shuffle, cut into ceil(n / hit_size) groups whose sizes
           differ by at most one. A group is one MTurk HIT (with per_item assignments).
  hits     each group served per_item times, each copy in its own seeded order. A person gets
           at most one copy of a group, so nobody rates a text twice and every text gets
           per_item ratings from per_item different people.

HITs are handed out in plan order: every group's first copy (groups interleaved across runs
in a seeded shuffle), then every group's second copy, and so on, so that coverage grows
evenly while the study runs. Everything but the key and the ids derived from it is a
function of (results, options, seed); the plan is written to annotation/plan.json with the
texts themselves, so a restarted server continues the same study and the judgements can be
audited against exactly what people saw.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import secrets
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN
from evalharness.store import ResultsDir, write_json

ANNOTATION_DIR = "annotation"
PLAN_VERSION = 1
MAX_HIT_SIZE = 200
"""Keeps one submission far below the server's request size limit."""


@dataclass(frozen=True)
class PlanOptions:
    runs: tuple[str, ...]
    per_item: int = 20
    hit_size: int = 25
    with_context: bool = False
    seed: int = 0
    prompts: int | None = None
    """Rate the texts of this many prompts only: a seeded sample, the same for every run."""


OPTION_FLAGS = {"runs": "--runs", "per_item": "--per-item", "hit_size": "--hit-size",
                "with_context": "--with-context", "seed": "--seed", "prompts": "--prompts"}


@dataclass(frozen=True)
class Item:
    item_id: str
    run: str
    prompt_id: str
    text: str
    context: str | None


@dataclass(frozen=True)
class Group:
    group_id: str
    run: str
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class Hit:
    hit_id: str
    group_id: str
    replica: int
    item_ids: tuple[str, ...]


@dataclass
class Plan:
    options: PlanOptions
    key: str
    items: dict[str, Item]
    groups: list[Group]
    hits: list[Hit]

    @cached_property
    def hit_by_id(self) -> dict[str, Hit]:
        return {hit.hit_id: hit for hit in self.hits}

    @cached_property
    def group_by_id(self) -> dict[str, Group]:
        return {group.group_id: group for group in self.groups}

    def derived(self, purpose: str, value: str, length: int = 16) -> str:
        """A hex token for `value` that only the holder of the plan's key can compute."""
        digest = hmac.new(bytes.fromhex(self.key), f"{purpose}\0{value}".encode(), hashlib.sha256)
        return digest.hexdigest()[:length]

    def to_json(self) -> dict:
        return {"version": PLAN_VERSION, "options": asdict(self.options), "key": self.key,
                "items": [asdict(item) for item in self.items.values()],
                "groups": [asdict(group) for group in self.groups], "hits": [asdict(hit) for hit in self.hits]}

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        options = data["options"]
        options = PlanOptions(**{**options, "runs": tuple(options["runs"])})
        items = {d["item_id"]: Item(**d) for d in data["items"]}
        groups = [Group(**{**d, "item_ids": tuple(d["item_ids"])}) for d in data["groups"]]
        hits = [Hit(**{**d, "item_ids": tuple(d["item_ids"])}) for d in data["hits"]]
        return cls(options, data["key"], items, groups, hits)


def annotation_dir(root: Path) -> Path:
    """RESULTS_DIR/annotation: plan, links and store; private (tokens live here) and git-ignored."""
    folder = Path(root) / ANNOTATION_DIR
    if not folder.exists():
        folder.mkdir(mode=0o700)
        (folder / ".gitignore").write_text("# personal links, tokens and raw ratings: never publish\n*\n")
    return folder


def plan_path(root: Path) -> Path:
    return Path(root) / ANNOTATION_DIR / "plan.json"


def available_runs(root: Path) -> list[str]:
    """Runs with generations in the results folder: human first, the others by name."""
    names = sorted(p.parent.name for p in Path(root).glob("*/generations.jsonl"))
    return sorted(names, key=lambda name: name != HUMAN_RUN)


def check_options(options: PlanOptions, root: Path) -> None:
    if options.per_item < 1:
        raise UserError("--per-item: must be an integer >= 1")
    if options.prompts is not None and options.prompts < 1:
        raise UserError("--prompts: must be an integer >= 1")
    if not 1 <= options.hit_size <= MAX_HIT_SIZE:
        raise UserError(f"--hit-size: must be an integer from 1 to {MAX_HIT_SIZE}")
    known = available_runs(root)
    if not options.runs:
        raise UserError(f"{root}: no run folder with generations.jsonl; run `python -m evalharness run` first")
    unknown = [run for run in options.runs if run not in known]
    if unknown:
        raise UserError(f"--runs: no generations for {', '.join(unknown)} in {root} (runs there: {', '.join(known)})")
    if len(set(options.runs)) != len(options.runs):
        raise UserError("--runs: a run is named twice")


def split_evenly(ids: list[str], size: int) -> list[list[str]]:
    """ceil(n / size) consecutive chunks whose lengths differ by at most one."""
    count = -(-len(ids) // size)
    return [ids[i * len(ids) // count:(i + 1) * len(ids) // count] for i in range(count)]


def build_plan(root: Path, options: PlanOptions) -> Plan:
    store = ResultsDir(root)
    prompts = store.read_prompts()
    if not prompts:
        raise UserError(f"{root / 'prompts.jsonl'}: missing or empty; is {root} an evalharness results folder?")
    contexts = {p.prompt_id: p.context_text for p in prompts}
    plan = Plan(options, secrets.token_hex(32), {}, [], [])
    rng = random.Random(options.seed)
    chosen = sample_prompts([p.prompt_id for p in prompts], options.prompts, rng)
    for run in options.runs:
        generations = store.read_generations(run)
        prompt_ids = [pid for pid in chosen if pid in generations]
        rng.shuffle(prompt_ids)
        for chunk in split_evenly(prompt_ids, options.hit_size):
            item_ids = []
            for prompt_id in chunk:
                item = make_item(plan, run, prompt_id, generations[prompt_id].text,
                                 contexts[prompt_id] if options.with_context else None)
                plan.items[item.item_id] = item
                item_ids.append(item.item_id)
            plan.groups.append(Group(plan.derived("group", str(len(plan.groups))), run, tuple(item_ids)))
    plan.hits.extend(replicate(plan, rng))
    return plan


def sample_prompts(prompt_ids: list[str], count: int | None, rng: random.Random) -> list[str]:
    """All prompt ids, or `count` of them drawn with the plan's generator (file order kept)."""
    if count is None or count >= len(prompt_ids):
        return prompt_ids
    keep = set(rng.sample(prompt_ids, count))
    return [pid for pid in prompt_ids if pid in keep]


def make_item(plan: Plan, run: str, prompt_id: str, text: str, context: str | None) -> Item:
    return Item(plan.derived("item", f"{run}\0{prompt_id}", 20), run, prompt_id, text, context)


def replicate(plan: Plan, rng: random.Random) -> list[Hit]:
    """per_item copies of every group, each in its own order; copy r of every group before r+1."""
    order = list(range(len(plan.groups)))
    rng.shuffle(order)
    hits = []
    for replica in range(plan.options.per_item):
        for index in order:
            group = plan.groups[index]
            hit_id = plan.derived("hit", f"{index}\0{replica}")
            hits.append(Hit(hit_id, group.group_id, replica, tuple(rng.sample(group.item_ids, len(group.item_ids)))))
    return hits


def load_plan(root: Path) -> Plan | None:
    path = plan_path(root)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {PLAN_VERSION}")
        return Plan.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a readable annotation plan ({exc}); restore it from a backup") from None


def ensure_plan(root: Path, requested: dict) -> tuple[Plan, bool]:
    """The stored plan (options given now must match it), or a new one. -> (plan, created).
    `requested` maps PlanOptions fields to the values given on the command line (None: not given)."""
    root = Path(root)
    given = {k: tuple(v) if k == "runs" else v for k, v in requested.items() if v is not None}
    plan = load_plan(root)
    if plan is not None:
        for name, value in given.items():
            stored = getattr(plan.options, name)
            if value != stored:
                raise UserError(f"{OPTION_FLAGS[name]}: {plan_path(root)} was made with {format_option(stored)}, "
                                f"not {format_option(value)}; leave the option out to continue that study, or "
                                "move annotation/ away to start a new one")
        return plan, False
    if not (root / "prompts.jsonl").exists():
        raise UserError(f"{root}: not an evalharness results folder (no prompts.jsonl)")
    options = PlanOptions(**{"runs": tuple(available_runs(root)), **given})
    check_options(options, root)
    plan = build_plan(root, options)
    annotation_dir(root)
    write_json(plan_path(root), plan.to_json())
    os.chmod(plan_path(root), 0o600)  # holds the key behind every id and token
    return plan, True


def format_option(value) -> str:
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value)
