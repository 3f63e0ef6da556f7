"""Secondary structure per residue (DSSP, via pydssp) for the attention probe.

pydssp assigns the three DSSP classes from backbone hydrogen bonds: ``H`` (alpha helix),
``E`` (strand), ``-`` (anything else). Per UniProt position of ``sequence`` (0-based), the
result string holds the class, or ``" "`` where the structure has no complete backbone
(N, CA, C, O) for the residue - an unknown class, not a coil. Chain residues are mapped to the
sequence by the contact maps' alignment (sources/structure_chains.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CLASSES = "HE-"
UNKNOWN = " "
SS_PREFIX = "ss:"


def backbone(residues) -> np.ndarray:
    """coord[residue, atom, xyz] of N, CA, C, O; NaN where an atom is missing."""
    xyz = np.full((len(residues), 4, 3), np.nan)
    for k, r in enumerate(residues):
        for a, name in enumerate(("N", "CA", "C", "O")):
            atom = r.find_atom(name, "*")
            if atom is not None:
                xyz[k, a] = atom.pos.x, atom.pos.y, atom.pos.z
    return xyz


def dssp_chain(residues) -> str:
    """One class per chain residue; residues without a complete backbone get UNKNOWN and are
    left out of the hydrogen-bond calculation."""
    import pydssp

    xyz = backbone(residues)
    ok = ~np.isnan(xyz).any(axis=(1, 2))
    out = np.full(len(residues), UNKNOWN)
    if ok.sum() >= 3:
        out[ok] = pydssp.assign(xyz[ok].astype(np.float32), out_type="c3")
    return "".join(out)


def secondary_structure(sequence: str, path, chain: str | None = None) -> str:
    """Class per position of ``sequence`` from the chain of the structure at ``path``."""
    from .sources.structure_chains import align_to_uniprot, protein_chains, read_structure

    chains = protein_chains(read_structure(path))
    if not chains:
        raise ValueError(f"{path}: no protein chain")
    chain = chain if chain is not None else max(chains, key=lambda c: len(chains[c][0]))
    if chain not in chains:
        raise ValueError(f"{path}: no protein chain {chain!r} (has {sorted(chains)})")
    chain_seq, residues = chains[chain]
    ss = dssp_chain(residues)
    mapping = align_to_uniprot(sequence, chain_seq)[0]
    out = np.full(len(sequence), UNKNOWN)
    m = mapping >= 0
    out[mapping[m]] = np.array(list(ss))[m]
    return "".join(out)


def secondary_structure_masks(ss: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({"ss:H": mask, "ss:E": ..., "ss:-": ...}, known) over the residues of one protein."""
    arr = np.array(list(ss))
    return {SS_PREFIX + c: arr == c for c in CLASSES}, arr != UNKNOWN


def run_secondary_structure(proteins_path, quality_path, folders, out_path) -> None:
    """Rule entry point: the ``secondary_structure`` table (accession, ss, source) for every
    protein whose contact map came from a structure file found in ``folders``."""
    import logging

    from .io import read_table, write_table
    from .sources.structure_files import find_structure

    log = logging.getLogger("seqxai")
    proteins = read_table(proteins_path, "proteins").set_index("accession")
    quality = read_table(quality_path)
    rows, missing = [], 0
    for q in quality.itertuples(index=False):
        path = find_structure(str(q.file), folders)
        if path is None or q.accession not in proteins.index:
            missing += 1
            continue
        ss = secondary_structure(proteins.loc[q.accession, "sequence"], path, str(q.chain))
        rows.append({"accession": q.accession, "ss": ss, "source": f"pydssp:{q.file}:{q.chain}"})
    if missing:
        log.warning("secondary structure: %d of %d structure files not found in %s",
                    missing, len(quality), [str(f) for f in folders])
    write_table(out_path, pd.DataFrame(rows, columns=["accession", "ss", "source"]))
