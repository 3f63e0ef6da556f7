"""A training checkpoint resumes only the run it belongs to (issue 19.2).

Each test stops a tiny training after its first checkpoint (an exception from the callback:
the checkpoint stays, the final output is never written, as after ``kill -9``), changes one
input behind the same path, and trains again: the run must not resume, must say in its log
which input differs, and must give the weights of a fresh run bit for bit. With nothing
changed the same rerun resumes (so the test can fail).
"""
import logging
import shutil

import pytest
import torch
from test_protein_model import FT, TASKS, Interrupt, toy_data

from seqxai import checkpoints as ck
from seqxai import mlm_pretraining as mlm
from seqxai import protein_model as pm


def _stop_after_first(n):
    def stop(i):
        if i == n:
            raise Interrupt
    return stop


def _classifier_weights(model_dir):
    model, _, _ = pm.load_classifier(model_dir)
    return model.state_dict()


def _mlm_weights(model_dir):
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_pretrained(str(model_dir)).state_dict()


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _perturb_encoder(path):
    """Save other weights into the same encoder folder (as a rerun of MLM pretraining does)."""
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(str(path))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    model.save_pretrained(path)


FT2 = {**FT, "epochs": 2, "patience": 5}


def _finetune(proteins, splits, enc, out, ckpt=None, seen=None, stop=None):
    cb = stop or (seen.append if seen is not None else None)
    task = {"name": "ec", **TASKS["ec"]}
    return pm.finetune(proteins, splits, task, enc, out, checkpoint_dir=ckpt, on_epoch_end=cb, **FT2)


def test_finetuning_resumes_from_its_own_checkpoint_only(tiny_encoder, tmp_path, caplog):
    proteins, splits = toy_data()
    enc = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, enc)

    # unchanged inputs: the rerun resumes after epoch 1 and equals the uninterrupted run
    with pytest.raises(Interrupt):
        _finetune(proteins, splits, enc, tmp_path / "a", tmp_path / "ck_a", stop=_stop_after_first(1))
    assert (tmp_path / "ck_a" / ck.CHECKPOINT_FILE).exists() and not (tmp_path / "a").exists()
    seen = []
    _finetune(proteins, splits, enc, tmp_path / "a", tmp_path / "ck_a", seen=seen)
    assert seen == [2]
    _finetune(proteins, splits, enc, tmp_path / "fresh_old")
    assert _equal(_classifier_weights(tmp_path / "a"), _classifier_weights(tmp_path / "fresh_old"))

    # the encoder changes behind the same path after the kill: no resume, a fresh run's model
    with pytest.raises(Interrupt):
        _finetune(proteins, splits, enc, tmp_path / "b", tmp_path / "ck_b", stop=_stop_after_first(1))
    _perturb_encoder(enc)
    seen = []
    with caplog.at_level(logging.WARNING, logger="seqxai.checkpoints"):
        _finetune(proteins, splits, enc, tmp_path / "b", tmp_path / "ck_b", seen=seen)
    assert seen == [1, 2]
    assert "belongs to another run (it differs in: encoder weights)" in caplog.text
    _finetune(proteins, splits, enc, tmp_path / "fresh_new")
    new = _classifier_weights(tmp_path / "b")
    assert _equal(new, _classifier_weights(tmp_path / "fresh_new"))
    assert not _equal(new, _classifier_weights(tmp_path / "fresh_old"))  # the change mattered


def test_finetuning_checkpoint_of_other_sequences_or_labels_is_refused(tiny_encoder, tmp_path, caplog):
    proteins, splits = toy_data()
    with pytest.raises(Interrupt):
        _finetune(proteins, splits, tiny_encoder, tmp_path / "m", tmp_path / "ck",
                  stop=_stop_after_first(1))
    edited = proteins.copy()
    edited.loc[0, "sequence"] = "M" + edited.loc[0, "sequence"][1:]  # same accessions, one residue
    edited.loc[1, "ec_class"] = "2" if edited.loc[1, "ec_class"] == "1" else "1"
    seen = []
    with caplog.at_level(logging.WARNING, logger="seqxai.checkpoints"):
        _finetune(edited, splits, tiny_encoder, tmp_path / "m", tmp_path / "ck", seen=seen)
    assert seen == [1, 2]
    assert "differs in: labels, token ids)" in caplog.text


