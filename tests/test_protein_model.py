"""Fine-tuning: early stopping, label checks, NaN-free metrics, checkpoint resume, controls."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from seqxai import mlm_pretraining as mlm
from seqxai import protein_metrics as pmetrics
from seqxai import protein_model as pm
from seqxai import protein_tasks as pt
from seqxai.io import DataError

AA = "ACDEFGHIKLMNPQRSTVWY"
TASKS = {"ec": {"type": "single_label", "column": "ec_class"},
         "go": {"type": "multi_label", "column": "go_terms", "terms": ["GO:1", "GO:2"]}}


def toy_data(n=36, seed=0):
    """Proteins whose EC class (1/2) and GO:1 follow a planted residue; GO:2 on every fourth."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seq = list(rng.choice(list(AA), 24))
        cls = "1" if i % 2 else "2"
        seq[5] = "W" if cls == "1" else "C"
        terms = (["GO:1"] if cls == "1" else []) + (["GO:2"] if i % 4 == 0 else [])
        rows.append({"accession": f"P{i:03d}", "sequence": "".join(seq), "length": 24, "ec": "",
                     "organism_id": 1,
                     "ec_class": cls, "go_terms": terms})
    proteins = pd.DataFrame(rows)
    split = np.array(["train", "valid", "test"])[(np.arange(n) // 2) % 3]  # both classes in each
    splits = pd.DataFrame({"accession": proteins["accession"], "split": split,
                           "cluster": proteins["accession"]})
    return proteins, splits


FT = dict(epochs=3, batch_size=8, accumulation=1, head_lr=3e-3, encoder_lr=1e-3,
          freeze_encoder_epochs=1, patience=5, max_length=32, dropout=0.1, seed=3, device="cpu")


# ---- early stopping ---------------------------------------------------------------------

def _stop_epoch(losses, patience):
    es = pm.EarlyStopping(patience)
    for epoch, loss in enumerate(losses, 1):
        es.update(loss, epoch)
        if es.stop:
            return epoch, es.best_epoch
    return None, es.best_epoch


def test_early_stopping_stops_after_exactly_patience_bad_epochs():
    assert _stop_epoch([1.0, 0.9, 0.95, 0.96, 0.5], 2) == (4, 2)
    assert _stop_epoch([1.0, 0.9, 0.95, 0.96, 0.5], 1) == (3, 2)
    # an improvement resets the count: bad epochs 3 and 5 are not consecutive
    assert _stop_epoch([1.0, 0.9, 0.95, 0.8, 0.85, 0.7], 2) == (None, 6)
    with pytest.raises(ValueError):
        pm.EarlyStopping(0)


def test_finetune_without_progress_runs_patience_plus_one_epochs(tiny_encoder, tmp_path):
    # lr 0: the validation loss never improves after epoch 1 -> stop after epoch 1 + patience
    proteins, splits = toy_data()
    params = {**FT, "epochs": 10, "patience": 2, "head_lr": 0.0, "encoder_lr": 0.0}
    metrics, history = pm.finetune(proteins, splits, {"name": "ec", **TASKS["ec"]}, tiny_encoder,
                                   tmp_path / "m", **params)
    assert metrics["epochs_run"] == 3 and list(history["epoch"]) == [1, 2, 3]
    assert metrics["best_epoch"] == 1


# ---- labels the data cannot support ------------------------------------------------------

def test_label_counts_on_good_data_counts_by_hand():
    proteins, splits = toy_data()
    counts, problems = pt.label_counts(proteins, splits, TASKS)
    assert problems == []
    c = counts.set_index(["task", "label", "split"])
    # 36 proteins, 12 per split, alternating classes; GO:2 on i % 4 == 0
    assert c.loc[("ec", "1", "train"), "n_positive"] == 6
    assert c.loc[("ec", "1", "train"), "n_proteins"] == 12
    in_test = splits["split"] == "test"
    assert c.loc[("go", "GO:2", "test"), "n_positive"] == sum(
        "GO:2" in t for t in proteins.loc[in_test, "go_terms"])


@pytest.mark.parametrize("case, expect", [
    ("missing_column", "column 'ec_klass' is not in "),  # then the file's path
    ("go_term_absent", "GO term 'GO:404' (column 'go_terms') has no positive protein in split 'train'"),
    ("go_term_absent_in_test", "GO term 'GO:2' (column 'go_terms') has no positive protein in split 'test'"),
    ("one_ec_class", "column 'ec_class' has 1 class(es) ['1']; a classifier needs at least 2"),
    ("empty_test", "split 'test' has no protein with a label in column 'ec_class'"),
])
def test_label_check_names_the_missing_label(case, expect, tmp_path):
    from seqxai.io import write_table

    proteins, splits = toy_data()
    tasks = json.loads(json.dumps(TASKS))
    if case == "missing_column":
        tasks["ec"]["column"] = "ec_klass"
    elif case == "go_term_absent":
        tasks["go"]["terms"].append("GO:404")
    elif case == "go_term_absent_in_test":
        test = splits["split"] == "test"
        proteins.loc[test, "go_terms"] = proteins.loc[test, "go_terms"].map(
            lambda t: [x for x in t if x != "GO:2"])
    elif case == "one_ec_class":
        proteins["ec_class"] = "1"
    elif case == "empty_test":
        splits = splits[splits["split"] != "test"]
    write_table(tmp_path / "p.parquet", proteins, "proteins")
    write_table(tmp_path / "s.parquet", splits, "splits")
    with pytest.raises(DataError) as err:
        pt.run_label_check(tmp_path / "p.parquet", tmp_path / "s.parquet", tasks, tmp_path / "c.parquet")
    assert expect in str(err.value)
    assert not (tmp_path / "c.parquet").exists()


def test_ec_class_absent_from_train_is_only_a_warning(caplog):
    proteins, splits = toy_data()
    proteins.loc[splits["split"] == "test", "ec_class"] = "7"
    counts, problems = pt.label_counts(proteins, splits, TASKS)
    assert problems == []
    assert "class '7' of column 'ec_class' has no protein in split 'train'" in caplog.text
    c = counts.set_index(["task", "label", "split"])["n_positive"]
    assert c[("ec", "7", "test")] == 12 and c[("ec", "7", "train")] == 0


def test_metrics_write_null_with_a_reason_instead_of_nan():
    y = np.ones((4, 2), dtype=np.float32)  # every protein positive: no AUC defined
    m = pmetrics.split_metrics("multi_label", np.zeros((4, 2)), y)
    assert m["macro_roc_auc"] is None and m["macro_pr_auc"] is None and "auc_note" in m
    json.dumps(m, allow_nan=False)
    from seqxai.io import non_finite_values

    assert [k for k, _ in non_finite_values({"a": {"b": [1.0, float("nan")]}, "c": 2.0})] == ["a.b.1"]


# ---- checkpoints and resume ----------------------------------------------------------------

class Interrupt(Exception):
    pass


def _weights(model_dir):
    model, _, _ = pm.load_classifier(model_dir)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("variant", ["finetuned", "shuffled"])
def test_interrupted_training_resumes_to_the_same_weights(tiny_encoder, tmp_path, variant):
    proteins, splits = toy_data()
    task = {"name": "go", **TASKS["go"]}
    ref_metrics, ref_hist = pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "ref",
                                        variant=variant, checkpoint_dir=tmp_path / "ck_ref", **FT)

    def die_after_2(epoch):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "run", variant=variant,
                    checkpoint_dir=tmp_path / "ck", on_epoch_end=die_after_2, **FT)
    assert not (tmp_path / "run").exists()
    seen = []
    metrics, hist = pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "run",
                                variant=variant, checkpoint_dir=tmp_path / "ck",
                                on_epoch_end=seen.append, **FT)
    assert seen == [3]  # epochs 1-2 came from the checkpoint
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "run")
    max_diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert max_diff <= 1e-6, max_diff
    assert metrics["test"]["macro_roc_auc"] == pytest.approx(ref_metrics["test"]["macro_roc_auc"], abs=1e-6)
    np.testing.assert_allclose(hist["valid_loss"], ref_hist["valid_loss"], atol=1e-6)
    # the uninterrupted run really trained: its weights differ from a one-epoch run's
    m1, _ = pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "one",
                        **{**FT, "epochs": 1}, variant=variant)
    c = _weights(tmp_path / "one")
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 1e-4


