"""The protein chains of a PDB/mmCIF file (gemmi), their sequences, and their alignment to
UniProt.

A structure is read as its first model, first altloc, without hydrogens. A chain's sequence is
either its observed amino-acid residues (``chain_residues``; modified residues as their parent,
MSE -> M) or its entity sequence (``entity_sequence``: SEQRES / ``_entity_poly_seq``, residue k
of the entity = 0-based position k - 1). ``align_to_uniprot`` maps chain residues to 0-based
UniProt positions (Bio.Align, BLOSUM62, gap -10/-0.5, free end gaps).
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from ..io import DataError
from . import validate as formats

AF_NAME = re.compile(r"AF-([A-Z0-9]+(?:-\d+)?)-F(\d+)-model_v(\d+)", re.I)


class StructureMismatch(DataError):
    """The structure's sequence does not match the UniProt sequence."""


class MissingChain(StructureMismatch):
    """The structure has no protein chain of the requested name (``has``: the ones it has)."""

    def __init__(self, message: str, has: list[str]):
        super().__init__(message)
        self.has = has


def read_structure(path: str | Path):
    """A gemmi Structure: first model only, first altloc, no hydrogens, entities set up."""
    import gemmi

    path = Path(path)
    if path.name.lower().removesuffix(".gz").endswith((".pdb", ".ent")):
        try:  # gemmi reads a PDB cut at a line boundary without a word: half a chain
            formats.pdb(path)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: {exc}") from exc
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with a message
        raise DataError(f"{path}: cannot read structure ({exc})") from exc
    if len(st) == 0:
        raise DataError(f"{path}: structure has no models")
    for i in range(len(st) - 1, 0, -1):
        del st[i]
    st.remove_alternative_conformations()
    st.remove_hydrogens()
    st.setup_entities()
    return st


def is_alphafold(st, path: Path) -> bool:
    info = {k: v for k, v in st.info.items()}
    title = " ".join([info.get("_struct.title", ""), info.get("_struct_keywords.text", "")]).upper()
    return bool(AF_NAME.search(path.name)) or "ALPHAFOLD" in title or "ALPHAFOLD" in _header(path)


def _header(path: Path) -> str:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", errors="replace") as fh:
        return "".join(fh.readline() for _ in range(12)).upper()


def chain_residues(chain) -> tuple[str, list]:
    """One-letter sequence of a chain's observed amino-acid residues, and the residues."""
    import gemmi

    seq, res = [], []
    for r in chain:
        info = gemmi.find_tabulated_residue(r.name)
        if info is None or not info.is_amino_acid():
            continue  # water, ligands, unknown groups
        code = info.one_letter_code.upper()  # modified residues (MSE -> m) map to their parent
        if not code.isalpha():
            code = "X"
        seq.append(code)
        res.append(r)
    return "".join(seq), res


def protein_chains(st) -> dict[str, tuple[str, list]]:
    out = {}
    for ch in st[0]:
        seq, res = chain_residues(ch)
        if len(seq) >= 2 and ch.name not in out:
            out[ch.name] = (seq, res)
    return out


def uniprot_refs(path: str | Path) -> dict[str, list[str]]:
    """{UniProt accession: [chain ids]} from PDB ``DBREF`` lines or mmCIF ``_struct_ref``."""
    path = Path(path)
    refs: dict[str, list[str]] = {}
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".cif", ".mmcif")):
        import gemmi

        try:
            block = gemmi.cif.read(str(path)).sole_block()
        except Exception:
            return refs
        ref_db = {r[0]: (r[1], r[2]) for r in block.find("_struct_ref.", ["id", "db_name", "pdbx_db_accession"])}
        for r in block.find("_struct_ref_seq.", ["ref_id", "pdbx_strand_id"]):
            db, acc = ref_db.get(r[0], ("", ""))
            if db == "UNP":
                refs.setdefault(acc, []).append(r[1])
        if not refs:  # no _struct_ref_seq loop: all UNP references, chain unknown
            for db, acc in ref_db.values():
                if db == "UNP":
                    refs.setdefault(acc, [])
    else:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", errors="replace") as fh:
            for line in fh:
                if line.startswith("DBREF ") and line[26:32].strip() == "UNP":
                    refs.setdefault(line[33:41].strip(), []).append(line[12].strip())
                elif line.startswith(("ATOM", "HETATM")):
                    break
    return refs


# ---------------------------------------------------------------- alignment
def _aligner():
    from Bio import Align
    from Bio.Align import substitution_matrices

    al = Align.PairwiseAligner()
    al.mode = "global"
    al.substitution_matrix = substitution_matrices.load("BLOSUM62")
    al.open_gap_score, al.extend_gap_score = -10.0, -0.5
    al.end_gap_score = 0.0  # free end gaps: a structure may cover part of the sequence
    return al


_ALIGNER = None


def align_to_uniprot(uniprot_seq: str, chain_seq: str) -> tuple[np.ndarray, float, int]:
    """Map chain residue k -> UniProt index (0-based, -1 when unaligned).

    Returns (mapping, identity over aligned pairs, number of aligned pairs).
    """
    global _ALIGNER
    if _ALIGNER is None:
        _ALIGNER = _aligner()
    aln = _ALIGNER.align(uniprot_seq, chain_seq)[0]
    mapping = np.full(len(chain_seq), -1, dtype=np.int64)
    same = n = 0
    for (t0, t1), (q0, q1) in zip(*aln.aligned):
        mapping[q0:q1] = np.arange(t0, t1)
        a, b = uniprot_seq[t0:t1], chain_seq[q0:q1]
        same += sum(x == y for x, y in zip(a, b))
        n += t1 - t0
    return mapping, (same / n if n else 0.0), n


def entity_sequence(st, chain: str, where: str = "") -> tuple[str, list, list[int]]:
    """(sequence, observed residues, their 0-based positions in the sequence) of one chain.

    The sequence is the chain's entity sequence (mmCIF ``_entity_poly_seq`` / PDB ``SEQRES``),
    modified residues as their parent (MSE -> M), anything else not an amino acid -> X; the
    residues' ``label_seq`` (assigned from SEQRES for PDB files) is their 1-based position.
    """
    import gemmi

    names = [ch.name for ch in st[0]]
    if chain not in names:
        raise StructureMismatch(f"{where}: no chain '{chain}' (has {sorted(set(names))})")
    polymer = st[0][chain].get_polymer()
    entity = st.get_entity_of(polymer) if len(polymer) else None
    if entity is None or not entity.full_sequence:
        raise StructureMismatch(f"{where}: chain {chain} has no polymer with an entity (SEQRES) sequence")
    if entity.polymer_type != gemmi.PolymerType.PeptideL:
        raise StructureMismatch(f"{where}: chain {chain} is not a protein ({entity.polymer_type})")
    letters = []
    for mon in entity.full_sequence:
        info = gemmi.find_tabulated_residue(gemmi.Entity.first_mon(mon))
        code = info.one_letter_code.upper() if info is not None and info.is_amino_acid() else "X"
        letters.append(code if code.isalpha() and code != "?" else "X")
    seq = "".join(letters)
    if any(r.label_seq is None for r in polymer):
        st.assign_label_seq_id(force=False)  # PDB files: align the residues to SEQRES
        polymer = st[0][chain].get_polymer()
    residues, index = [], []
    for r in polymer:
        if r.label_seq is None or not 1 <= r.label_seq <= len(seq):
            raise StructureMismatch(f"{where}: chain {chain} residue {r.name} {r.seqid} has no "
                                    f"position in the entity sequence")
        residues.append(r)
        index.append(r.label_seq - 1)
    return seq, residues, index
