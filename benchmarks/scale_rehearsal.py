"""The paper-scale rehearsal: the real rules on a random encoder of a published shape, each
job's measured peak memory beside the estimate of ``seqxai.micro_batches``, and the measured
seconds per protein that the projections of docs/performance.md multiply by each preset's counts.

It writes a config layered on config/scale_rehearsal.yaml (shape, layers, n_steps, the
proteins' length) into ``--outdir``, runs Snakemake on it (one core: the job costs are 1-thread
CPU costs) up to the head figure, and reads every job's ``benchmark:`` file (``max_rss``, MB;
``cpu_time``, s). The fine-tuning job's peak RSS is set beside the estimate for its micro-batch
(fp32 on the CPU) plus the RSS of a bare interpreter that imported the same libraries (measured
here, the estimate counts tensors only). On a CUDA device the fine-tuning log also holds the
peak CUDA memory (``peak CUDA memory``), printed here when present.

    python benchmarks/scale_rehearsal.py --shape esm2_650M --out scale_esm2_650M.json
    python benchmarks/scale_rehearsal.py --shape protbert_bfd --n-steps 4
    python benchmarks/scale_rehearsal.py --shape esm2_650M --num-hidden-layers 2 --length 60 120

tests/test_scale_rehearsal.py runs the reduced version (2 layers, short proteins) in CI.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
PRESET = ROOT / "config" / "scale_rehearsal.yaml"
MB = 2 ** 20  # Snakemake's benchmark files give max_rss in MiB (psutil bytes / 1024**2)


def overrides(shape: str, num_hidden_layers: int | None, n_steps: int, length: tuple[int, int],
              max_length: int, frozen_encoder: bool = False) -> dict:
    """The config layered on the preset. ``frozen_encoder``: the one epoch trains the head
    only (the paper recipe's first epoch), where the whole fine-tuning does not fit memory."""
    return {"data": {"demo": {"protein": {"length_range": list(length)}}},
            "protein": {"encoder": {"rehearsal": {"shape": shape,
                                                  "num_hidden_layers": num_hidden_layers}},
                        "max_length": max_length,
                        "finetune": {"freeze_encoder_epochs": int(frozen_encoder)}},
            "attribution": {"n_steps": n_steps}}


def run_workflow(outdir: Path, extra: dict, cores: int = 1, timeout: float | None = None) -> Path:
    """Snakemake on the preset + ``extra`` up to the head figure; returns the results folder."""
    outdir.mkdir(parents=True, exist_ok=True)
    cfg = outdir / "rehearsal.yaml"
    cfg.write_text(yaml.safe_dump(extra))
    results = outdir / "results"
    target = results / "figures" / "ec_head_significance.png"
    cmd = [sys.executable, "-m", "snakemake", str(target), "--cores", str(cores),
           "--configfile", str(PRESET), str(cfg), "--config", f"outdir={results}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": str(cores)})
    if res.returncode != 0:
        raise RuntimeError("the rehearsal failed:\n" + res.stdout[-3000:] + res.stderr[-3000:])
    return results


