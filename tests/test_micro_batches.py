"""Micro-batch planning: the memory estimate by hand and against the published formula."""
import math
from types import SimpleNamespace

import pytest

from seqxai import micro_batches as mb


def test_layer_estimate_is_korthikanti_at_16_bit_and_4h_mlp():
    # Korthikanti et al. 2022, section 4.1: s h (34 + 5 a s / h) bytes per layer and sequence
    for s, h, a in [(512, 320, 20), (1000, 1024, 16), (7, 8, 2)]:
        got = mb.layer_activation_bytes(s, h, a, 4 * h, act_bytes=2, fp32_bytes=2)
        assert got == s * h * 34 + 5 * a * s * s
    # fp32, MLP width 2h, by hand: s=10, h=4, a=2, I=8
    # 4 * (6*40 + 2*80) + 2*4*40 + 2*40 + (2*4 + 1)*2*100 = 1600 + 320 + 80 + 1800
    assert mb.layer_activation_bytes(10, 4, 2, 8, act_bytes=4) == 3800
    # bf16 autocast: 2 * 400 + 320 + 80 + 1800 + the bf16 copy of the probabilities 2*2*100
    assert mb.layer_activation_bytes(10, 4, 2, 8, act_bytes=2) == 3400


def test_sequence_and_fixed_bytes_by_hand():
    cfg = SimpleNamespace(num_hidden_layers=2, hidden_size=4, num_attention_heads=2,
                          intermediate_size=8)
    # (2 + 1) layers x 3800 + 10 tokens x (4 * 4 * 4 + 8 * 33)
    assert mb.sequence_bytes(cfg, 10, 4, vocab=33) == 3 * 3800 + 10 * (64 + 264)
    assert mb.sequence_bytes(cfg, 10, 4, train_encoder=False) == 3800 + 10 * 64
    assert mb.fixed_bytes(1000, 1000) == 16_000 and mb.fixed_bytes(1000, 10, bf16_copy=True) == 6120
    assert mb.fixed_bytes(1000, 1000, best_copy=True) == 20_000  # fine-tuning's best weights


def test_plan_keeps_the_effective_batch():
    # no budget: the configured batch size, accumulation to reach the effective batch
    assert mb.plan(64, 10, 0, None, fallback=1) == (1, 64)
    assert mb.plan(8, 10, 0, None, fallback=16) == (8, 1)
    # budget: 0.9 * 1000 - 100 = 800 bytes of room, 300 per sequence -> 2 per micro-batch
    assert mb.plan(64, 300, 100, 1000, fallback=1) == (2, 32)
    assert mb.plan(7, 300, 100, 1000, fallback=1) == (2, 4)  # 2 + 2 + 2 + 1
    assert mb.plan(4, 1, 0, 10 ** 9, fallback=1) == (4, 1)  # never above the effective batch
    assert mb.plan(64, 10 ** 9, 0, 1000, fallback=1) == (1, 64)  # not even one fits: 1, warned
    assert mb.budget_bytes(None, "cpu") is None and mb.budget_bytes("auto", "cpu") is None
    assert mb.budget_bytes(1.5, "cpu") == int(1.5 * 2 ** 30)
    with pytest.raises(ValueError, match="max_memory_gb must be > 0"):
        mb.budget_bytes(0, "cpu")
    assert [(c.start, c.stop) for c in mb.chunks(7, 3)] == [(0, 3), (3, 6), (6, 7)]
    assert math.ceil(7 / 3) == len(list(mb.chunks(7, 3)))


