"""Real data sources: downloads from public services and parsers for their local files.

One module per source, each turning what the service (or a local copy) serves into the
tables of :mod:`seqxai.tables`:

- :mod:`.http`        retrying, caching, verifying HTTP fetcher shared by all downloads
- :mod:`.uniprot`     UniProtKB REST search (JSON/TSV, cursor pages), flat files -> proteins,
                      residue_annotations
- :mod:`.structures`  AlphaFold DB / RCSB PDB / local PDB+mmCIF -> contact_maps
- :mod:`.genome`      NCBI efetch or local FASTA -> genome.fasta
- :mod:`.regulondb`   RegulonDB promoter / binding-site / matrix files -> tss, tf_sites, MEME

Every reader counts what it drops and why in a :class:`DropReport`, which the rule scripts
log and write as the data report table.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

log = logging.getLogger("seqxai")

DATA_REPORT_COLUMNS = ["source", "item", "reason", "count", "example"]


@dataclass
class DropReport:
    """Counts of records kept and dropped per (source, reason), with one example id each.

    ``item`` is what is counted ("entry", "feature", "structure", "promoter", "site", ...).
    Kept records are counted under reason "kept".
    """

    source: str
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def keep(self, item: str, n: int = 1) -> None:
        self.counts[(item, "kept")] += n

    def drop(self, item: str, reason: str, record: str = "", n: int = 1, warn: bool = True) -> None:
        key = (item, reason)
        if key not in self.examples and record:
            self.examples[key] = record
        self.counts[key] += n
        if warn and self.counts[key] <= 3:
            # first few of each kind at WARNING with the record named; the total goes to the summary
            log.warning("%s: dropped %s %s: %s", self.source, item, record or "?", reason)

    def merge(self, other: DropReport) -> DropReport:
        for k, v in other.counts.items():
            self.counts[k] += v
        for k, v in other.examples.items():
            self.examples.setdefault(k, v)
        return self

    def n(self, item: str, reason: str = "kept") -> int:
        return self.counts.get((item, reason), 0)

    def to_frame(self) -> pd.DataFrame:
        rows = [
            {
                "source": self.source,
                "item": item,
                "reason": reason,
                "count": int(n),
                "example": self.examples.get((item, reason), ""),
            }
            for (item, reason), n in sorted(self.counts.items())
        ]
        return pd.DataFrame(rows, columns=DATA_REPORT_COLUMNS).astype({"count": "int64"})

    def log_summary(self) -> None:
        for (item, reason), n in sorted(self.counts.items()):
            log.info("%s: %s %s: %d", self.source, item, reason, n)


def report_frame(*reports: DropReport) -> pd.DataFrame:
    """Concatenate several reports into one data report table."""
    frames = [r.to_frame() for r in reports]
    if not frames:
        return pd.DataFrame(columns=DATA_REPORT_COLUMNS)
    return pd.concat(frames, ignore_index=True)
