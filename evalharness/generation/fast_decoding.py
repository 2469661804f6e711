"""The static-KV-cache decode path (`model.compile: true`): sampling and greedy search with the
keys and values preallocated to context width + max_new_tokens, and, on CUDA, the decode step
replayed from a captured CUDA graph.

Why: eager decoding of a GPT-2 Large-shaped model on a GPU spends ~25 ms per step launching
~1,000 small kernels from Python, 25x the hardware bound. A captured graph launches them all at
once. Capture needs every tensor the step reads or writes at a fixed address with a fixed shape,
and no host work inside the step: hence the static cache (written in place at a device-side
column index), a 4-D attention mask that covers the whole preallocated width, and the uniforms
drawn up front (decoding.draw_uniforms) so that the token choice needs no RNG.

Why our own graph capture rather than torch.compile(mode="reduce-overhead"): a replay runs
exactly the eager kernels (so tokens match the eager path wherever its logits do, for float32,
bfloat16 and float16 alike), costs one forward pass to capture instead of minutes of compilation
for 36 layers, and does not recompile per batch shape.

What stays the eager path's own code: the prompt pass (model_logits with transformers' cache, then
copied into the static buffers), and the steps: decoding.step_through chooses the tokens (run
eagerly after each replay) and cuts at end-of-text, for both loops. Rows keep the decoding.py contract: a row's continuation depends only on
(model, context, sampler, seed).

Two shapes of the same path:
- fixed_shapes (CUDA, needed for capture): attention always spans the preallocated width, the
  columns not yet written masked out. SDPA then reduces over more (exactly zero) terms, which
  moves logits in the last bits (~1e-6 relative in float32 on CPU, measured), so a token differs
  from the eager one only where that flips a choice;
- sliced (CPU default): attention spans the columns written so far, the exact tensors of the
  eager path: byte-identical tokens and log-probs (tested).
"""

from __future__ import annotations

from typing import Sequence

import torch

from evalharness.generation.decoding import (Continuation, _cache_argument, draw_uniforms, left_pad, model_logits, positions,
                                  step_through)
from evalharness.errors import UserError

ATTRIBUTE = "evalharness_fast_path"
"""load_model(compile=True) sets this attribute of the model to a FastPath; decode() uses it."""
SUPPORTED_ATTENTION = ("sdpa", "eager")