def test_checkpoint_of_other_settings_is_not_resumed(tiny_encoder, tmp_path):
    proteins, splits = toy_data()
    task = {"name": "ec", **TASKS["ec"]}
    pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "a", checkpoint_dir=tmp_path / "ck",
                **{**FT, "epochs": 1})
    seen = []
    pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "b", checkpoint_dir=tmp_path / "ck",
                on_epoch_end=seen.append, **{**FT, "epochs": 2, "head_lr": 1e-3})
    assert seen == [1, 2]


# ---- controls -------------------------------------------------------------------------------

def test_shuffle_permutes_rows_and_bias_consistently_and_is_seeded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6, bias=False))
    orig = [m.weight.detach().clone() for m in net if isinstance(m, nn.Linear)]
    orig_b = net[0].bias.detach().clone()
    x = torch.randn(5, 3)
    h = net[0](x).detach()
    a = pm.shuffle_linear_rows(json_copy(net), seed=7)
    b = pm.shuffle_linear_rows(json_copy(net), seed=7)
    c = pm.shuffle_linear_rows(json_copy(net), seed=8)
    for la, lb in zip(a, b):
        if isinstance(la, nn.Linear):
            assert torch.equal(la.weight, lb.weight)
    assert not torch.equal(a[0].weight, c[0].weight)
    # find each shuffled row among the original rows: a permutation, bias moved with it
    for lin, w in zip([a[0], a[2]], orig):
        perm = [int(torch.nonzero((w == row).all(1))[0]) for row in lin.weight]
        assert sorted(perm) == list(range(w.shape[0])) and perm != list(range(w.shape[0]))
        if lin.bias is not None:
            assert torch.equal(lin.bias, orig_b[perm])
            assert torch.allclose(lin(x), h[:, perm])  # outputs permuted, nothing else changed


