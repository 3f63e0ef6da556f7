"""Rule library_fingerprint: SHA-256 of the seqxai modules one rule script can import."""
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai._deps import write_fingerprint  # noqa: E402

rows = write_fingerprint(sm.input.modules, sm.output[0], root=Path(sm.scriptdir))
logging.getLogger("seqxai.code").info("%s: %d library modules, %d bytes", sm.wildcards.script, len(rows),
                                      sum(r[2] for r in rows))
