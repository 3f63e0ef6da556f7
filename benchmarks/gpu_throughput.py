"""Fine-tuning and attribution throughput of the paper-size protein encoders on one device.

For each model shape (randomly initialised from a `transformers` config with the exact
dimensions of the published checkpoint: nothing is downloaded), in one run:

1. fine-tuning: steps of AdamW on a batch of random proteins of ``--tokens`` tokens through the
   workflow's own ``SequenceClassifier`` (bf16 autocast on CUDA, as ``protein.finetune.bf16``),
   proteins/s, the peak memory measured (CUDA: ``max_memory_allocated``; CPU: peak RSS of this
   process, so the first shape's number includes the interpreter) beside the estimate of
   ``seqxai.micro_batches`` for the same batch, and the model FLOP utilisation: matmul FLOPs of
   one step (``torch.utils.flop_counter``) x steps/s / the device's peak (``--peak-tflops``);
2. attribution: the workflow's ``integrated_gradients`` of one protein of ``--tokens`` tokens
   with ``--ig-steps`` Gauss-Legendre nodes and every layer's per-head conductance, in the exact
   (forward-mode), the polynomial (the same values from stencils, no forward-mode pass) and the
   difference mode: proteins/s and matmul FLOPs.

It needs no network, writes one JSON (``--out``) and prints a table. On a lent H100/H200 the
default shapes take a few minutes (``--max-seconds`` skips the shapes left once it is passed);
CI runs ``--shapes tiny`` on the CPU (tests/test_gpu_throughput.py) so that the script cannot rot.

    python benchmarks/gpu_throughput.py --out gpu_throughput.json            # CUDA if present
    python benchmarks/gpu_throughput.py --shapes tiny --device cpu --out t.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from seqxai.model_shapes import SHAPES  # noqa: E402  (the published checkpoints' dimensions)

DEFAULT_SHAPES = ["esm2_35M", "esm2_150M", "esm2_650M", "protbert_bfd"]
AA = "ACDEFGHIKLMNPQRSTVWY"


def build(kind: str, dims: dict, max_tokens: int):
    """A randomly initialised encoder of ``dims`` wrapped in the workflow's classifier."""
    import torch

    from seqxai.protein_model import SequenceClassifier

    if kind == "esm":
        from transformers import EsmConfig, EsmModel

        cfg = EsmConfig(vocab_size=33, pad_token_id=1, mask_token_id=32, max_position_embeddings=max_tokens + 2,
                        position_embedding_type="rotary", token_dropout=False, emb_layer_norm_before=False,
                        layer_norm_eps=1e-5, **dims)
        enc, special, pad, lo, hi = EsmModel(cfg, add_pooling_layer=False), [0, 1, 2, 3, 32], 1, 4, 24
    else:
        from transformers import BertConfig, BertModel

        cfg = BertConfig(vocab_size=30, pad_token_id=0, max_position_embeddings=40000, **dims)
        enc, special, pad, lo, hi = BertModel(cfg, add_pooling_layer=False), [0, 1, 2, 3, 4], 0, 5, 25
    enc.config._attn_implementation = "eager"  # attention weights (the attribution hooks need them)
    model = SequenceClassifier(enc, 8, dropout=0.0)
    model.special_ids = torch.tensor(special)
    return model, pad, (lo, hi)