def json_copy(net):
    import copy

    return copy.deepcopy(net)


def test_frozen_and_shuffled_controls_train_only_the_head(tiny_encoder, tmp_path):
    proteins, splits = toy_data()
    task = {"name": "ec", **TASKS["ec"]}
    pre = pm.load_encoder(tiny_encoder).state_dict()
    last, head0 = {}, None
    for variant in ("frozen", "shuffled", "finetuned"):
        metrics, hist = pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / variant,
                                    variant=variant, checkpoint_dir=tmp_path / f"ck_{variant}", **FT)
        assert metrics["variant"] == variant
        assert hist["encoder_frozen"].all() == (variant != "finetuned")
        # the weights after the last epoch (the saved model is the best epoch's)
        state = torch.load(tmp_path / f"ck_{variant}" / pm.CHECKPOINT_FILE, weights_only=False)["model"]
        last[variant] = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        head = state["head.weight"]
        if head0 is not None:
            assert not torch.equal(head, head0)
        head0 = head
    assert all(torch.equal(pre[k], last["frozen"][k]) for k in pre)
    expect = pm.shuffle_linear_rows(pm.load_encoder(tiny_encoder), seed=FT["seed"]).state_dict()
    assert all(torch.equal(expect[k], last["shuffled"][k]) for k in pre)
    assert any(not torch.equal(pre[k], last["shuffled"][k]) for k in pre)
    assert any(not torch.equal(pre[k], last["finetuned"][k]) for k in pre)
    # the saved shuffled model carries the shuffled encoder (attribution reads it)
    saved = pm.load_encoder(tmp_path / "shuffled" / "encoder").state_dict()
    assert all(torch.equal(expect[k], saved[k]) for k in pre)


# ---- the workflow's wiring (dry runs: seconds) -------------------------------------------

