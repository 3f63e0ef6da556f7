"""Workflow behaviour on a tiny demo: reruns, determinism, kill -9 and --rerun-incomplete, and
the provenance in summary.json and the report.

One full tiny run (A) is shared by the module; a slice of the protein and DNA chains runs again
in a fresh copy, C, killed with SIGKILL (the whole Snakemake process group) while the first
training job runs, then resumed with --rerun-incomplete: it must equal A bit for bit (same
seed, CPU, one thread per job). Every run works in its own copy of the
workflow, so its .snakemake (locks, incomplete markers, metadata) is its own.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, WORKFLOW_TIMEOUT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# The demo shrunk until every job takes seconds; the numbers do not show the science.
TINY = {
    "data": {"demo": {"protein": {"n_proteins": 60},
                      "dna": {"genome_length": 20000, "n_promoters": 60}}},
    "protein": {"mlm": {"steps": 10}, "finetune": {"epochs": 1}},
    "attribution": {"shards": 2, "n_steps": 4, "max_proteins": 4},
    "analysis": {"residue_flipping": {"n_max": 8, "n_random": 1}, "composition_null": {"permutations": 19}},
    "dna": {"train": {"epochs": 1}, "seed_robustness": {"seeds": [11]},
            "probe": {"n_background": 50, "intervention": {"max_tss": 30, "draws": 1}},
            "attribution": {"max_tss": 8, "n_steps": 4}},
}
# The slice rerun by B and C: data, MLM pretraining, fine-tuning, 2 attribution shards, gather
# and head statistics for ec; the DNA data and model.
SLICE = ["out/analysis/protein/ec/finetuned/head_statistics.parquet", "out/models/dna/metrics.json"]
TIMING_KEYS = {"seconds"}  # wall-clock fields of metrics.json (and their copies in summary.json)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _workflow_copy(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "scripts", "config", "envs", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    (dst / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return dst


def _cmd(*extra, configs=()):
    """Targets and options first: after --configfile/--config, argparse reads them as files."""
    return SNAKEMAKE + [*extra, "--cores", "2", "--configfile", "config/demo.yaml", "tiny.yaml",
                        *configs, "--config", "outdir=out"]


def _snakemake(wf: Path, *extra, configs=(), timeout=WORKFLOW_TIMEOUT):
    res = subprocess.run(_cmd(*extra, configs=configs), cwd=wf, env=ENV, capture_output=True, text=True,
                         timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def _job_counts(wf: Path, *extra, configs=()) -> dict:
    """{rule: count} from the job stats table of a dry run ({} when nothing is to be done)."""
    rc, log = _snakemake(wf, "-n", *extra, configs=configs)
    assert rc == 0, log[-3000:]
    if "Nothing to be done" in log:
        return {}
    table = log.split("Job stats:", 1)[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table.split("\n\n", 1)[0], flags=re.M))
    total = int(counts.pop("total"))
    counts = {k: int(v) for k, v in counts.items()}
    assert sum(counts.values()) == total
    return counts


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    wf = _workflow_copy(tmp_path_factory.mktemp("reruns") / "a")
    rc, log = _snakemake(wf)
    assert rc == 0, log[-4000:]
    return wf


def _strip_timing(obj):
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


def _results(out: Path) -> dict:
    """Every Parquet table and metrics/summary JSON under out, keyed by relative path."""
    files = sorted(out.rglob("*.parquet")) + sorted(out.rglob("metrics.json"))
    return {str(f.relative_to(out)): f for f in files}


def assert_same_results(a: Path, b: Path):
    """Every result table of b equals a's bit for bit (pandas equality with exact dtypes and
    check_exact: NaN equals NaN, floats compared exactly); JSON equal except timing fields."""
    ra, rb = _results(a), _results(b)
    assert rb and set(rb) <= set(ra), sorted(set(rb) - set(ra))
    assert any(k.startswith("attribution/") for k in rb) and any(k.endswith("metrics.json") for k in rb)
    for k, f in rb.items():
        if f.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(ra[k]), pd.read_parquet(f), check_exact=True,
                                          obj=k)
        else:
            assert _strip_timing(json.loads(ra[k].read_text())) == _strip_timing(json.loads(f.read_text())), k


# ------------------------------------------------------------------------------ reruns
def test_a_finished_run_has_nothing_to_do(run_a):
    assert _job_counts(run_a) == {}


def test_seed_robustness_table_has_a_row_per_training_seed(run_a):
    """dna.seed_robustness.seeds [11]: a second TSS model trained with seed 11 (not a copy of the
    run's own), probed, and a table of both seeds whose fractions agree with its rows."""

    import pandas as pd

    out = run_a / "out"
    t = pd.read_parquet(out / "analysis" / "dna" / "seed_robustness.parquet")
    assert t.seed.tolist() == [1, 11]
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(out / "models/dna/model.pt") != digest(out / "models/dna/seeds/seed11/model.pt")
    summary = json.loads((out / "summary.json").read_text())
    pc = summary["positive_controls"]["dna_minus10_head"]
    assert t.set_index("seed").loc[1].minus10_head == f"L{pc['layer']}H{pc['head']}"
    frac = summary["dna_seed_robustness"]
    assert frac["n_seeds"] == 2 and frac["minus10"]["found"] == t.minus10_found.mean()
    assert frac["minus10"]["found_and_sequence_driven"] == (t.minus10_found & t.minus10_sequence_driven).mean()


def test_a_changed_alpha_reruns_exactly_the_rules_that_use_it(run_a, tmp_path):
    """analysis.alpha is a param of head_statistics and plot_head_significance (one job per
    task each); summarize reads the head tables and summary_page the summary. Nothing upstream
    (training, attribution)."""
    extra = tmp_path / "alpha.yaml"
    extra.write_text("analysis: {alpha: 0.01}\n")
    counts = _job_counts(run_a, configs=[str(extra)])
    assert counts == {"head_statistics": 2, "plot_head_significance": 2, "summarize": 1, "summary_page": 1,
                      "all": 1}


def test_a_changed_task_setting_reruns_that_task_only(run_a, tmp_path):
    """The task's settings reach fine-tuning through a params function (per {task} wildcard):
    attributing one GO term fewer retrains and reattributes go, and leaves ec, the MLM encoder
    and the DNA chain alone. The same settings written with the keys in another order (the
    default tasks, written out) rerun nothing."""
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump({"protein": {"tasks": {
        "go": {"attribute_terms": ["GO:0016020", "GO:0005524"], "terms": ["GO:0016020", "GO:0005524"],
               "column": "go_terms", "type": "multi_label"},
        "ec": {"column": "ec_class", "type": "single_label"}}}}, sort_keys=False))
    assert _job_counts(run_a, configs=[str(same)]) == {}
    extra = tmp_path / "task.yaml"
    extra.write_text(yaml.safe_dump({"protein": {"tasks": {
        "ec": {"type": "single_label", "column": "ec_class"},
        "go": {"type": "multi_label", "column": "go_terms", "terms": ["GO:0016020", "GO:0005524"],
               "attribute_terms": ["GO:0016020"]}}}}))
    counts = _job_counts(run_a, configs=[str(extra)])
    assert counts["finetune_protein"] == 1 and counts["attribute_proteins"] == 2, counts
    assert counts["gather_attributions"] == 1 and counts["head_statistics"] == 1, counts
    assert not {"pretrain_protein_encoder", "split_proteins", "train_dna", "tss_attention"} & set(counts), counts


