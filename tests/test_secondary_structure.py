"""DSSP classes (pydssp) against the HELIX/SHEET records of a real PDB entry; the
secondary-structure key properties in the probe counter by hand."""
from pathlib import Path

import numpy as np
import pytest

from seqxai.high_confidence_attention import HighConfidenceCounter
from seqxai.secondary_structure import secondary_structure_masks

SHARED = Path(__file__).resolve().parents[2] / "shared"


def test_structural_keys_background_counts_only_known_residues():
    ss = "HHH  EE---"  # two residues without a backbone
    masks, known = secondary_structure_masks(ss)
    assert masks["ss:H"].sum() == 3 and masks["ss:E"].sum() == 2 and masks["ss:-"].sum() == 3
    attn = np.zeros((1, 1, 10, 10))
    attn[0, 0, :, 0] = 0.5  # every query attends residue 0 (helix)
    attn[0, 0, 0, 3] = 0.6  # one weight lands on an unknown residue
    site = np.zeros(10, bool)
    site[3] = True  # an annotation on the residue without a backbone: known all the same
    c = HighConfidenceCounter(1, 1)
    c.add(attn, key_properties={"site": site}, structural_keys=masks, known=known)
    t = c.table(0).set_index("property")
    assert t.loc["ss:H", "n_high_confidence"] == 11  # the unknown-residue weight stays in the total
    assert t.loc["ss:H", "hits"] == 10
    assert t.loc["ss:H", "background"] == pytest.approx(3 / 8)  # over the 8 known residues
    assert t.loc["ss:E", "background"] == pytest.approx(2 / 8)
    assert t.loc["site", "background"] == pytest.approx(1 / 10) and t.loc["site", "hits"] == 1


def test_pydssp_agrees_with_pdb_helix_and_sheet_records():
    pytest.importorskip("pydssp")
    path = SHARED / "data" / "structures" / "1aki.pdb"
    if not path.is_file():
        pytest.skip(f"{path} is absent: real structures live only on developer machines and CI")
    from seqxai.secondary_structure import secondary_structure
    from seqxai.sources.structure_chains import protein_chains, read_structure

    seq = protein_chains(read_structure(path))["A"][0]
    ss = secondary_structure(seq, path, "A")
    assert len(ss) == len(seq) == 129 and " " not in ss
    helix, sheet = [], []
    for line in path.read_text().splitlines():  # 1-based author numbering; residue 1 is the first
        if line.startswith("HELIX") and int(line[38:40]) == 1:  # alpha helices
            helix += range(int(line[21:25]), int(line[33:37]) + 1)
        elif line.startswith("SHEET"):
            sheet += range(int(line[22:26]), int(line[33:37]) + 1)
    h = np.mean([ss[i - 1] == "H" for i in helix])
    e = np.mean([ss[i - 1] == "E" for i in sheet])
    outside = [i for i in range(1, 130) if i not in set(helix) | set(sheet)]
    print(f"\n1aki: {len(helix)} alpha-helix residues {h:.2f} H, {len(sheet)} sheet residues {e:.2f} E")
    assert h >= 0.8 and e >= 0.5
    assert np.mean([ss[i - 1] == "H" for i in outside]) < 0.3