def _dry_run(tmp_path, *targets, extra_config=""):
    import subprocess
    import sys

    from conftest import ROOT

    cfg = tmp_path / "extra.yaml"
    cfg.write_text(extra_config or "{}\n")
    res = subprocess.run([sys.executable, "-m", "snakemake", *[str(tmp_path / "out" / t) for t in targets],
                          "-n", "--cores", "1", "--configfile", "config/demo.yaml", str(cfg),
                          "--config", f"outdir={tmp_path / 'out'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = {}
    for line in res.stdout.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_a_task_without_data_stops_mlm_pretraining_before_it_trains(tmp_path):
    """MLM pretraining checks the configured tasks first (they are not its inputs, so that an
    edited task does not rerun it): a misspelt column stops the job before any training step,
    naming task and column, with no encoder and no checkpoint left."""
    import subprocess
    import sys

    from conftest import ROOT

    cfg = tmp_path / "bad_task.yaml"
    cfg.write_text("data: {demo: {protein: {n_proteins: 40}}}\n"
                   "protein: {tasks: {ec: {type: single_label, column: ec_klass},\n"
                   "  go: {type: multi_label, column: go_terms, terms: [GO:0016020]}}}\n")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "snakemake", str(out / "models/protein/pretrained"),
                          "--cores", "1", "--configfile", "config/demo.yaml", str(cfg),
                          "--config", f"outdir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    log = (out / "logs" / "pretrain_protein_encoder.log").read_text()
    assert "task 'ec'" in log and "ec_klass" in log, log[-2000:]
    assert not (out / "models/protein/pretrained").exists()
    assert not (out / "models/protein/pretrained_training_log.tsv").exists()
    assert not (out / "checkpoints").exists()  # no training step ran (MLM checkpoints every steps/10)
    # the per-task check is the fine-tuning's input: one job per task
    (tmp_path / "dry").mkdir()
    jobs = _dry_run(tmp_path / "dry", "models/protein/ec/finetuned/metrics.json",
                    "models/protein/go/finetuned/metrics.json")
    assert jobs["check_protein_tasks"] == 2 and jobs["finetune_protein"] == 2


def test_controls_flow_through_attribution_and_head_statistics(tmp_path):
    both = _dry_run(tmp_path, extra_config="protein: {controls: [frozen, shuffled]}\n")
    none = _dry_run(tmp_path, extra_config="protein: {controls: []}\n")
    n_tasks, shards = 2, 2
    assert both["finetune_protein"] == 3 * n_tasks and none["finetune_protein"] == n_tasks
    # one shard job attributes every variant of its task: the controls add no shard jobs
    assert both["attribute_proteins"] == none["attribute_proteins"] == n_tasks * shards
    assert both["gather_attributions"] == 3 * n_tasks and none["gather_attributions"] == n_tasks
    assert both["head_statistics"] == 3 * n_tasks and none["head_statistics"] == n_tasks
    assert both["compare_variants"] == n_tasks and "compare_variants" not in none


# ---- recipe details --------------------------------------------------------------------------

def test_protbert_tokenisation_spaces_residues_and_maps_rare_ones_to_x(tmp_path):
    from transformers import BertTokenizer

    assert pm.protbert_text("MUZOBK") == "M X X X X K"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *AA, "X"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=False)
    enc = pm.encode(tok, ["MUK", "AC"], max_length=8)
    ids = enc["input_ids"].tolist()
    x = vocab.index
    assert ids[0] == [x("[CLS]"), x("M"), x("X"), x("K"), x("[SEP]")]
    assert ids[1] == [x("[CLS]"), x("A"), x("C"), x("[SEP]"), x("[PAD]")]
    # truncation keeps max_length tokens: the first max_length - 2 residues
    long = pm.encode(tok, ["ACDEFGHIK"], max_length=5)["input_ids"][0].tolist()
    assert long == [x("[CLS]"), x("A"), x("C"), x("D"), x("[SEP]")]
    assert pm.n_truncated(["ACDEFGHIK", "ACD", "ACDE"], max_length=5) == 2


def test_cpu_stays_fp32_and_truncation_is_recorded(tiny_encoder, tmp_path):
    assert isinstance(pm.autocast(torch.device("cpu"), True), type(pm.nullcontext()))
    proteins, splits = toy_data()
    metrics, _ = pm.finetune(proteins, splits, {"name": "ec", **TASKS["ec"]}, tiny_encoder,
                             tmp_path / "m", **{**FT, "epochs": 1, "max_length": 12}, bf16=True)
    assert metrics["test"]["n_truncated"] == 12  # every 24-residue protein is cut at 10
    model, _, _ = pm.load_classifier(tmp_path / "m")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_interrupted_mlm_pretraining_resumes_to_the_same_weights(tiny_encoder, tmp_path):
    from transformers import AutoModelForMaskedLM

    seqs = toy_data()[0]["sequence"].tolist()
    kw = dict(steps=7, batch_size=8, lr=3e-3, max_length=32, seed=5, device="cpu", log_every=1,
              checkpoint_every=2)
    ref = mlm.pretrain_mlm(seqs, tiny_encoder, tmp_path / "ref", **kw)

    def die_at_4(step):  # step 4 lies in the second pass over the 36 sequences (5 batches each)
        if step == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        mlm.pretrain_mlm(seqs, tiny_encoder, tmp_path / "run", checkpoint_dir=tmp_path / "ck",
                         on_checkpoint=die_at_4, **kw)
    seen = []
    hist = mlm.pretrain_mlm(seqs, tiny_encoder, tmp_path / "run", checkpoint_dir=tmp_path / "ck",
                            on_checkpoint=seen.append, **kw)
    assert seen == [6, 7]
    np.testing.assert_allclose(hist["loss"], ref["loss"], atol=1e-6)
    a = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "ref")).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "run")).state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    init = AutoModelForMaskedLM.from_pretrained(str(tiny_encoder)).state_dict()
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-4  # it did train


