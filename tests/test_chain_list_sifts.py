"""Pinned PISCES chain lists (both header formats, gzip, sha256 pin, seeded max_chains) and the
SIFTS residue mapping that carries UniProt features onto PDB chains (data.structures.sifts)."""
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from replay_server import ReplayServer, forbid_network  # noqa: E402

from seqxai.io import DataError, read_table  # noqa: E402
from seqxai.sources import DropReport  # noqa: E402
from seqxai.sources.chain_list import chain_list_file, read_chain_list, run_chain_list, select_chains  # noqa: E402
from seqxai.sources.http import Fetcher, RetryPolicy  # noqa: E402
from seqxai.sources.sifts import (  # noqa: E402
    annotate_chains,
    chain_residue_map,
    features_on_chain,
    read_sifts_tsv,
    segments_from_api,
    uniprot_query,
)
from seqxai.sources.uniprot import return_fields  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
STRUCT = SHARED / "data" / "structures"
needs_shared = pytest.mark.skipif(not (STRUCT / "1aki.pdb").is_file(),
                                  reason="needs ../shared/data/structures/1aki.pdb (real lysozyme entry)")

# The first lines of a real PISCES list in the older header format: cullpdb_pc30_res2.0_R0.25_
# d180607_chains11093.txt as committed in jeremyt19115678/Protein-2D-Structure-Prediction @ 6720a70
# (the list the Vig presets pin by URL), lines 1-4, 21 and 266 (1AMT C and 1FV1 F: 21 and 20 residues).
REAL_LINES = """IDs         length Exptl.  resolution  R-factor FreeRvalue
1A1XA       108  XRAY        2.000    0.21    0.25
1A2PC       110  XRAY        1.500    0.12    0.17
1A3AC       148  XRAY        1.800    0.19    0.24
1AMTC        21  XRAY        1.500    0.15    1.00
1FV1F        20  XRAY        1.900    0.23    0.27
"""

# Lysozyme C (P00698): 18-residue signal peptide, mature chain 19-147 = entity of 1AKI chain A.
LYSO_CHAIN = ("KVFGRCELAAAMKRHGLDNYRGYSLGNWVCAAKFESNFNTQATNRNTDGSTDYGILQINSRWWCNDGRTPGSRNLCNIPCSALLSSDITAS"
              "VNCAKKIVSDGNGMNAWVAWRNRCKGTDVQAWIRGCRL")
SIGNAL = "MRSLLILVLCFLPLAALG"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    forbid_network(monkeypatch)


def pdbe_answer(pdb_id, acc, chain, seq, unp):
    """A PDBe /mappings/uniprot/{pdb_id} answer in the API's layout (one segment per tuple):
    residue_number = SEQRES index; author numbers deliberately differ (offset 100) to show they
    are not used."""
    maps = [{"entity_id": 1, "chain_id": chain, "struct_asym_id": "A",
             "start": {"author_residue_number": s + 100, "author_insertion_code": "", "residue_number": s},
             "end": {"author_residue_number": e + 100, "author_insertion_code": "", "residue_number": e},
             "unp_start": us, "unp_end": ue}
            for (s, e), (us, ue) in zip(seq, unp)]
    return {pdb_id.lower(): {"UniProt": {acc: {"identifier": "LYSC_CHICK", "name": "LYSC_CHICK",
                                               "mappings": maps}}}}


def lysozyme_entry(features):
    """A UniProt REST JSON entry for P00698 in the real layout (cf. ../shared/fixtures/uniprot/
    rest_json): the real sequence, but the features listed here are made up for the test."""
    return {"entryType": "UniProtKB reviewed (Swiss-Prot)", "primaryAccession": "P00698",
            "organism": {"taxonId": 9031}, "sequence": {"value": SIGNAL + LYSO_CHAIN, "length": 147},
            "features": [{"type": t, "location": {"start": {"value": s, "modifier": "EXACT"},
                                                  "end": {"value": e, "modifier": "EXACT"}},
                          "description": d} for t, s, e, d in features]}


FEATURES = [("Active site", 53, 53, "Proton donor"), ("Binding site", 75, 80, "synthetic"),
            ("Modified residue", 100, 100, "synthetic"), ("Binding site", 1, 10, "signal peptide only")]
# expected on the chain: UniProt position - 18; the signal-peptide feature maps to nothing
EXPECTED = {("active_site", 35, 35), ("binding_site", 57, 62), ("ptm", 82, 82)}


