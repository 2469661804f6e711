"""`python -m evalharness train-builtin`: train the builtin model on the `builtin:pydocs` train split.

The result is a self-contained folder that `GPT2LMHeadModel.from_pretrained(folder)` and
`AutoTokenizer.from_pretrained(folder)` load offline:

* a byte-level BPE tokenizer (the `tokenizers` library) trained on the train split only, with
  `<|endoftext|>` as its one special token (bos = eos = unk; no pad token, as in GPT-2);
* a small GPT-2 (transformers `GPT2LMHeadModel`) trained on the train split with AdamW,
  linear warmup and cosine decay, documents joined by `<|endoftext|>` and cut into windows;
* `training_log.json`, `loss_curve.csv`, `loss_curve.png` (if matplotlib is installed), and the
  held-out perplexity of the model and of an add-one-smoothed unigram model on valid and test;
* a plain `generation_config.json` (bos/eos ids only: no sampling defaults may leak into runs).

Determinism: the same arguments, seed and `--threads` give bit-identical weights (torch seeded,
data order from a seeded generator, the tokenizer trainer is deterministic). `--minutes` is a
safety cap: if it cuts training short the log says so and the result depends on machine speed.
"""

from __future__ import annotations

import logging
import csv
import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from evalharness.builtin.corpora import pydocs
from evalharness.builtin.train_config import EOT, MODEL_NAME, TrainConfig, parse_args

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate and save; prints progress and a summary. Returns the exit status."""
    return run_training(parse_args(argv))


def run_training(config: TrainConfig) -> int:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        log = train(config)
    finally:
        torch.set_num_threads(previous_threads)
    logger.info("%s", json.dumps(log["evaluation"], indent=2))
    logger.info("wrote %s", config.output)
    return 0


def train(config: TrainConfig) -> dict:
    """Train the tokenizer and model, evaluate them, write the folder; returns the log."""
    started = time.time()
    torch.manual_seed(config.seed)
    texts = [text for _, text in pydocs.documents("train")][: config.max_train_docs]
    tokenizer = train_tokenizer(texts, config.vocab_size, config.n_positions)
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    stream = encode_stream(tokenizer, texts)
    model = build_model(config, len(tokenizer), eot_id)
    valid = encode_stream(tokenizer, _eval_texts("valid", config))
    history, selected_step, stopped_early = _optimise(model, stream, valid, config, started)
    evaluation = {
        split: evaluate(model, encode_stream(tokenizer, _eval_texts(split, config)), stream,
                        len(tokenizer), config)
        for split in ("valid", "test")
    }
    log = _log(config, texts, stream, model, history, evaluation, started)
    log |= {"selected_step": selected_step, "stopped_early_by_time_cap": stopped_early}
    save(Path(config.output), model, tokenizer, eot_id, log)
    return log


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int = 512):
    """A GPT-2-style byte-level BPE tokenizer trained on `texts`, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return GPT2TokenizerFast(
        tokenizer_object=backend,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        model_max_length=max_length,
    )


def encode_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All texts as one token stream: <eot> doc <eot> doc ... <eot> (GPT-2's document joining)."""
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    ids = [eot_id]
    # The backend directly: no special tokens, no warning about documents longer than the context.
    for encoding in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(eot_id)
    return torch.tensor(ids, dtype=torch.long)


def build_model(config: TrainConfig, vocab_size: int, eot_id: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    model_config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
    )
    return GPT2LMHeadModel(model_config)


def _eval_texts(split: str, config: TrainConfig) -> list[str]:
    return [text for _, text in pydocs.documents(split)][: config.max_eval_docs]


def _optimise(model, stream, valid, config: TrainConfig, started: float):
    """The training loop. Leaves the model at the step with the lowest valid loss; returns the
    per-step history, that step, and whether the time cap stopped training early."""
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.95)
    )
    batches = _batches(stream, config)
    history: list[dict] = []
    best = _Best()
    model.train()
    for step in range(1, config.steps + 1):
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        loss = _next_token_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        record = {"step": step, "train_loss": loss.item(), "lr": lr,
                  "elapsed_s": round(time.time() - started, 2)}
        stop = config.minutes is not None and time.time() - started > 60 * config.minutes
        if step % config.eval_every == 0 or step == config.steps or stop:
            record["valid_loss"] = _mean_loss(model, valid, config)
            best.offer(step, record["valid_loss"], model)
            model.train()
        history.append(record)
        _report_progress(record, config)
        if stop:
            break
    best.restore(model)
    return history, best.step, len(history) < config.steps