def random_batch(n: int, tokens: int, token_range, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(token_range[0], token_range[1], (n, tokens), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2  # <cls> ... <eos> (ESM); [PAD]/[UNK] ids for BERT: only shapes matter
    return ids, torch.ones_like(ids)


class PeakMemory:
    """Peak memory of the enclosed work: CUDA ``max_memory_allocated`` (reset on entry), or on
    the CPU the peak resident set size sampled every 2 ms, minus the RSS on entry (the model,
    its inputs and what was allocated before stay out, as the estimate's fixed part does not:
    ``fixed_gib`` says how much of the estimate was resident before)."""

    def __init__(self, device):
        self.device, self.peak = device, 0

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = 0
            return self
        import psutil

        proc, self.stop = psutil.Process(), threading.Event()
        self.start = self.peak = proc.memory_info().rss

        def sample():
            while not self.stop.is_set():
                self.peak = max(self.peak, proc.memory_info().rss)
                time.sleep(0.002)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *args):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self.stop.set()
            self.thread.join()
        return False

    @property
    def gib(self) -> float:
        return (self.peak - self.start) / 2**30


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _NoModules:
    """Stands in for FlopCounterMode's module tracker: its backward hooks break
    ``torch.autograd.grad`` on leaves (the attribution's reverse pass); totals need no modules."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def matmul_flops(fn) -> int:
    """Matmul FLOPs (``torch.utils.flop_counter``'s registry) of one call of ``fn``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModules()
    with counter:
        fn()
    return int(counter.get_total_flops())


def finetune_throughput(model, device, batch: int, tokens: int, token_range, steps: int, bf16: bool) -> dict:
    import torch

    from seqxai import micro_batches as mb
    from seqxai.protein_model import autocast

    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids, att = (t.to(device) for t in random_batch(batch, tokens, token_range, seed=0))
    y = torch.zeros(batch, dtype=torch.long, device=device)

    def step():
        with autocast(device, bf16):
            loss = torch.nn.functional.cross_entropy(model(ids, att).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with PeakMemory(device) as mem:
        step()  # warm-up: allocator, kernels, Adam state (all inside the peak)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        seconds = (time.perf_counter() - t0) / steps
    flops = matmul_flops(step)
    cuda_bf16 = bf16 and device.type == "cuda"
    n_params = sum(p.numel() for p in model.parameters())
    fixed = mb.fixed_bytes(n_params, n_params, cuda_bf16)
    # on the CPU the weights were resident before the measurement started: compare without them
    estimate = (fixed if device.type == "cuda" else fixed - 4 * n_params) + batch * mb.sequence_bytes(
        model.encoder.config, tokens, 2 if cuda_bf16 else 4)
    opt.zero_grad(set_to_none=True)
    return {"batch": batch, "tokens": tokens, "bf16": cuda_bf16, "seconds_per_step": seconds,
            "proteins_per_s": batch / seconds, "matmul_flops_per_step": flops,
            "achieved_tflops": flops / seconds / 1e12, "peak_memory_gib": mem.gib,
            "estimate_gib": estimate / 2**30, "measured_over_estimate": mem.gib * 2**30 / estimate,
            "n_params": n_params}


def attribution_throughput(model, device, tokens: int, token_range, pad: int, n_steps: int, batch: int,
                           mode: str, repeats: int) -> dict:
    import torch

    from seqxai import attribution as at

    model.to(device).eval()
    ids, att = (t[0].to(device) for t in random_batch(1, tokens, token_range, seed=1))
    base = at.baseline_ids(ids, set(model.special_ids.tolist()), pad)

    def run():
        return at.integrated_gradients(model, ids, att, 0, base, n_steps=n_steps, batch_size=batch,
                                       layers=True, conductance=mode)

    with PeakMemory(device) as mem:
        run()  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            run()
        sync(device)
        seconds = (time.perf_counter() - t0) / repeats
    flops = matmul_flops(run)
    torch.cuda.empty_cache() if device.type == "cuda" else None
    return {"mode": mode, "n_steps": n_steps, "path_batch": batch, "seconds_per_protein": seconds,
            "proteins_per_s": 1 / seconds, "matmul_flops_per_protein": flops,
            "achieved_tflops": flops / seconds / 1e12, "peak_memory_gib": mem.gib}


def main(argv=None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, choices=list(SHAPES))
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (CUDA when available)")
    ap.add_argument("--tokens", type=int, default=512, help="tokens per protein (special tokens included)")
    ap.add_argument("--batch", type=int, default=8, help="fine-tuning batch (proteins per step)")
    ap.add_argument("--steps", type=int, default=5, help="timed fine-tuning steps")
    ap.add_argument("--ig-steps", type=int, default=50, help="IG path nodes per protein (Wenzel: 50)")
    ap.add_argument("--path-batch", type=int, default=25, help="path nodes per pass (attribution.batch_size)")
    ap.add_argument("--repeats", type=int, default=2, help="timed attributions per mode")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="device peak for the FLOP utilisation (default: 989 bf16 dense on H100/H200, "
                         "none on other devices)")
    ap.add_argument("--max-seconds", type=float, default=420, help="skip the shapes left after this")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops
    if peak is None and device.type == "cuda" and any(k in name for k in ("H100", "H200")):
        peak = 989.0
    torch.manual_seed(0)
    t_start = time.perf_counter()
    rows = []
    for shape in args.shapes:
        if time.perf_counter() - t_start > args.max_seconds:
            print(f"{shape}: skipped (--max-seconds {args.max_seconds:.0f} passed)", flush=True)
            rows.append({"shape": shape, "skipped": True})
            continue
        kind, dims = SHAPES[shape]
        model, pad, token_range = build(kind, dims, args.tokens)
        row = {"shape": shape, **dims, "finetune": finetune_throughput(
            model, device, args.batch, args.tokens, token_range, args.steps, bf16=True)}
        row["attribution"] = [attribution_throughput(model, device, args.tokens, token_range, pad, args.ig_steps,
                                                     args.path_batch, mode, args.repeats)
                              for mode in ("jvp", "polynomial", "difference")]
        if peak:
            row["finetune"]["mfu"] = row["finetune"]["achieved_tflops"] / peak
            for a in row["attribution"]:
                a["mfu"] = a["achieved_tflops"] / peak
        rows.append(row)
        ft = row["finetune"]
        print(f"{shape}: finetune {ft['proteins_per_s']:.2f} proteins/s, {ft['achieved_tflops']:.2f} TFLOP/s, "
              f"peak {ft['peak_memory_gib']:.2f} GiB vs estimate {ft['estimate_gib']:.2f} GiB; " +
              "; ".join(f"IG {a['mode']} {a['proteins_per_s']:.3f} proteins/s ({a['achieved_tflops']:.2f} TFLOP/s)"
                        for a in row["attribution"]), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = {"device": name, "device_type": device.type, "torch": torch.__version__,
              "peak_tflops": peak, "tokens": args.tokens, "seconds": time.perf_counter() - t_start,
              "shapes": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