# ------------------------------------------------------------------ chain lists
def test_real_pisces_lines_older_header_and_gzip(tmp_path):
    plain, gz = tmp_path / "cull.txt", tmp_path / "cull.txt.gz"
    plain.write_text(REAL_LINES)
    gz.write_bytes(gzip.compress(REAL_LINES.encode()))
    df = read_chain_list(plain)
    pd.testing.assert_frame_equal(df, read_chain_list(gz))
    assert df["accession"].tolist() == ["1A1X_A", "1A2P_C", "1A3A_C", "1AMT_C", "1FV1_F"]
    assert df["length"].tolist() == [108, 110, 148, 21, 20] and df.loc[1, "resolution"] == 1.5
    assert df.loc[0, "free_r_factor"] == 0.25 and (df["method"] == "XRAY").all()
    rep = DropReport("t")
    assert select_chains(df, min_length=40, max_resolution=1.9, report=rep)["accession"].tolist() == [
        "1A2P_C", "1A3A_C"]
    assert rep.n("chain", "resolution > 1.9 A or none") == 1 and rep.n("chain", "shorter than 40") == 2


def test_max_chains_is_a_seeded_sample_in_file_order():
    n = 40
    df = pd.DataFrame({"accession": [f"{i + 1000}_A" for i in range(n)], "length": 100,
                       "resolution": np.linspace(1.0, 3.0, n)})
    rep = DropReport("t")
    a = select_chains(df, max_chains=10, max_resolution=2.5, seed=1, report=rep)
    b = select_chains(df, max_chains=10, max_resolution=2.5, seed=1)
    c = select_chains(df, max_chains=10, max_resolution=2.5, seed=2)
    eligible = df[df["resolution"] <= 2.5]["accession"].tolist()
    assert a["accession"].tolist() == b["accession"].tolist() != c["accession"].tolist()
    assert len(a) == 10 and set(a["accession"]) <= set(eligible)
    assert a.index.is_monotonic_increasing  # file order kept
    assert a["accession"].tolist() != eligible[:10]  # not the head (seed 1 of 30 eligible chains)
    assert rep.n("chain", "not among the 10 selected (max_chains)") == len(eligible) - 10
    assert select_chains(df, max_chains=10, max_resolution=2.5)["accession"].tolist() == eligible[:10]


def test_chain_list_sha256_pin_local_and_url(tmp_path):
    import hashlib

    (tmp_path / "cull.txt").write_text(REAL_LINES)
    digest = hashlib.sha256(REAL_LINES.encode()).hexdigest()
    assert chain_list_file(str(tmp_path / "cull.txt"), None, tmp_path, digest) == tmp_path / "cull.txt"
    with pytest.raises(DataError, match=rf"cull.txt: sha256 {digest} is not the pinned .*{'0' * 64}"):
        chain_list_file(str(tmp_path / "cull.txt"), None, tmp_path, "0" * 64)
    with ReplayServer() as srv:
        srv.add("/lists/cull.txt", REAL_LINES, headers=[("Content-Type", "text/plain")])
        f = Fetcher(cache_dir=tmp_path, retry=RetryPolicy(attempts=2, backoff=0.01), sleep=lambda s: None,
                    timeout=(2, 5))
        path = chain_list_file(srv.url("/lists/cull.txt"), f, tmp_path / "cache", digest)
    assert path == tmp_path / "cache" / "pisces" / "cull.txt" and len(read_chain_list(path)) == 5


# ------------------------------------------------------------------ SIFTS mapping
def test_segments_map_seqres_positions_and_split_features():
    # chain positions 1-10 -> UniProt 19-28, 12-20 -> 40-48 (position 11 unmapped, a UniProt gap)
    api = pdbe_answer("1XYZ", "P11111", "B", [(1, 10), (12, 20)], [(19, 28), (40, 48)])
    segs = segments_from_api(api, "1XYZ")
    assert segs[["seq_start", "seq_end", "unp_start", "unp_end"]].values.tolist() == [[1, 10, 19, 28],
                                                                                      [12, 20, 40, 48]]
    assert (segs["chain"] == "B").all() and (segs["pdb_id"] == "1XYZ").all()
    bad = pd.DataFrame([{"pdb_id": "1XYZ", "chain": "B", "uniprot": "P11111", "seq_start": 21, "seq_end": 22,
                         "unp_start": 60, "unp_end": 70},  # ranges of unequal length: skipped
                        {"pdb_id": "1XYZ", "chain": "B", "uniprot": "P11111-2", "seq_start": 23, "seq_end": 24,
                         "unp_start": 1, "unp_end": 2}])  # an isoform: skipped
    rep = DropReport("t")
    acc, pos = chain_residue_map(pd.concat([segs, bad], ignore_index=True), 25, "1XYZ_B", rep)
    assert pos.tolist() == list(range(19, 29)) + [0] + list(range(40, 49)) + [0] * 5
    assert rep.n("sifts segment", "PDB and UniProt ranges differ in length") == 1
    assert rep.n("sifts segment", "maps to a UniProt isoform") == 1
    feats = pd.DataFrame([("P11111", "binding_site", 20, 25, "a"), ("P11111", "ptm", 26, 41, "b"),
                          ("P11111", "motif", 30, 39, "in the gap"), ("P22222", "ptm", 19, 19, "other")],
                         columns=["accession", "type", "start", "end", "description"])
    rows = features_on_chain("1XYZ_B", acc, pos, feats)
    assert [(r["type"], r["start"], r["end"]) for r in rows] == [("binding_site", 2, 7), ("ptm", 8, 10),
                                                                 ("ptm", 12, 13)]
    with pytest.raises(DataError, match=r"SIFTS 1XYZ, UniProt P1, mapping 0: field 'unp_start' is None"):
        segments_from_api({"1xyz": {"UniProt": {"P1": {"mappings": [
            {"chain_id": "A", "start": {"residue_number": 1}, "end": {"residue_number": 2}}]}}}}, "1XYZ")