def _adam_eps(monkeypatch, eps=1e-6):
    """Adam divides by |gradient| + eps: with the default eps 1e-8 a gradient that cancels to
    ~1e-8 turns fp32 rounding (~1e-10, which depends on the summation order, so on any batch
    split) into weight changes of ~lr / 400 (6e-6 here). eps 1e-6 leaves the split to test."""
    import functools

    for name in ("Adam", "AdamW"):
        monkeypatch.setattr(torch.optim, name, functools.partial(getattr(torch.optim, name), eps=eps))


def test_micro_batches_give_the_weights_of_the_whole_batch(tiny_encoder, tmp_path, monkeypatch, caplog):
    # 12 training proteins, effective batch 8: two optimiser steps (8, then 4 proteins); the
    # micro-batches must add up to the same gradients, uneven last ones included
    _adam_eps(monkeypatch)
    proteins, splits = toy_data()
    task = {"name": "go", **TASKS["go"]}
    base = {**FT, "epochs": 1, "freeze_encoder_epochs": 0, "dropout": 0.0}

    def weights(name, **kw):
        pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / name, **{**base, **kw})
        model, _, _ = pm.load_classifier(tmp_path / name)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    whole = weights("whole", batch_size=8, accumulation=1)
    init, _ = pm.make_classifier(tiny_encoder, 2)
    moved = max(float((whole[k] - v).abs().max()) for k, v in init.state_dict().items()
                if k.startswith("encoder."))
    assert moved > 1e-4  # the encoder did train
    for name, kw in [("2x4", dict(batch_size=2, accumulation=4)),  # micro-batch 2, 4 steps
                     ("micro3", dict(batch_size=8, accumulation=1, micro_batch=3)),  # 3+3+2, 3+1
                     ("micro1", dict(batch_size=4, accumulation=2, micro_batch=1))]:
        other = weights(name, **kw)
        assert max(float((whole[k] - other[k]).abs().max()) for k in whole) <= 1e-6, name
    # a memory budget picks the micro-batch (here room for 5 sequences: 5 + 3, then 4), logged;
    # the weights stay those of the whole batch
    from seqxai import micro_batches as mb

    model, _ = pm.make_classifier(tiny_encoder, 2)
    n = sum(p.numel() for p in model.parameters())
    per_seq = mb.sequence_bytes(model.encoder.config, 24 + 2, act_bytes=4)
    budget = (mb.fixed_bytes(n, n, best_copy=True) + 5.5 * per_seq) / mb.USABLE_FRACTION / mb.GIB
    with caplog.at_level("INFO", logger="seqxai"):
        tight = weights("budget", batch_size=8, accumulation=1, max_memory_gb=budget)
    assert "effective batch 8 = micro-batch 5 x 2 accumulation steps" in caplog.text
    assert max(float((whole[k] - tight[k]).abs().max()) for k in whole) <= 1e-6
    # the check can fail: another effective batch (4) gives other weights
    four = weights("four", batch_size=4, accumulation=1)
    assert max(float((whole[k] - four[k]).abs().max()) for k in whole) > 1e-4


def test_mlm_micro_batches_give_the_weights_of_the_whole_batch(tiny_encoder, tmp_path, monkeypatch):
    from transformers import AutoModelForMaskedLM

    _adam_eps(monkeypatch)

    seqs = toy_data()[0]["sequence"].tolist()
    kw = dict(steps=2, batch_size=8, lr=3e-3, max_length=32, seed=5, device="cpu", log_every=1)
    ref = mlm.pretrain_mlm(seqs, tiny_encoder, tmp_path / "ref", **kw)
    split = mlm.pretrain_mlm(seqs, tiny_encoder, tmp_path / "split", micro_batch=3, **kw)
    np.testing.assert_allclose(split["loss"], ref["loss"], atol=1e-6)
    a = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "ref")).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "split")).state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_training_killed_with_sigkill_resumes_from_its_checkpoint(tiny_encoder, tmp_path):
    """A hard kill (no Python clean-up) right after epoch 2's checkpoint; the rerun resumes."""
    import subprocess
    import sys

    from conftest import ROOT

    from seqxai.io import write_table

    proteins, splits = toy_data()
    write_table(tmp_path / "p.parquet", proteins, "proteins")
    write_table(tmp_path / "s.parquet", splits, "splits")
    task = {"name": "go", **TASKS["go"]}
    code = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT / 'scripts')!r})
import pandas as pd
from seqxai import protein_model as pm
def kill(epoch):
    if epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
