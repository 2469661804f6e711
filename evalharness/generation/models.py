"""Load a causal LM and its tokenizer: a hub id, a local directory, or builtin:<name>."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hub_constants

from evalharness.errors import UserError, first_line
from evalharness.generation.fast_decoding import ATTRIBUTE, fast_path_for

BUILTIN_MODELS = Path(__file__).resolve().parents[1] / "builtin" / "models"
COMPILE_WITH_DEVICE_MAP = ("model.compile: cannot be combined with model.device_map (a captured decode step needs "
                           "the whole model on one device); remove one of them")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A model ready for decoding, with the token ids the loop needs."""

    model: object
    tokenizer: object
    device: str
    eos_id: int | None
    pad_id: int
    max_positions: int | None
    fingerprint: str = ""
    """Identifies the weights, so retrained weights under the same name are never mixed up."""


def resolve_device(device: str) -> str:
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"model.device: {device!r} asked for, but no CUDA device is available; use cpu or auto")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_location(name: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is local)."""
    if name.startswith("builtin:"):
        folder = BUILTIN_MODELS / name.split(":", 1)[1]
        if not (folder / "config.json").is_file():
            known = sorted(p.name for p in BUILTIN_MODELS.glob("*") if (p / "config.json").is_file())
            raise UserError(f"model.name: unknown builtin model {name!r}; known: "
                            f"{', '.join('builtin:' + k for k in known) or 'none'}")
        return str(folder), True
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), True
    if name.startswith((".", "/", "~")) or path.suffix or name.count("/") > 1:
        raise UserError(f"model.name: no model directory at {name!r}")
    return name, False


def load_model(name: str, device: str = "auto", dtype: str = "float32", trust_remote_code: bool = False,
               use_safetensors: bool = True, device_map: str | dict | None = None, max_memory: dict | None = None,
               offload_folder: str | None = None, world=None, compile: bool = False) -> LoadedModel:
    """Load model + tokenizer, in eval mode, with the model's own generation defaults removed
    (a generation_config.json that sets temperature or top_p must not leak into any sampler).

    With `device_map` (auto | balanced | balanced_low_0 | sequential | {module: device}) the
    model is placed by transformers' big-model loading (accelerate): spread over the GPUs, the
    CPU and, with `offload_folder`, the disk, within `max_memory` ({device: size}). Inputs then
    go to the device of the input embeddings, and every output is brought back there.

    With `compile`, sampling and greedy search run on the static-KV-cache path, the decode step
    replayed from a CUDA graph on a GPU (evalharness.generation.fast_decoding); not with device_map."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if compile and device_map is not None:
        raise UserError(COMPILE_WITH_DEVICE_MAP)
    device = resolve_device(device)
    location, local = resolve_location(name)
    if not local:
        require_hub_access(location, "model.name")
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local,
                                                  trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location, local_files_only=local, trust_remote_code=trust_remote_code,
            dtype=DTYPES[dtype], use_safetensors=use_safetensors,
            **placement(device_map, max_memory, offload_folder, world))
    except (OSError, ValueError) as exc:
        reason = first_line(exc)
        where = "local directory" if local else "Hugging Face Hub (is the id right?)"
        hint = ("; it may hold only pickled weights: set model.use_safetensors: false if you trust them"
                if use_safetensors and "safetensors" in str(exc) else "")
        raise UserError(f"model.name: could not load {name!r} from the {where}: {reason}{hint}") from None
    if device_map is None:
        model.to(device)
    else:
        device = str(model.get_input_embeddings().weight.device)
    model.eval()
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_id or 0)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id)
    if compile:
        setattr(model, ATTRIBUTE, fast_path_for(model, device))
    identity = weights_fingerprint(Path(location)) if local else f"hub:{getattr(model.config, '_commit_hash', None)}"
    return LoadedModel(model, tokenizer, device, eos_id, pad_id, max_positions(model), identity)


def placement(device_map: str | dict | None, max_memory: dict | None, offload_folder: str | None,
              world=None) -> dict:
    """from_pretrained's big-model arguments. Under torchrun each rank's replica gets its own
    block of GPUs (GPU count // ranks per machine): integer GPU ids in device_map and
    max_memory count from the rank's first GPU, and the other ranks' GPUs are left alone."""
    if device_map is None:
        return {}
    first, count = gpu_block(world)
    shift = lambda d: d + first if first and isinstance(d, int) and not isinstance(d, bool) else d  # noqa: E731
    if isinstance(device_map, dict):
        device_map = {module: shift(d) for module, d in device_map.items()}
    if max_memory is not None:
        max_memory = {shift(d): size for d, size in max_memory.items()}
    elif isinstance(device_map, str) and first is not None:
        from accelerate.utils import get_max_memory
        free = get_max_memory()
        max_memory = {d: free[d] for d in range(first, first + count)} | {"cpu": free["cpu"]}
    out = {"device_map": device_map, "max_memory": max_memory}
    return out | ({"offload_folder": offload_folder} if offload_folder else {})


def gpu_block(world) -> tuple[int | None, int]:
    """(first GPU id, GPU count) of this rank's replica; (None, 0) outside torchrun or without GPUs."""
    if world is None or not world.distributed or not torch.cuda.is_available():
        return None, 0
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    count = max(1, torch.cuda.device_count() // per_machine)
    return world.local_rank * count, count


def weights_fingerprint(folder: Path, edge: int = 1 << 20) -> str:
    """sha256 over config.json and, per weight file, its name, size and first and last MiB:
    cheap on multi-GB checkpoints, and any retraining changes it."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(edge))
            handle.seek(max(0, size - edge))
            digest.update(handle.read(edge))
    return digest.hexdigest()[:16]


def require_hub_access(repo_id: str, key: str) -> None:
    """Fail in seconds, naming the key, when a Hub model is neither cached nor reachable."""
    if not hub_offline_mode() and not _in_hub_cache(repo_id) and not hub_reachable():
        raise UserError(f"{key}: {repo_id!r} is not a local directory, not in the Hugging Face cache, and the "
                        "Hub is unreachable; give a local path, builtin:pydocs-gpt2-small, or connect")


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the Hub model's config is in the local cache (then no network is needed)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the cache cannot even parse: let from_pretrained say what is wrong
        return False


def hub_offline_mode() -> bool:
    """huggingface_hub's own answer (HF_HUB_OFFLINE, or TRANSFORMERS_OFFLINE, as it reads them when
    imported): offline, the libraries read only their caches and fail fast by themselves. Asking
    it, rather than reading the variables again, keeps us in step with what they will do."""
    return bool(hub_constants.is_offline_mode() if hasattr(hub_constants, "is_offline_mode")
                else hub_constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 5.0) -> bool:
    """One quick TCP connection to the Hub endpoint, instead of huggingface_hub's minute of
    retries when there is no network."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def max_positions(model) -> int | None:
    """The longest sequence the model accepts, when its config says."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