def test_sifts_tsv_uses_seqres_columns(tmp_path):
    text = ("# 2024/01/01 - 12:00 | PDB: 01.24 | UniProt: 2024.01\n"
            "PDB\tCHAIN\tSP_PRIMARY\tRES_BEG\tRES_END\tPDB_BEG\tPDB_END\tSP_BEG\tSP_END\n"
            "1aki\tA\tP00698\t1\t129\t101\t229\t19\t147\n"
            "2xyz\tA\tP99999\t3\t50\tNone\t48\t1\t48\n")
    path = tmp_path / "pdb_chain_uniprot.tsv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    segs = read_sifts_tsv(path, ["1AKI"])
    assert segs.values.tolist() == [["1AKI", "A", "P00698", 1, 129, 19, 147]]
    assert len(read_sifts_tsv(path)) == 2
    bad = tmp_path / "bad.tsv"
    bad.write_text(text.replace("\t19\t147", "\tx\t147"))
    with pytest.raises(DataError, match=r"bad.tsv, line 3: field 'SP_BEG' is 'x'"):
        read_sifts_tsv(bad)


@needs_shared
def test_annotate_chains_over_loopback_and_from_local_files(tmp_path):
    # 1AKI A maps to lysozyme; 9XYZ A to an accession UniProt returns nothing for; 9ZZZ has no mapping
    chains = pd.DataFrame([{"accession": a, "pdb_id": a[:4], "chain": "A"} for a in ("1AKI_A", "9XYZ_A", "9ZZZ_A")])
    proteins = pd.DataFrame({"accession": chains["accession"], "sequence": [LYSO_CHAIN, "ACDEFGHIKL", "MKV" * 5]})
    features = ["active_site", "binding_site", "ptm"]
    api = pdbe_answer("1AKI", "P00698", "A", [(1, 129)], [(19, 147)])
    entry = lysozyme_entry(FEATURES)

    def query(acc):
        return {"query": uniprot_query([acc]), "format": "json", "size": "500",
                "fields": ",".join(return_fields(features))}

    js = [("Content-Type", "application/json")]
    with ReplayServer() as srv:
        srv.add("/pdbe/api/mappings/uniprot/1aki", json.dumps(api), headers=js)
        srv.add("/pdbe/api/mappings/uniprot/9xyz", json.dumps(pdbe_answer("9XYZ", "Q99999", "A", [(1, 10)],
                                                                          [(1, 10)])), headers=js)
        srv.add("/pdbe/api/mappings/uniprot/9zzz", "{}", status=404, headers=js)
        srv.add("/uniprotkb/search", json.dumps({"results": [entry]}), query=query("P00698"),
                headers=js + [("X-UniProt-Release", "2024_01")])
        srv.add("/uniprotkb/search", json.dumps({"results": []}), query=query("Q99999"), headers=js)
        srv.fault("/pdbe/api/mappings/uniprot/1aki", "truncated")  # retried: the JSON check fails
        f = Fetcher(cache_dir=tmp_path, retry=RetryPolicy(attempts=3, backoff=0.01), sleep=lambda s: None,
                    timeout=(2, 5))
        cfg = {"url": srv.url("/pdbe/api/mappings/uniprot/{pdb_id}"), "uniprot_url": srv.url("/uniprotkb/search"),
               "uniprot_batch": 1}
        ann, rep = annotate_chains(chains, proteins, cfg, features, cache_dir=tmp_path, fetcher=f)
    got = {(r.type, r.start, r.end) for r in ann.itertuples()}
    assert got == EXPECTED and set(ann["accession"]) == {"1AKI_A"}
    # the chain residues carry the UniProt residues' letters: E35 is lysozyme's Glu35 (UniProt 53)
    assert LYSO_CHAIN[35 - 1] == "E" == (SIGNAL + LYSO_CHAIN)[53 - 1]
    r = rep.set_index(["source", "item", "reason"])["count"]
    assert r[("structures:sifts", "chain", "kept")] == 1
    assert r[("structures:sifts", "chain", "mapped UniProt entry not retrieved")] == 1  # 9XYZ_A
    assert r[("structures:sifts", "entry", "no SIFTS mapping (404)")] == 1  # 9ZZZ
    assert r[("structures:sifts", "chain", "no UniProt mapping in SIFTS")] == 1
    chains, proteins = chains.iloc[:1], proteins.iloc[:1]

    # the same from local files: a folder of API answers and a UniProt JSON file
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "1AKI.json").write_text(json.dumps(api))
    (tmp_path / "uniprot.json").write_text(json.dumps({"results": [entry]}))
    local = {"local": str(tmp_path / "local"), "uniprot_local": str(tmp_path / "uniprot.json")}
    ann2, _ = annotate_chains(chains, proteins, local, features, cache_dir=tmp_path)
    assert {(r.type, r.start, r.end) for r in ann2.itertuples()} == EXPECTED

    # a mapping off by one residue (a numbering error) matches UniProt at few positions: no rows
    (tmp_path / "local" / "1AKI.json").write_text(json.dumps(pdbe_answer("1AKI", "P00698", "A", [(1, 128)],
                                                                        [(20, 147)])))
    ann3, rep3 = annotate_chains(chains, proteins, local, features, cache_dir=tmp_path)
    assert ann3.empty and rep3["reason"].str.contains("identical to UniProt").any()


