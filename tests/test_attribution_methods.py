"""AttnLRP, gradient x input and attention rollout: conservation, the shard layout, rollout by hand."""
import numpy as np
import pytest
import torch
from conftest import tiny_bert

from seqxai import attribution as at
from seqxai import attribution_methods as am
from seqxai import protein_model as pm
from seqxai.attnlrp import attnlrp, attnlrp_rules

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"
#: |F(x) - (R_emb + R_bias + R_softmax)| <= CONSERVATION_TOL * (|R_emb| + |R_bias| + |R_softmax|)
#: (float32 rounding of a sum of ~10^3 terms; a wrong rule factor misses by > 1e-2)
CONSERVATION_TOL = 1e-4


def _esm(path, **spec):
    torch.manual_seed(0)
    base = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": 128}
    return pm.build_demo_encoder({**base, **spec}, path)


ENCODERS = {
    # the demo's encoder (config/demo.yaml: rotary positions)
    "demo": lambda p: _esm(p, hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                           position_embedding_type="rotary"),
    "esm": lambda p: _esm(p, position_embedding_type="absolute"),  # ESM-1b style positions
    "bert": tiny_bert,
}


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def model_input(request, tmp_path_factory):
    """(model, tok, ids, att, base): random weights, every bias non-zero (its share is counted)."""
    path = ENCODERS[request.param](tmp_path_factory.mktemp(request.param) / "enc")
    model, tok = pm.make_classifier(path, 3, dropout=0.0)
    torch.manual_seed(1)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.normal_(p, std=0.1)
    model.eval()
    enc = pm.encode(tok, [SEQ], 64)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    return model, tok, ids, att, at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)


class _Softmax(torch.autograd.Function):
    """softmax with its plain gradient that records the relevance the AttnLRP softmax rule absorbs:
    (relevance at the attention weights) - (relevance at the scores), the former halved by the
    uniform rule of the attention-value product."""

    @staticmethod
    def forward(ctx, x, dim, record, index):
        s = torch.softmax(x, dim)
        ctx.save_for_backward(x, s)
        ctx.dim, ctx.record, ctx.index = dim, record, index
        return s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        g_in = s * (g - (s * g).sum(ctx.dim, keepdim=True))
        finite = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
        ctx.record[ctx.index] = float(((s * g).sum() - (finite * g_in).sum()) / 2)
        return g_in, None, None, None


class _Ledger(dict):
    """{softmax call index in the forward pass (= layer): absorbed relevance}."""

    def clear(self):
        super().clear()
        self.calls = 0


@pytest.fixture
def softmax_ledger(monkeypatch):
    """A :class:`_Ledger` filled by the backward pass of every softmax."""
    record = _Ledger()
    record.clear()

    def softmax(x, dim=None, **_):
        record.calls += 1
        return _Softmax.apply(x, dim, record, record.calls - 1)

    monkeypatch.setattr(torch.nn.functional, "softmax", softmax)
    return record


def test_attnlrp_conserves_the_logit(model_input, softmax_ledger):
    """F(x) = sum R_emb + R_bias + R_softmax at the embedding, and at every layer output with the
    biases and softmaxes after it; the per-head table has one value per head and token."""
    model, tok, ids, att, _ = model_input
    n_layers = model.encoder.config.num_hidden_layers
    for target in range(3):
        softmax_ledger.clear()
        r = attnlrp(model, ids, att, target)
        absorbed = np.array([softmax_ledger[l] for l in range(n_layers)])
        parts = [r["embedding"].sum(), r["f_baseline"], absorbed.sum()]
        assert abs(r["f_input"] - sum(parts)) <= CONSERVATION_TOL * sum(abs(p) for p in parts)
        assert r["delta"] == pytest.approx(-absorbed.sum(), abs=CONSERVATION_TOL * sum(abs(p) for p in parts))
        # layer l's output: only the softmaxes of layers after l remain to absorb
        for l in range(n_layers):
            assert r["layer_delta"][l] == pytest.approx(-absorbed[l + 1 :].sum(), abs=1e-4)
        assert r["heads"].shape == (n_layers, model.encoder.config.num_attention_heads, len(ids))
        assert np.isfinite(r["heads"]).all() and np.abs(r["heads"]).sum() > 0