class _Best:
    """Early stopping on the valid split: keeps the weights of the lowest valid loss seen."""

    def __init__(self) -> None:
        self.step, self.loss, self.state = 0, math.inf, None

    def offer(self, step: int, loss: float, model) -> None:
        if loss < self.loss:
            self.step, self.loss = step, loss
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def _next_token_loss(model, batch: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=batch).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def _param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases and layer-norm gains), as in GPT-2/nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at the last step."""
    if step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _batches(stream: torch.Tensor, config: TrainConfig):
    """Endless batches of windows: each epoch cuts the stream at a seeded random offset and
    visits the windows in a seeded random order (so epochs differ, and runs repeat exactly)."""
    generator = torch.Generator().manual_seed(config.seed)
    length = config.seq_len
    if len(stream) < length * config.batch_size + length:
        raise ValueError(f"training stream of {len(stream)} tokens is too short for one batch")
    while True:
        offset = int(torch.randint(0, length, (1,), generator=generator))
        count = (len(stream) - offset) // length
        windows = stream[offset : offset + count * length].view(count, length)
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - config.batch_size + 1, config.batch_size):
            yield windows[order[start : start + config.batch_size]]


def _report_progress(record: dict, config: TrainConfig) -> None:
    step = record["step"]
    if step == 1 or step % 10 == 0 or step == config.steps or "valid_loss" in record:
        eta = record["elapsed_s"] / step * (config.steps - step)
        valid = f" valid_loss {record['valid_loss']:.3f}" if "valid_loss" in record else ""
        logger.info("step %d/%d loss %.3f%s lr %.2e elapsed %.0fs eta %.0fs", step, config.steps,
                    record["train_loss"], valid, record["lr"], record["elapsed_s"], eta)


def _eval_windows(stream: torch.Tensor, length: int) -> list[torch.Tensor]:
    """Non-overlapping windows covering the whole stream (the last one may be shorter)."""
    starts = range(0, len(stream) - 1, length)
    return [stream[i : i + length] for i in starts]


@torch.no_grad()
def _mean_loss(model, stream: torch.Tensor, config: TrainConfig) -> float:
    """Mean next-token negative log-likelihood (nats) over every target token of `stream`."""
    model.eval()
    windows = _eval_windows(stream, config.seq_len)
    full = [w for w in windows if len(w) == config.seq_len]
    batches = [torch.stack(full[i : i + config.batch_size])
               for i in range(0, len(full), config.batch_size)]
    batches += [w[None] for w in windows if len(w) != config.seq_len]
    total, count = 0.0, 0
    for inputs in batches:
        logits = model(input_ids=inputs).logits[:, :-1]
        total += torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), inputs[:, 1:].flatten(), reduction="sum").item()
        count += inputs[:, 1:].numel()
    return total / count


def unigram_loss(train_stream: torch.Tensor, stream: torch.Tensor, vocab_size: int,
                 length: int) -> float:
    """Mean NLL of add-one-smoothed unigram counts from `train_stream`, on the same target
    tokens `_mean_loss` scores (every window position but the first)."""
    counts = torch.bincount(train_stream, minlength=vocab_size).double() + 1.0
    log_probs = counts.log() - counts.sum().log()
    targets = torch.cat([window[1:] for window in _eval_windows(stream, length)])
    return float(-log_probs[targets].mean())


def evaluate(model, stream, train_stream, vocab_size: int, config: TrainConfig) -> dict:
    model_loss = _mean_loss(model, stream, config)
    unigram = unigram_loss(train_stream, stream, vocab_size, config.seq_len)
    return {
        "tokens": len(stream),
        "loss": model_loss,
        "perplexity": math.exp(model_loss),
        "unigram_loss": unigram,
        "unigram_perplexity": math.exp(unigram),
    }


def _log(config, texts, stream, model, history, evaluation, started) -> dict:
    import transformers

    last = history[-10:]
    return {
        "model": MODEL_NAME,
        "config": {k: v for k, v in asdict(config).items() if k != "output"},
        "corpus": {"name": "builtin:pydocs", "python": platform.python_version(),
                   "fingerprint": pydocs.fingerprint(), "train_documents": len(texts),
                   "train_tokens": len(stream)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "steps_done": len(history),
        "epochs": round(len(history) * config.batch_size * config.seq_len / len(stream), 2),
        "final_train_loss_mean_last_10": sum(r["train_loss"] for r in last) / len(last),
        "wall_time_s": round(time.time() - started, 1),
        "evaluation": evaluation,
        "history": history,
    }


def save(folder: Path, model, tokenizer, eot_id: int, log: dict) -> None:
    """Weights, tokenizer, plain generation config, log, loss curve (csv + png), model card."""
    from transformers import GenerationConfig

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Only bos/eos: a sampling default here (temperature, top_k, ...) would change every run.
    GenerationConfig(bos_token_id=eot_id, eos_token_id=eot_id).save_pretrained(folder)
    (folder / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    _write_curve_csv(folder / "loss_curve.csv", log["history"])
    _plot_curve(folder / "loss_curve.png", log)
    (folder / "README.md").write_text(_model_card(log))


def _write_curve_csv(path: Path, history: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", "train_loss", "valid_loss", "lr", "elapsed_s"])
        writer.writeheader()
        for record in history:
            writer.writerow({key: record.get(key, "") for key in writer.fieldnames})


def _plot_curve(path: Path, log: dict) -> None:
    try:
        from matplotlib.figure import Figure  # the Figure API: no pyplot, no global backend switch
    except ImportError:
        return  # the csv carries the same numbers
    history = log["history"]
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    axes.plot([r["step"] for r in history], [r["train_loss"] for r in history],
              label="train loss", linewidth=0.8)
    points = [r for r in history if "valid_loss" in r]
    axes.plot([r["step"] for r in points], [r["valid_loss"] for r in points], "o-",
              label="valid loss")
    axes.axhline(log["evaluation"]["valid"]["unigram_loss"], color="grey", linestyle="--",
                 label="unigram (valid)")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.set_title(f"{log['model']} on builtin:pydocs")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _model_card(log: dict) -> str:
    config, rows = log["config"], []
    for split, result in log["evaluation"].items():
        rows.append(f"| {split} | {result['tokens']} | {result['perplexity']:.2f} "
                    f"| {result['unigram_perplexity']:.2f} |")
    return "\n".join([
        f"# {log['model']}",
        "",
        "A small GPT-2 trained from scratch on the train split of `builtin:pydocs` (CPython's",
        "documentation topics and standard-library docstrings) by `python -m evalharness",
        "train-builtin`. It exists so evalharness runs offline; it is not a good language model.",
        "",
        f"- {log['parameters']:,} parameters: {config['n_layer']} layers, {config['n_head']} heads,",
        f"  width {config['n_embd']}, context {config['n_positions']}, byte-level BPE vocab "
        f"{config['vocab_size']}",
        f"- {log['steps_done']} steps x {config['batch_size']} x {config['seq_len']} tokens "
        f"({log['epochs']} epochs of {log['corpus']['train_tokens']:,} train tokens), "
        f"seed {config['seed']}, {config['threads']} threads, {log['wall_time_s']:.0f} s; "
        f"weights of step {log['selected_step']} (lowest valid loss)",
        f"- corpus fingerprint {log['corpus']['fingerprint']} (Python {log['corpus']['python']})",
        "",
        "| split | tokens | perplexity | unigram perplexity |",
        "|---|---|---|---|",
        *rows,
        "",
        "`generation_config.json` holds only bos/eos ids: no sampling defaults.",
        "",
    ])