pm.finetune(pd.read_parquet({str(tmp_path / 'p.parquet')!r}), pd.read_parquet({str(tmp_path / 's.parquet')!r}),
            {task!r}, {str(tiny_encoder)!r}, {str(tmp_path / 'run')!r},
            checkpoint_dir={str(tmp_path / 'ck')!r}, on_epoch_end=kill, **{FT!r})
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == -9, res.stderr[-2000:]
    assert (tmp_path / "ck" / pm.CHECKPOINT_FILE).exists() and not (tmp_path / "run").exists()
    seen = []
    # the killed run used one thread; so do the resumed and the reference run here, since a
    # different thread count changes the order of float reductions (~1e-5 after 3 epochs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pm.finetune(pd.read_parquet(tmp_path / "p.parquet"), pd.read_parquet(tmp_path / "s.parquet"),
                    task, tiny_encoder, tmp_path / "run", checkpoint_dir=tmp_path / "ck",
                    on_epoch_end=seen.append, **FT)
        pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "ref", **FT)
    finally:
        torch.set_num_threads(threads)
    assert seen == [3]
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "run")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_rule_function_resumes_then_removes_the_finished_checkpoint(tiny_encoder, tmp_path, caplog):
    import logging

    from seqxai.io import write_table

    proteins, splits = toy_data()
    write_table(tmp_path / "p.parquet", proteins, "proteins")
    write_table(tmp_path / "s.parquet", splits, "splits")
    task = {"name": "go", **TASKS["go"]}
    params = {k: v for k, v in FT.items() if k not in ("max_length", "seed", "device")}

    def stop(epoch):
        raise Interrupt

    with pytest.raises(Interrupt):
        pm.finetune(pd.read_parquet(tmp_path / "p.parquet"), pd.read_parquet(tmp_path / "s.parquet"),
                    task, tiny_encoder, tmp_path / "m", checkpoint_dir=tmp_path / "ck",
                    on_epoch_end=stop, **FT)
    caplog.set_level(logging.INFO, logger="seqxai.protein_model")
    pm.run_finetuning(tmp_path / "p.parquet", tmp_path / "s.parquet", tiny_encoder, task, params,
                      tmp_path / "m", tmp_path / "metrics.json", tmp_path / "log.tsv",
                      max_length=FT["max_length"], seed=FT["seed"], device="cpu",
                      checkpoint_dir=tmp_path / "ck")
    assert "after epoch 1" in caplog.text  # resumed, not restarted
    assert not (tmp_path / "ck").exists()
    metrics = json.loads((tmp_path / "metrics.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert metrics["epochs_run"] == 3 and len(pd.read_csv(tmp_path / "log.tsv", sep="\t")) == 3


# ---- task metrics: macro-F1 (EC), Fmax and micro AUPR (GO) ---------------------------------

def test_macro_f1_by_hand_and_against_sklearn():
    from sklearn.metrics import f1_score

    # class 0: TP 1, FN 1 -> 2/3; class 1: TP 1, FP 2 -> 1/2; class 2: FN 1 -> 0
    assert pmetrics.macro_f1(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1])) == pytest.approx((2 / 3 + 0.5) / 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        t, p = rng.integers(0, 5, 30), rng.integers(0, 4, 30)
        assert pmetrics.macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro", zero_division=0))


def test_fmax_by_hand():
    y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])  # the third protein has no true term: not scored
    s = np.array([[0.9, 0.8, 0.1], [0.3, 0.6, 0.2], [0.9, 0.9, 0.9]])
    # t in (0.3, 0.6]: P1 = {0, 1} (pr 1/2, rc 1), P2 = {1} (pr 1, rc 1/2): pr = rc = 0.75 = F,
    # the best over thresholds (t <= 0.1: 0.667, (0.1, 0.2]: 14/19, (0.2, 0.3]: 0.6, (0.6, 0.8]: 0.5,
    # (0.8, 0.9]: 2/3 with protein 2 uncovered, so pr averages over protein 1 only)
    out = pmetrics.fmax(y, s)
    assert out == {"fmax": pytest.approx(0.75), "threshold": 0.31, "n_proteins": 2}
    assert pmetrics.fmax(y, s, thresholds=np.array([0.15]))["fmax"] == pytest.approx(14 / 19)
    assert pmetrics.fmax(y, s, thresholds=np.array([0.85]))["fmax"] == pytest.approx(2 / 3)
    assert pmetrics.fmax(np.zeros((2, 3)), s[:2])["fmax"] is None


