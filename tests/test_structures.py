"""Contact maps from real structures, aligned to UniProt positions; AlphaFold/RCSB over loopback."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from replay_server import ReplayServer, forbid_network  # noqa: E402
from seqxai.sources.http import Fetcher, RetryPolicy  # noqa: E402
from seqxai.sources.structures import (  # noqa: E402
    StructureMismatch,
    StructureRules,
    alphafold_entry,
    build_contact_maps,
    contact_map,
    contacts_from_coords,
    local_candidates,
    protein_chains,
    read_structure,
)
from seqxai.sources.uniprot import load_proteins  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    forbid_network(monkeypatch)

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (real structures) is absent")
AF = SHARED / "fixtures" / "alphafold"
STRUCT = SHARED / "data" / "structures"
P05067_JSON = SHARED / "fixtures" / "uniprot" / "rest_json" / "P05067.uniprotkb_entry.json"
SIGNAL = "MRSLLILVLCFLPLAALG"  # lysozyme C signal peptide: 1AKI covers UniProt P00698 19..147 (DBREF)


def test_contacts_by_hand():
    xyz = np.array([[0, 0, 0], [7.9, 0, 0], [8.0, 0, 0], [np.nan] * 3, [0, 7.99, 0]], float)
    i, j = contacts_from_coords(xyz, 8.0, 1)
    assert list(zip(i, j)) == [(0, 1), (0, 4), (1, 2)]  # 8.0 exactly is not < 8.0; NaN row skipped
    i, j = contacts_from_coords(xyz, 8.0, 4)
    assert list(zip(i, j)) == [(0, 4)]


def _pdb_atoms(path, model=1):
    """Independent reader: {resseq: {atom: (xyz, bfactor)}} and residue names of chain A, one model."""
    res, names, m = {}, {}, 1
    for line in Path(path).read_text().splitlines():
        if line.startswith("ENDMDL"):
            m += 1
        if m == model and line.startswith("ATOM") and line[21] == "A" and line[16] in " A":
            k = int(line[22:26])
            res.setdefault(k, {})[line[12:16].strip()] = (
                np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])]), float(line[60:66]))
            names[k] = line[17:20]
    return res, names


def _naive_contacts(res, names, keep=lambda k: True, cutoff=8.0):
    ks = sorted(k for k in res if keep(k))
    xyz = {k: res[k]["CA" if names[k] == "GLY" else "CB"][0] for k in ks}
    return {(a, b) for x, a in enumerate(ks) for b in ks[x + 1:] if np.linalg.norm(xyz[a] - xyz[b]) < cutoff}


@needs_shared
def test_alphafold_model_against_naive_loop():
    seq = load_proteins(local=P05067_JSON)[0].iloc[0]["sequence"]
    row, q = contact_map(seq, AF / "AF-P05067-F1-model_v6.pdb", "P05067", rules=StructureRules(min_plddt=70))
    res, names = _pdb_atoms(AF / "AF-P05067-F1-model_v6.pdb")
    plddt = {k: res[k]["CA"][1] for k in res}
    assert row["length"] == 770 and q["identity"] == 1.0 and row["definition"] == "CB<8.0A"
    assert row["resolved"] == "".join("1" if plddt[k] >= 70 else "0" for k in range(1, 771))
    want = _naive_contacts(res, names, keep=lambda k: plddt[k] >= 70)
    assert set(zip(row["contact_i"], row["contact_j"])) == want and len(want) == 1906
    assert q["plddt"][0] == pytest.approx(plddt[1]) and q["mean_plddt"] == pytest.approx(np.mean(list(plddt.values())))
    # the mmCIF of the same model gives the same map; no pLDDT filter resolves every residue
    row_cif, _ = contact_map(seq, AF / "AF-P05067-F1-model_v6.cif", "P05067", rules=StructureRules(min_plddt=70))
    assert row_cif["contact_i"] == row["contact_i"] and row_cif["resolved"] == row["resolved"]
    row_all, _ = contact_map(seq, AF / "AF-P05067-F1-model_v6.pdb", "P05067", rules=StructureRules(min_plddt=None))
    assert row_all["resolved"] == "1" * 770
    with pytest.raises(StructureMismatch, match="mean pLDDT"):
        contact_map(seq, AF / "AF-P05067-F1-model_v6.pdb", "P05067", rules=StructureRules(min_mean_plddt=80))


@needs_shared
def test_pdb_chain_maps_to_uniprot_positions():
    chain_seq = protein_chains(read_structure(STRUCT / "1aki.pdb"))["A"][0]
    row, q = contact_map(SIGNAL + chain_seq, STRUCT / "1aki.pdb", "P00698")
    assert row["resolved"] == "0" * 18 + "1" * 129  # unresolved signal peptide marked, not dropped
    assert min(row["contact_i"]) >= 19 and q["chain"] == "A"
    res, names = _pdb_atoms(STRUCT / "1aki.pdb")
    assert set(zip(row["contact_i"], row["contact_j"])) == {(a + 18, b + 18) for a, b in _naive_contacts(res, names)}
    with pytest.raises(StructureMismatch, match=r"P00698: 1aki.pdb chain A does not match"):
        contact_map(load_proteins(local=P05067_JSON)[0].iloc[0]["sequence"], STRUCT / "1aki.pdb", "P00698")


@needs_shared
def test_nmr_ensemble_uses_first_model():
    path = SHARED / "fixtures" / "rcsb" / "1L2Y.pdb"
    chain_seq = protein_chains(read_structure(path))["A"][0]
    assert chain_seq == "NLYIQWLKDGGPSSGRPPPS"
    row, _ = contact_map(chain_seq, path, "P0C1T2-trp-cage")
    res, names = _pdb_atoms(path, model=1)
    assert set(zip(row["contact_i"], row["contact_j"])) == _naive_contacts(res, names)


@needs_shared
def test_local_folder_by_dbref_and_counts(tmp_path):
    folder = tmp_path / "structs"
    folder.mkdir()
    for name in ("1aki.pdb", "1xnr.cif", "4ZHL.cif"):
        (folder / name).symlink_to(STRUCT / name)
    chain_seq = protein_chains(read_structure(STRUCT / "1aki.pdb"))["A"][0]
    proteins = pd.DataFrame({"accession": ["P00698", "P00749", "Q99999"],
                             "sequence": [SIGNAL + chain_seq, "M" * 60, "MKV"]})
    cands = local_candidates(folder, set(proteins.accession))
    assert cands["P00698"] == [(folder / "1aki.pdb", "A")] and cands["P00749"] == [(folder / "4ZHL.cif", "U")]
    cm, quality, rep = build_contact_maps(proteins, source="local", local=folder)
    assert cm["accession"].tolist() == ["P00698"] and cm.iloc[0]["source"] == "file:1aki.pdb:A"
    r = rep.set_index(["item", "reason"])["count"]
    assert r[("protein", "kept")] == 1 and r[("protein", "sequence mismatch")] == 1 and r[("protein", "no structure")] == 1
    with pytest.raises(StructureMismatch, match="P00749"):
        build_contact_maps(proteins, source="local", local=folder, rules=StructureRules(on_mismatch="error"))


@needs_shared
def test_alphafold_entry_is_chosen_by_id_not_index():
    entries = json.loads((AF / "api_prediction_P05067.json").read_text())
    assert entries[0]["entryId"] != "AF-P05067-F1"
    assert alphafold_entry(entries, "P05067")["entryId"] == "AF-P05067-F1"
    assert alphafold_entry(entries, "P05067-4")["entryId"] == "AF-P05067-4-F1"
    assert alphafold_entry(entries, "Q00000") is None


@needs_shared
def test_alphafold_and_rcsb_downloads_over_loopback(tmp_path):
    proteins = load_proteins(local=P05067_JSON)[0]
    chain_seq = protein_chains(read_structure(STRUCT / "1aki.pdb"))["A"][0]
    with ReplayServer() as srv:
        srv.add_recording(AF / "api_prediction_P05067.json.meta.json", AF / "api_prediction_P05067.json")
        srv.add_recording(AF / "AF-P05067-F1-model_v6.pdb.meta.json", AF / "AF-P05067-F1-model_v6.pdb",
                          raw_gzip=AF / "AF-P05067-F1-model_v6.pdb.gz.as_served")
        srv.fault("/api/prediction/P05067", "503", retry_after="2")
        srv.fault("/files/AF-P05067-F1-model_v6.pdb", "drop")
        srv.add("/download/1AKI.cif", (SHARED / "fixtures" / "rcsb" / "1AKI.cif").read_bytes(),
                headers=[("Content-Type", "chemical/x-mmcif"), ("Content-Encoding", "gzip")])
        waits = []
        f = Fetcher(cache_dir=tmp_path, retry=RetryPolicy(attempts=3, backoff=0.01), sleep=waits.append, timeout=(2, 5))
        api = srv.url("/api/prediction/{accession}")
        base = srv.url("/files")  # the API's pdbUrl names alphafold.ebi.ac.uk: files come from a mirror base
        cm, q, rep = build_contact_maps(proteins, "alphafold", fetcher=f, cache_dir=tmp_path, alphafold_api=api,
                                        alphafold_file_base=base)
        assert cm.iloc[0]["source"] == "alphafold:AF-P05067-F1-v6" and waits[0] >= 2.0
        n = f.requests_made
        build_contact_maps(proteins, "alphafold", fetcher=f, cache_dir=tmp_path, alphafold_api=api,
                           alphafold_file_base=base)
        assert f.requests_made == n  # API answer and model both cached
        lyso = pd.DataFrame({"accession": ["P00698"], "sequence": [SIGNAL + chain_seq]})
        xrefs = pd.DataFrame({"accession": ["P00698"], "database": ["PDB"], "id": ["1AKI"], "chains": ["A=19-147"]})
        cm2, _, _ = build_contact_maps(lyso, "pdb", xrefs=xrefs, fetcher=f, cache_dir=tmp_path,
                                       pdb_url=srv.url("/download/{id}.cif"))
    assert cm2.iloc[0]["source"] == "pdb:1AKI:A" and cm2.iloc[0]["resolved"] == "0" * 18 + "1" * 129
