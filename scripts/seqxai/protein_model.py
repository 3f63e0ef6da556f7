"""Protein language models: tokenising, the demo encoder, and fine-tuning for EC/GO prediction
(MLM pretraining: :mod:`seqxai.mlm_pretraining`; task metrics: :mod:`seqxai.protein_metrics`).

Any Hugging Face encoder loads through ``from_pretrained`` (a hub id or a local directory:
ESM-2, ProtBert, ...). The classifier pools the last hidden state of the residue tokens
into [CLS, max, mean, mean/sqrt(n)] (Wenzel et al.) and maps it to one logit per label.

Shapes: ``input_ids[batch, token]``; token 0 is the start token ([CLS]/<cls>), the residue
tokens follow in order, then the end token; residue r (1-based) sits at token r.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .checkpoints import (  # noqa: F401  (CHECKPOINT_FILE: the file name callers look for)
    CHECKPOINT_FILE,
    array_digest,
    drop_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    value_digest,
    weights_digest,
)
from .devices import pick_device
from .io import non_finite_values
from .micro_batches import chunks, micro_batch_for, peak_rss_bytes
from .model_files import check_vocabulary, loading
from .protein_metrics import split_metrics
from .protein_tasks import SPLITS

log = logging.getLogger("seqxai.protein_model")

ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I",
             "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O",
             ".", "-", "<null_1>", "<mask>"]
META_FILE = "seqxai_model.json"
HEAD_FILE = "head.pt"


def autocast(device: torch.device, bf16: bool = True):
    """bf16 autocast on CUDA (when ``bf16``); on the CPU everything stays fp32."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    check_vocabulary(path)
    with loading(path, "tokenizer"):
        return AutoTokenizer.from_pretrained(str(path))


def _spaced(tokenizer) -> bool:
    """ProtBert-style tokenizers expect residues separated by spaces."""
    return type(tokenizer).__name__.startswith("Bert")


def protbert_text(sequence: str) -> str:
    """ProtBert input: residues separated by spaces, rare U/Z/O/B mapped to X (as Rostlab do)."""
    return " ".join(re.sub(r"[UZOB]", "X", sequence))


def n_truncated(sequences: list[str], max_length: int) -> int:
    """Sequences longer than the ``max_length - 2`` residues the model sees; residues past the
    cut get no relevance, so annotations beyond it are not scored."""
    return int(sum(len(s) > max_length - 2 for s in sequences))


def encode(tokenizer, sequences: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise sequences, truncated to ``max_length`` tokens including the two special tokens."""
    texts = [protbert_text(s) if _spaced(tokenizer) else s for s in sequences]
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def build_demo_encoder(spec: dict, out_dir: str | Path) -> Path:
    """Save a randomly initialised ESM-style encoder and its tokenizer in ``out_dir``.

    ``spec`` holds EsmConfig fields (hidden_size, num_hidden_layers, ...). The demo uses
    learned absolute positions: a small model learns position-pair attention from few
    sequences, as single attention layers trained on one family do (Bhattacharya et al.).
    """
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = out_dir / "vocab.txt"
    vocab.write_text("\n".join(ESM_VOCAB) + "\n")
    tok = EsmTokenizer(str(vocab))
    cfg = EsmConfig(vocab_size=len(ESM_VOCAB), pad_token_id=1, mask_token_id=32,
                    token_dropout=False, emb_layer_norm_before=False,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **spec)
    model = EsmForMaskedLM(cfg)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


class SequenceClassifier(nn.Module):
    """Encoder + pooled head: logits = W [h_cls, max_r h_r, mean_r h_r, mean_r h_r / sqrt(n)] + b."""

    def __init__(self, encoder: nn.Module, n_outputs: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, n_outputs)

    def residue_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """residue[batch, token]: attended tokens that are not special tokens."""
        special = self.special_ids.to(input_ids.device)
        return attention_mask.bool() & ~torch.isin(input_ids, special)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """Position ids of the input, to be reused for baselines made of padding tokens.

        ESM derives absolute positions from the non-padding tokens, so a [PAD] baseline
        would otherwise shift the positions of the tokens after it.
        """
        if self.encoder.config.model_type == "esm":
            from transformers.models.esm.modeling_esm import create_position_ids_from_input_ids

            return create_position_ids_from_input_ids(input_ids, self.encoder.config.pad_token_id)
        return None

    @staticmethod
    def pool(hidden: torch.Tensor, residue: torch.Tensor) -> torch.Tensor:
        residue = residue.unsqueeze(-1)
        n = residue.sum(1).clamp(min=1)
        mean = (hidden * residue).sum(1) / n
        mx = hidden.masked_fill(~residue, float("-inf")).amax(1)
        return torch.cat([hidden[:, 0], mx, mean, mean / n.sqrt()], dim=-1)

    def forward(self, input_ids, attention_mask, residue_mask=None, position_ids=None,
                output_attentions: bool = False):
        """logits[batch, label]. ``residue_mask``/``position_ids`` default to those of
        ``input_ids``; attribution passes the input's to the baseline."""
        kwargs = {} if position_ids is None else {"position_ids": position_ids}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           output_attentions=output_attentions, **kwargs)
        if residue_mask is None:
            residue_mask = self.residue_mask(input_ids, attention_mask)
        logits = self.head(self.dropout(self.pool(out.last_hidden_state, residue_mask)))
        return (logits, out.attentions) if output_attentions else logits