@needs_shared
def test_run_chain_list_writes_chain_annotations_or_none(tmp_path):
    (tmp_path / "list.txt").write_text("PDBchain len method resol rfac freerfac\n1AKIA 129 XRAY 1.50 0.212 NA\n")
    (tmp_path / "sifts").mkdir()
    (tmp_path / "sifts" / "1aki.json").write_text(json.dumps(pdbe_answer("1AKI", "P00698", "A", [(1, 129)],
                                                                        [(19, 147)])))
    (tmp_path / "uniprot.json").write_text(json.dumps({"results": [lysozyme_entry(FEATURES)]}))
    cfg = {"chain_list": str(tmp_path / "list.txt"), "local": str(STRUCT),
           "contact": {"atom": "CA", "cutoff": 8.0},
           "sifts": {"local": str(tmp_path / "sifts"), "uniprot_local": str(tmp_path / "uniprot.json")}}
    outs = [tmp_path / f"{n}.parquet" for n in ("proteins", "ann", "cm", "q", "rep")]
    run_chain_list(cfg, None, tmp_path / "cache", *outs, seed=1, features=["active_site", "binding_site", "ptm"])
    ann = read_table(outs[1])
    assert {(r.type, r.start, r.end) for r in ann.itertuples()} == EXPECTED
    assert read_table(outs[0])["sequence"].tolist() == [LYSO_CHAIN]
    cfg["sifts"]["enabled"] = False
    run_chain_list(cfg, None, tmp_path / "cache", *outs, seed=1, features=["active_site", "binding_site", "ptm"])
    assert read_table(outs[1]).empty


PINNED = SHARED / "data" / "pisces" / "cullpdb_pc30_res2.0_R0.25_d180607_chains11093.txt"


@pytest.mark.skipif(not PINNED.is_file(), reason=f"the pinned PISCES list is not in {PINNED.parent} "
                    "(it is downloaded by URL on a run; see docs/vig_structures.md)")
def test_the_pinned_pisces_list_as_the_presets_use_it():
    import yaml

    from seqxai.sources.chain_list import sha256_of

    root = Path(__file__).resolve().parents[1]
    st = yaml.safe_load((root / "config" / "paper" / "vig_esm2.yaml").read_text())["data"]["structures"]
    assert sha256_of(PINNED) == st["chain_list_sha256"] and st["chain_list"].endswith("/" + PINNED.name)
    df = read_chain_list(PINNED)
    assert len(df) == 11093 and (df["method"] == "XRAY").all() and df["resolution"].max() <= 2.0
    rep = DropReport("t")
    sel = select_chains(df, st["max_chains"], st["max_resolution"], st["min_length"], rep, seed=1)
    assert len(sel) == 5000 and rep.n("chain", "shorter than 40") == 326
