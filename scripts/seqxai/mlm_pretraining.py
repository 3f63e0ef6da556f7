"""Masked-language-model pretraining of a protein encoder (BERT masking), resumable from
checkpoints, and the rule's entry point over the training split's sequences."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoints import (
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
from .micro_batches import chunks, micro_batch_for
from .model_files import loading
from .protein_model import build_demo_encoder, encode, load_tokenizer, seed_everything

log = logging.getLogger("seqxai.mlm_pretraining")


def pretrain_mlm(sequences: list[str], init_dir: str | Path, out_dir: str | Path, *, steps: int,
                 batch_size: int, lr: float, mask_prob: float = 0.15, max_length: int = 1024,
                 seed: int = 0, device: str = "auto", log_every: int = 50,
                 checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None,
                 on_checkpoint=None, max_memory_gb=None, micro_batch: int | None = None
                 ) -> pd.DataFrame:
    """Masked-language-model training (BERT masking: 80% <mask>, 10% random, 10% kept).

    Loads ``AutoModelForMaskedLM`` from ``init_dir``, trains ``steps`` optimiser steps and
    saves model and tokenizer in ``out_dir``. Returns the training log. With
    ``checkpoint_dir`` the full state (model, optimiser, scheduler, RNGs, position in the
    data) is saved every ``checkpoint_every`` steps (default: steps / 10) and a rerun with
    the same inputs resumes from it; ``on_checkpoint(step)`` runs after each save.
    ``micro_batch`` (or the size that fits ``max_memory_gb``, :mod:`seqxai.micro_batches`)
    splits each batch for memory; the loss stays the mean over the batch's masked tokens.
    """

    from transformers import AutoModelForMaskedLM

    seed_everything(seed)
    dev = pick_device(device)
    tok = load_tokenizer(init_dir)
    with loading(init_dir, "weights"):
        model = AutoModelForMaskedLM.from_pretrained(str(init_dir))
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.05, 1 - s / steps))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    enc = encode(tok, sequences, max_length)
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    residue_ids = torch.tensor([i for i in range(len(tok)) if i not in set(special.tolist())])
    micro_batch, _ = micro_batch_for(model, enc["input_ids"].shape[1], batch_size, batch_size,
                                     max_memory_gb, dev, bf16=False, vocab=model.config.vocab_size,
                                     micro_batch=micro_batch)
    rows, t0, step = [], time.monotonic(), 0
    order, pos = None, 0  # the current pass over the data (a seeded permutation) and where in it
    every = checkpoint_every or max(1, steps // 10)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    # by content: the initial weights as loaded (a path may hold other weights, and the demo
    # encoder is built in a fresh temporary folder), the token ids trained on, the settings
    signature = {
        "initial weights": weights_digest(model),
        "token ids": array_digest(enc["input_ids"], enc["attention_mask"]),
        "settings": value_digest({"steps": steps, "batch_size": batch_size, "lr": lr,
                                  "mask_prob": mask_prob, "max_length": max_length, "seed": seed}),
    }
    state = load_checkpoint(ckpt_path, signature) if ckpt_path is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, rows, order, pos = state["step"], state["rows"], state["order"], state["pos"]
        set_rng_state(state["rng"], rng)
        gen.set_state(state["mask_rng"])
        log.info("resuming MLM pretraining from %s at step %d", ckpt_path, step)
    model.train()
    while step < steps:
        if order is None or pos >= len(order):
            order, pos = rng.permutation(len(sequences)), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
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
        opt.zero_grad()
        n_masked = int((labels != -100).sum())
        loss = 0.0 if n_masked else float("nan")
        for part in chunks(len(idx), micro_batch):
            k = int((labels[part] != -100).sum())
            if k == 0:  # no masked token: no loss term (the model's mean would be 0/0)
                continue
            out = model(input_ids=ids[part].to(dev), attention_mask=att[part].to(dev),
                        labels=labels[part].to(dev))
            # mean over the micro-batch's masked tokens, weighted to the mean over the batch's
            (out.loss * (k / n_masked)).backward()
            loss += out.loss.item() * (k / n_masked)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if not np.isfinite(loss):
            raise FloatingPointError(f"MLM step {step}: loss is {loss}; lower protein.mlm.lr")
        if step % log_every == 0 or step == steps:
            el = time.monotonic() - t0
            rows.append({"step": step, "loss": loss, "seconds": el})
            log.info("MLM step %d/%d loss %.3f (%.1f steps/s)", step, steps, loss, step / el)
        if ckpt_path is not None and (step % every == 0 or step == steps):
            save_checkpoint(ckpt_path, {
                "signature": signature, "step": step, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rows": rows,
                "order": order, "pos": pos, "rng": rng_state(rng), "mask_rng": gen.get_state()})
            if on_checkpoint is not None:
                on_checkpoint(step)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return pd.DataFrame(rows)


def run_pretraining(proteins_path, splits_path, out_dir, log_path, *, init, demo_config: dict,
                    mlm: dict, max_length: int, seed: int, device: str = "auto",
                    threads: int = 1, checkpoint_dir=None, max_memory_gb=None) -> None:
    """MLM on the training split's sequences, from ``init`` (hub id / folder) or a demo encoder.

    ``checkpoint_dir`` (kept across reruns, not a rule output) lets an interrupted job resume.
    ``max_memory_gb`` (speed only, not a tracked param) sizes the micro-batches.
    """
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
                               seed=seed, device=device, checkpoint_dir=checkpoint_dir,
                               max_memory_gb=max_memory_gb)
    history.to_csv(log_path, sep="\t", index=False)
    drop_checkpoint(checkpoint_dir)
