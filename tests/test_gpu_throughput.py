"""benchmarks/gpu_throughput.py on the CPU at a tiny shape, so that the GPU script cannot rot
between the tasks that are lent a device (the real run is `python benchmarks/gpu_throughput.py`)."""
import importlib.util
import json

from conftest import ROOT

spec = importlib.util.spec_from_file_location("gpu_throughput", ROOT / "benchmarks" / "gpu_throughput.py")
gt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gt)


def forward_matmul_flops(layers, hidden, intermediate, tokens, n_outputs=8):
    """Matmul FLOPs of one sequence's forward pass through the encoder and the pooled head:
    Q, K, V, O (4 h x h), the two feed-forward maps (h x i), QK^T and AV (T x T x h), 2 per MAC."""
    per_layer = 2 * tokens * hidden * 4 * hidden + 2 * 2 * tokens * hidden * intermediate + 2 * 2 * tokens ** 2 * hidden
    return layers * per_layer + 2 * 4 * hidden * n_outputs


def test_tiny_run_counts_flops_and_memory_and_writes_every_field(tmp_path):
    out = tmp_path / "t.json"
    gt.main(["--shapes", "tiny", "--device", "cpu", "--tokens", "64", "--batch", "2", "--steps", "1",
             "--ig-steps", "4", "--path-batch", "2", "--repeats", "1", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["device_type"] == "cpu" and res["peak_tflops"] is None
    (row,) = res["shapes"]
    ft = row["finetune"]
    # a training step's matmuls: forward + 2x forward in the backward pass, exactly
    assert ft["matmul_flops_per_step"] == 3 * 2 * forward_matmul_flops(2, 32, 64, 64)
    assert ft["proteins_per_s"] > 0 and ft["bf16"] is False
    assert ft["estimate_gib"] > 0 and ft["peak_memory_gib"] >= 0
    jvp, poly, diff = row["attribution"]
    assert (jvp["mode"], poly["mode"], diff["mode"]) == ("jvp", "polynomial", "difference")
    # the exact mode adds a forward-mode pass per batch of nodes; the polynomial and difference
    # modes do not (polynomial: the same 4 nodes plus the stencil matmuls, difference: 4 points)
    assert jvp["matmul_flops_per_protein"] > poly["matmul_flops_per_protein"] > 0
    assert jvp["matmul_flops_per_protein"] > diff["matmul_flops_per_protein"] > 0
    assert min(a["proteins_per_s"] for a in row["attribution"]) > 0


def test_shapes_past_the_time_budget_are_skipped_and_said(tmp_path):
    out = tmp_path / "t.json"
    gt.main(["--shapes", "tiny", "esm2_650M", "--device", "cpu", "--max-seconds", "0", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["shapes"] == [{"shape": "tiny", "skipped": True}, {"shape": "esm2_650M", "skipped": True}]


def test_paper_shapes_have_the_published_parameter_counts():
    """Built on the meta device (no memory): the encoders without their LM heads hold just under
    the published totals (facebook/esm2_t33_650M_UR50D: 651.0M with the LM head;
    Rostlab/prot_bert_bfd: 420M with pooler and LM head)."""
    import torch

    counts = {}
    for shape in ("esm2_650M", "protbert_bfd"):
        with torch.device("meta"):
            model, _pad, _range = gt.build(*gt.SHAPES[shape], 1022)
        counts[shape] = sum(p.numel() for p in model.encoder.parameters())
    assert 647e6 < counts["esm2_650M"] < 651.1e6
    assert 416e6 < counts["protbert_bfd"] < 420.1e6