def test_mlm_pretraining_resumes_from_its_own_checkpoint_only(tiny_encoder, tmp_path, caplog):
    seqs = toy_data()[0]["sequence"].tolist()
    kw = dict(steps=4, batch_size=8, lr=3e-3, max_length=32, seed=5, device="cpu", checkpoint_every=2)
    enc = tmp_path / "init"
    shutil.copytree(tiny_encoder, enc)

    with pytest.raises(Interrupt):
        mlm.pretrain_mlm(seqs, enc, tmp_path / "a", checkpoint_dir=tmp_path / "ck_a",
                         on_checkpoint=_stop_after_first(2), **kw)
    seen = []
    mlm.pretrain_mlm(seqs, enc, tmp_path / "a", checkpoint_dir=tmp_path / "ck_a", on_checkpoint=seen.append, **kw)
    assert seen == [4]  # resumed at step 2
    mlm.pretrain_mlm(seqs, enc, tmp_path / "fresh_old", **kw)
    assert _equal(_mlm_weights(tmp_path / "a"), _mlm_weights(tmp_path / "fresh_old"))

    with pytest.raises(Interrupt):
        mlm.pretrain_mlm(seqs, enc, tmp_path / "b", checkpoint_dir=tmp_path / "ck_b",
                         on_checkpoint=_stop_after_first(2), **kw)
    _perturb_encoder(enc)
    seen = []
    with caplog.at_level(logging.WARNING, logger="seqxai.checkpoints"):
        mlm.pretrain_mlm(seqs, enc, tmp_path / "b", checkpoint_dir=tmp_path / "ck_b",
                         on_checkpoint=seen.append, **kw)
    assert seen == [2, 4]
    assert "differs in: initial weights)" in caplog.text
    mlm.pretrain_mlm(seqs, enc, tmp_path / "fresh_new", **kw)
    new = _mlm_weights(tmp_path / "b")
    assert _equal(new, _mlm_weights(tmp_path / "fresh_new"))
    assert not _equal(new, _mlm_weights(tmp_path / "fresh_old"))

    # other training sequences behind the same call: refused too
    with pytest.raises(Interrupt):
        mlm.pretrain_mlm(seqs, enc, tmp_path / "c", checkpoint_dir=tmp_path / "ck_c",
                         on_checkpoint=_stop_after_first(2), **kw)
    caplog.clear()
    seen = []
    with caplog.at_level(logging.WARNING, logger="seqxai.checkpoints"):
        mlm.pretrain_mlm(seqs[::-1], enc, tmp_path / "c", checkpoint_dir=tmp_path / "ck_c",
                         on_checkpoint=seen.append, **kw)
    assert seen == [2, 4] and "differs in: token ids)" in caplog.text


def test_a_checkpoint_without_digests_is_not_resumed(tmp_path, caplog):
    """Checkpoints of earlier versions carry one opaque signature string: refused, with why."""
    path = tmp_path / ck.CHECKPOINT_FILE
    ck.save_checkpoint(path, {"signature": "0" * 64, "epoch": 1})
    with caplog.at_level(logging.WARNING, logger="seqxai.checkpoints"):
        assert ck.load_checkpoint(path, {"settings": "x"}) is None
    assert "older version" in caplog.text
    ck.save_checkpoint(path, {"signature": {"settings": "x"}, "epoch": 1})
    assert ck.load_checkpoint(path, {"settings": "x"})["epoch"] == 1


def test_digests_see_values_not_only_names():
    a = torch.nn.Linear(3, 2)
    d = ck.weights_digest(a)
    with torch.no_grad():
        a.weight[0, 0] += 1e-6
    assert ck.weights_digest(a) != d
    assert ck.array_digest(torch.tensor([1, 2])) != ck.array_digest(torch.tensor([1, 2], dtype=torch.int32))
    assert ck.array_digest(torch.tensor([[1, 2]])) != ck.array_digest(torch.tensor([1, 2]))
    assert ck.value_digest({"a": 1, "b": 2}) == ck.value_digest({"b": 2, "a": 1})


def test_a_killed_runs_markers_bring_the_recovery_steps(tmp_path):
    """After kill -9 the next run fails on Snakemake's lock or incomplete markers; the workflow
    says the whole recovery there (--unlock, then --rerun-incomplete). (That a run without
    markers prints nothing, and a real kill -9 prints it: tests/test_reruns.py.)"""
    import subprocess
    import sys

    from conftest import ROOT

    for name in ("Snakefile", "workflow", "scripts", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    cmd = [sys.executable, "-m", "snakemake", "--list-rules", "--configfile", "config/demo.yaml"]

    def hint():
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        return [line for line in res.stderr.splitlines() if line.startswith("seqxai: .snakemake holds")]

    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("x")
    (tmp_path / ".snakemake" / "incomplete").mkdir()
    (tmp_path / ".snakemake" / "incomplete" / "b3V0").write_text("{}")
    [line] = hint()
    assert "holds locks and 1 incomplete-job marker(s)" in line
    assert line.index("--unlock") < line.index("--rerun-incomplete")