def load_encoder(path: str | Path, attn_implementation: str = "eager", loading_info: bool = False):
    """The bare encoder of a checkpoint (any head it carries is dropped); with ``loading_info``
    also transformers' loading report (``missing_keys``: weights initialised, not loaded)."""
    from transformers import AutoModel

    with loading(path, "weights"):
        return AutoModel.from_pretrained(str(path), add_pooling_layer=False,
                                         attn_implementation=attn_implementation,
                                         output_loading_info=loading_info)


def make_classifier(encoder_path: str | Path, n_outputs: int, dropout: float = 0.1):
    tok = load_tokenizer(encoder_path)
    model = SequenceClassifier(load_encoder(encoder_path), n_outputs, dropout)
    model.special_ids = torch.tensor(sorted(set(tok.all_special_ids)))
    return model, tok


def save_classifier(model: SequenceClassifier, tokenizer, meta: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out_dir / "encoder")
    tokenizer.save_pretrained(out_dir / "encoder")
    torch.save(model.head.state_dict(), out_dir / HEAD_FILE)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_classifier(model_dir: str | Path, device: str = "cpu"):
    """Load a fine-tuned classifier saved by :func:`save_classifier`; returns (model, tokenizer, meta)."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / META_FILE).read_text())
    model, tok = make_classifier(model_dir / "encoder", len(meta["labels"]))
    model.head.load_state_dict(torch.load(model_dir / HEAD_FILE, map_location="cpu"))
    model.eval()
    return model.to(pick_device(device)), tok, meta


def task_targets(proteins: pd.DataFrame, task: dict) -> tuple[list[str], np.ndarray]:
    """Labels and targets of a task (rules in :mod:`seqxai.protein_tasks`).

    single_label (EC): targets[n] = class index, -1 for proteins without a label (dropped
    by the caller). multi_label (GO): targets[n, term] in {0, 1} for the task's terms
    (``terms``, or those selected with ``min_positives``, which needs a ``split`` column).
    """
    from .protein_tasks import go_terms_of, select_terms, single_labels

    if task["type"] == "single_label":
        values, _ = single_labels(proteins, task)
        labels = sorted(set(values) - {""})
        index = {l: k for k, l in enumerate(labels)}
        return labels, np.array([index.get(v, -1) for v in values])
    terms_of = go_terms_of(proteins, task)
    labels = select_terms(proteins, task, terms_of)
    y = np.array([[t in row for t in labels] for row in terms_of], dtype=np.float32)
    return labels, y.reshape(len(proteins), len(labels))


@torch.no_grad()
def predict(model, enc: dict, batch_size: int = 32, device=None, bf16: bool = False) -> np.ndarray:
    device = device or next(model.parameters()).device
    model.eval()
    outs = []
    for i in range(0, len(enc["input_ids"]), batch_size):
        with autocast(torch.device(device), bf16):
            outs.append(model(enc["input_ids"][i : i + batch_size].to(device),
                              enc["attention_mask"][i : i + batch_size].to(device)).float().cpu())
    return torch.cat(outs).numpy()


VARIANTS = ("finetuned", "frozen", "shuffled")


class EarlyStopping:
    """Stop once ``patience`` consecutive epochs brought no validation-loss decrease > ``min_delta``.

    With patience 2 and losses 1.0, 0.9, 0.95, 0.96 training stops after epoch 4.
    """

    def __init__(self, patience: int, min_delta: float = 1e-6):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.bad = math.inf, 0, 0

    def update(self, loss: float, epoch: int) -> bool:
        """Record one epoch's validation loss; True when it is a new best."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad = loss, epoch, 0
            return True
        self.bad += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad >= self.patience

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss, self.best_epoch, self.bad = (state["best_loss"], state["best_epoch"],
                                                     state["bad"])


