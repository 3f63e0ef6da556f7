"""Rule plot_attention_probe: the Vig et al. figures (heatmaps, top heads, layer trend,
BLOSUM62 scatter) and the contact example of the Rao et al. regression."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import attention_probe_plots  # noqa: E402
from seqxai.io import read_json, read_table  # noqa: E402
from seqxai.share_denominators import select_denominator  # noqa: E402

model = sm.wildcards.model
# the configured denominator (provis or resolved pairs only) under the plain column names
probe = select_denominator(read_table(sm.input.probe), sm.params.share_denominator)
attention_probe_plots.attention_probe(probe, sm.output.figure, model)
attention_probe_plots.attention_top_heads(probe, sm.output.top_heads, model)
attention_probe_plots.attention_layer_trend(read_table(sm.input.trend), probe, sm.output.layer_trend, model)
attention_probe_plots.blosum_scatter(read_table(sm.input.blosum), sm.output.blosum, model)
attention_probe_plots.contact_example(read_json(sm.input.summary).get("example"),
                                      read_table(sm.input.contacts), sm.output.contacts, model)
