"""Memory of the TSS probe: dense T x T attention vs the attention rows the probe needs.

Prints the analytic size of one layer's attention tensor at the paper's probe size
(config/config.yaml: 6 layers, 6 heads, context 511 -> T = 3,103 keys, batch 32) and the
peak resident memory measured, in fresh subprocesses, for one probe batch of a smaller model
run both ways (dense matrices sliced afterwards, as before, vs rows only). Ratios, not
absolute times or sizes, are the point; run: ``.venv/bin/python benchmarks/dna_probe_memory.py``.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import resource, sys, json
sys.path.insert(0, {scripts!r})
import torch
from seqxai.dna_model import build_model
from seqxai.tss_profiles import probe_window
torch.set_num_threads(1)
cfg = json.loads({cfg!r})
model = build_model(cfg).eval()
Wp, _ = probe_window(model.config)
x = torch.randint(0, 4, ({batch}, Wp))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    if {dense}:
        _, a = model(x, return_attention=True)
        rows = a[:, :, :, -1:, :]
    else:
        _, rows = model(x, return_attention=True, attention_queries=[Wp - 1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"Wp": Wp, "peak_mib": (peak - base) / 1024, "rows_shape": list(rows.shape)}}))
"""


def measure(cfg: dict, batch: int, dense: bool) -> dict:
    code = CHILD.format(scripts=str(ROOT / "scripts"), cfg=json.dumps(cfg), batch=batch, dense=dense)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    L, H, C, B = 6, 6, 511, 32
    T = L * (C + 7 - 1) + 1
    dense_gb = B * H * T * T * 4 / 1e9
    rows_mb = B * H * T * 4 / 1e6
    print(f"paper probe (T={T}, batch {B}, {H} heads, float32) per layer: dense attention {dense_gb:.2f} GB, "
          f"rows only {rows_mb:.2f} MB (ratio {dense_gb * 1e3 / rows_mb:.0f}x)")
    cfg = dict(n_layers=2, n_heads=6, d_model=32, d_head=32, context=511, attn_chunk=64)
    d = measure(cfg, 8, True)
    r = measure(cfg, 8, False)
    print(f"measured, 2 layers x 6 heads, context 511 (T={d['Wp']}), batch 8: peak RSS increase dense "
          f"{d['peak_mib']:.0f} MiB, rows only {r['peak_mib']:.0f} MiB (ratio {d['peak_mib'] / max(r['peak_mib'], 1):.1f}x)")


if __name__ == "__main__":
    main()
