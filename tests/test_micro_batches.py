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
