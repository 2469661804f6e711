"""Experiment YAML -> frozen dataclasses. Strict: an unknown key is an error that names it."""

from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import yaml

from evalharness.errors import UserError
from evalharness.records import HUMAN_RUN, RunSpec
from evalharness.samplers import SAMPLERS
from evalharness.scorers import SCORERS
from evalharness.generation.models import COMPILE_WITH_DEVICE_MAP

DEFAULT_SCORERS = ("length", "human_support", "perplexity", "repetition", "self_bleu", "zipf", "distinct", "mauve")
ALWAYS_SCORED = ("length", "human_support")
"""Added to every scorer list: length statistics, and how much human text each sampler allows
(computed from files the run writes anyway)."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    """Hugging Face hub id, local directory, or builtin:<name>."""
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 32
    trust_remote_code: bool = False
    use_safetensors: bool = True
    """Load weights only from .safetensors files (pickled .bin weights can run code)."""
    device_map: str | dict | None = None
    """Big-model placement by accelerate: auto | balanced | balanced_low_0 | sequential | {module: device}."""
    max_memory: dict | None = None
    """With device_map: {device: size}, e.g. {0: 20GiB, cpu: 64GiB}."""
    offload_folder: str | None = None
    """With device_map: where modules mapped to "disk" are kept."""
    compile: bool = False
    """Sampling and greedy search on the static-KV-cache path, CUDA-graph replayed on a GPU."""


@dataclass(frozen=True)
class DataConfig:
    source: str
    split: str = "test"
    text_field: str = "text"
    hf_config: str | None = None
    """Dataset configuration for hf: sources; when set, the whole hf: path is the dataset id."""
    layout: str = "documents"
    """hf sources: "documents" (a row is a document) or "lines" (rows are the lines of one text,
    split into documents as a .txt file is — WikiText on the Hub is stored this way)."""
    num_prompts: int = 500
    context_tokens: int | str = 32
    """An int, or "first_paragraph" (prefix up to the first blank line, 1..first_paragraph_max_tokens)."""
    first_paragraph_max_tokens: int = 40
    max_new_tokens: int = 128
    min_continuation_tokens: int | None = None
    """A document qualifies when it holds at least this many tokens after the context
    (default max_new_tokens // 2)."""

    @property
    def min_continuation(self) -> int:
        return self.max_new_tokens // 2 if self.min_continuation_tokens is None else self.min_continuation_tokens


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def build(self):
        return SCORERS.get(self.name).from_options(dict(self.options))


@dataclass(frozen=True)
class BootstrapConfig:
    resamples: int = 200
    seed: int | None = None
    """Defaults to the experiment seed."""


@dataclass(frozen=True)
class OracleConfig:
    context_tokens: int = 15
    num_tokens: int | None = None
    """Stop after this many human tokens have been analysed (None = all prompts' tokens)."""
    mode: str = "window"
    """window: each token sees the previous context_tokens tokens; prefix: the whole preceding document."""
    batch_size: int = 64


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    model: ModelConfig
    data: DataConfig
    samplers: tuple[RunSpec, ...]
    scorers: tuple[ScorerSpec, ...] = tuple(ScorerSpec(n) for n in DEFAULT_SCORERS)
    seed: int = 0
    description: str = ""
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    path: str = ""
    """The YAML file it came from (for messages)."""
    overrides: tuple[str, ...] = ()
    """The `--set KEY=VALUE` overrides applied to the file, as given (recorded in the manifest)."""


NOT_IN_YAML = ("path", "overrides")


def load(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read and validate an experiment YAML, with `--set` overrides (dotted.path=value) applied
    first; every problem is a UserError naming the key (or the override)."""
    raw = read_yaml(path)
    merged = apply_overrides(raw, overrides)
    try:
        return parse(merged, str(path), tuple(overrides))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: experiment file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return raw


def parse(raw: Any, path: str = "", overrides: tuple[str, ...] = ()) -> ExperimentConfig:
    top = _mapping(raw, "the experiment file", required=("name", "model", "data", "samplers"),
                   allowed=[f.name for f in fields(ExperimentConfig) if f.name not in NOT_IN_YAML])
    name = _typed(top["name"], "name", str)
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"name: must be a plain folder name (got {name!r})")
    model = _section(ModelConfig, top["model"], "model")
    data = _section(DataConfig, top["data"], "data")
    _check_model(model)
    _check_data(data)
    return ExperimentConfig(
        name=name, model=model, data=data,
        samplers=expand_samplers(top["samplers"]),
        scorers=_scorers(top.get("scorers", list(DEFAULT_SCORERS))),
        seed=_typed(top.get("seed", 0), "seed", int),
        description=_typed(top.get("description", ""), "description", str),
        bootstrap=_check_bootstrap(_section(BootstrapConfig, top.get("bootstrap", {}), "bootstrap")),
        oracle=_check_oracle(_section(OracleConfig, top.get("oracle", {}), "oracle")),
        path=path, overrides=overrides,
    )


# --- overrides ---------------------------------------------------------------------------------

SECTIONS = {"model": ModelConfig, "data": DataConfig, "bootstrap": BootstrapConfig, "oracle": OracleConfig}
"""The YAML's mapping sections and the dataclass whose fields are their keys."""


def apply_overrides(raw: Any, overrides: Sequence[str]) -> Any:
    """The YAML's content with each `dotted.path=value` set in it (the value parsed as YAML:
    100 is an integer, [0.9, 0.95] a list, null None). The result is then validated exactly as a
    file would be. A path must name a key the experiment file may hold: an unknown one is an error
    naming the closest key. Lists (samplers, scorers) are indexed by position: samplers.0.p=0.9."""
    if not overrides:
        return raw
    merged = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for text in overrides:
        keys, value = _split_override(text)
        _set_path(merged, keys, value, text)
    return merged


def _split_override(text: str) -> tuple[list[str], Any]:
    if not isinstance(text, str) or "=" not in text:
        raise UserError(f"--set {text!r}: write KEY=VALUE with a dotted key, e.g. model.name=gpt2")
    path, _, value_text = text.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise UserError(f"--set {text!r}: empty key in {path.strip()!r} (write e.g. data.num_prompts=100)")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        raise UserError(f"--set {text!r}: the value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return keys, value


def _allowed_keys(where: tuple[str, ...]) -> list[str] | None:
    """The keys an override may name at `where` (the keys above it), or None for any key (a
    sampler's or scorer's parameters, device_map, max_memory: checked when the result is parsed)."""
    if not where:
        return [f.name for f in fields(ExperimentConfig) if f.name not in NOT_IN_YAML]
    if len(where) == 1 and where[0] in SECTIONS:
        return [f.name for f in fields(SECTIONS[where[0]])]
    return None


def _set_path(node: Any, keys: list[str], value: Any, text: str) -> None:
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = tuple(keys[:depth])
        if isinstance(node, list):
            if not (key.isdigit() and int(key) < len(node)):
                raise UserError(f"--set {text!r}: {'.'.join(where)} is a list of {len(node)}; "
                                f"index it by position 0..{len(node) - 1} (got {key!r})")
            index = int(key)
            if last:
                node[index] = value
                return
            if isinstance(node[index], str):  # a bare sampler/scorer name becomes a mapping
                node[index] = {"name": node[index]}
            node = node[index]
            continue
        if not isinstance(node, dict):
            raise UserError(f"--set {text!r}: {'.'.join(where)} holds {node!r}, not a mapping of keys")
        allowed = _allowed_keys(where)
        if allowed is not None and key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {'.'.join([*where, close[0], *keys[depth + 1:]])!r}?)" if close else ""
            section = ".".join(where) or "the experiment file"
            raise UserError(f"--set {text!r}: unknown key {key!r} in {section}{hint}")
        if last:
            node[key] = value
            return
        if node.get(key) is None:
            node[key] = {}
        node = node[key]


# --- generic helpers -------------------------------------------------------------------------

def _mapping(raw: Any, where: str, required=(), allowed=()) -> dict:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must be a mapping of keys to values (got {type(raw).__name__})")
    for key in raw:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in raw:
            raise UserError(f"{where}: missing required key {key!r}")
    return raw


_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", float: "a number"}


def _typed(value: Any, key: str, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise UserError(f"{key}: must be {_TYPE_NAMES[kind]} (got {value!r})")
    return value


def _section(cls, raw: Any, where: str):
    """Build a config dataclass from a mapping, type-checking each key against its annotation."""
    spec = {f.name: f for f in fields(cls)}
    required = [n for n, f in spec.items() if f.default is MISSING and f.default_factory is MISSING]
    raw = _mapping(raw if raw is not None else {}, where, required=required, allowed=list(spec))
    values = {}
    for key, value in raw.items():
        annotation = str(spec[key].type)
        key_path = f"{where}.{key}"
        if value is None and "None" in annotation:
            values[key] = None
        elif annotation.startswith("str | dict"):
            values[key] = value if isinstance(value, str) else _mapping(value, key_path, allowed=list(value or {}))
        elif annotation.startswith("dict"):
            values[key] = _mapping(value, key_path, allowed=list(value or {}) if isinstance(value, dict) else ())
        elif annotation.startswith("int | str"):
            values[key] = value if isinstance(value, str) else _typed(value, key_path, int)
        else:
            kind = {"str": str, "int": int, "bool": bool, "float": float}[annotation.split(" |")[0]]
            values[key] = _typed(value, key_path, kind)
    return cls(**values)


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise UserError(f"{key}: must be {rule} (got {value!r})")


# --- section checks ----------------------------------------------------------------------------

def _check_model(model: ModelConfig) -> None:
    _require(bool(model.name), "model.name", "a hub id, local directory or builtin:<name>", model.name)
    _require(model.dtype in ("float32", "float16", "bfloat16"), "model.dtype", "float32, float16 or bfloat16", model.dtype)
    device_ok = model.device in ("auto", "cpu", "cuda", "mps") or (
        model.device.startswith("cuda:") and model.device[5:].isdigit())
    _require(device_ok, "model.device", "auto, cpu, cuda or cuda:N", model.device)
    _require(model.batch_size >= 1, "model.batch_size", ">= 1", model.batch_size)
    _check_placement(model)


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def _placement_device(value: Any) -> bool:
    """A device accelerate places modules on: a GPU index, cpu, disk, mps or cuda:N."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    return isinstance(value, str) and (value in ("cpu", "disk", "mps") or
                                       (value.startswith("cuda:") and value[5:].isdigit()))


def _check_placement(model: ModelConfig) -> None:
    device_map, max_memory = model.device_map, model.max_memory
    if isinstance(device_map, str):
        _require(device_map in DEVICE_MAP_STRATEGIES, "model.device_map",
                 f"one of {', '.join(DEVICE_MAP_STRATEGIES)} or a mapping of module names to devices", device_map)
    elif device_map is not None:
        _require(bool(device_map), "model.device_map", "a non-empty mapping of module names to devices", device_map)
        for module, device in device_map.items():
            _require(isinstance(module, str), "model.device_map", "keyed by module names (strings)", module)
            _require(_placement_device(device), f"model.device_map.{module}",
                     "a GPU index, cpu, disk or cuda:N", device)
    if max_memory is not None:
        _require(device_map is not None, "model.max_memory", "used together with model.device_map", max_memory)
        for device, size in max_memory.items():
            _require(_placement_device(device) and device != "disk", "model.max_memory",
                     "keyed by GPU index, cpu or mps", device)
            _require(isinstance(size, (int, str)) and not isinstance(size, bool), f"model.max_memory.{device}",
                     "a size such as 20GiB or a number of bytes", size)
    if model.compile and device_map is not None:
        raise UserError(COMPILE_WITH_DEVICE_MAP)
    if model.offload_folder is not None:
        _require(device_map is not None, "model.offload_folder", "used together with model.device_map",
                 model.offload_folder)


def _check_data(data: DataConfig) -> None:
    _require(bool(data.source), "data.source", "a file path, hf:<dataset> or builtin:<name>", data.source)
    _require(data.num_prompts >= 1, "data.num_prompts", ">= 1", data.num_prompts)
    _require(data.layout in ("documents", "lines"), "data.layout", "documents or lines", data.layout)
    _require(data.max_new_tokens >= 1, "data.max_new_tokens", ">= 1", data.max_new_tokens)
    if isinstance(data.context_tokens, str):
        _require(data.context_tokens == "first_paragraph", "data.context_tokens",
                 "an integer >= 1 or first_paragraph", data.context_tokens)
    else:
        _require(data.context_tokens >= 1, "data.context_tokens", "an integer >= 1 or first_paragraph",
                 data.context_tokens)
    _require(data.first_paragraph_max_tokens >= 1, "data.first_paragraph_max_tokens", ">= 1",
             data.first_paragraph_max_tokens)
    _require(1 <= data.min_continuation <= data.max_new_tokens, "data.min_continuation_tokens",
             "between 1 and data.max_new_tokens", data.min_continuation_tokens)


def _check_bootstrap(boot: BootstrapConfig) -> BootstrapConfig:
    _require(boot.resamples >= 0, "bootstrap.resamples", ">= 0", boot.resamples)
    return boot


def _check_oracle(oracle: OracleConfig) -> OracleConfig:
    _require(oracle.context_tokens >= 1, "oracle.context_tokens", ">= 1", oracle.context_tokens)
    _require(oracle.mode in ("window", "prefix"), "oracle.mode", "window or prefix", oracle.mode)
    _require(oracle.num_tokens is None or oracle.num_tokens >= 1, "oracle.num_tokens", ">= 1", oracle.num_tokens)
    _require(oracle.batch_size >= 1, "oracle.batch_size", ">= 1", oracle.batch_size)
    return oracle


# --- grids -------------------------------------------------------------------------------------

def _entry(raw: Any, where: str) -> tuple[str, dict]:
    """A grid entry is a bare name or a mapping with `name` and parameters."""
    if isinstance(raw, str):
        return raw, {}
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        return raw["name"], {k: v for k, v in raw.items() if k != "name"}
    raise UserError(f"{where}: must be a name or a mapping with a 'name' key (got {raw!r})")


def expand_samplers(raw: Any) -> tuple[RunSpec, ...]:
    """Each entry's list values expand to their cartesian product; names must come out unique."""
    if not isinstance(raw, list) or not raw:
        raise UserError("samplers: must be a non-empty list (the grid is empty)")
    runs: dict[str, RunSpec] = {}
    for i, item in enumerate(raw):
        where = f"samplers[{i}]"
        name, params = _entry(item, where)
        cls = SAMPLERS.get(name, where)
        params = canonical_parameters(cls, name, params, where)
        allowed = [p for p, _ in cls.parameters()]
        for key in params:
            if key not in allowed:
                also = "".join(f", {alias} (= {field})" for alias, field in cls.aliases.items())
                raise UserError(f"{where} ({name}): unknown parameter {key!r}; {name} takes: "
                                f"{', '.join(allowed) or 'no parameters'}{also}")
        keys = list(params)
        grids = [v if isinstance(v, list) else [v] for v in params.values()]
        if any(not g for g in grids):
            raise UserError(f"{where} ({name}): an empty list gives an empty grid")
        for combo in itertools.product(*grids):
            spec = make_run(cls, name, dict(zip(keys, combo)), where)
            if spec.name in runs or spec.name == HUMAN_RUN:
                raise UserError(f"{where}: run {spec.name!r} appears twice in the grid")
            runs[spec.name] = spec
    return tuple(runs.values())


def canonical_parameters(cls, name: str, params: dict, where: str) -> dict:
    """A sampler entry's parameters with transformers' names (cls.aliases: top_p -> p) replaced
    by the sampler's own, so that `top_p: 0.9` and `p: 0.9` name the same run."""
    out = {}
    for key, value in params.items():
        field_name = cls.aliases.get(key, key)
        if field_name in out:
            raise UserError(f"{where} ({name}): {field_name!r} is given twice (once as {key!r}); keep one")
        out[field_name] = value
    return out


def make_run(cls, name: str, params: dict, where: str) -> RunSpec:
    try:
        sampler = cls(**params)
    except UserError as exc:
        raise UserError(f"{where} ({name}).{exc}") from None
    except TypeError as exc:  # a required parameter is missing
        raise UserError(f"{where} ({name}): {exc}".replace("__init__() ", "")) from None
    values = sampler.parameter_values()
    defaults = dict(cls.parameters())
    shown = [f"{k}={_fmt(v)}" for k, v in values if k in params and not (k in defaults and defaults[k] == v
                                                                          and defaults[k] is not None)]
    return RunSpec(name="-".join([name, *shown]), sampler=name, params=tuple(values))


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def build_sampler(spec: RunSpec):
    return SAMPLERS.get(spec.sampler)(**spec.params_dict)


def _scorers(raw: Any) -> tuple[ScorerSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise UserError("scorers: must be a non-empty list of scorer names")
    specs, seen = [], {}
    for i, item in enumerate(raw):
        where = f"scorers[{i}]"
        name, options = _entry(item, where)
        spec = ScorerSpec(name, tuple(options.items()))
        cls = SCORERS.get(name, where)
        allowed = cls.options()
        for key in options:
            if key not in allowed and not cls.extra_options:
                raise UserError(f"{where} ({name}): unknown option {key!r}; {name} takes: "
                                f"{', '.join(allowed) or 'no options'}")
        try:
            identity = spec.build().key
        except UserError as exc:
            raise UserError(f"{where} ({name}).{exc}") from None
        if identity in seen and seen[identity] != spec:
            raise UserError(f"{where} ({name}): a second entry for {identity!r} with other options; "
                            "keep one (evaluate scorers: give each its own `as`)")
        if identity not in seen:
            specs.append(spec)
            seen[identity] = spec
    for position, name in enumerate(ALWAYS_SCORED):  # always reported
        if name not in seen:
            specs.insert(position, ScorerSpec(name))
    return tuple(specs)
