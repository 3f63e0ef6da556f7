"""Shared test set-up: the library under scripts/ is importable, small models are built once."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A randomly initialised 2-layer, 4-head ESM-style encoder with its tokenizer."""
    import torch

    from seqxai.protein_model import build_demo_encoder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "enc"
    build_demo_encoder({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "intermediate_size": 64, "max_position_embeddings": 128,
                        "position_embedding_type": "absolute"}, path)
    return path


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """The rule functions set torch's thread count from their `threads` argument (as a job
    should); in a test process that setting outlived the test, and the next in-process training
    ran with 2+ threads on a loaded 2-core machine: one 4 s test took 182 s in the suite. Each
    test starts and ends with the thread count the worker began with."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(before or int(os.environ.get("OMP_NUM_THREADS", 1)))


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the real data and model live only on developer machines and CI")
    return SHARED


# The end-to-end workflow tests, slowest first: collected before the rest so that, with
# `pytest -n 2 --dist loadfile` (make test), the two workers start on them and they overlap.
# Their waits are sized for a loaded machine, not a quiet one: on 2 cores at a load average of ~25
# the demo and real-data fixtures ran past 1,200 s and the SLURM one past 900 s with no error.
# A hung run still ends, after WORKFLOW_TIMEOUT seconds (env SEQXAI_WORKFLOW_TIMEOUT).
WORKFLOW_TIMEOUT = int(os.environ.get("SEQXAI_WORKFLOW_TIMEOUT", 3600))
SLOW_FIRST = ["test_workflow_demo.py", "test_real_local_workflow.py", "test_reruns.py", "test_slurm.py",
              "test_controls_workflow.py", "test_real_finetune.py", "test_scale_rehearsal.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: file order kept
    for item in items:  # pytest-timeout counts fixture set-up too: the whole workflow run
        if item.path.name in rank:
            item.add_marker(pytest.mark.timeout(WORKFLOW_TIMEOUT))


def tiny_bert(path):
    """A randomly initialised 3-layer, 4-head BERT with a ProtBert-style vocabulary and tokenizer,
    saved to ``path`` (tests of attribution and attribution methods)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("LAGVESIKRDTPNQFYMHCWXUBZO")
    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=128),
              add_pooling_layer=False).save_pretrained(path)
    BertTokenizer(str(path / "vocab.txt"), do_lower_case=False).save_pretrained(path)
    return path


TINY_SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"


@pytest.fixture(scope="module")
def clf(tiny_encoder):
    """(model, tok, ids, att, base): a 3-class classifier on the tiny ESM encoder with a
    non-trivial head, one encoded protein and its IG baseline (attribution tests)."""
    import torch

    from seqxai import attribution as at
    from seqxai import protein_model as pm

    torch.manual_seed(1)
    model, tok = pm.make_classifier(tiny_encoder, 3, dropout=0.0)
    # Non-trivial head so the logits depend on the input.
    torch.nn.init.normal_(model.head.weight, std=0.5)
    model.eval()
    enc = pm.encode(tok, [TINY_SEQ], 64)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    base = at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
    return model, tok, ids, att, base