class StaticKV:
    """Preallocated (batch, heads, length, head_dim) keys and values per layer.

    Duck-typed to the one cache method a transformers attention layer calls, update(k, v, layer):
    it writes the new column in place at `column` (a one-element device tensor, so a captured
    graph reads the current value) and returns the whole buffers, or their first `visible`
    columns when shapes need not stay fixed."""

    def __init__(self, like: list[tuple[torch.Tensor, torch.Tensor]], length: int):
        self.keys = [k.new_zeros(k.shape[:2] + (length,) + k.shape[3:]) for k, _ in like]
        self.values = [v.new_zeros(v.shape[:2] + (length,) + v.shape[3:]) for _, v in like]
        self.column = torch.zeros(1, dtype=torch.long, device=like[0][0].device)
        self.visible: int | None = None

    def load(self, prefill: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        width = prefill[0][0].shape[2]
        for keys, values, (k, v) in zip(self.keys, self.values, prefill):
            keys[:, :, :width].copy_(k)
            values[:, :, :width].copy_(v)
        self.column.fill_(width)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys.index_copy_(2, self.column, key_states)
        values.index_copy_(2, self.column, value_states)
        if self.visible is None:
            return keys, values
        return keys[:, :, :self.visible], values[:, :, :self.visible]


def cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers cache after the prompt pass (5.x: .layers)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


class StaticStep:
    """Every input of one decode step at a fixed address, and the model call on them."""

    def __init__(self, model, prefill: list[tuple[torch.Tensor, torch.Tensor]], rows: int, length: int,
                 fixed_shapes: bool):
        self.model, self.fixed_shapes, self.length = model, fixed_shapes, length
        device = prefill[0][0].device
        self.cache = StaticKV(prefill, length)
        self.ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.attend, self.ignore, mask_dtype = mask_values(model)
        self.mask = torch.full((rows, 1, 1, length), self.ignore, dtype=mask_dtype, device=device)
        self.cache_name = _cache_argument(type(model))

    def start(self, prefill, mask: torch.Tensor, last_pos: torch.Tensor) -> None:
        """Fill the buffers in place for a new batch (a captured graph keeps reading them)."""
        width = mask.shape[1]
        self.cache.load(prefill)
        self.mask.fill_(self.ignore)
        self.mask[:, 0, 0, :width] = torch.where(mask.bool(), self.attend, self.ignore)
        self.pos.copy_(last_pos)

    def load(self, token: torch.Tensor) -> None:
        """The next step's inputs: the chosen tokens at the next column, one position on."""
        self.ids.copy_(token[:, None])
        self.pos.add_(1)
        self.mask.index_fill_(3, self.cache.column, self.attend)
        if not self.fixed_shapes:
            self.cache.visible = int(self.cache.column) + 1  # CPU: a host value is free

    def forward(self) -> torch.Tensor:
        mask = self.mask if self.fixed_shapes else self.mask[..., :self.cache.visible]
        out = self.model(input_ids=self.ids, attention_mask=mask, position_ids=self.pos, use_cache=True,
                         **{self.cache_name: self.cache})
        return out.logits[:, -1, :]

    def advance(self) -> None:
        self.cache.column.add_(1)


def mask_values(model) -> tuple[object, object, torch.dtype]:
    """A 4-D mask is passed through as is: boolean for SDPA, additive for eager attention."""
    if model.config._attn_implementation == "sdpa":
        return True, False, torch.bool
    return 0.0, torch.finfo(model.dtype).min, model.dtype


class CapturedStep:
    """The decode step as a CUDA graph over a StaticStep's buffers (PyTorch's recipe: warm up on
    a side stream so lazy allocations and library handles are made outside capture, then capture
    on the default graph pool). replay() returns the step's logits, overwritten by the next replay."""

    def __init__(self, step: StaticStep):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step.forward()  # writes the column the first replay writes again: harmless
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = step.forward()

    def replay(self) -> torch.Tensor:
        self.graph.replay()
        return self.logits


class FastPath:
    """The static-cache loop for one model. Keeps the buffers (and the graph) of the last batch
    shape, so batches of the same shape reuse them: one capture per shape, not per batch."""

    def __init__(self, fixed_shapes: bool, capture: bool):
        self.fixed_shapes, self.capture = fixed_shapes, capture
        self.shape: tuple | None = None
        self.step: StaticStep | None = None
        self.graph: CapturedStep | None = None

    def prepare(self, model, prefill, mask, last_pos, max_new_tokens: int) -> StaticStep:
        shape = (mask.shape[0], mask.shape[1], max_new_tokens)
        if shape != self.shape:
            self.shape, self.step, self.graph = None, None, None  # free the old buffers (and graph pool) first
            self.step = StaticStep(model, prefill, mask.shape[0], mask.shape[1] + max_new_tokens, self.fixed_shapes)
            self.shape = shape
        self.step.start(prefill, mask, last_pos)
        return self.step

    def next_logits(self, step: StaticStep, token: torch.Tensor) -> torch.Tensor:
        step.load(token)
        if not self.capture:
            logits = step.forward()
        else:
            if self.graph is None:
                self.graph = CapturedStep(step)
            logits = self.graph.replay()
        step.advance()
        return logits

    @torch.inference_mode()
    def __call__(self, model, contexts: Sequence[Sequence[int]], sampler, max_new_tokens: int,
                 eos_id: int | None, pad_id: int, seeds: Sequence[int], device: str) -> list[Continuation]:
        """decoding.sample_loop's signature and results, on the static cache."""
        ids, mask = left_pad(contexts, pad_id, device)
        uniforms = draw_uniforms(seeds, max_new_tokens, device) if sampler.strategy == "sample" else None
        pos = positions(mask)
        first = model_logits(model, ids, mask, pos)  # the prompt pass is the eager path's own
        step = self.prepare(model, cache_layers(first.cache), mask, pos[:, -1:], max_new_tokens)
        logits = first.logits[:, -1, :]
        del first
        # Asking whether every row has ended waits for the device: on CUDA only every 8 steps.
        return step_through(logits, sampler, uniforms, max_new_tokens, eos_id,
                            lambda token: self.next_logits(step, token), check_every=8 if self.capture else 1)


def fast_path_for(model, device: str) -> FastPath:
    """The fast path a loaded model gets: captured fixed-shape steps on CUDA; on other devices
    the same static cache without capture, sliced to the written columns (the eager numbers)."""
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in SUPPORTED_ATTENTION:
        raise UserError(f"model.compile: needs the model's attention to be {' or '.join(SUPPORTED_ATTENTION)} "
                        f"(this model uses {implementation!r}); remove model.compile")
    on_cuda = str(device).startswith("cuda")
    return FastPath(fixed_shapes=on_cuda, capture=on_cuda)
