"""Is the -10 head sequence-driven? Rotary vs Transformer-XL relative encoding, side by side.

Trains a quick 1-layer TSS model on a small demo genome with each position encoding and a
few training seeds, runs the probe with a background of random non-TSS
positions, and prints, for the head the probe reports at the -10 box: its TSS profile at the
peak offset, the background profile at that offset and the background maximum. A positional
head keeps its peak in the background (ratio near 1); a sequence-driven one loses it.
Run: ``.venv/bin/python benchmarks/dna_position_encoding.py [epochs]``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from seqxai.dna_model import train_tss_model  # noqa: E402
from seqxai.synth_dna import make_demo_genome  # noqa: E402
from seqxai.tss_probe import probe_tss_attention  # noqa: E402


def main(epochs: int = 3, seeds=(3, 4, 7)) -> None:
    torch.set_num_threads(1)
    genome, tss, *_ = make_demo_genome({"genome_length": 40000, "n_promoters": 160, "box_mutation_rate": 0.1,
                                        "tfs": []}, seed=5)
    sites = pd.DataFrame(columns=["site_id", "tf", "chrom", "start", "end", "strand"])
    for position, seed in [(p, s) for s in seeds for p in ("rotary", "xl")]:
        mcfg = dict(n_layers=1, n_heads=4, d_model=16, d_head=4, context=48, attn_chunk=32, position=position)
        model, met, _ = train_tss_model(genome, tss, mcfg, dict(epochs=epochs, batch_size=2, lr=0.01, stride=464),
                                        None, seed=seed, device="cpu")
        res = probe_tss_attention(model, genome, tss, sites, {}, dict(n_background=300), seed=1)
        pc = res["summary"]["positive_control"]["minus10"]
        print(f"{position:6s} seed {seed} epochs {epochs}: test PR AUC {met['splits']['test']['pr_auc']:.3f} | -10 head "
              f"L{pc['layer']}H{pc['head']} found={pc['found']} peak {pc['peak_offset']} {pc['consensus']}: "
              f"TSS profile at peak {pc['profile_at_peak']:.3f}, background at peak {pc['background_at_peak']:.3f}, "
              f"background max {pc['background_max']:.3f} at {pc['background_max_offset']} "
              f"(TSS / background-at-peak = {pc['profile_at_peak'] / max(pc['background_at_peak'], 1e-9):.1f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
