"""The frozen and shuffled encoder controls through Snakemake: fine-tuning, attribution, head
statistics and the Jaccard comparison, on a tiny demo (the full demo runs without controls,
which would add about 80% to its job time)."""
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT

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
                         cwd=ROOT, capture_output=True, text=True, timeout=1200)
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
    # checkpoints exist for interrupted jobs only: removed once each job finished
    assert not list((run / "checkpoints").rglob("checkpoint.pt"))
    assert finetuned.keys() == pre.keys()
