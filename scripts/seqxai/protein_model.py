"""Protein language models: tokenising, MLM pretraining and fine-tuning for EC/GO prediction.

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
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

log = logging.getLogger("seqxai.protein_model")

ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I",
             "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O",
             ".", "-", "<null_1>", "<mask>"]
META_FILE = "seqxai_model.json"
HEAD_FILE = "head.pt"


def device_for(prefer: str = "auto") -> torch.device:
    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _spaced(tokenizer) -> bool:
    """ProtBert-style tokenizers expect residues separated by spaces."""
    return type(tokenizer).__name__.startswith("Bert")


def encode(tokenizer, sequences: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise sequences, truncated to ``max_length`` tokens including the two special tokens."""
    texts = [" ".join(s) if _spaced(tokenizer) else s for s in sequences]
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


def pretrain_mlm(sequences: list[str], init_dir: str | Path, out_dir: str | Path, *, steps: int,
                 batch_size: int, lr: float, mask_prob: float = 0.15, max_length: int = 1024,
                 seed: int = 0, device: str = "auto", log_every: int = 50) -> pd.DataFrame:
    """Masked-language-model training (BERT masking: 80% <mask>, 10% random, 10% kept).

    Loads ``AutoModelForMaskedLM`` from ``init_dir``, trains ``steps`` optimiser steps and
    saves model and tokenizer in ``out_dir``. Returns the training log.
    """
    from transformers import AutoModelForMaskedLM

    seed_everything(seed)
    dev = device_for(device)
    tok = load_tokenizer(init_dir)
    model = AutoModelForMaskedLM.from_pretrained(str(init_dir)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.05, 1 - s / steps))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    enc = encode(tok, sequences, max_length)
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    residue_ids = torch.tensor([i for i in range(len(tok)) if i not in set(special.tolist())])
    rows, t0, step = [], time.monotonic(), 0
    model.train()
    while step < steps:
        for idx in _batches(len(sequences), batch_size, rng):
            ids = enc["input_ids"][idx].clone()
            att = enc["attention_mask"][idx]
            maskable = ~torch.isin(ids, special)
            chosen = (torch.rand(ids.shape, generator=gen) < mask_prob) & maskable
            labels = torch.where(chosen, ids, torch.full_like(ids, -100))
            r = torch.rand(ids.shape, generator=gen)
            ids[chosen & (r < 0.8)] = tok.mask_token_id
            rand_tok = residue_ids[torch.randint(len(residue_ids), ids.shape, generator=gen)]
            swap = chosen & (r >= 0.8) & (r < 0.9)
            ids[swap] = rand_tok[swap]
            out = model(input_ids=ids.to(dev), attention_mask=att.to(dev), labels=labels.to(dev))
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % log_every == 0 or step == steps:
                el = time.monotonic() - t0
                rows.append({"step": step, "loss": out.loss.item(), "seconds": el})
                log.info("MLM step %d/%d loss %.3f (%.1f steps/s)", step, steps, out.loss.item(),
                         step / el)
            if step >= steps:
                break
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return pd.DataFrame(rows)


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


