"""seqxai.allocator: torch rule jobs keep freed memory (no page faults on every batch)."""
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

# A fresh process (glibc's malloc settings are per process), set up as a rule script is:
# keep_freed_memory() first, then torch. Exact all-layer IG of a small random encoder over a
# 402-token protein, 25 nodes in one batch (attention tensors of 64 MB): two warm-up runs,
# then the minor page faults of two more.
CHILD = f"""
import json, resource, sys, tempfile
sys.path.insert(0, {str(SCRIPTS)!r})
from seqxai.allocator import keep_freed_memory
kept = keep_freed_memory()
import torch
torch.set_num_threads(1)
from seqxai import attribution as at
from seqxai import protein_model as pm
torch.manual_seed(0)
with tempfile.TemporaryDirectory() as d:
    pm.build_demo_encoder({{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "intermediate_size": 64, "max_position_embeddings": 1024,
                           "position_embedding_type": "absolute"}}, d + "/enc")
    model, tok = pm.make_classifier(d + "/enc", 3, dropout=0.0)
model.eval()
enc = pm.encode(tok, ["ACDEFGHIKLMNPQRSTVWY" * 20], 1024)
ids, att = enc["input_ids"][0], enc["attention_mask"][0]
base = at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    at.integrated_gradients(model, ids, att, 0, base, 25, 25)
before = faults()
for _ in range(2):
    at.integrated_gradients(model, ids, att, 0, base, 25, 25)
print(json.dumps({{"kept": kept, "faults": faults() - before}}))
"""


def _child(mode):
    env = {**os.environ, "SEQXAI_MALLOC": mode}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc's mallopt: Linux only")
def test_freed_memory_is_kept_so_large_tensors_are_not_page_faulted_again():
    """With the jobs' set-up the freed blocks are reused (measured: 0 to 20,600 faults over the two runs); with
    SEQXAI_MALLOC=system glibc unmaps them and each run faults them in again (measured:
    about 285,000 pages per run)."""
    kept, system = _child("keep"), _child("system")
    assert kept["kept"] and not system["kept"]
    assert system["faults"] > 2 * 100_000
    assert kept["faults"] < 0.1 * system["faults"]   # 0 to 3.5 % measured


def test_the_attribution_shard_script_keeps_freed_memory_before_importing_torch():
    """The call only works before torch starts (docs/performance.md): the protein attribution
    shard script calls it before its first library import (every library module that runs a
    model imports torch at its top). Only that job uses it: the demo's DNA AttnLRP job peaked
    above 3 GB with it (3,134 MB) and the speed was measured for the exact pass only."""
    text = (SCRIPTS / "attribute_proteins.py").read_text()
    call = text.index("keep_freed_memory()")
    first_library_import = re.search(r"^from seqxai\.(?!io |allocator )", text, flags=re.M).start()
    assert call < first_library_import