def shuffle_linear_rows(module: nn.Module, seed: int) -> nn.Module:
    """The "shuffled" control (Wenzel et al.): permute the output rows of every nn.Linear.

    For each Linear (in ``named_modules`` order) one seeded permutation ``perm`` of its
    outputs: weight <- weight[perm, :], bias <- bias[perm]. Weight statistics per layer are
    kept, the learned wiring is destroyed. In place; returns ``module``.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lin in module.named_modules():
            if isinstance(lin, nn.Linear):
                perm = torch.randperm(lin.out_features, generator=gen)
                lin.weight.copy_(lin.weight[perm])
                if lin.bias is not None:
                    lin.bias.copy_(lin.bias[perm])
    return module


def finetune(proteins: pd.DataFrame, splits: pd.DataFrame, task: dict, encoder_path: str | Path,
             out_dir: str | Path, *, epochs: int, batch_size: int, accumulation: int, head_lr: float,
             encoder_lr: float, freeze_encoder_epochs: int, patience: int, max_length: int,
             dropout: float = 0.1, seed: int = 0, device: str = "auto", variant: str = "finetuned",
             bf16: bool = True, checkpoint_dir: str | Path | None = None, on_epoch_end=None,
             max_memory_gb=None, micro_batch: int | None = None) -> tuple[dict, pd.DataFrame]:
    """Fine-tune a pooled classifier (Wenzel et al. recipe, sizes from the config).

    Adam with separate head/encoder learning rates, the encoder frozen for the first
    ``freeze_encoder_epochs`` epochs, gradient accumulation, early stopping on the
    validation loss (:class:`EarlyStopping`); the best epoch's weights are saved.
    ``variant``: "finetuned" (the recipe), "frozen" (the pretrained encoder stays frozen,
    only the head trains) or "shuffled" (:func:`shuffle_linear_rows`, then frozen).
    With ``checkpoint_dir`` the full training state is saved there after every epoch and a
    rerun with the same inputs and settings resumes from it. ``bf16``: autocast on CUDA only
    (the loss and the optimiser stay fp32). ``on_epoch_end(epoch)`` is
    called after each checkpoint (tests use it to interrupt).
    Each optimiser step averages the loss over ``batch_size * accumulation`` training proteins
    (the last step of an epoch over the rest), run as micro-batches of ``micro_batch``
    proteins, or of the size that fits ``max_memory_gb`` (:mod:`seqxai.micro_batches`), or
    of ``batch_size``: speed and memory only, the same weights up to float rounding (with
    dropout, other random masks).
    Returns (metrics per split, training log).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not '{variant}'")
    seed_everything(seed)
    dev = pick_device(device)
    df = proteins.merge(splits[["accession", "split"]], on="accession", how="inner")
    labels, y = task_targets(df, task)
    dropped: dict[str, int] = {}
    if task["type"] == "single_label":
        from .protein_tasks import single_labels

        dropped = single_labels(df, task)[1]
        for reason, n in dropped.items():
            log.info("task %s: %d proteins dropped (%s)", task["name"], n, reason)
        keep = y >= 0
        df, y = df[keep].reset_index(drop=True), y[keep]
        loss_fn = nn.CrossEntropyLoss()
        to_t = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    else:
        if not labels:
            raise ValueError(f"task '{task['name']}': no GO term left to score (min_positives "
                             f"{task.get('min_positives')} in split 'train')")
        loss_fn = nn.BCEWithLogitsLoss()
        to_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    model, tok = make_classifier(encoder_path, len(labels), dropout)
    encoder_digest = weights_digest(model.encoder)  # the encoder as read, before any shuffle
    if variant == "shuffled":
        shuffle_linear_rows(model.encoder, seed)
    model.to(dev)
    enc = encode(tok, df["sequence"].tolist(), max_length)
    parts = {s: np.flatnonzero(df["split"].to_numpy() == s) for s in SPLITS}
    for s in ("train", "valid"):
        if len(parts[s]) == 0:
            raise ValueError(f"task '{task['name']}': the '{s}' split is empty")
    train_encoder = variant == "finetuned"
    effective = batch_size * accumulation
    micro_batch, _ = micro_batch_for(model, enc["input_ids"].shape[1], effective, batch_size,
                                     max_memory_gb, dev, bf16=bf16, train_encoder=train_encoder,
                                     micro_batch=micro_batch, best_copy=True)
    groups = [{"params": model.head.parameters(), "lr": head_lr}]
    if train_encoder:
        groups.append({"params": model.encoder.parameters(), "lr": encoder_lr})
    opt = torch.optim.Adam(groups)
    rng = np.random.default_rng(seed)
    stopper = EarlyStopping(patience)
    best, rows, t0, start = copy.deepcopy(model.state_dict()), [], time.monotonic(), 1

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    # by content, one digest per thing the training reads: the encoder's weights (not its path:
    # a rerun of MLM pretraining writes new weights to the same folder), the proteins as token
    # ids (sequences, tokenizer, max_length), the labels, the split of every protein, and the
    # settings; a mismatch is logged by name and trains afresh (seqxai.checkpoints)
    signature = {
        "encoder weights": encoder_digest,
        "token ids": array_digest(enc["input_ids"], enc["attention_mask"]),
        "labels": array_digest(y) + value_digest(labels),
        "splits": value_digest([df["accession"].tolist(), df["split"].tolist()]),
        "settings": value_digest({
            "task": task, "variant": variant, "seed": seed, "max_length": max_length,
            "epochs": epochs, "batch_size": batch_size, "accumulation": accumulation,
            "head_lr": head_lr, "encoder_lr": encoder_lr,
            "freeze_encoder_epochs": freeze_encoder_epochs, "patience": patience,
            "dropout": dropout, "bf16": bf16}),
    }
    state = load_checkpoint(ckpt_path, signature) if ckpt_path is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        stopper.load_state_dict(state["early_stopping"])
        best, rows, start = state["best_model"], state["rows"], state["epoch"] + 1
        set_rng_state(state["rng"], rng)
        if state["done"]:
            start = epochs + 1
        log.info("resuming task %s (%s) from %s after epoch %d", task["name"], variant,
                 ckpt_path, state["epoch"])

    def split_loss(s):
        sub = {k: v[parts[s]] for k, v in enc.items()}
        logits = predict(model, sub, device=dev, bf16=bf16)
        return float(loss_fn(torch.as_tensor(logits), to_t(y[parts[s]]))), logits

    for epoch in range(start, epochs + 1):
        frozen = not train_encoder or epoch <= freeze_encoder_epochs
        for p in model.encoder.parameters():
            p.requires_grad_(not frozen)
        model.train()
        if frozen:
            model.encoder.eval()  # a frozen encoder runs as at inference (no dropout)
        loss_sum = 0.0
        for group in _batches(len(parts["train"]), effective, rng):  # one optimiser step each
            opt.zero_grad()
            for part in chunks(len(group), micro_batch):
                sel = parts["train"][group[part]]
                with autocast(dev, bf16):
                    logits = model(enc["input_ids"][sel].to(dev), enc["attention_mask"][sel].to(dev))
                loss = loss_fn(logits.float(), to_t(y[sel]).to(dev))
                # mean loss of the micro-batch, weighted to the mean over the step's proteins
                (loss * (len(sel) / len(group))).backward()
                loss_sum += loss.item() * len(sel)
            opt.step()
        opt.zero_grad()
        if dev.type == "cuda":  # to check the micro-batch memory estimate
            log.info("epoch %d: peak CUDA memory %.2f GiB", epoch,
                     torch.cuda.max_memory_allocated(dev) / 2 ** 30)
        else:  # the process's exact high-water mark (Snakemake's benchmark samples it)
            log.info("epoch %d: peak RSS %.3f GiB", epoch, peak_rss_bytes() / 2 ** 30)
        v_loss, v_logits = split_loss("valid")
        row = {"epoch": epoch, "train_loss": loss_sum / len(parts["train"]), "valid_loss": v_loss,
               "encoder_frozen": frozen, "seconds": time.monotonic() - t0}
        for k in ("train_loss", "valid_loss"):
            if not np.isfinite(row[k]):
                raise FloatingPointError(f"task '{task['name']}' ({variant}) epoch {epoch}: "
                                         f"{k} is {row[k]}; lower the learning rates")
        row.update({f"valid_{k}": v for k, v in split_metrics(task["type"], v_logits, y[parts["valid"]]).items()
                    if k != "n"})
        rows.append(row)
        log.info("task %s (%s) epoch %d/%d: %s", task["name"], variant, epoch, epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
        if stopper.update(v_loss, epoch):
            best = copy.deepcopy(model.state_dict())
        done = stopper.stop or epoch == epochs
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {
                "signature": signature, "epoch": epoch, "done": done, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": None,
                "early_stopping": stopper.state_dict(), "best_model": best, "rows": rows,
                "rng": rng_state(rng)})
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if stopper.stop:
            log.info("early stopping after epoch %d: %d epochs without improvement (best epoch %d)",
                     epoch, stopper.bad, stopper.best_epoch)
            break
    model.load_state_dict(best)
    metrics = {"task": task["name"], "variant": variant, "labels": labels,
               "proteins_dropped": dropped,
               "best_valid_loss": stopper.best_loss, "best_epoch": stopper.best_epoch,
               "epochs_run": len(rows), "seconds": time.monotonic() - t0, "device": str(dev)}
    for s, idx in parts.items():
        if len(idx):
            logits = predict(model, {k: v[idx] for k, v in enc.items()}, device=dev, bf16=bf16)
            metrics[s] = split_metrics(task["type"], logits, y[idx])
            metrics[s]["n_truncated"] = n_truncated(df["sequence"].iloc[idx].tolist(), max_length)
    model.to("cpu")
    meta = {"task": task, "labels": labels, "max_length": max_length, "variant": variant,
            "encoder_source": str(encoder_path)}
    save_classifier(model, tok, meta, out_dir)
    return metrics, pd.DataFrame(rows)


