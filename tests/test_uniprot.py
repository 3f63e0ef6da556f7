"""UniProt parsers on real files and the paginated search against replayed real responses."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from replay_server import ReplayServer, forbid_network  # noqa: E402

from seqxai.io import DataError  # noqa: E402
from seqxai.sources import DropReport  # noqa: E402
from seqxai.sources.http import Fetcher, RetryPolicy  # noqa: E402
from seqxai.sources.uniprot import (  # noqa: E402
    ProteinRules,
    build_tables,
    load_proteins,
    return_fields,
    search_pages,
)
from seqxai.sources.uniprot_entries import Entry, entries_from_tsv, feature_type, parse_feature_cell  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    forbid_network(monkeypatch)

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (real data and recordings) is absent")
DATA = SHARED / "data" / "protein"
RJ = SHARED / "fixtures" / "uniprot" / "rest_json"
HTTR = SHARED / "fixtures" / "uniprot" / "recorded_httr2"
ENZ1 = RJ / "enzsrp_uniprotkb_accession_A1L3X0_OR_accession_2024_07_27.json"
ENZ2 = RJ / "enzsrp_uniprotkb_A0A0E3KBH3_OR_A0A072ULZ1_OR_A_2024_09_24.json"


def fetcher(tmp_path, waits=None):
    return Fetcher(cache_dir=tmp_path / "cache", retry=RetryPolicy(attempts=4, backoff=0.01, seed=0),
                   sleep=(waits if waits is not None else []).append, timeout=(2, 5))


# ------------------------------------------------------------------ small cases by hand
def test_feature_type_names():
    assert feature_type("ACT_SITE") == "active_site"
    assert feature_type("Active site") == "active_site"
    assert feature_type("TRANSMEM") == feature_type("Transmembrane") == "transmembrane"
    assert feature_type("Binding site") == feature_type("BINDING") == "binding_site"
    assert feature_type("Domain [FT]") == "domain"
    assert "ft_act_site" in return_fields(["active_site"])
    with pytest.raises(DataError, match="unknown UniProt feature type 'pocket'"):
        return_fields(["pocket"])


def test_nonstandard_rule_and_bad_features():
    ents = [
        Entry("P1", "MUOKA", features=[("active_site", 2, 2, "x"), ("motif", 4, 9, "outside"), ("motif", None, 3, "")]),
        Entry("P2", "MKXA"),
        Entry("P1", "MAAA"),
    ]
    rep = DropReport("t")
    prot, ann, _ = build_tables(ents, ProteinRules(features=["active_site", "motif"]), rep)
    assert prot.empty and rep.n("entry", "non-standard residue") == 2 and rep.n("entry", "duplicate accession") == 1
    rep = DropReport("t")
    prot, ann, _ = build_tables(ents, ProteinRules(features=["active_site", "motif"], nonstandard="map"), rep)
    assert prot["sequence"].tolist() == ["MCKKA"]  # U->C, O->K in place; P2 keeps X and is dropped
    assert ann[["start", "end"]].values.tolist() == [[2, 2]]
    assert rep.n("feature", "outside sequence") == 1 and rep.n("feature", "unknown position") == 1
    assert "P1 motif 4..9" in rep.examples[("feature", "outside sequence")]


def test_mod_res_is_ptm_in_every_reader():
    # MOD_RES (flat file), "Modified residue" (JSON display name and TSV column label) -> ptm
    assert feature_type("MOD_RES") == feature_type("Modified residue") == "ptm"
    assert "ft_mod_res" in return_fields(["ptm"])
    # a TSV cell as UniProt writes it (FT line, newlines -> spaces, features joined by "; ")
    cell = ('MOD_RES 83; /note="Sulfotyrosine"; /evidence="ECO:0000255"; MOD_RES 343; '
            '/note="Phosphoserine"; /evidence="ECO:0007744|PubMed:24275569"')
    assert parse_feature_cell(cell) == [("ptm", 83, 83, "Sulfotyrosine"), ("ptm", 343, 343, "Phosphoserine")]


@needs_shared
def test_mod_res_from_real_json_and_flat_file():
    import json

    path = RJ / "P05067.uniprotkb_entry.json"
    entry = json.loads(path.read_text())
    want = [(f["location"]["start"]["value"], f["location"]["end"]["value"])
            for f in entry["features"] if f["type"] == "Modified residue"]
    ann = load_proteins(local=path, rules=ProteinRules(features=["ptm", "binding_site"]))[1]
    got = ann[ann.type == "ptm"]
    assert list(zip(got.start, got.end)) == want and len(want) == 11
    assert got.iloc[0]["description"] == "Phosphoserine; by CK2"
    # flat file: an independent scan of the FT MOD_RES lines of each kept entry
    prot, ann, _, _ = load_proteins(local=DATA / "swissprot_entries.txt", rules=ProteinRules(features=["ptm"]))
    scan, acc = {}, None
    for line in (DATA / "swissprot_entries.txt").read_text().splitlines():
        if line.startswith("AC   ") and acc is None:
            acc = line[5:].split(";")[0].strip()
        elif line.startswith("//"):
            acc = None
        elif line.startswith("FT   MOD_RES") and acc in set(prot.accession):
            scan.setdefault(acc, []).append(int(line.split()[2]))
    got = {a: g["start"].tolist() for a, g in ann[ann.type == "ptm"].groupby("accession")}
    assert got == scan and sum(map(len, scan.values())) == 29


# ------------------------------------------------------------------ real JSON
@needs_shared
def test_json_entries_real():
    prot, ann, xrefs, rep = load_proteins(local=[ENZ1, RJ / "P05067.uniprotkb_entry.json"])
    assert prot["accession"].tolist() == ["A1L3X0", "A2RUC4", "P05067"]
    a = prot.set_index("accession")
    assert a.loc["A1L3X0", "ec"] == "2.3.1.199" and a.loc["A1L3X0", "ec_class"] == "2"
    assert a.loc["A2RUC4", "ec"] == "1.14.11.42" and a.loc["P05067", "ec"] == ""
    assert a.loc["A1L3X0", "length"] == 281 and a.loc["P05067", "length"] == 770
    assert a.loc["A1L3X0", "organism_id"] == 9606
    assert len(a.loc["A1L3X0", "go_terms"]) == 10 and "GO:0005789" in a.loc["A1L3X0", "go_terms"]
    counts = ann[ann.accession == "A1L3X0"]["type"].value_counts().to_dict()
    assert counts == {"binding_site": 10, "transmembrane": 7, "motif": 2, "active_site": 1}
    tm = ann[(ann.accession == "A1L3X0") & (ann.type == "transmembrane")].iloc[0]
    assert (tm.start, tm.end, tm.description) == (28, 48, "Helical; Name=1")
    p = ann[ann.accession == "P05067"]["type"].value_counts().to_dict()
    assert p == {"binding_site": 15, "motif": 3, "transmembrane": 1}
    assert {"PDB", "AlphaFoldDB"} <= set(xrefs[xrefs.accession == "A1L3X0"]["database"])
    assert "6Y7F" in set(xrefs["id"])
    # GO restricted to one aspect
    prot_f = load_proteins(local=ENZ1, rules=ProteinRules(go_aspects=["F"]))[0]
    assert 0 < len(prot_f.iloc[0]["go_terms"]) < 10


@needs_shared
def test_tsv_feature_and_go_cells_real():
    body = next(HTTR.glob("biomasslmb_2026/*2710a3.body")).read_text()
    row = body.splitlines()[1].split("\t")
    feats = parse_feature_cell(row[4], "O76024")
    assert len(feats) == 11 and feats[0] == ("transmembrane", 314, 334, "Helical") and feats[-1][1:3] == (870, 890)
    assert parse_feature_cell(row[5]) == [("topological_domain", 653, 869, "Lumenal")]
    go = next(HTTR.glob("biomasslmb_2026/*fdb46c.body")).read_text()
    ent_text = "Entry\tSequence\t" + go.splitlines()[0].split("\t", 1)[1] + "\n" + \
        "\n".join(x.split("\t")[0] + "\tMKV\t" + x.split("\t", 1)[1] for x in go.splitlines()[1:]) + "\n"
    ents = list(entries_from_tsv(ent_text))
    assert ents[0].accession == "O76024" and ("GO:0030425", "") in ents[0].go


@needs_shared
def test_flat_file_real():
    prot, ann, xrefs, rep = load_proteins(local=DATA / "swissprot_entries.txt")
    # 33 ID lines: 28 entries (incl. PRELIMINARY and IPI records) + 5 keyword-list records
    assert len(prot) == 28
    r = rep.set_index(["item", "reason"])["count"]
    assert r[("entry", "unparseable flat-file record")] == 7  # keyword-list blocks split by '//'
    o = ann[(ann.accession == "O95832") & (ann.type == "transmembrane")]
    assert o[["start", "end"]].values.tolist() == [[8, 28], [82, 102], [116, 136], [164, 184]]
    assert (ann.end <= ann.accession.map(prot.set_index("accession")["length"])).all()
    assert set(ann.type) == {"transmembrane", "binding_site", "active_site"}
    tpa = prot.set_index("accession").loc["P00750"]
    assert tpa["ec"] == "3.4.21.68" and len(tpa["go_terms"]) == 8
    # DR   GO; GO:0004252; F:serine-type endopeptidase activity; ... -> aspect F
    assert dict(zip(tpa["go_terms"], tpa["go_aspects"]))["GO:0004252"] == "F"
    assert sorted(tpa["go_aspects"]) == ["C"] * 2 + ["F"] * 2 + ["P"] * 4


@needs_shared
def test_clean_ec_table_real():
    prot, ann, _, rep = load_proteins(local=DATA / "clean_split10_ec.csv")
    r = rep.set_index(["item", "reason"])["count"]
    assert len(prot) + r[("entry", "non-standard residue")] == 7757
    assert r[("entry", "non-standard residue")] == 155
    prot_m, *_ = load_proteins(local=DATA / "clean_split10_ec.csv", rules=ProteinRules(nonstandard="map"))
    assert len(prot_m) == 7619  # U/O/B/Z mapped; 138 entries with X still dropped
    row = prot.set_index("accession").loc["C7C422"]
    assert row["ec"] == "3.5.2.6" and row["ec_class"] == "3" and ann.empty


@needs_shared
def test_tmbed_labels_real():
    prot, ann, _, rep = load_proteins(local=DATA / "tmbed_alpha_transmembrane.fasta")
    assert len(prot) == 593 and (ann.type == "transmembrane").sum() == 3123
    first = ann[ann.accession == "P02724"][["start", "end"]].values.tolist()
    assert first == [[91, 112]]  # label line: 90 non-H residues, then 22 H


def test_empty_result_is_a_clear_error(tmp_path):
    with ReplayServer() as srv:
        srv.add("/uniprotkb/search", b'{"results":[],"obsoleteCount":0}',
                headers=[("Content-Type", "application/json"), ("X-Total-Results", "0")],
                query={"query": "nothing", "format": "json", "size": "500", "fields": ",".join(return_fields(["motif"]))})
        with pytest.raises(DataError, match="UniProt query 'nothing' gave no usable entries"):
            load_proteins(query="nothing", rules=ProteinRules(features=["motif"]), fetcher=fetcher(tmp_path),
                          base_url=srv.url("/uniprotkb/search"))


# ------------------------------------------------------------------ REST pages over loopback
@needs_shared
def test_tsv_search_pages_real_recording(tmp_path):
    rec = sorted(HTTR.glob("csdaw_uniprotREST_2023/uniprot_search__rest.uniprot.org__uniprotkb__search-*.meta.json"))
    with ReplayServer() as srv:
        for m in rec:
            if "HEAD" not in m.name:
                srv.add_recording(m)
        f = fetcher(tmp_path)
        pages = list(search_pages(f, "FUBP3", ["accession", "id", "gene_primary"], "tsv", size=500,
                                  base_url=srv.url("/uniprotkb/search"), extra_params={"includeIsoform": "TRUE"}))
        rows = [x for p in pages for x in p.text.splitlines()[1:]]
        assert len(pages) == 2 and len(rows) == 999 == int(pages[0].headers["X-Total-Results"])
        assert pages[0].headers["X-UniProt-Release"] == "2022_05" and rows[0].startswith("Q96I24\tFUBP3_HUMAN")
        n = f.requests_made
        again = list(search_pages(f, "FUBP3", ["accession", "id", "gene_primary"], "tsv", size=500,
                                  base_url=srv.url("/uniprotkb/search"), extra_params={"includeIsoform": "TRUE"}))
        assert f.requests_made == n and [p.content for p in again] == [p.content for p in pages]  # cached pages


def _json_pages(srv, params):
    """Two real JSON bodies served as a two-page search (Link and release headers as UniProt sends them)."""
    nxt = dict(params, cursor="1bq1yslaqtbf8zsosc0nw4cegwj849rqlpnky4i03v5ygve7nh")
    link = "<https://rest.uniprot.org/uniprotkb/search?" + "&".join(f"{k}={v}" for k, v in nxt.items()) + '>; rel="next"'
    common = [("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("X-Total-Results", "8"),
              ("X-UniProt-Release", "2024_04"), ("X-UniProt-Release-Date", "24-July-2024")]
    srv.add("/uniprotkb/search", ENZ1.read_bytes(), headers=common + [("Link", link)], query=params)
    srv.add("/uniprotkb/search", ENZ2.read_bytes(), headers=common, query=nxt)
    return nxt


@needs_shared
def test_json_search_with_faults(tmp_path):
    rules = ProteinRules()
    params = {"query": "accession:A1L3X0", "format": "json", "size": "500", "fields": ",".join(return_fields(rules.features))}
    with ReplayServer() as srv:
        nxt = _json_pages(srv, params)
        srv.fault("/uniprotkb/search", "429", query=params, retry_after="3")
        srv.fault("/uniprotkb/search", "drop", query=nxt)
        srv.fault("/uniprotkb/search", "truncated", query=nxt)
        waits = []
        prot, ann, xrefs, rep = load_proteins(query="accession:A1L3X0", rules=rules, fetcher=fetcher(tmp_path, waits),
                                              base_url=srv.url("/uniprotkb/search"), page_size=10_000)
    assert len(prot) == 8 and prot["accession"].iloc[0] == "A1L3X0"
    assert waits[0] >= 3.0 and len(waits) == 3
    prov = set(rep[rep.item == "provenance"]["reason"])
    assert "release=2024_04" in prov and "total_results=8" in prov
    multi = prot[prot.ec.str.contains(";")]
    assert len(multi) >= 1 and all(e.split(";") == sorted(e.split(";")) for e in multi.ec)


# ------------------------------------------------------------------ GO aspects (go_aspects column)
def test_go_aspects_per_term_by_hand():
    from seqxai.sources.uniprot_entries import go_with_aspects

    go = [("GO:0000002", ""), ("GO:0000001", "P"), ("GO:0000002", "F"), ("GO:0000003", "C"),
          ("GO:0000004", "")]
    assert go_with_aspects(go, "FPC") == (["GO:0000001", "GO:0000002", "GO:0000003", "GO:0000004"],
                                          ["P", "F", "C", ""])
    # a download limited to F keeps F terms and those of unknown aspect
    assert go_with_aspects(go, ["F"]) == (["GO:0000002", "GO:0000004"], ["F", ""])
    # the search asks for the aspect-carrying GO fields (TSV "Gene Ontology IDs" has no aspect)
    assert {"go_f", "go_p", "go_c"} <= set(return_fields([])) and "go_id" not in return_fields([])


@needs_shared
def test_go_aspect_task_on_real_json_and_parquet_round_trip(tmp_path):
    import json

    import pandas as pd

    from seqxai import protein_tasks as pt
    from seqxai.io import read_table, write_table

    prot = load_proteins(local=ENZ1)[0]
    # independent reference: the GoTerm "F:..." cross-references in the raw JSON
    raw = json.loads(ENZ1.read_text())["results"]
    want_f = {e["primaryAccession"]: {x["id"] for x in e["uniProtKBCrossReferences"] if x["database"] == "GO"
                                      and any(p["value"].startswith("F:") for p in x["properties"])}
              for e in raw}
    assert want_f["A1L3X0"] == {"GO:0009922"} and len(want_f["A2RUC4"]) == 5  # mixed aspects
    a = prot.set_index("accession").loc["A1L3X0"]
    assert len(a["go_terms"]) == len(a["go_aspects"]) == 10
    assert sorted(a["go_aspects"]) == ["C"] * 2 + ["F"] + ["P"] * 7
    write_table(tmp_path / "proteins.parquet", prot, "proteins")
    back = read_table(tmp_path / "proteins.parquet", "proteins")
    assert [list(x) for x in back["go_aspects"]] == [list(x) for x in prot["go_aspects"]]
    assert [list(x) for x in back["go_terms"]] == [list(x) for x in prot["go_terms"]]
    task = {"type": "multi_label", "column": "go_terms", "aspect": "F", "terms": sorted(set().union(*want_f.values()))}
    got = pt.go_terms_of(back, task)
    assert dict(zip(back["accession"], got)) == want_f
    assert dict(zip(back["accession"], pt.go_terms_of(back, {**task, "aspect": "C"}))) == {
        "A1L3X0": {"GO:0005783", "GO:0005789"}, "A2RUC4": {"GO:0005737"}}
    # the split-level check sees the same F terms
    splits = pd.DataFrame({"accession": back["accession"], "split": ["train", "train"], "cluster": ""})
    counts, _ = pt.label_counts(back, splits, {"go_f": task})
    assert counts[counts.split == "train"].set_index("label")["n_positive"].to_dict() == {
        t: 1 for t in task["terms"]}


def test_go_aspects_from_tsv_columns_and_the_unknown_aspect_error(tmp_path):
    import pandas as pd

    from seqxai import protein_tasks as pt
    from seqxai.io import write_table

    tsv = ("Entry\tSequence\tGene Ontology (molecular function)\tGene Ontology (cellular component)\t"
           "Gene Ontology IDs\n"
           "P1\tMKV\tATP binding [GO:0005524]\tmembrane [GO:0016020]\tGO:0005524; GO:0016020\n"
           "P2\tMKL\t\tcytoplasm [GO:0005737]\tGO:0005737\n")
    (tmp_path / "go.tsv").write_text(tsv)
    prot = load_proteins(local=tmp_path / "go.tsv")[0]
    assert [list(x) for x in prot["go_aspects"]] == [["F", "C"], ["C"]]
    # only the ids column: aspects unknown, the table still loads; an aspect task names file and column
    (tmp_path / "ids.tsv").write_text("Entry\tSequence\tGene Ontology IDs\nP1\tMKV\tGO:0005524; GO:0016020\n"
                                      "P2\tMKL\tGO:0005737\n")
    ids = load_proteins(local=tmp_path / "ids.tsv")[0]
    assert [list(x) for x in ids["go_aspects"]] == [["", ""], [""]]
    write_table(tmp_path / "p.parquet", ids, "proteins")
    splits = pd.DataFrame({"accession": ["P1", "P2"], "split": ["train", "valid"], "cluster": ""})
    write_table(tmp_path / "s.parquet", splits, "splits")
    task = {"type": "multi_label", "column": "go_terms", "aspect": "F", "terms": ["GO:0005524"]}
    with pytest.raises(DataError, match=r"p\.parquet: task with aspect 'F': 3 GO terms of column "
                                        r"'go_terms' have no aspect in column 'go_aspects'"):
        pt.run_label_check(tmp_path / "p.parquet", tmp_path / "s.parquet", {"go": task}, tmp_path / "c.parquet")
    # a table without the column (older or hand-made) still reads; only the aspect task fails
    write_table(tmp_path / "old.parquet", ids.drop(columns="go_aspects"), "proteins")
    with pytest.raises(DataError, match=r"old\.parquet: task with aspect 'F' needs per-term GO aspects "
                                        r"in a column 'go_aspects'"):
        pt.run_label_check(tmp_path / "old.parquet", tmp_path / "s.parquet", {"go": task}, tmp_path / "c.parquet")
    no_aspect = {k: v for k, v in task.items() if k != "aspect"}
    _, problems = pt.label_counts(ids.drop(columns="go_aspects"), splits, {"go": no_aspect})
    assert problems and not any("aspect" in p for p in problems)  # only the empty splits of this toy