def test_attnlrp_keeps_the_forward_and_the_model(model_input):
    """The rules change the backward pass only, and leave no hook behind."""
    model, tok, ids, att, _ = model_input
    with torch.no_grad():
        before = model(ids[None], att[None])
        with attnlrp_rules(model.encoder):
            patched = model(ids[None], att[None])
        after = model(ids[None], att[None])
    assert torch.equal(before, patched) and torch.equal(before, after)
    assert attnlrp(model, ids, att, 0)["f_input"] == pytest.approx(float(before[0, 0]), rel=1e-6)
    assert not any(m._forward_hooks for m in model.modules())


def test_attnlrp_differs_from_plain_gradient_x_input(model_input):
    """Without the rules gradient x input double-counts the bilinear products: the rules matter."""
    model, tok, ids, att, _ = model_input
    lrp = attnlrp(model, ids, att, 1, layers=False)["embedding"]
    store = {}

    def grab(o):
        store["e"] = o.detach().requires_grad_(True)
        return store["e"]

    with at._hooks(model, grab, lambda l, o: None):
        logit = model(ids[None], att[None])[0, 1]
    plain = (store["e"] * torch.autograd.grad(logit, store["e"])[0]).sum(-1)[0].detach().numpy()
    assert not np.allclose(lrp, plain, rtol=1e-3, atol=1e-5)


def test_grad_x_input_by_hand(model_input):
    """(e - e') dF/de at the input, and the same at each layer output; special tokens get 0."""
    model, tok, ids, att, base = model_input
    r = am.grad_x_input(model, ids, att, 2, base)
    ig1 = at.integrated_gradients(model, ids, att, 2, base, n_steps=1, conductance="difference")
    # the difference scheme with one node takes the gradient at the baseline; ours at the input
    assert r["f_input"] - r["f_baseline"] == pytest.approx(ig1["f_input"] - ig1["f_baseline"], rel=1e-5)
    store = {}

    def grab(o):
        store["e"] = o.detach().requires_grad_(True)
        return store["e"]

    with at._hooks(model, grab, lambda l, o: None):
        logit = model(ids[None], att[None], **{k: v for k, v in {
            "residue_mask": model.residue_mask(ids[None], att[None]),
            "position_ids": model.position_ids(ids[None])}.items() if v is not None})[0, 2]
    g = torch.autograd.grad(logit, store["e"])[0]
    with at._hooks(model, lambda o: store.__setitem__("e0", o.detach()), lambda l, o: None), torch.no_grad():
        model(base[None], att[None], position_ids=model.position_ids(ids[None]),
              residue_mask=model.residue_mask(ids[None], att[None]))
    expect = ((store["e"].detach() - store["e0"]) * g).sum(-1)[0].numpy()
    np.testing.assert_allclose(r["embedding"], expect, rtol=1e-5, atol=1e-7)
    assert r["embedding"][0] == 0 and r["embedding"][-1] == 0
    assert r["heads"].shape[:2] == (model.encoder.config.num_hidden_layers,
                                    model.encoder.config.num_attention_heads)


def test_rollout_by_hand():
    """Two layers, one head, two tokens: (0.5 A + 0.5 I) per layer, multiplied top-down."""
    a0 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    a1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    attn = torch.stack([a0, a1])[:, None]  # [layer, head, q, k]
    r0 = torch.tensor([[0.75, 0.25], [0.0, 1.0]])
    r1 = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    torch.testing.assert_close(am.rollout(attn), r1 @ r0)
    two_heads = torch.cat([attn, torch.stack([torch.eye(2), torch.eye(2)])[:, None]], 1)
    half = torch.stack([0.5 * a0 + 0.5 * torch.eye(2), 0.5 * a1 + 0.5 * torch.eye(2)])[:, None]
    torch.testing.assert_close(am.rollout(two_heads), am.rollout(half))


def test_attention_rollout_of_a_model(model_input):
    model, tok, ids, att, base = model_input
    r = am.attention_rollout(model, ids, att, 0)
    assert r["embedding"].shape == (len(ids),) and r["embedding"].sum() == pytest.approx(1.0, rel=1e-5)
    assert (r["embedding"] >= 0).all() and np.isnan(r["delta"]) and "heads" not in r


def test_unknown_method_is_refused(model_input):
    model, tok, ids, att, base = model_input
    with pytest.raises(ValueError, match="attribution.methods: 'lrp'"):
        am.attribute("lrp", model, ids, att, 0, base)