def load_encoder(path: str | Path, attn_implementation: str = "eager"):
    """The bare encoder of a checkpoint (any head it carries is dropped)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path), add_pooling_layer=False,
                                     attn_implementation=attn_implementation)


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
    return model.to(device_for(device)), tok, meta


def task_targets(proteins: pd.DataFrame, task: dict) -> tuple[list[str], np.ndarray]:
    """Labels and targets of a task.

    single_label (EC level 1): targets[n] = class index; rows without a class are dropped
    by the caller. multi_label (GO): targets[n, term] in {0, 1} for the configured terms.
    """
    if task["type"] == "single_label":
        labels = sorted(set(proteins[task["column"]]) - {""})
        index = {l: k for k, l in enumerate(labels)}
        return labels, np.array([index.get(v, -1) for v in proteins[task["column"]]])
    labels = list(task["terms"])
    y = np.array([[t in set(row) for t in labels] for row in proteins[task["column"]]],
                 dtype=np.float32)
    return labels, y


def _metrics(task_type: str, logits: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if task_type == "single_label":
        pred = logits.argmax(1)
        return {"accuracy": float((pred == y).mean()), "n": int(len(y))}
    out = {"n": int(len(y))}
    aucs, aps = [], []
    for k in range(y.shape[1]):
        if 0 < y[:, k].sum() < len(y):
            aucs.append(roc_auc_score(y[:, k], logits[:, k]))
            aps.append(average_precision_score(y[:, k], logits[:, k]))
    out["macro_roc_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    out["macro_pr_auc"] = float(np.mean(aps)) if aps else float("nan")
    out["accuracy"] = float(((logits > 0) == (y > 0.5)).mean())
    return out


@torch.no_grad()
def predict(model, enc: dict, batch_size: int = 32, device=None) -> np.ndarray:
    device = device or next(model.parameters()).device
    model.eval()
    outs = []
    for i in range(0, len(enc["input_ids"]), batch_size):
        outs.append(model(enc["input_ids"][i : i + batch_size].to(device),
                          enc["attention_mask"][i : i + batch_size].to(device)).float().cpu())
    return torch.cat(outs).numpy()


def finetune(proteins: pd.DataFrame, splits: pd.DataFrame, task: dict, encoder_path: str | Path,
             out_dir: str | Path, *, epochs: int, batch_size: int, accumulation: int, head_lr: float,
             encoder_lr: float, freeze_encoder_epochs: int, patience: int, max_length: int,
             dropout: float = 0.1, seed: int = 0, device: str = "auto") -> tuple[dict, pd.DataFrame]:
    """Fine-tune a pooled classifier (Wenzel et al. recipe, sizes from the config).

    Adam with separate head/encoder learning rates, the encoder frozen for the first
    ``freeze_encoder_epochs`` epochs, gradient accumulation, early stopping on the
    validation loss with ``patience``; the best epoch's weights are saved.
    Returns (metrics per split, training log).
    """
    seed_everything(seed)
    dev = device_for(device)
    df = proteins.merge(splits[["accession", "split"]], on="accession", how="inner")
    labels, y = task_targets(df, task)
    if task["type"] == "single_label":
        keep = y >= 0
        df, y = df[keep].reset_index(drop=True), y[keep]
        loss_fn = nn.CrossEntropyLoss()
        to_t = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    else:
        loss_fn = nn.BCEWithLogitsLoss()
        to_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    model, tok = make_classifier(encoder_path, len(labels), dropout)
    model.to(dev)
    enc = encode(tok, df["sequence"].tolist(), max_length)
    parts = {s: np.flatnonzero(df["split"].to_numpy() == s) for s in ("train", "valid", "test")}
    for s in ("train", "valid"):
        if len(parts[s]) == 0:
            raise ValueError(f"task '{task['name']}': the '{s}' split is empty")
    opt = torch.optim.Adam([
        {"params": model.head.parameters(), "lr": head_lr},
        {"params": model.encoder.parameters(), "lr": encoder_lr},
    ])
    rng = np.random.default_rng(seed)
    best, best_loss, bad, rows, t0 = None, math.inf, 0, [], time.monotonic()

    def split_loss(s):
        sub = {k: v[parts[s]] for k, v in enc.items()}
        logits = predict(model, sub, device=dev)
        return float(loss_fn(torch.as_tensor(logits), to_t(y[parts[s]]))), logits

    for epoch in range(1, epochs + 1):
        frozen = epoch <= freeze_encoder_epochs
        for p in model.encoder.parameters():
            p.requires_grad_(not frozen)
        model.train()
        tr_losses = []
        opt.zero_grad()
        for b, idx in enumerate(_batches(len(parts["train"]), batch_size, rng), 1):
            sel = parts["train"][idx]
            logits = model(enc["input_ids"][sel].to(dev), enc["attention_mask"][sel].to(dev))
            loss = loss_fn(logits, to_t(y[sel]).to(dev))
            (loss / accumulation).backward()
            tr_losses.append(float(loss))
            if b % accumulation == 0:
                opt.step()
                opt.zero_grad()
        opt.step()
        opt.zero_grad()
        v_loss, v_logits = split_loss("valid")
        row = {"epoch": epoch, "train_loss": float(np.mean(tr_losses)), "valid_loss": v_loss,
               "encoder_frozen": frozen, "seconds": time.monotonic() - t0}
        row.update({f"valid_{k}": v for k, v in _metrics(task["type"], v_logits, y[parts["valid"]]).items()
                    if k != "n"})
        rows.append(row)
        log.info("task %s epoch %d/%d: %s", task["name"], epoch, epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
        if v_loss < best_loss - 1e-6:
            best_loss, bad = v_loss, 0
            best = copy.deepcopy(model.state_dict())
        elif not frozen:
            bad += 1
            if bad > patience:
                log.info("early stopping after epoch %d (patience %d)", epoch, patience)
                break
    model.load_state_dict(best)
    metrics = {"task": task["name"], "labels": labels, "best_valid_loss": best_loss,
               "epochs_run": len(rows), "seconds": time.monotonic() - t0, "device": str(dev)}
    for s, idx in parts.items():
        if len(idx):
            logits = predict(model, {k: v[idx] for k, v in enc.items()}, device=dev)
            metrics[s] = _metrics(task["type"], logits, y[idx])
    model.to("cpu")
    meta = {"task": task, "labels": labels, "max_length": max_length,
            "encoder_source": str(encoder_path)}
    save_classifier(model, tok, meta, out_dir)
    return metrics, pd.DataFrame(rows)


def run_pretraining(proteins_path, splits_path, out_dir, log_path, *, init, demo_config: dict,
                    mlm: dict, max_length: int, seed: int, device: str = "auto",
                    threads: int = 1) -> None:
    """MLM on the training split's sequences, from ``init`` (hub id / folder) or a demo encoder."""
    import tempfile

    from .io import read_table

    torch.set_num_threads(threads)
    proteins = read_table(proteins_path, "proteins")
    splits = read_table(splits_path, "splits")
    train = proteins.merge(splits[splits["split"] == "train"], on="accession")["sequence"].tolist()
    log.info("MLM pretraining on %d training sequences", len(train))
    with tempfile.TemporaryDirectory() as tmp:
        seed_everything(seed)  # the demo encoder's random initial weights
        start = init if init is not None else build_demo_encoder(demo_config, Path(tmp) / "init")
        history = pretrain_mlm(train, start, out_dir, steps=mlm["steps"], batch_size=mlm["batch_size"],
                               lr=mlm["lr"], mask_prob=mlm["mask_prob"], max_length=max_length,
                               seed=seed, device=device)
    history.to_csv(log_path, sep="\t", index=False)


def run_finetuning(proteins_path, splits_path, encoder, task: dict, params: dict, out_dir,
                   metrics_path, log_path, *, max_length: int, seed: int, device: str = "auto",
                   threads: int = 1) -> None:
    """Fine-tune one task and write the model folder, metrics.json and the training log."""
    from .io import read_table, write_json

    torch.set_num_threads(threads)
    proteins = read_table(proteins_path, "proteins")
    splits = read_table(splits_path, "splits")
    metrics, history = finetune(proteins, splits, task, encoder, out_dir, max_length=max_length,
                                seed=seed, device=device, **params)
    history.to_csv(log_path, sep="\t", index=False)
    write_json(metrics_path, metrics)
    log.info("task %s: test %s", task["name"], metrics.get("test"))