def _fmax_naive(y, s, thresholds):
    best = 0.0
    for t in thresholds:
        precs, recs = [], []
        for i in range(len(y)):
            true = {k for k in range(y.shape[1]) if y[i, k]}
            if not true:
                continue
            pred = {k for k in range(y.shape[1]) if s[i, k] >= t}
            if pred:
                precs.append(len(pred & true) / len(pred))
            recs.append(len(pred & true) / len(true))
        pr = np.mean(precs) if precs else 0.0
        rc = np.mean(recs)
        if pr + rc > 0:
            best = max(best, 2 * pr * rc / (pr + rc))
    return best


def test_fmax_matches_a_naive_loop():
    rng = np.random.default_rng(1)
    y = (rng.random((25, 6)) < 0.3).astype(np.float32)
    s = np.clip(0.5 * y + 0.7 * rng.random(y.shape), 0, 1)
    assert pmetrics.fmax(y, s)["fmax"] == pytest.approx(_fmax_naive(y, s, pmetrics.FMAX_THRESHOLDS), abs=1e-12)


def test_micro_aupr_by_hand_and_against_sklearn_micro():
    from sklearn.metrics import average_precision_score

    # pooled pairs ranked 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = 0.5 * 1 + 0.5 * 2/3
    y, s = np.array([[1, 0], [1, 0]]), np.array([[0.9, 0.8], [0.7, 0.1]])
    assert pmetrics.micro_aupr(y, s) == pytest.approx(5 / 6)
    rng = np.random.default_rng(2)
    y = (rng.random((20, 5)) < 0.3).astype(int)
    s = rng.random(y.shape)
    assert pmetrics.micro_aupr(y, s) == pytest.approx(average_precision_score(y, s, average="micro"))
    assert pmetrics.micro_aupr(np.ones((2, 2)), s[:2, :2]) is None


def test_split_metrics_carry_the_task_metrics():
    ec = pmetrics.split_metrics("single_label", np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), np.array([0, 1, 1]))
    assert ec["accuracy"] == pytest.approx(2 / 3) and ec["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    logits = np.array([[2.0, -2.0], [-1.0, 0.5]])  # sigmoid scores 0.88, 0.12 / 0.27, 0.62
    go = pmetrics.split_metrics("multi_label", logits, np.array([[1, 0], [0, 1]], dtype=np.float32))
    assert go["fmax"] == pytest.approx(1.0) and go["micro_aupr"] == pytest.approx(1.0)
    json.dumps(go, allow_nan=False)


# ---- EC at a configurable level, GO terms by count and aspect --------------------------------

@pytest.mark.parametrize("ec, level, expect", [
    ("3.4.21.68", 1, ("3", "")),
    ("3.4.21.68", 3, ("3.4.21", "")),
    ("3.4.-.-", 2, ("3.4", "")),
    ("3.4.-.-", 3, ("", "EC incomplete at level 3")),
    ("3.4.21.-;3.4.21.68", 4, ("3.4.21.68", "")),   # the complete one decides
    ("1.1.1.1;2.7.1.1", 1, ("", "EC numbers disagree at level 1")),
    ("2.7.1.1;2.7.4.3", 2, ("2.7", "")),             # agree at level 2, differ below
    ("", 1, ("", "no EC number")),
])
def test_ec_at_level_by_hand(ec, level, expect):
    assert pt.ec_at_level(ec, level) == expect


def ec_data():
    """toy_data with EC numbers: at level 3, 4 proteins are incomplete, 1 ambiguous, 1 without EC."""
    proteins, splits = toy_data()
    ec = ["1.1.1.1" if c == "1" else "2.7.1.1" for c in proteins["ec_class"]]
    for i in (1, 3, 13, 25):  # class-1 proteins in splits train, valid, train, train
        ec[i] = "1.1.-.-"
    ec[2], ec[4] = "1.1.1.1;2.7.1.1", ""  # valid, test
    proteins["ec"] = ec
    return proteins, splits


def test_ec_level_task_drops_and_counts_unlabelled_proteins(tiny_encoder, tmp_path):
    proteins, splits = ec_data()
    task = {"name": "ec3", "type": "single_label", "column": "ec", "ec_level": 3}
    metrics, _ = pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "m", **{**FT, "epochs": 1})
    assert metrics["labels"] == ["1.1.1", "2.7.1"]
    assert metrics["proteins_dropped"] == {"EC incomplete at level 3": 4,
                                           "EC numbers disagree at level 3": 1, "no EC number": 1}
    assert sum(metrics[s]["n"] for s in pt.SPLITS) == 36 - 6
    counts, problems = pt.label_counts(proteins, splits, {"ec3": task})
    assert problems == []
    c = counts.set_index(["label", "split"])
    # split of protein i: i // 2 % 3 (0 train, 1 valid, 2 test); class-1 (odd i) in train:
    # 1, 7, 13, 19, 25, 31, of which 1, 13, 25 are cut at level 2
    assert c.loc[("1.1.1", "train"), "n_positive"] == 3
    assert c.loc[("1.1.1", "train"), "n_proteins"] == 12 - 3
    assert c.loc[("1.1.1", "valid"), "n_proteins"] == 12 - 2  # P003 cut, P002 ambiguous
    # at level 2 the cut proteins count again
    labels, y = pm.task_targets(proteins, {**task, "ec_level": 2})
    assert labels == ["1.1", "2.7"] and (y == -1).sum() == 2
    # the attribution targets use the same labels
    from seqxai.attribution_shards import attribution_targets

    meta = json.loads((tmp_path / "m" / pm.META_FILE).read_text())
    tg = attribution_targets(proteins, splits, meta, split="test")
    test_ids = set(splits.loc[splits["split"] == "test", "accession"])
    assert set(tg["accession"]) == test_ids - {"P004"}  # P004 has no EC
    assert set(tg["target_label"]) == {"1.1.1", "2.7.1"}