def test_attribution_row_estimate_by_hand():
    cfg = SimpleNamespace(num_hidden_layers=2, hidden_size=4, num_attention_heads=2,
                          intermediate_size=8)
    acts = 3 * 3800 + 10 * 64  # sequence_bytes at fp32 (above), 10 tokens
    kept = 4 * 4 * 10 * 4 * 2  # context and layer output: tangent + gradient, fp32, 2 layers
    assert mb.attribution_row_bytes(cfg, 10) == int(1.3 * acts) + kept  # jvp: tangents beside activations
    assert mb.attribution_row_bytes(cfg, 10, conductance="difference") == acts + kept
    assert mb.attribution_row_bytes(cfg, 10, layers=False) == acts
    # polynomial: a row as in difference mode with four copies of what it keeps; the pass holds
    # 3 stencils of points, or all 2 n + 2 points and nodes when fewer
    assert mb.attribution_row_bytes(cfg, 10, conductance="polynomial") == acts + 4 * kept
    per_point = 4 * 2 * 10 * 4 * 2  # context and layer output, fp32, 10 tokens, hidden 4, 2 layers
    assert mb.path_store_bytes(cfg, 10, 500, conductance="polynomial") == 48 * per_point
    assert mb.path_store_bytes(cfg, 10, 8, conductance="polynomial") == 18 * per_point
    assert mb.path_store_bytes(cfg, 10, 500) == mb.path_store_bytes(cfg, 10, 500, False, "polynomial") == 0


def test_the_estimate_knows_the_attribution_stencil():
    from seqxai import attribution as at

    assert mb.PATH_STENCIL == at.PATH_STENCIL


def test_attribution_estimate_at_paper_size():
    """ProtBert-BFD at 1,000 tokens (the Wenzel presets): ~6.1 GiB of training activations per
    row, ~8.4 GiB per exact-conductance row, so batch 25 would ask ~210 GiB; what fits."""
    bfd = SimpleNamespace(num_hidden_layers=30, hidden_size=1024, num_attention_heads=16,
                          intermediate_size=4096)
    row = mb.attribution_row_bytes(bfd, 1000)
    assert 5.9 < mb.sequence_bytes(bfd, 1000, 4) / mb.GIB < 6.2 and 8.2 < row / mb.GIB < 8.6
    weights = 4 * 420_000_000
    assert mb.plan(500, row, weights, 80 * mb.GIB, 25)[0] == 8
    assert mb.plan(500, row, weights, 141 * mb.GIB, 25)[0] == 14


def _model_folder(path, hidden=4, layers=2, max_length=10, weight_bytes=1000):
    import json

    (path / "encoder").mkdir(parents=True)
    (path / "encoder" / "config.json").write_text(json.dumps(
        {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": 2,
         "intermediate_size": 2 * hidden}))
    (path / "encoder" / "model.safetensors").write_bytes(b"\0" * weight_bytes)
    (path / "seqxai_model.json").write_text(json.dumps({"max_length": max_length}))
    return path


def test_attribution_job_memory_follows_the_estimate(tmp_path):
    big = _model_folder(tmp_path / "big", hidden=64, layers=4, max_length=500, weight_bytes=2 ** 20)
    row = mb.attribution_row_bytes(SimpleNamespace(num_hidden_layers=4, hidden_size=64,
                                                   num_attention_heads=2, intermediate_size=128), 500)
    host = mb.HOST_OVERHEAD_MB + 2  # overhead + the weights twice
    # on a GPU the host holds the weights only
    assert mb.attribution_job_mb([big], 500, 25, "auto", "auto", floor_mb=0) == host
    assert mb.attribution_job_mb([big], 500, 25, None, "cuda", floor_mb=0) == host
    # on the CPU the path batch instead of the loading copy (the larger of the two): batch_size
    # rows, or what the budget fits
    assert mb.attribution_job_mb([big], 500, 25, None, "cpu", floor_mb=0) == math.ceil(host - 1 + 25 * row / 2 ** 20)
    fit = mb.plan(500, row, 2 ** 20, 1 * mb.GIB, 25)[0]
    assert 1 < fit < 25
    assert mb.attribution_job_mb([big], 500, 25, 1, "auto", floor_mb=0) == math.ceil(host - 1 + fit * row / 2 ** 20)
    # a batch smaller than the weights: the loading copy sets the peak
    heavy = _model_folder(tmp_path / "heavy", hidden=4, layers=1, max_length=4, weight_bytes=64 * 2 ** 20)
    assert mb.attribution_job_mb([heavy], 2, 1, None, "cpu", floor_mb=0) == mb.HOST_OVERHEAD_MB + 128
    # the largest of the variants' models, never below the floor
    small = _model_folder(tmp_path / "small")
    assert mb.attribution_job_mb([small, big], 500, 25, None, "cpu", floor_mb=0) == \
        mb.attribution_job_mb([big], 500, 25, None, "cpu", floor_mb=0)
    assert mb.attribution_job_mb([small], 500, 25, None, "cpu") == 4000


