"""Training the TSS model on the genome split (:mod:`seqxai.tss_windows`): loss, early
stopping, per-split ROC/PR AUC, and the rule's entry point."""
from __future__ import annotations

import logging
import math
import os
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .devices import pick_device
from .dna_model import DEFAULT_MODEL, build_model, save_model
from .io import Progress, non_finite_values
from .tss_windows import (
    check_split_labels,
    make_labels,
    make_windows,
    oriented_tokens,
    single_chromosome,
    split_blocks,
)

log = logging.getLogger("seqxai.tss_training")

DEFAULT_TRAIN = {"epochs": 4, "batch_size": 2, "lr": 0.01, "weight_decay": 0.01, "stride": 1024,
                 "pos_weight": "auto", "max_pos_weight": 100.0, "max_seconds": 0,
                 "max_windows_per_epoch": 0, "patience": 0, "focal_gamma": 0.0}
DEFAULT_SPLIT = {"test_fraction": 0.2, "valid_fraction": 0.1}


def seed_everything(seed: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


def early_stop(bad_epochs: int, patience: int) -> bool:
    """Stop once ``bad_epochs`` (epochs since the best validation score) reaches ``patience``:
    exactly ``patience`` bad epochs are run, never ``patience + 1``; ``patience = 0`` never stops."""
    return patience > 0 and bad_epochs >= patience


def assert_finite_metrics(obj, path: str = "metrics") -> None:
    """Raise naming the key when a metric is NaN or infinite (JSON has no NaN; use None + a reason)."""
    bad = non_finite_values(obj)
    if bad:
        key, value = bad[0]
        raise FloatingPointError(f"train_dna: {path}.{key} is {value}; refusing to write it to metrics.json")


def tss_loss(logits, y, pos_weight=None, focal_gamma: float = 0.0):
    """Mean training loss over positions: BCE-with-logits (``pos_weight`` on positives) or, with
    ``focal_gamma > 0``, the focal loss ``-(1 - p_t)^gamma log p_t`` (weighted likewise; ``p_t``
    the probability of the true class), as the original's ``FocalLoss`` (utils/dna_functions.py;
    train.py trains with gamma 0.8). For a 2-class model ``logits = l_1 - l_0`` this is the
    original's softmax loss on ``l``."""
    if not focal_gamma:  # the same call as before the focal option: bit-identical trajectories
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    p_t = torch.exp(-F.binary_cross_entropy_with_logits(logits, y, reduction="none"))
    return ((1 - p_t).clamp(min=0) ** focal_gamma * bce).mean()


@torch.no_grad()
def predict_windows(model, x, scored, batch_size=64, device="cpu") -> np.ndarray:
    """Logits at the scored positions of windows ``x[window, W]`` (flattened, window order)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[i : i + batch_size], device=device)
        out.append(model(xb).float().cpu().numpy()[scored[i : i + batch_size]])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def auc_metrics(y: np.ndarray, score: np.ndarray) -> dict:
    """ROC AUC and PR AUC (average precision) over all positions; None (with ``auc_undefined``
    giving the reason) without both classes."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    n_pos = int(y.sum())
    out = {"n_positions": int(len(y)), "n_positive": n_pos, "positive_rate": n_pos / max(len(y), 1)}
    if 0 < n_pos < len(y):
        out["roc_auc"] = float(roc_auc_score(y, score))
        out["pr_auc"] = float(average_precision_score(y, score))
    else:  # null with the reason, never NaN (not valid JSON)
        out["roc_auc"] = out["pr_auc"] = None
        out["auc_undefined"] = "no positive position" if n_pos == 0 else "no negative position"
    return out


def train_tss_model(genome: dict[str, str], tss: pd.DataFrame, model_cfg: dict | None = None,
                    train_cfg: dict | None = None, split_cfg: dict | None = None, seed: int = 1,
                    device=None, source: str = "tss"):
    """Train the TSS transformer on one chromosome (both strands) with AdamW.

    Loss: mean BCE-with-logits over scored positions with ``pos_weight`` = ``n_neg / n_pos``
    of the training split (capped at ``max_pos_weight``) when ``"auto"``; the focal loss with
    ``focal_gamma > 0`` (:func:`tss_loss`). After every epoch
    the validation split is scored; the weights of the epoch with the best validation PR AUC
    are kept. Returns ``(model, metrics, log_df)``; metrics hold ROC/PR AUC per split over all
    positions of that split, both strands.
    """
    t_start = time.monotonic()
    mcfg = {**DEFAULT_MODEL, **(model_cfg or {})}
    tcfg = {**DEFAULT_TRAIN, **(train_cfg or {})}
    scfg = {**DEFAULT_SPLIT, **(split_cfg or {})}
    chrom, seq = single_chromosome(genome, tss, source)
    device = pick_device(device or "auto") if isinstance(device, str) or device is None else torch.device(device)
    seed_everything(seed)
    L = len(seq)
    tokens = oriented_tokens(seq)
    labels = make_labels(tss, L, mcfg["label_offset"])
    blocks = split_blocks(L, scfg["test_fraction"], scfg["valid_fraction"])
    data = {s: make_windows(tokens, labels, b, mcfg["context"], tcfg["stride"]) for s, b in blocks.items()}
    check_split_labels(data, blocks, source)
    x_tr, y_tr, m_tr = data["train"]
    n_pos = float(y_tr[m_tr].sum())
    if tcfg["pos_weight"] == "auto":
        pos_weight = min((m_tr.sum() - n_pos) / n_pos, float(tcfg["max_pos_weight"]))
    else:
        pos_weight = float(tcfg["pos_weight"])
    log.info("genome %s: %d nt; windows train/valid/test = %d/%d/%d; train positives %d; pos_weight %.1f; device %s",
             chrom, L, len(x_tr), len(data["valid"][0]), len(data["test"][0]), n_pos, pos_weight, device)

    model = build_model(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    bs, epochs = int(tcfg["batch_size"]), int(tcfg["epochs"])
    # max_windows_per_epoch: a seeded sample of training windows per epoch (large genomes, pilots)
    per_epoch = int(tcfg.get("max_windows_per_epoch") or 0) or len(x_tr)
    per_epoch = min(per_epoch, len(x_tr))
    steps_per_epoch = math.ceil(per_epoch / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tcfg["lr"], total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    pw = torch.tensor(pos_weight, device=device)
    rng = np.random.default_rng(seed)
    xt, yt, mt = (torch.as_tensor(a) for a in (x_tr, y_tr, m_tr))
    rows, best, best_state, step = [], -float("inf"), None, 0
    prog = Progress(epochs * steps_per_epoch, "training steps", every=10.0, logger=log)
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(x_tr))[:per_epoch]
        tot, cnt = 0.0, 0
        for i in range(0, len(order), bs):
            idx = torch.as_tensor(order[i : i + bs])
            xb, yb, mb = xt[idx].to(device), yt[idx].to(device), mt[idx].to(device)
            logits = model(xb)
            loss = tss_loss(logits[mb], yb[mb], pw, float(tcfg["focal_gamma"]))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train_dna: training loss is {float(loss)} at epoch {epoch}, step "
                                         f"{step + 1} (lr {tcfg['lr']}): training diverged; lower dna.train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += float(loss.detach()) * int(mb.sum())
            cnt += int(mb.sum())
            step += 1
            prog.update()
        xv, yv, mv = data["valid"]
        lv = predict_windows(model, xv, mv, device=device)
        yvv = yv[mv]
        vloss = float(F.binary_cross_entropy_with_logits(torch.as_tensor(lv), torch.as_tensor(yvv),
                                                         pos_weight=pw.cpu()))
        vm = auc_metrics(yvv, lv)
        rows.append({"epoch": epoch, "step": step, "train_loss": tot / max(cnt, 1), "valid_loss": vloss,
                     "valid_pr_auc": vm["pr_auc"], "seconds": time.monotonic() - t_start})
        log.info("epoch %d/%d: train_loss %.4f valid_loss %.4f valid PR AUC %.3f ROC AUC %.3f (%.1f s)",
                 epoch, epochs, rows[-1]["train_loss"], vloss, vm["pr_auc"], vm["roc_auc"], rows[-1]["seconds"])
        score = vm["pr_auc"] if vm["pr_auc"] is not None else -float(vloss)
        if math.isnan(score):
            raise FloatingPointError(f"train_dna: validation score is NaN after epoch {epoch} (valid loss {vloss})")
        if score > best:
            best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_epoch = epoch
        if early_stop(epoch - best_epoch, int(tcfg["patience"])):
            log.info("early stop after epoch %d: %d epochs without a better validation PR AUC (patience %d)",
                     epoch, epoch - best_epoch, tcfg["patience"])
            break
        if tcfg["max_seconds"] and time.monotonic() - t_start > tcfg["max_seconds"]:
            log.warning("stopping after epoch %d: max_seconds=%s reached", epoch, tcfg["max_seconds"])
            break
    model.load_state_dict(best_state)
    model.eval()
    metrics = {"epochs": len(rows), "best_epoch": best_epoch, "pos_weight": pos_weight, "seed": seed,
               "device": str(device), "genome_length": L, "chrom": chrom,
               "split_blocks_0based_halfopen": {k: list(v) for k, v in blocks.items()}, "splits": {}}
    for split, (x, y, m) in data.items():
        if split == "train" and per_epoch < len(x):
            # pilot runs: the train metrics on a seeded sample of per_epoch windows (valid and
            # test are always scored in full)
            keep = np.sort(np.random.default_rng(seed + 1).permutation(len(x))[:per_epoch])
            x, y, m = x[keep], y[keep], m[keep]
        metrics["splits"][split] = auc_metrics(y[m], predict_windows(model, x, m, device=device))
        metrics["splits"][split]["n_windows"] = int(len(x))
    metrics["seconds"] = time.monotonic() - t_start
    assert_finite_metrics(metrics)
    log.info("test ROC AUC %.3f PR AUC %.3f (positive rate %.4f); %.1f s", metrics["splits"]["test"]["roc_auc"],
             metrics["splits"]["test"]["pr_auc"], metrics["splits"]["test"]["positive_rate"], metrics["seconds"])
    return model.cpu(), metrics, pd.DataFrame(rows)


def run_training(genome_path, tss_path, model_path, metrics_path, log_path, model_cfg=None, train_cfg=None,
                 split_cfg=None, seed: int = 1, threads: int = 1, device: str = "auto") -> dict:
    """File-level entry point of the ``train_dna`` rule: read genome + TSS table, train on
    ``device`` (auto / cpu / cuda), write ``model.pt`` (state dict + config + split),
    ``metrics.json`` and ``training_log.tsv``."""
    from .io import read_fasta, read_table, write_json, write_text

    torch.set_num_threads(max(int(threads), 1))
    genome = read_fasta(genome_path)
    tss = read_table(tss_path, "tss")
    model, metrics, log_df = train_tss_model(genome, tss, model_cfg, train_cfg, split_cfg, seed,
                                             device=pick_device(device), source=str(tss_path))
    save_model(model_path, model, {"split": metrics["split_blocks_0based_halfopen"], "seed": seed,
                                   "chrom": metrics["chrom"]})
    write_json(metrics_path, metrics)
    write_text(log_path, log_df.to_csv(sep="\t", index=False, float_format="%.6g"))
    return metrics