def baseline_rss_mb() -> float:
    """Peak RSS (MiB) of an interpreter that imported what the fine-tuning job imports."""
    code = ("import resource, sys; sys.path.insert(0, 'scripts'); import torch, transformers, "
            "pandas; import seqxai.protein_model; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


def finetune_estimate(results: Path, max_length: int, frozen_encoder: bool = False) -> dict:
    """The micro_batches estimate (bytes) of the fine-tuning job as it ran on the CPU: fp32,
    the configured micro-batch, the tokens the job padded to (the longest protein, capped)."""
    from seqxai.micro_batches import fixed_bytes, sequence_bytes
    from seqxai.protein_model import load_encoder

    enc = load_encoder(results / "models" / "protein" / "rehearsal_encoder")
    # the job tokenises every protein of the task at once: padded to the longest, capped
    proteins = pd.read_parquet(results / "data" / "protein" / "proteins.parquet")
    tokens = min(max_length, int(proteins["sequence"].str.len().max()) + 2)
    n_params = sum(p.numel() for p in enc.parameters())
    # a frozen encoder: no gradients or Adam moments (the head's are negligible), one layer
    # of activations in flight
    fixed = fixed_bytes(n_params, 0 if frozen_encoder else n_params, best_copy=True)
    per_seq = sequence_bytes(enc.config, tokens, 4, 0, not frozen_encoder)
    return {"n_params": n_params, "tokens": tokens, "fixed": fixed, "per_sequence": per_seq,
            "total": fixed + per_seq}


def job_table(results: Path) -> pd.DataFrame:
    """One row per job with a benchmark file: seconds, CPU seconds, peak RSS (MiB)."""
    rows = []
    for f in sorted((results / "benchmarks").glob("*.tsv")):
        b = pd.read_csv(f, sep="\t")
        rows.append({"job": f.stem, "s": float(b["s"].iloc[0]),
                     "cpu_s": float(b["cpu_time"].iloc[0]),
                     "max_rss_mb": float(b["max_rss"].iloc[0])})
    return pd.DataFrame(rows)


def per_protein(results: Path, jobs: pd.DataFrame, n_steps: int, task: str = "ec") -> dict:
    """Seconds per protein: fine-tuning (the epoch's seconds, and the job's CPU seconds, per
    training pass of one protein: train proteins plus a third per validation and test
    protein), attribution (shard CPU seconds over the proteins attributed) and per IG step."""
    splits = pd.read_parquet(results / "data" / "protein" / "splits.parquet")
    n = splits["split"].value_counts()
    log = pd.read_csv(results / "models" / "protein" / task / "finetuned" / "training_log.tsv",
                      sep="\t")
    epoch_s = float(log["seconds"].iloc[0])
    # a training step is a forward and a backward (3 forwards); the job also predicts the
    # validation split after the epoch and the test split at the end (1 forward each)
    passes = n.get("train", 0) + (n.get("valid", 0) + n.get("test", 0)) / 3
    ft_cpu = float(jobs.loc[jobs["job"] == f"finetune_protein_{task}_finetuned", "cpu_s"].iloc[0])
    emb = pd.read_parquet(results / "attribution" / task / "finetuned" / "embedding.parquet")
    n_attr = int(emb["accession"].nunique()) if "accession" in emb else 0
    attr = jobs[jobs["job"].str.startswith(f"attribute_{task}_")]
    attr_cpu = float(attr["cpu_s"].sum())
    return {"n_train": int(n.get("train", 0)), "n_valid": int(n.get("valid", 0)),
            "n_test": int(n.get("test", 0)),
            "finetune_epoch_s": epoch_s,  # the epoch: train steps and the validation split
            "finetune_s_per_protein": epoch_s / (n.get("train", 0) + n.get("valid", 0) / 3),
            # the job's CPU seconds (loading and saving included): robust to a loaded machine
            "finetune_cpu_s_per_protein": ft_cpu / passes,
            "n_attributed": n_attr, "attribution_cpu_s": attr_cpu,
            "attribution_s_per_protein": attr_cpu / max(n_attr, 1),
            "attribution_s_per_protein_step": attr_cpu / max(n_attr, 1) / n_steps}


def logged_peak(results: Path, what: str, task: str = "ec") -> float | None:
    """The fine-tuning job's own peak, GiB: ``what`` "CUDA memory" (max_memory_allocated) or
    "RSS" (ru_maxrss, exact, where Snakemake's benchmark samples every 0.5 s, then 30 s)."""
    text = (results / "logs" / f"finetune_protein_{task}_finetuned.log").read_text()
    m = re.findall(rf"peak {what} ([0-9.]+) GiB", text)
    return float(m[-1]) if m else None


def shard_memory(log_path: Path) -> tuple[float, float]:
    """An attribution shard's host-memory estimate for its longest protein (MiB) and its exact
    peak RSS (GiB, ru_maxrss), as the shard logs them; NaN where absent."""
    text = log_path.read_text() if log_path.exists() else ""
    est = re.findall(r"host memory estimate for it: ([0-9]+) MiB", text)
    peak = re.findall(r"peak RSS ([0-9.]+) GiB \(this job", text)
    return (float(est[-1]) if est else float("nan"), float(peak[-1]) if peak else float("nan"))


def forward_flops(dims: dict, tokens: int) -> float:
    """Matmul FLOPs of one forward pass of ``tokens`` tokens (2 per multiply-add): Q, K, V, O,
    the two MLP maps and QK^T, AV per layer."""
    h, i, n = dims["hidden_size"], dims["intermediate_size"], dims["num_hidden_layers"]
    return n * (2 * tokens * 4 * h * h + 4 * tokens * h * i + 4 * tokens ** 2 * h)


# Assumptions of the projection, not measurements: proteins the Wenzel queries return (UniProt
# is not reachable here; about half of Swiss-Prot's ~570,000 entries carry an EC number, and
# the four GO terms of wenzel_go include membrane and cytoplasm), and the sustained share of an
# H100 SXM's dense peak (bf16 989 TFLOP/s for fine-tuning, which runs under bf16 autocast;
# fp32 67 TFLOP/s for attribution, which runs in fp32).
ASSUMED_PROTEINS = {"wenzel_ec": 270_000, "wenzel_go": 340_000}
H100 = {"bf16": 989e12, "fp32": 67e12}
UTILISATION = {"bf16": 0.3, "fp32": 0.5}


def projection(pp: dict, dims: dict, tokens: int, presets: Path = ROOT / "config" / "paper"):
    """CPU hours (1 thread) and GPU hours (H100, assumed utilisation) of each paper preset at
    full size: the measured CPU seconds per training pass (forward + backward of one protein)
    and per IG node times the preset's counts (epochs, frozen epochs, controls, n_steps, the
    split fractions, max_chains), at the rehearsal's protein length."""
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    pass_s, node_s = pp["finetune_cpu_s_per_protein"], pp["attribution_s_per_protein_step"]
    pass_flops = 3 * forward_flops(dims, tokens)
    node_flops = pass_flops * node_s / pass_s  # an IG node costs what the CPU says, in passes
    rows = []
    for name, n in ASSUMED_PROTEINS.items():
        cfg = yaml.safe_load((presets / f"{name}.yaml").read_text())
        ft, fr = cfg["protein"]["finetune"], cfg["split"]["fractions"]
        controls = cfg["protein"].get("controls", base["protein"]["controls"])
        tr, va, te = (n * fr[k] for k in ("train", "valid", "test"))
        e, frozen = ft["epochs"], ft["freeze_encoder_epochs"]
        # passes (units of forward + backward): the fine-tuned model trains the encoder after
        # the frozen epochs; a frozen epoch, a control's epoch, validation and test: forwards
        passes = (tr * (e - frozen) + tr * frozen / 3 + (e * va + te) / 3
                  + len(controls) * (e * (tr + va) + te) / 3)
        nodes = (1 + len(controls)) * te * cfg["attribution"]["n_steps"]
        rows.append({"preset": name, "proteins (assumed)": n, "training passes": passes,
                     "IG nodes": nodes, "CPU h fine-tuning": passes * pass_s / 3600,
                     "CPU h attribution": nodes * node_s / 3600,
                     "GPU h fine-tuning": passes * pass_flops
                     / (H100["bf16"] * UTILISATION["bf16"]) / 3600,
                     "GPU h attribution": nodes * node_flops
                     / (H100["fp32"] * UTILISATION["fp32"]) / 3600})
    for name in ("vig_protbert_bfd",):  # forwards only: the attention probe and the probes
        cfg = yaml.safe_load((presets / f"{name}.yaml").read_text())
        chains = cfg["data"]["structures"]["max_chains"]
        rows.append({"preset": name, "proteins (assumed)": chains, "training passes": 2 * chains / 3,
                     "IG nodes": 0, "CPU h fine-tuning": 2 * chains / 3 * pass_s / 3600,
                     "CPU h attribution": 0.0,
                     "GPU h fine-tuning": 2 * chains * pass_flops / 3
                     / (H100["fp32"] * UTILISATION["fp32"]) / 3600, "GPU h attribution": 0.0})
    return pd.DataFrame(rows)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="esm2_650M")
    ap.add_argument("--num-hidden-layers", type=int, default=None)
    ap.add_argument("--n-steps", type=int, default=50)
    ap.add_argument("--length", type=int, nargs=2, default=[400, 510],
                    help="residues of the demo proteins (min max)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--outdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="JSON of the results")
    ap.add_argument("--frozen-encoder", action="store_true",
                    help="the epoch trains the head only (no gradients or Adam state for the "
                         "encoder): the full shape where its fine-tuning does not fit memory")
    ap.add_argument("--results", type=Path, default=None,
                    help="the results folder of a finished rehearsal: analyse, do not run")
    args = ap.parse_args(argv)
    outdir = args.outdir or ROOT / "results" / "benchmarks" / f"scale_rehearsal_{args.shape}"
    if args.results is not None:  # analyse a finished run again
        results = args.results
    else:
        results = run_workflow(outdir, overrides(args.shape, args.num_hidden_layers,
                                                 args.n_steps, tuple(args.length),
                                                 args.max_length, args.frozen_encoder))
    jobs = job_table(results)
    est = finetune_estimate(results, args.max_length, args.frozen_encoder)
    base = baseline_rss_mb()
    jobs["estimate_mb"] = float("nan")
    ft = jobs["job"] == "finetune_protein_ec_finetuned"
    jobs.loc[ft, "estimate_mb"] = est["total"] / MB + base
    rss = logged_peak(results, "RSS")
    jobs["peak_rss_mb"] = float("nan")
    if rss is not None:
        jobs.loc[ft, "peak_rss_mb"] = rss * 1024
    for i, job in jobs["job"].items():  # attribution shards log their estimate and exact peak
        if job.startswith("attribute_"):
            est_mb, peak_gib = shard_memory(results / "logs" / f"{job}.log")
            jobs.loc[i, ["estimate_mb", "peak_rss_mb"]] = est_mb, peak_gib * 1024
    jobs["ratio"] = jobs["peak_rss_mb"].fillna(jobs["max_rss_mb"]) / jobs["estimate_mb"]
    pp = per_protein(results, jobs, args.n_steps)
    report = {"shape": args.shape, "num_hidden_layers": args.num_hidden_layers,
              "frozen_encoder": args.frozen_encoder,
              "n_steps": args.n_steps, "length": args.length, "baseline_rss_mb": base,
              "finetune_estimate": est, "cuda_peak_gib": logged_peak(results, "CUDA memory"), "finetune_peak_rss_gib": rss,
              "per_protein": pp, "jobs": jobs.to_dict("records")}
    pd.set_option("display.width", 140)
    print(jobs.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"baseline RSS (interpreter + torch + transformers) {base:.0f} MiB; fine-tuning "
          f"estimate {est['fixed'] / MB:.0f} MiB fixed + {est['per_sequence'] / MB:.0f} MiB per "
          f"sequence of {est['tokens']} tokens ({est['n_params'] / 1e6:.1f} M parameters)")
    print(json.dumps(pp, indent=1))
    if args.shape == "protbert_bfd" and args.num_hidden_layers is None and not args.frozen_encoder:
        from seqxai.model_shapes import shape_dims

        mean_tokens = int(pd.read_parquet(results / "data" / "protein" / "proteins.parquet")
                          ["sequence"].str.len().mean()) + 2
        proj = projection(pp, shape_dims(args.shape)[1], mean_tokens)
        print(f"projection at {mean_tokens} tokens per protein (docs/performance.md):")
        print(proj.to_string(index=False, float_format=lambda v: f"{v:,.0f}"))
        report["projection"] = proj.to_dict("records")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float))
    return report


if __name__ == "__main__":
    main()
