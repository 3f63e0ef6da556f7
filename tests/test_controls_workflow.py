"""The frozen and shuffled encoder controls through Snakemake: fine-tuning, attribution, head
statistics, the Jaccard comparison and the paired per-protein r against the controls, on a tiny
demo (the full demo runs without controls, which would add about 80% to its job time)."""
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import ROOT, WORKFLOW_TIMEOUT

TINY = {
    "data": {"demo": {"protein": {"n_proteins": 80}}},
    "protein": {"controls": ["frozen", "shuffled"],
                "mlm": {"enabled": True, "steps": 20, "batch_size": 16, "lr": 3.0e-3},
                "finetune": {"epochs": 2, "batch_size": 16, "accumulation": 1, "head_lr": 3.0e-3,
                             "encoder_lr": 3.0e-4, "freeze_encoder_epochs": 1, "patience": 1}},
    "attribution": {"shards": 1, "n_steps": 4, "max_proteins": 4},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("controls")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp / "results"
    target = out / "analysis" / "protein" / "ec" / "variant_comparison.parquet"
    res = subprocess.run([sys.executable, "-m", "snakemake", str(target), "--cores", "2",
                          "--configfile", "config/demo.yaml", str(cfg), "--config", f"outdir={out}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=WORKFLOW_TIMEOUT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def _encoder(path):
    from seqxai.protein_model import load_encoder

    return load_encoder(path).state_dict()


def test_controls_run_side_by_side_and_are_compared(run):
    from seqxai.protein_model import load_encoder, shuffle_linear_rows

    models = run / "models" / "protein"
    pre = _encoder(models / "pretrained")
    frozen = _encoder(models / "ec" / "frozen" / "model" / "encoder")
    shuffled = _encoder(models / "ec" / "shuffled" / "model" / "encoder")
    finetuned = _encoder(models / "ec" / "finetuned" / "model" / "encoder")
    seed = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["seed"]
    expect = shuffle_linear_rows(load_encoder(models / "pretrained"), seed=seed).state_dict()
    assert all(bool((pre[k] == frozen[k]).all()) for k in pre)  # frozen: the pretrained encoder
    assert all(bool((expect[k] == shuffled[k]).all()) for k in pre)  # shuffled: seeded rows
    assert any(not bool((pre[k] == shuffled[k]).all()) for k in pre)
    assert all(f.is_file() for v in ("finetuned", "frozen", "shuffled")
               for f in [models / "ec" / v / "metrics.json"])
    for v in ("finetuned", "frozen", "shuffled"):
        heads = pd.read_parquet(run / "analysis" / "protein" / "ec" / v / "head_statistics.parquet")
        p_bh = heads.loc[heads["group"] == "all", "p_bh"].dropna()  # per-class groups may be tiny
        assert len(p_bh) and p_bh.between(0, 1).all()
    tab = pd.read_parquet(run / "analysis" / "protein" / "ec" / "variant_comparison.parquet")
    assert set(zip(tab["variant_a"], tab["variant_b"])) == {
        ("finetuned", "frozen"), ("finetuned", "shuffled"), ("frozen", "shuffled")}
    assert (tab["n_both"] <= tab[["n_a", "n_b"]].min(axis=1)).all()
    assert tab["jaccard"].dropna().between(0, 1).all()
    _check_paired_r(run / "analysis" / "protein" / "ec")
    # checkpoints exist for interrupted jobs only: removed once each job finished
    assert not list((run / "checkpoints").rglob("checkpoint.pt"))
    assert finetuned.keys() == pre.keys()


def _check_paired_r(analysis):
    """paired_r.parquet: every control, level, annotation and group; the pairs are the proteins
    attributed under every variant; the embedding-level effect size is the median of the paired
    differences recomputed from the per-protein tables."""
    import numpy as np

    tab = pd.read_parquet(analysis / "paired_r.parquet")
    per = {v: pd.read_parquet(analysis / v / "per_protein.parquet")
           for v in ("finetuned", "frozen", "shuffled")}
    heads = pd.read_parquet(analysis / "finetuned" / "head_statistics.parquet")
    n_heads = len(heads.drop_duplicates(["layer", "head"]))
    assert set(tab["control"]) == {"frozen", "shuffled"} and set(tab["level"]) == {"embedding", "head"}
    assert set(tab["annotation"]) == set(per["finetuned"]["annotation"])
    assert set(tab["group"]) == set(heads["group"])
    for (_c, _a, _g), sub in tab.groupby(["control", "annotation", "group"]):
        assert (sub["level"] == "embedding").sum() == 1 and (sub["level"] == "head").sum() == n_heads
    assert (tab["n_only_finetuned"] == 0).all() and (tab["n_only_control"] == 0).all()
    assert tab["n_proteins"].between(0, TINY["attribution"]["max_proteins"]).all()
    tested = tab.dropna(subset=["p"])
    assert len(tested) and tested["p"].between(0, 1).all() and (tested["p_bh"] >= tested["p"] - 1e-12).all()
    assert not tab.loc[tab["p"].isna(), "significant"].any()
    for r in tab[(tab["level"] == "embedding") & (tab["group"] == "all")].itertuples():
        m = per["finetuned"].merge(per[r.control], on=["accession", "target", "annotation"])
        m = m[m["annotation"] == r.annotation]
        d = (m["r_embedding_x"] - m["r_embedding_y"]).dropna()
        assert r.n_proteins == len(d)
        assert (np.isnan(r.median_difference) if d.empty
                else np.isclose(r.median_difference, d.median()))
