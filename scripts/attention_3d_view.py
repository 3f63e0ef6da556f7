"""Rule attention_3d_view: the example protein's structure with the best contact head's
strongest attention drawn as lines (standalone HTML, py3Dmol)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.structure_view import run_attention_view  # noqa: E402

run_attention_view(sm.input.summary, sm.input.quality, sm.params.folders, sm.output.html,
                   top=sm.params.top, viewer_js=sm.params.viewer_js)