def go_data():
    proteins, splits = toy_data()
    # GO:3 on 5 training proteins, GO:4 on 2 (both only in train)
    train = np.flatnonzero(splits["split"] == "train")
    for k, i in enumerate(train[:5]):
        proteins.at[i, "go_terms"] = list(proteins.at[i, "go_terms"]) + ["GO:3"] + (["GO:4"] if k < 2 else [])
    return proteins, splits


def test_go_terms_selected_by_training_positives(tiny_encoder, tmp_path):
    proteins, splits = go_data()
    df = proteins.merge(splits, on="accession")
    train_go1 = sum("GO:1" in t for t in df.loc[df["split"] == "train", "go_terms"])
    train_go2 = sum("GO:2" in t for t in df.loc[df["split"] == "train", "go_terms"])
    assert (train_go1, train_go2) == (6, 3)
    task = {"name": "go", "type": "multi_label", "column": "go_terms", "min_positives": 3}
    assert pt.select_terms(df, task) == ["GO:1", "GO:2", "GO:3"]
    assert pt.select_terms(df, {**task, "min_positives": 6}) == ["GO:1"]
    assert pt.select_terms(df, {**task, "terms": ["GO:2", "GO:4"], "min_positives": 2}) == ["GO:2", "GO:4"]
    metrics, _ = pm.finetune(proteins, splits, task, tiny_encoder, tmp_path / "m", **{**FT, "epochs": 1})
    assert metrics["labels"] == ["GO:1", "GO:2", "GO:3"]
    assert metrics["test"]["n_terms_scored"] == 2  # GO:3 has no test positive: no AUC
    assert metrics["test"]["fmax"] is not None
    counts, problems = pt.label_counts(proteins, splits, {"go": task})
    assert problems == [] and set(counts["label"]) == {"GO:1", "GO:2", "GO:3"}
    _, problems = pt.label_counts(proteins, splits, {"go": {**task, "attribute_terms": ["GO:4"]}})
    assert any("attribute_terms ['GO:4'] are not scored" in p for p in problems)


def test_go_aspect_filter_needs_aspects_in_the_data():
    proteins, splits = toy_data()
    task = {"type": "multi_label", "column": "go_terms", "terms": ["GO:1", "GO:2"], "aspect": "F"}
    _, problems = pt.label_counts(proteins, splits, {"go": task})
    assert len(problems) == 1 and "needs per-term GO aspects in a column 'go_aspects'" in problems[0]
    # with aspects: GO:1 is F, GO:2 is C -> only GO:1 counts for aspect F
    proteins["go_aspects"] = proteins["go_terms"].map(lambda ts: ["F" if t == "GO:1" else "C" for t in ts])
    df = proteins.merge(splits, on="accession")
    sets = pt.go_terms_of(df, task)
    assert all(s <= {"GO:1"} for s in sets) and sum("GO:1" in s for s in sets) == 18
    assert pt.select_terms(df, {**task, "terms": None, "min_positives": 1}) == ["GO:1"]
    labels, y = pm.task_targets(df, task)
    assert labels == ["GO:1", "GO:2"] and y[:, 1].sum() == 0 and y[:, 0].sum() == 18
    proteins.at[0, "go_aspects"] = []
    with pytest.raises(ValueError, match="protein 'P000'"):
        pt.go_terms_of(proteins, task)