def test_path_batch_fits_the_budget(tiny_encoder):
    from seqxai import protein_model as pm

    model, _tok = pm.make_classifier(tiny_encoder, 3, dropout=0.0)
    row = mb.attribution_row_bytes(model.encoder.config, 100)
    fixed = 4 * sum(p.numel() for p in model.parameters())
    budget = int((fixed + 7.5 * row) / 0.9)  # room for 7 rows
    assert mb.path_batch_for(model, 100, 500, 25, None, "cpu", budget=budget) == 7
    assert mb.path_batch_for(model, 100, 5, 25, None, "cpu", budget=budget) == 5  # n_steps caps it
    assert mb.path_batch_for(model, 100, 500, 25, None, "cpu") == 25  # no budget: batch_size
    # difference mode keeps no tangents: more rows fit the same budget
    assert mb.path_batch_for(model, 100, 500, 25, None, "cpu", budget=budget, conductance="difference") > 7


def _encoder_folder(path, hidden=64, layers=4, weight_bytes=4 * 10 ** 6):
    import json

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(
        {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": 2,
         "intermediate_size": 2 * hidden}))
    (path / "model.safetensors").write_bytes(b"\0" * weight_bytes)
    return path


def test_finetuning_job_memory_follows_the_estimate(tmp_path):
    """finetune_protein's mem_mb: on a GPU the loading copy only; on the CPU training (the
    encoder's Adam state only when it trains, the micro-batch the plan picks) or the end of
    training (3 copies of the weights), whichever is larger; never below the floor."""
    w, n = 4 * 10 ** 7, 10 ** 7
    enc = _encoder_folder(tmp_path / "enc", weight_bytes=w)
    cfg = SimpleNamespace(num_hidden_layers=4, hidden_size=64, num_attention_heads=2, intermediate_size=128)
    mib = 2 ** 20

    def job(**kw):
        args = dict(max_length=200, batch_size=4, accumulation=2, max_memory_gb=None, device="cpu",
                    train_encoder=True, floor_mb=0)
        return mb.finetune_job_mb(enc, **{**args, **kw})

    trained = mb.fixed_bytes(n, n, best_copy=True) + 4 * mb.sequence_bytes(cfg, 200, act_bytes=4)
    assert job() == math.ceil((mb.HOST_OVERHEAD_MB * mib + trained) / mib)
    # a frozen encoder keeps no Adam state and one layer of activations: the end of training
    # (weights, best copy, the save's copy) sets the peak
    frozen = mb.fixed_bytes(n, 0, best_copy=True) + 4 * mb.sequence_bytes(cfg, 200, 4, train_encoder=False)
    assert frozen < 3 * w
    assert job(train_encoder=False) == math.ceil((mb.HOST_OVERHEAD_MB * mib + 3 * w) / mib)
    # a budget sets the micro-batch (one fits 0.22 GiB, the whole effective batch of 8 fits
    # 0.3), a given micro-batch is taken as it is
    assert job(max_memory_gb=0.22) < job() < job(max_memory_gb=0.3) == job(micro_batch=8)
    assert job(micro_batch=1) == job(max_memory_gb=0.22)
    # on a GPU (or auto with max_memory_gb auto) the host holds the loading copy only
    gpu = math.ceil((mb.HOST_OVERHEAD_MB * mib + 2 * w) / mib)
    assert job(device="cuda") == job(device="auto", max_memory_gb="auto") == gpu
    assert job(device="auto") == job()  # auto without a GPU budget plans for the CPU
    assert mb.finetune_job_mb(enc, 200, 4, 2, None, "cuda", True) == 8000  # the floor
    # a folder that cannot be sized (a stand-in, a truncated config) gets the floor
    (enc / "config.json").write_text("{}")
    assert job() == 0 and mb.finetune_job_mb(enc, 200, 4, 2, None, "cpu", True) == 8000
    (enc / "config.json").write_text("stand-in")
    assert mb.finetune_job_mb(enc, 200, 4, 2, None, "cpu", True) == 8000