def run_finetuning(proteins_path, splits_path, encoder, task: dict, params: dict, out_dir,
                   metrics_path, log_path, *, max_length: int, seed: int, variant: str = "finetuned",
                   checkpoint_dir=None, device: str = "auto", threads: int = 1,
                   max_memory_gb=None) -> None:
    """Fine-tune one task (one variant) and write the model folder, metrics.json and the log.

    ``checkpoint_dir`` (kept across reruns, not a rule output) lets an interrupted job resume.
    ``max_memory_gb`` (speed only, not a tracked param) sizes the micro-batches.
    """
    from .io import atomic_path, read_table, write_json

    torch.set_num_threads(threads)
    proteins = read_table(proteins_path, "proteins")
    splits = read_table(splits_path, "splits")
    metrics, history = finetune(proteins, splits, task, encoder, out_dir, max_length=max_length,
                                seed=seed, device=device, variant=variant,
                                checkpoint_dir=checkpoint_dir, max_memory_gb=max_memory_gb,
                                **params)
    bad = [key for key, _ in non_finite_values(metrics)]
    if bad:
        raise FloatingPointError(f"task '{task['name']}' ({variant}): metrics {bad} are not finite; "
                                 f"not writing {metrics_path}")
    with atomic_path(log_path) as tmp:
        history.to_csv(tmp, sep="\t", index=False)
    write_json(metrics_path, metrics)
    drop_checkpoint(checkpoint_dir)
    log.info("task %s (%s): test %s", task["name"], variant, metrics.get("test"))
