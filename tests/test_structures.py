"""Contact maps from real structures, aligned to UniProt positions; AlphaFold/RCSB over loopback."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from replay_server import ReplayServer, forbid_network  # noqa: E402

from seqxai.io import DataError  # noqa: E402
from seqxai.sources.chain_list import read_chain_list, select_chains  # noqa: E402
from seqxai.sources.http import Fetcher, RetryPolicy  # noqa: E402
from seqxai.sources.structure_chains import StructureMismatch, protein_chains, read_structure  # noqa: E402
from seqxai.sources.structure_files import alphafold_entry, local_candidates  # noqa: E402
from seqxai.sources.structures import (  # noqa: E402
    ContactDefinition,
    StructureRules,
    build_chain_tables,
    build_contact_maps,
    chain_contact_map,
    contact_map,
    contacts_from_coords,
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


# ------------------------------------------------------------------ pinned chain lists (pdb_list)
CHAIN_LIST = Path(__file__).resolve().parents[1] / "config" / "paper" / "vig_pisces_chains.txt"


def test_pisces_list_parsing_and_bad_rows(tmp_path):
    good = tmp_path / "cullpdb.txt"
    good.write_text("PDBchain len method resol rfac freerfac\n1ABCA 245 XRAY 1.80 0.19 0.23\n"
                    "# a comment\n\n2xyzBB 80 NMR NA NA NA\n3DEFA 30 XRAY 2.90 0.25 0.31\n")
    df = read_chain_list(good)
    assert df["accession"].tolist() == ["1ABC_A", "2XYZ_BB", "3DEF_A"]
    assert df["chain"].tolist() == ["A", "BB", "A"] and df["length"].tolist() == [245, 80, 30]
    assert df.loc[0, "resolution"] == 1.80 and np.isnan(df.loc[1, "resolution"])
    assert select_chains(df, max_resolution=2.5)["accession"].tolist() == ["1ABC_A"]  # NMR: no resolution
    assert select_chains(df, min_length=50)["accession"].tolist() == ["1ABC_A", "2XYZ_BB"]
    assert select_chains(df, max_chains=2)["accession"].tolist() == ["1ABC_A", "2XYZ_BB"]
    header = "PDBchain len method resol rfac freerfac\n"
    for body, msg in [
        ("1ABCA 245 XRAY 1.80 0.19\n", r"line 2: 5 fields, need 6"),
        ("1ABCA 245 XRAY 1.8x 0.19 0.23\n", r"line 2: field 'resol' is '1.8x', not a number"),
        ("1ABCA 245 XRAY 1.80 0.19 0.23\nAB 10 XRAY 1.0 0.2 0.2\n", r"line 3: field 'PDBchain' is 'AB'"),
        ("1ABCA -4 XRAY 1.80 0.19 0.23\n", r"line 2: field 'len' is '-4', not a positive length"),
        ("1ABCA 245 XRAY 1.80 0.19 0.23\n1ABCA 245 XRAY 1.80 0.19 0.23\n", r"line 3: .*listed twice.*line 2"),
    ]:
        bad = tmp_path / "bad.txt"
        bad.write_text(header + body)
        with pytest.raises(DataError, match=rf"bad.txt, {msg}"):
            read_chain_list(bad)
    bad.write_text("IDs length Exptl.\n1ABCA 245 XRAY\n")  # a cut header (the full older one is read)
    with pytest.raises(DataError, match=r"bad.txt, line 1: expected the PISCES header"):
        read_chain_list(bad)


def _cif_ca(path, chain):
    """Independent mmCIF reader: {label_seq_id: CA xyz} of one author chain (first model, first altloc)."""
    import gemmi

    block = gemmi.cif.read(str(path)).sole_block()
    cols = ["group_PDB", "label_atom_id", "label_alt_id", "auth_asym_id", "label_seq_id", "Cartn_x", "Cartn_y",
            "Cartn_z", "pdbx_PDB_model_num"]
    out = {}
    for r in block.find("_atom_site.", cols):
        if r[0] == "ATOM" and r[1] == "CA" and r[2] in (".", "A") and r[3] == chain and r[8] == "1":
            out.setdefault(int(r[4]), np.array([float(r[5]), float(r[6]), float(r[7])]))
    return out


@needs_shared
def test_chain_ca_contact_map_against_naive_loop():
    # 7GSA chain A: 321 SEQRES residues, 284 observed; unobserved ones stay unresolved
    defn = ContactDefinition(atom="CA", glycine_atom="CA", cutoff=8.0)
    protein, row, q = chain_contact_map(STRUCT / "7gsa.cif", "A", "7GSA_A", defn)
    ca = _cif_ca(STRUCT / "7gsa.cif", "A")
    assert protein["length"] == row["length"] == 321 and len(ca) == 284 and row["definition"] == "CA<8.0A"
    assert row["resolved"] == "".join("1" if k in ca else "0" for k in range(1, 322))
    want = {(a, b) for a in ca for b in ca if a < b and np.linalg.norm(ca[a] - ca[b]) < 8.0}
    assert set(zip(row["contact_i"], row["contact_j"])) == want and len(want) > 1000
    # the sequence is the entity's (SEQRES), residue k of the entity = position k
    import gemmi

    block = gemmi.cif.read(str(STRUCT / "7gsa.cif")).sole_block()
    mons = [gemmi.find_tabulated_residue(r[0]).one_letter_code.upper()
            for r in block.find("_entity_poly_seq.", ["mon_id", "entity_id"]) if r[1] == "1"]
    assert protein["sequence"] == "".join(mons) and q["n_resolved"] == 284
    # a PDB-format file: residues placed on SEQRES positions; lysozyme has no gaps
    p2, r2, _ = chain_contact_map(STRUCT / "1aki.pdb", "A", "1AKI_A", defn)
    assert r2["resolved"] == "1" * 129 and p2["sequence"].startswith("KVFGRCELAAAMKRHGLDNYRGY")
    with pytest.raises(StructureMismatch, match=r"1AKI_B: 1aki.pdb: no chain 'B'"):
        chain_contact_map(STRUCT / "1aki.pdb", "B", "1AKI_B", defn)


@needs_shared
def test_pdb_list_chains_fetched_over_loopback(tmp_path):
    chains = pd.DataFrame([
        {"accession": "1AKI_A", "pdb_id": "1AKI", "chain": "A", "length": 129},
        {"accession": "7GSA_A", "pdb_id": "7GSA", "chain": "A", "length": 321},
        {"accession": "1AKI_Z", "pdb_id": "1AKI", "chain": "Z", "length": 129},  # no such chain
        {"accession": "9ZZZ_A", "pdb_id": "9ZZZ", "chain": "A", "length": 50},  # no such entry
    ])
    with ReplayServer() as srv:
        srv.add("/download/1AKI.cif", (SHARED / "fixtures" / "rcsb" / "1AKI.cif").read_bytes(),
                headers=[("Content-Type", "chemical/x-mmcif"), ("Content-Encoding", "gzip")])
        srv.add("/download/7GSA.cif", (STRUCT / "7gsa.cif").read_bytes(),
                headers=[("Content-Type", "chemical/x-mmcif")])
        srv.add("/download/9ZZZ.cif", b"not found", status=404)
        srv.fault("/download/7GSA.cif", "drop")
        f = Fetcher(cache_dir=tmp_path, retry=RetryPolicy(attempts=3, backoff=0.01), sleep=lambda s: None,
                    timeout=(2, 5))
        url = srv.url("/download/{id}.cif")
        defn = ContactDefinition(atom="CA", cutoff=8.0)
        prot, cm, q, rep = build_chain_tables(chains, f, tmp_path, defn, pdb_url=url)
        n = f.requests_made
        build_chain_tables(chains, f, tmp_path, defn, pdb_url=url)
        assert f.requests_made == n + 1  # 1AKI and 7GSA cached; only the missing entry is asked again
    assert prot["accession"].tolist() == cm["accession"].tolist() == ["1AKI_A", "7GSA_A"]
    assert cm.iloc[0]["source"] == "pdb:1AKI:A" and cm.iloc[1]["resolved"].count("1") == 284
    assert prot.iloc[0]["sequence"] == protein_chains(read_structure(STRUCT / "1aki.pdb"))["A"][0]
    r = rep.set_index(["item", "reason"])["count"]
    assert r[("chain", "kept")] == 2 and r[("chain", "unusable structure")] == 1 and r[("chain", "not found")] == 1
    assert q["file"].tolist() == ["1AKI.cif", "7GSA.cif"]


@needs_shared
def test_pinned_vig_chain_list_is_non_redundant():
    """The shipped list: header, 14 X-ray chains <= 2.5 A, found in the local entries, pairwise
    identity <= 30 % (identical aligned pairs / shorter length), as its comment says."""
    from seqxai.sources.structure_chains import _aligner

    df = read_chain_list(CHAIN_LIST)
    assert len(df) == 14 and (df["method"] == "XRAY").all() and (df["resolution"] <= 2.5).all()
    prot, _cm, _, _rep = build_chain_tables(df, None, None, ContactDefinition(atom="CA"), local=STRUCT)
    missing = sorted(set(df.accession) - set(prot.accession))
    if missing:  # 1AKI is a PDB file in data/structures; its mmCIF sits with the RCSB fixtures
        extra = build_chain_tables(df[df.accession.isin(missing)], None, None, ContactDefinition(atom="CA"),
                                   local=SHARED / "fixtures" / "rcsb")[0]
        prot = pd.concat([prot, extra], ignore_index=True)
    assert sorted(prot.accession) == sorted(df.accession)
    assert (prot.set_index("accession")["length"] == df.set_index("accession")["length"]).all()
    al, seqs = _aligner(), prot["sequence"].tolist()
    for x in range(len(seqs)):
        for y in range(x + 1, len(seqs)):
            a, b = seqs[x], seqs[y]
            aln = al.align(a, b)[0]
            same = sum(sum(p == r for p, r in zip(a[t0:t1], b[q0:q1])) for (t0, t1), (q0, q1) in zip(*aln.aligned))
            assert same / min(len(a), len(b)) <= 0.30, (prot.accession[x], prot.accession[y])
