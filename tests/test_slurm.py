"""The SLURM profile, checked two ways.

1. Without a cluster: the shipped profiles/slurm runs a GPU rule and the grouped attribution
   shards through the real executor plugin, with a stand-in `sbatch` on PATH that records its
   arguments and refuses the job. The recorded calls must ask for the GPU the plugin's way
   (--gpus, never --gres as well), on the GPU partition, and the two shards as one job.
2. On a real SLURM (tests/slurm/start_cluster.sh; .ci/run starts it): a slice of the demo that
   runs every rule family (data, training, attribution, analysis, figures) through the profile,
   whose tables and metrics must equal those of a local run of the same slice.
   Skips with the reason when no SLURM answers here.

The test cluster has 2 CPUs, no GPU and no conda, so the cluster run uses the shipped profile
with the overrides listed in `cluster_test_profile` (and nothing else changed).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import WORKFLOW_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
SMALL = ROOT / "tests" / "slurm" / "small.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--configfile", "config/demo.yaml", str(SMALL)]

# The slice, one chain through every rule family: data (demo proteins, split) -> training
# (MLM pretraining, fine-tuning on ec) -> attribution (2 shards, one group job; gather) ->
# analysis (head statistics) -> figures; and the DNA chain: demo genome -> TSS model ->
# attention probe -> figures.
TARGETS = ["figures/ec_head_significance.png", "figures/dna_tss_profiles.png"]
# Outputs compared between the local and the SLURM run.
TABLES = [
    "data/protein/proteins.parquet",
    "data/protein/splits.parquet",
    "attribution/ec/finetuned/embedding.parquet",
    "attribution/ec/finetuned/heads.parquet",
    "analysis/protein/ec/finetuned/head_statistics.parquet",
    "analysis/protein/ec/finetuned/embedding_statistics.parquet",
    "analysis/protein/ec/finetuned/per_protein.parquet",
    "data/dna/tss.parquet",
    "analysis/dna/tss_profiles.parquet",
    "analysis/dna/head_motifs.parquet",
]
METRICS = ["models/protein/ec/finetuned/metrics.json", "models/dna/metrics.json"]


def shipped_profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def without_conda(profile: dict) -> dict:
    """The profile minus conda: the tests run the rules in the test's own environment (the
    plugin submits with --export=ALL), as CI has no conda."""
    p = dict(profile)
    p.pop("software-deployment-method", None)
    p.pop("conda-prefix", None)
    return p


def cluster_test_profile(dest: Path, logdir: Path) -> Path:
    """profiles/slurm adapted to the one-node test cluster; writes dest/config.yaml."""
    p = without_conda(shipped_profile())
    # The node has no GPU: the GPU rules keep their partition and runtime, ask for no GPU.
    p["set-resources"] = {rule: {**res, "gpu": 0} for rule, res in p["set-resources"].items()}
    p["set-threads"] = {rule: 1 for rule in p["set-threads"]}  # the node has 2 CPUs
    p.update({
        "jobs": 4,
        "retries": 0,                                    # a failure is a failure here
        "latency-wait": 5,                               # one machine: no filesystem lag
        "seconds-between-status-checks": 2,
        "slurm-init-seconds-before-status-checks": 1,
        "slurm-status-command": "squeue",                # the test cluster keeps no accounting
        "slurm-logdir": str(logdir),
        "slurm-keep-successful-logs": True,
    })
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return dest


# --- 1. sbatch arguments, no cluster needed ------------------------------------------------

FAKE_SBATCH = """#!/bin/sh
# Records the call, one line per call, and refuses the job.
echo "$*" >> "$SBATCH_LOG"
echo "sbatch: error: stand-in sbatch of tests/test_slurm.py" >&2
exit 1
"""


def _touch_inputs(out: Path):
    """Stand-ins for the outputs upstream of fine-tuning (go) and attribution (ec), oldest first,
    so that only those two rules have to run."""
    files = ["data/protein/proteins_unpropagated.parquet", "data/go/go.obo",
             "data/protein/proteins.parquet", "data/protein/residue_annotations.parquet",
             "data/protein/contact_maps.parquet", "data/protein/data_report.parquet",
             "data/protein/splits.parquet", "data/protein/label_counts/go.parquet",
             "models/protein/pretrained/config.json",
             "models/protein/pretrained_training_log.tsv", "models/protein/ec/finetuned/model/config.json",
             "models/protein/ec/finetuned/metrics.json", "models/protein/ec/finetuned/training_log.tsv"]
    # the library fingerprints (rule library_fingerprint) first: every rule takes its script's
    files = [f"code/{p.stem}.tsv" for p in sorted((ROOT / "scripts").glob("*.py"))] + files
    # newer than the library modules, which are inputs of every rule (common.smk)
    t0 = 1 + max(p.stat().st_mtime for p in (ROOT / "scripts").rglob("*.py"))
    for i, f in enumerate(files):
        path = out / f
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("stand-in")
        os.utime(path, (t0 + i, t0 + i))
        if path.parent.name in ("pretrained", "model"):  # directory outputs
            os.utime(path.parent, (t0 + i, t0 + i))


@pytest.fixture(scope="module")
def sbatch_calls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sbatch")
    out, bin_dir, prof = tmp / "results", tmp / "bin", tmp / "profile"
    _touch_inputs(out)
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    for tool in ["squeue", "sacct", "scontrol", "sinfo", "sacctmgr", "sshare", "scancel"]:
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")  # no cluster behind them
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    prof.mkdir()
    (prof / "config.yaml").write_text(yaml.safe_dump(without_conda(shipped_profile())))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_LOG": str(tmp / "calls")}
    targets = [out / "models/protein/go/finetuned/metrics.json",
               out / "attribution/ec/shards/1-of-2",
               out / "attribution/ec/shards/2-of-2"]
    cmd = SNAKEMAKE + ["--profile", str(prof), "--config", f"outdir={out}",
                       "--keep-going", "--retries", "0", "--rerun-triggers", "mtime", "--slurm-init-seconds-before-status-checks", "1", "--slurm-logdir", str(tmp / "logs"),
                       "--"] + [str(t) for t in targets]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0, "the stand-in sbatch refuses every job, so the run must fail"
    calls = (tmp / "calls").read_text().splitlines() if (tmp / "calls").exists() else []
    assert calls, res.stderr[-4000:]
    return calls


def _call_for(calls, comment):
    hits = [c for c in calls if f"--comment {comment}" in c or f"--comment '{comment}" in c]
    assert hits, f"no sbatch call for {comment} in {calls}"
    return hits[0].split()


def test_gpu_rule_asks_for_one_gpu_on_the_gpu_partition(sbatch_calls):
    args = _call_for(sbatch_calls, "rule_finetune_protein_wildcards_go")
    assert "--gpus=1" in args
    assert not [a for a in args if a.startswith("--gres")]  # --gres with --gpus clashes
    assert args[args.index("-p") + 1] == "gpu"
    assert args[args.index("-t") + 1] == "720"
    assert args[args.index("--mem") + 1] == "8000"  # the rule's own mem_mb
    assert "--cpus-per-task=8" in args  # set-threads, not capped by the submitting host


def test_every_gpu_rule_goes_to_the_gpu_partition():
    """A rule that declares gpu=1 must be listed in the profile's set-resources with the GPU
    partition, or the plugin sends --gpus=1 to the CPU partition (sbatch refuses the job)."""
    import re

    gpu_rules = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^\s*rule\s+", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            if re.search(r"^\s*gpu\s*=\s*[1-9]", block, flags=re.M):
                gpu_rules.add(name)
    assert {"finetune_protein", "attribute_proteins", "train_dna", "tss_attention"} <= gpu_rules
    profile = shipped_profile()["set-resources"]
    wrong = {r: profile.get(r, {}).get("slurm_partition") for r in gpu_rules
             if profile.get(r, {}).get("slurm_partition") != "gpu"}
    assert not wrong, f"GPU rules not on the gpu partition in profiles/slurm: {wrong}"


def test_attribution_shards_go_as_one_job_with_one_gpu(sbatch_calls):
    group = [c for c in sbatch_calls if "attribute_proteins" in c]
    assert len(group) == 1, group  # both shards in one submission
    args = group[0].split()
    assert "--gpus=1" in args  # the shards run one after the other on one GPU, not 2 GPUs
    assert not [a for a in args if a.startswith("--gres")]
    assert args[args.index("-p") + 1] == "gpu"
    assert args[args.index("-t") + 1] == "30"  # 2 shards x 15 min, one after the other


# --- 2. a real SLURM -----------------------------------------------------------------------

def _slurm_state():
    """None when a SLURM node is ready here, else the reason why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed here (no sinfo/sbatch); tests/slurm/start_cluster.sh sets one up"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo does not answer within 10 s: slurmctld is not running"
    states = res.stdout.split()
    if res.returncode != 0 or not any(s.rstrip("*~#") in {"idle", "mixed", "allocated"} for s in states):
        return f"no SLURM node ready (sinfo: {res.stdout.strip() or res.stderr.strip()}); " \
               "run tests/slurm/start_cluster.sh as root"
    parts = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=10).stdout.split()
    if not {"cpu", "gpu"} <= set(parts):
        return f"SLURM here has partitions {parts}, not the profile's cpu and gpu: " \
               "this test needs the cluster of tests/slurm/start_cluster.sh"
    return None


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    reason = _slurm_state()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("slurm")
    # Both runs at once: the SLURM run mostly waits on the scheduler, so this costs little.
    procs = {}
    for name in ["local", "slurm"]:
        out = tmp / name
        cmd = SNAKEMAKE + ["--config", f"outdir={out}"]
        if name == "local":
            cmd += ["--cores", "1"]
        else:
            cmd += ["--profile", str(cluster_test_profile(tmp / "profile", tmp / "slurm_logs"))]
        cmd += ["--"] + [str(out / t) for t in TARGETS]
        with open(tmp / f"{name}.log", "w") as log:  # files, not pipes: neither run can block
            procs[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    runs = {}
    try:
        for name, proc in procs.items():
            proc.wait(timeout=WORKFLOW_TIMEOUT)
            log = (tmp / f"{name}.log").read_text()
            assert proc.returncode == 0, f"{name} run failed:\n{log[-6000:]}"
            runs[name] = tmp / name
    finally:
        for proc in procs.values():  # a failed or hung run must not outlive the test
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
    runs["logs"] = tmp / "slurm_logs"
    return runs


def test_every_job_went_through_slurm(cluster_runs):
    logs = cluster_runs["logs"]
    submitted = {p.name for p in logs.iterdir()} if logs.is_dir() else set()
    rules = ["demo_proteins", "propagate_go", "split_proteins", "pretrain_protein_encoder", "finetune_protein",
             "gather_attributions", "head_statistics", "plot_head_significance",
             "demo_genome", "train_dna", "tss_attention", "plot_dna"]
    missing = [r for r in rules if f"rule_{r}" not in submitted]
    assert not missing, sorted(submitted)
    # both attribution shards ran inside one SLURM job of the group "attribution"
    group = [d for d in submitted if d.startswith("group_attribution")]
    assert len(group) == 1, sorted(submitted)
    assert len(list((logs / group[0]).rglob("*.log"))) == 1


@pytest.mark.parametrize("table", TABLES)
def test_slurm_tables_equal_local(cluster_runs, table):
    local = pd.read_parquet(cluster_runs["local"] / table)
    slurm = pd.read_parquet(cluster_runs["slurm"] / table)
    assert len(local) > 0, table
    pd.testing.assert_frame_equal(slurm, local, check_exact=False, rtol=1e-5, atol=1e-7)


def _assert_close(slurm, local, where=""):
    """Equal JSON trees; numbers to 1e-5 relative; wall-clock `seconds` skipped."""
    if isinstance(local, dict):
        assert slurm.keys() == local.keys(), where
        for k in local:
            if k != "seconds":
                _assert_close(slurm[k], local[k], f"{where}.{k}")
    elif isinstance(local, list):
        assert len(slurm) == len(local), where
        for i, (a, b) in enumerate(zip(slurm, local)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(local, float):
        assert slurm == pytest.approx(local, rel=1e-5, abs=1e-9), where
    else:
        assert slurm == local, where


@pytest.mark.parametrize("metrics", METRICS)
def test_slurm_metrics_equal_local(cluster_runs, metrics):
    local = json.loads((cluster_runs["local"] / metrics).read_text())
    slurm = json.loads((cluster_runs["slurm"] / metrics).read_text())
    _assert_close(slurm, local, metrics)


def test_slurm_figure_written(cluster_runs):
    png = cluster_runs["slurm"] / "figures/ec_head_significance.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