def test_speed_only_settings_rerun_nothing(run_a, tmp_path):
    """Micro-batch memory budgets, batch sizes of forward passes, the DNA attention chunk and
    the device change speed, not results (issue 19.3): the scripts read them from the config,
    not from params (docs/reruns.md). The DNA training batch size is a setting: it retrains."""
    extra = tmp_path / "speed.yaml"
    extra.write_text("protein: {finetune: {max_memory_gb: 4}, mlm: {max_memory_gb: auto}}\n"
                     "attribution: {batch_size: 7}\n"
                     "device: cpu\n"
                     "dna: {probe: {batch_size: 5}, model: {attn_chunk: 16}, attribution: {batch_size: 3}}\n")
    assert _job_counts(run_a, configs=[str(extra)]) == {}
    extra.write_text("dna: {train: {batch_size: 3}}\n")
    counts = _job_counts(run_a, configs=[str(extra)])
    assert counts.get("train_dna") == 1 and counts.get("tss_attention") == 1, counts


def test_a_listed_dna_attribution_method_reruns_no_other_method(run_a, tmp_path):
    """dna.attribution.methods is not a param of attribute_dna, nor of the other methods'
    jobs (issue 18.4): listing gradient x input beside the demo's [ig, attnlrp] adds its
    attribution and TF-MoDISco and redoes the side-by-side motif table (a dry run), and reruns
    nothing of IG's or AttnLRP's chains; the summary reads the new table."""
    extra = tmp_path / "methods.yaml"
    extra.write_text("dna: {attribution: {methods: [ig, attnlrp, grad_x_input]}}\n")
    counts = _job_counts(run_a, configs=[str(extra)])
    assert counts == {"attribute_dna_method": 1, "dna_modisco_method": 1, "dna_method_motifs": 1,
                      "summarize": 1, "summary_page": 1, "all": 1}, counts