@pytest.mark.parametrize("method", ["attnlrp", "grad_x_input", "attention_rollout"])
def test_shard_tables_per_method(method, tmp_path):
    """Every method writes the IG shard layout; the gather takes it unchanged."""
    import pandas as pd

    from seqxai.attribution_shards import run_attribution_shard
    from seqxai.attribution_tables import EMBEDDING_COLUMNS, HEAD_COLUMNS, gather_attributions, shard_tables
    from seqxai.io import read_table

    model, tok = pm.make_classifier(ENCODERS["esm"](tmp_path / "enc"), 3, dropout=0.0)
    meta = {"task": {"type": "single_label", "column": "ec_class"}, "labels": ["1", "2", "3"],
            "max_length": 64}
    pm.save_classifier(model, tok, meta, tmp_path / "model")
    seqs = [SEQ, SEQ[:9], SEQ[5:]]
    proteins = pd.DataFrame({"accession": [f"P{i}" for i in range(3)], "sequence": seqs,
                             "length": [len(s) for s in seqs], "ec": "1.1.1.1",
                             "ec_class": ["1", "2", "3"], "go_terms": [[]] * 3, "organism_id": 9606})
    proteins.to_parquet(tmp_path / "proteins.parquet")
    pd.DataFrame({"accession": proteins["accession"], "split": "test",
                  "cluster": proteins["accession"]}).to_parquet(tmp_path / "splits.parquet")
    params = {"n_steps": 4, "split": "test", "max_proteins": None, "layers": True, "method": method}
    folders = [tmp_path / f"shard{s}" for s in range(2)]
    for s, folder in enumerate(folders):
        run_attribution_shard(tmp_path / "model", tmp_path / "proteins.parquet", tmp_path / "splits.parquet",
                              params, s, 2, folder, device="cpu")
    out = [tmp_path / "gathered" / f for f in ("embedding.parquet", "heads.parquet", "convergence.parquet")]
    gather_attributions(shard_tables(folders, "embedding", "finetuned"),
                        shard_tables(folders, "heads", "finetuned"), *out, 0.05)
    emb, heads = read_table(out[0]), read_table(out[1])
    assert list(emb.columns[: len(EMBEDDING_COLUMNS)]) == EMBEDDING_COLUMNS
    assert sorted(emb["accession"]) == ["P0", "P1", "P2"]
    assert (emb["relevance"].map(len) == emb["n_residues"]).all()
    if method == "attention_rollout":
        assert len(heads) == 0 and list(heads.columns) == HEAD_COLUMNS
    else:
        assert len(heads) == 3 * 3 * 4 and list(heads.columns) == HEAD_COLUMNS


def test_dag_has_one_shard_job_per_task_shard_and_method(tmp_path):
    """attribution.methods adds its shard and gather jobs beside integrated gradients', whose
    jobs and paths stay as they are, and the faithfulness benchmark's jobs."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    extra = tmp_path / "methods.yaml"
    extra.write_text("attribution:\n  methods: [ig, attnlrp, grad_x_input]\n")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                          "config/demo.yaml", str(extra), "--config", f"outdir={tmp_path / 'out'}"],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout, re.M))
    # demo: 2 tasks x 2 shards; one variant (finetuned)
    assert counts["attribute_proteins"] == "4" and counts["gather_attributions"] == "2"
    assert counts["attribute_proteins_method"] == "8" and counts["gather_attributions_method"] == "4"
    assert "attribution/ec/attnlrp/finetuned/heads.parquet" in res.stdout
    assert "attribution/go/grad_x_input/shards/2-of-2" in res.stdout
    # two or more methods: the faithfulness benchmark, per task one job and one figure, on the
    # head statistics of each method other than IG (the default [ig] has none: the demo's count)
    assert counts["head_statistics_method"] == "4" and counts["faithfulness"] == "2"
    assert counts["plot_faithfulness"] == "2" and "figures/ec_faithfulness.png" in res.stdout
    assert "analysis/protein/go/grad_x_input/finetuned/head_statistics.parquet" in res.stdout


def test_attnlrp_counts_frozen_biases_and_leaves_them_frozen(model_input):
    """A frozen encoder (the frozen control) gets the same relevance and keeps requires_grad off."""
    model, tok, ids, att, _ = model_input
    ref = attnlrp(model, ids, att, 0)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    try:
        r = attnlrp(model, ids, att, 0)
        assert not any(p.requires_grad for p in model.encoder.parameters())
    finally:
        for p in model.encoder.parameters():
            p.requires_grad_(True)
    assert r["f_baseline"] == pytest.approx(ref["f_baseline"], rel=1e-6)
    np.testing.assert_allclose(r["embedding"], ref["embedding"], rtol=1e-6)