def test_a_deleted_gathered_table_is_rebuilt_from_its_shards_on_request(run_a):
    """Shards are temp(): gone after the gather. A deleted gathered table is an intermediate
    file whose consumers are up to date, so a plain rerun leaves it missing (Snakemake does not
    rebuild intermediates nobody needs); asking for it reruns exactly its task's two shard jobs
    and the gather, nothing upstream (the model is there) and nothing else."""
    table = run_a / "out" / "attribution" / "ec" / "finetuned" / "embedding.parquet"
    assert not list(table.parent.parent.glob("shards/*"))
    saved = table.with_suffix(".saved")
    table.rename(saved)
    try:
        assert _job_counts(run_a) == {}
        counts = _job_counts(run_a, "out/attribution/ec/finetuned/embedding.parquet")
        assert counts == {"attribute_proteins": 2, "gather_attributions": 1}
    finally:
        saved.rename(table)
    assert _job_counts(run_a) == {}


# ------------------------------------------------------------------------- provenance
def test_summary_records_provenance_and_the_report_shows_it(run_a):
    import torch
    import transformers

    summary = json.loads((run_a / "out" / "summary.json").read_text())
    prov = summary["provenance"]
    assert prov["seed"] == yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["seed"]
    assert re.fullmatch(r"[0-9a-f]{64}", prov["config_sha256"])
    assert prov["packages"]["torch"] == torch.__version__
    assert prov["packages"]["transformers"] == transformers.__version__
    enc = prov["encoder"]
    pre = run_a / "out" / "models" / "protein" / "pretrained"
    assert enc["pretrained"] is None and enc["built_by_workflow"]
    assert enc["config_sha256"] == hashlib.sha256((pre / "config.json").read_bytes()).hexdigest()
    assert enc["weights_sha256"] == hashlib.sha256((pre / "model.safetensors").read_bytes()).hexdigest()
    assert prov["data"]["source"] == "demo" and prov["data"]["demo"]["protein"]["n_proteins"] == 60

    report = run_a / "out" / "report.html"
    rc, log = _snakemake(run_a, "--report", str(report))
    assert rc == 0, log[-3000:]
    html = report.read_text().replace('\\"', '"')  # captions sit in the page as JS strings
    caption = html[html.index("Provenance of this run"):]
    assert caption.index('seed: <tt class="docutils literal">1</tt>') < 1000
    assert caption.index("MLM-pretrained</span> by the workflow") < 1000
    assert caption.index('data source: <tt class="docutils literal">demo</tt>') < 1000


# ------------------------------------------------- determinism, kill -9 and resumption
def test_kill_9_then_rerun_incomplete_gives_the_uninterrupted_results(run_a, tmp_path):
    """Also the same-seed check: C generates its own data, trains and resumes in its own copy,
    and must equal A bit for bit. (An uninterrupted second run of the slice was dropped for CI
    time: it could fail only where this one fails too.)"""
    wf = _workflow_copy(tmp_path / "c")
    out = wf / "out"
    # Killed while the first training job (MLM pretraining) runs: once it has written a
    # checkpoint, or at the latest when fine-tuning has started.
    marks = [out / "checkpoints" / "protein" / "pretrained", out / "logs" / "finetune_protein_ec_finetuned.log"]
    proc = subprocess.Popen(_cmd(*SLICE), cwd=wf, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not (any(marks[0].rglob("*")) if marks[0].is_dir() else False) and not marks[1].exists():
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "analysis").exists()  # killed mid-run, not after

    rc, log = _snakemake(wf, *SLICE)  # a plain rerun refuses: the lock and the incomplete job
    assert rc != 0 and ("cannot be locked" in log or "Incomplete" in log or "incomplete" in log), log[-3000:]
    # ... and the workflow names the whole recovery where that error appears
    hint = log[log.index("seqxai: .snakemake holds"):]
    assert hint.index("--unlock") < hint.index("--rerun-incomplete"), log[-3000:]
    rc, log = _snakemake(wf, "--unlock", *SLICE)
    assert rc == 0, log[-3000:]
    rc, log = _snakemake(wf, "--rerun-incomplete", *SLICE)
    assert rc == 0, log[-4000:]
    assert_same_results(run_a / "out", out)
    assert _job_counts(wf, *SLICE) == {}
    rc, log = _snakemake(wf, "-n", *SLICE)  # the markers are gone: no recovery hint any more
    assert rc == 0 and "seqxai: .snakemake holds" not in log, log[-3000:]


def test_real_data_provenance_names_sources_files_and_releases(tmp_path):
    """Library level, on the study config with local files: hashes, the release line of a
    RegulonDB file next to the pinned one, the genome accession; outdir is not in the hash."""
    from seqxai.summary import build_provenance, config_hash

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    prom = tmp_path / "PromoterSet.txt"
    prom.write_text("# RegulonDB Release: 10.9\n# columns ...\nECK1\tp\n")
    up = tmp_path / "uniprot.json"
    up.write_text('{"results": []}')
    cfg["data"]["regulondb"]["promoters"]["local"] = str(prom)
    cfg["data"]["uniprot"]["local"] = [str(up)]
    prov = build_provenance(cfg, None)
    d = prov["data"]
    assert d["source"] == "real" and d["genome"]["accession"] == "NC_000913.3"
    assert d["uniprot"]["query"] is None
    assert d["uniprot"]["local"] == [{"path": str(up), "sha256": hashlib.sha256(up.read_bytes()).hexdigest()}]
    p = d["regulondb"]["files"]["promoters"]
    assert (p["file_release"], p["pinned_release"], p["url"]) == ("10.9", "10.9", None)
    s = d["regulondb"]["files"]["sites"]
    assert s["pinned_release"] == "10.8" and s["url"].endswith("BindingSiteSet.txt") and s["local"] == []
    assert d["structures"]["source"] == "alphafold"
    assert prov["encoder"]["pretrained"] == cfg["protein"]["encoder"]["pretrained"]
    assert config_hash({**cfg, "outdir": "elsewhere"}) == config_hash(cfg) != config_hash({**cfg, "seed": 2})


def test_hub_encoder_provenance_reads_the_cached_snapshot_commit(tmp_path, monkeypatch):
    """A hub id resolves through the Hugging Face cache layout; huggingface_hub's own lookup
    is the reference for the snapshot folder."""
    from huggingface_hub import try_to_load_from_cache

    from seqxai.summary import encoder_provenance

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-esm"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snap / "config.json").write_text('{"model_type": "esm"}')
    (snap / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert try_to_load_from_cache("org/tiny-esm", "config.json", cache_dir=tmp_path / "hub") == str(
        snap / "config.json")
    enc = encoder_provenance("org/tiny-esm", "org/tiny-esm")
    assert enc["commit"] == commit and not enc["built_by_workflow"]
    assert enc["config_sha256"] == hashlib.sha256(b'{"model_type": "esm"}').hexdigest()
    assert enc["weights_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert encoder_provenance("org/not-cached", "org/not-cached")["commit"] is None
