"""GO labels follow the ontology: OBO parsing, ancestors over is_a and part_of, propagation of the
proteins table, the go-basic download over loopback, and the real Swiss-Prot sample."""
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from replay_server import ReplayServer, forbid_network

from seqxai.go_ontology import parse_obo, propagate_proteins
from seqxai.io import DataError
from seqxai.sources.gene_ontology import fetch_go_basic, run_go
from seqxai.sources.http import DownloadError, Fetcher, RetryPolicy

DATA = Path(__file__).resolve().parent / "data"
SMALL = DATA / "go_small.obo"
EXCERPT = DATA / "go_membrane_excerpt.obo"
SHARED = Path(__file__).resolve().parents[2] / "shared"
SWISSPROT = SHARED / "data" / "protein" / "swissprot_entries.txt"
A, B, C, D, E = (f"GO:000000{i}" for i in range(1, 6))
P1, P2, P3, M, OBSOLETE, D_ALT = "GO:0000010", "GO:0000011", "GO:0000012", "GO:0000020", "GO:0000030", "GO:0000014"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    forbid_network(monkeypatch)


@pytest.fixture(scope="module")
def small():
    return parse_obo(SMALL)


def test_closures_by_hand(small):
    """The diamond D -> B, C -> A; E part_of D; regulates does not propagate."""
    assert len(small) == 10 and small.data_version == "releases/2000-01-01"
    assert small.ancestors(A) == {A}
    assert small.ancestors(B) == {B, A} and small.ancestors(C) == {C, A}
    assert small.ancestors(D) == {D, B, C, A}
    assert small.ancestors(E) == {E, D, B, C, A}  # over part_of
    assert small.ancestors(P3) == {P3, P1}  # not P2: regulates is not propagated
    assert small.ancestors(P2) == {P2, P1}
    assert small.terms[D].parents == (("is_a", B), ("is_a", C))  # comment and {modifier} stripped


def test_propagate_drops_obsolete_and_unknown_and_maps_alt_ids(small):
    counts = Counter()
    got = small.propagate([D_ALT, OBSOLETE, "GO:9999999", P3, M], counts)
    assert got == sorted([A, B, C, D, P1, P3, M])
    assert counts == Counter({"alt_id": 1, "obsolete": 1, "unknown": 1})
    assert small.resolve(D_ALT) == (D, "alt_id") and small.resolve(OBSOLETE) == (None, "obsolete")
    assert small.propagate([]) == []


def test_aspect_from_namespace(small):
    assert [small.aspect(t) for t in (A, E, P1, P3, M)] == ["C", "C", "P", "P", "F"]


def test_propagate_proteins_table(small):
    prot = pd.DataFrame({"accession": ["p1", "p2", "p3"],
                         "go_terms": [[E], [P3, "GO:9999999"], [OBSOLETE, M]],
                         "go_aspects": [["C"], ["P", ""], ["C", "F"]]})
    out, rep = propagate_proteins(prot, small)
    assert out["go_terms"].tolist() == [[A, B, C, D, E], [P1, P3], [M]]
    assert out["go_aspects"].tolist() == [["C"] * 5, ["P", "P"], ["F"]]
    assert prot["go_terms"].tolist()[0] == [E]  # the input table is not changed
    assert {k: rep[k] for k in ("proteins", "annotations_before", "annotations_after", "terms_before",
                                "terms_after", "obsolete_dropped", "unknown_dropped", "alt_ids_remapped")} == {
        "proteins": 3, "annotations_before": 5, "annotations_after": 8, "terms_before": 5,
        "terms_after": 8, "obsolete_dropped": 1, "unknown_dropped": 1, "alt_ids_remapped": 0}
    assert rep["examples"] == {"obsolete": [f"p3:{OBSOLETE}"], "unknown": ["p2:GO:9999999"]}
    # keep_aspects (data.uniprot.go_aspects) applies to the propagated terms
    only_c, rep_c = propagate_proteins(prot, small, keep_aspects=["C"])
    assert only_c["go_terms"].tolist() == [[A, B, C, D, E], [], []] and rep_c["outside_aspects"] == 3


def _obo(tmp_path, body, header="format-version: 1.2\n"):
    p = tmp_path / "bad.obo"
    p.write_text(header + body)
    return p


@pytest.mark.parametrize("body, message", [
    ("\n[Term]\nid: GO:1\nnamespace: cellular_component\nno colon here\n", r"bad.obo:6: malformed line"),
    ("\n[Term]\nname: x\nnamespace: cellular_component\n", r"bad.obo:3: \[Term\] stanza without 'id'"),
    ("\n[Term]\nid: GO:1\n", r"bad.obo:3: term 'GO:1' has no 'namespace'"),
    ("\n[Term]\nid: GO:1\nnamespace: c\nis_a: GO:2\n", r"bad.obo:3: term 'GO:1': is_a 'GO:2' is not defined"),
    ("\n[Term]\nid: GO:1\nnamespace: c\nrelationship: part_of\n", r"bad.obo:6: malformed relationship"),
    ("\n[Term]\nid: GO:1\nnamespace: c\n\n[Term]\nid: GO:1\nnamespace: c\n",
     r"bad.obo:7: term 'GO:1' defined twice \(first at line 3\)"),
    ("\n[Term]\nid: GO:1\nnamespace: c\nis_a: GO:2\n\n[Term]\nid: GO:2\nnamespace: c\nrelationship: part_of GO:1\n",
     r"bad.obo:\d+: cycle over is_a/part_of"),
    ("\n[Term\nid: GO:1\n", r"bad.obo:3: malformed stanza header"),
    ("\n[Term]\nid: GO:1\nnamespace: c\nis_obsolete: yes\n", r"bad.obo:6: is_obsolete must be true or false"),
])
def test_malformed_obo_names_file_and_line(tmp_path, body, message):
    with pytest.raises(DataError, match=message):
        parse_obo(_obo(tmp_path, body))


def test_default_namespace_and_typedef_ignored(tmp_path):
    onto = parse_obo(_obo(tmp_path, "\n[Typedef]\nid: part_of\n\n[Term]\nid: GO:1\n",
                          "format-version: 1.2\ndefault-namespace: molecular_function\n"))
    assert list(onto.terms) == ["GO:1"] and onto.aspect("GO:1") == "F"


def test_download_over_loopback(tmp_path):
    """go-basic.obo of the pinned release: fetched once (a dropped connection retried), cached,
    checked against data-version; a file of another release is refused."""
    text = SMALL.read_text()
    with ReplayServer() as srv:
        route = srv.add("/2000-01-01/ontology/go-basic.obo", text, headers=[("Content-Type", "text/plain")])
        srv.fault("/2000-01-01/ontology/go-basic.obo", "short")
        srv.add("/2000-02-02/ontology/go-basic.obo", text, headers=[("Content-Type", "text/plain")])
        srv.add("/2000-03-03/ontology/go-basic.obo", "<html>not found</html>",
                headers=[("Content-Type", "text/html")])
        f = Fetcher(cache_dir=tmp_path, retry=RetryPolicy(attempts=2, backoff=0.01), sleep=lambda s: None,
                    timeout=(2, 10))
        url = srv.url("/{release}/ontology/go-basic.obo")
        path = fetch_go_basic(f, "2000-01-01", tmp_path, url)
        assert path == tmp_path / "go" / "2000-01-01" / "go-basic.obo" and path.read_text() == text
        assert route.hits == 2 and (path.parent / "go-basic.obo.meta.json").is_file()
        assert fetch_go_basic(f, "2000-01-01", tmp_path, url) == path and route.hits == 2  # cached
        with pytest.raises(DownloadError, match="not the pinned release '2000-02-02'"):
            fetch_go_basic(f, "2000-02-02", tmp_path, url)
        with pytest.raises(DownloadError, match="not an OBO file"):
            fetch_go_basic(f, "2000-03-03", tmp_path, url)
        assert not (tmp_path / "go" / "2000-02-02" / "go-basic.obo").exists()
        # the rule entry point: the cached release is copied to the run's output, not fetched again
        out = tmp_path / "run" / "go.obo"
        run_go({"release": "2000-01-01", "url": url, "local": None}, {"attempts": 1}, tmp_path, out)
        assert out.read_text() == text and route.hits == 2
        with pytest.raises(DataError, match=r"data.go.url must contain '\{release\}'"):
            fetch_go_basic(f, "2000-01-01", tmp_path / "other", srv.url("/go-basic.obo"))


def test_run_go_local_file(tmp_path, caplog):
    out = tmp_path / "go.obo"
    run_go({"release": "2024-06-17", "local": str(SMALL)}, None, tmp_path / "cache", out)
    assert out.read_text() == SMALL.read_text()
    assert "is release 2000-01-01, not the configured release 2024-06-17" in caplog.text
    html = tmp_path / "page.html"
    html.write_text("<html></html>\n")
    with pytest.raises(DataError, match="data.go.local: .*page.html: not an OBO file"):
        run_go({"release": "2024-06-17", "local": str(html)}, None, tmp_path / "cache", out)
    with pytest.raises(DataError, match="data.go.local: file not found"):
        run_go({"release": "2024-06-17", "local": str(tmp_path / "missing.obo")}, None, tmp_path / "cache", out)
    with pytest.raises(DataError, match="data.go.release: a release date"):
        run_go({"release": None, "local": None}, None, tmp_path / "cache", out)
    assert out.read_text() == SMALL.read_text()  # failed runs left the earlier output alone


@pytest.mark.skipif(not SWISSPROT.is_file(), reason="../shared (the real Swiss-Prot sample) is absent")
def test_real_swissprot_membrane_positives_after_propagation():
    """Counted by hand in swissprot_entries.txt: GO:0016020 itself on P04439, P60904, P62258;
    only descendants on O95832, P0CK95, P16235 (plasma membrane), Q13454 (ER and plasma
    membrane), P68308 (mitochondrial inner membrane). Not positive: F2CXE6 (only the obsolete
    GO:0016021), Q13639 (obsolete GO:0005887, GO:0005624), P60137 (obsolete GO:0016021; its
    thylakoid membrane is not in the excerpt). Obsolete annotations: GO:0016021 x4, GO:0005887 x5,
    GO:0005624 x1."""
    from seqxai.sources.uniprot import load_proteins

    prot, _, _, _ = load_proteins(local=str(SWISSPROT))
    onto = parse_obo(EXCERPT)
    membrane = "GO:0016020"
    before = sorted(prot.loc[prot["go_terms"].map(lambda g: membrane in g), "accession"])
    assert before == ["P04439", "P60904", "P62258"]
    out, rep = propagate_proteins(prot, onto)
    after = sorted(out.loc[out["go_terms"].map(lambda g: membrane in g), "accession"])
    assert len(prot) == 28 and len(before) == 3 and len(after) == 8
    assert sorted(set(after) - set(before)) == ["O95832", "P0CK95", "P16235", "P68308", "Q13454"]
    assert rep["obsolete_dropped"] == 10
    # every positive also carries the ancestors of membrane, all cellular component
    for terms, aspects in zip(out["go_terms"], out["go_aspects"]):
        if membrane in terms:
            assert {"GO:0110165", "GO:0005575"} <= set(terms) and set(aspects) == {"C"}


def test_demo_ontology_keeps_the_demo_labels(tmp_path):
    """The rules demo_proteins -> propagate_go, as functions: the demo's two terms stay on exactly
    the proteins that carried them, with their ancestors and the aspects of their namespaces."""
    from seqxai.go_ontology import run_propagate_go
    from seqxai.io import read_table
    from seqxai.synth_protein import GO_ATP, GO_MEMBRANE, write_demo_proteins

    d = tmp_path
    write_demo_proteins({"n_proteins": 40, "n_families": 2}, 3, d / "raw.parquet", d / "ann.parquet",
                        d / "cm.parquet", d / "rep.parquet", d / "go.obo")
    rep = run_propagate_go(d / "raw.parquet", d / "go.obo", d / "proteins.parquet")
    raw, prop = read_table(d / "raw.parquet", "proteins"), read_table(d / "proteins.parquet", "proteins")
    for term in (GO_MEMBRANE, GO_ATP):
        assert raw["go_terms"].map(lambda g, t=term: t in g).tolist() == \
            prop["go_terms"].map(lambda g, t=term: t in g).tolist()
    n_mem = int(raw["go_terms"].map(lambda g: GO_MEMBRANE in g).sum())
    n_atp = int(raw["go_terms"].map(lambda g: GO_ATP in g).sum())
    assert 0 < n_mem < 40 and 0 < n_atp < 40
    for terms, aspects in zip(prop["go_terms"], prop["go_aspects"]):
        want = (["GO:0005575", GO_MEMBRANE, "GO:0110165"] if GO_MEMBRANE in terms else []) + \
            (["GO:0003674", "GO:0005488", GO_ATP] if GO_ATP in terms else [])
        assert list(terms) == sorted(want)
        assert list(aspects) == ["F" if t in ("GO:0003674", "GO:0005488", GO_ATP) else "C" for t in terms]
    assert (rep["annotations_before"], rep["annotations_after"]) == (n_mem + n_atp, 3 * (n_mem + n_atp))
    assert rep["obsolete_dropped"] == rep["unknown_dropped"] == 0


def test_provenance_names_the_go_release(tmp_path):
    """summary.json's data provenance: the pinned release and its URL, or the local file with its
    hash and the release it states."""
    import hashlib

    import yaml

    from seqxai.summary import data_provenance

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    go = data_provenance(cfg)["go"]
    assert go == {"pinned_release": "2024-06-17", "local": [], "file_release": None,
                  "url": "https://release.geneontology.org/2024-06-17/ontology/go-basic.obo"}
    cfg["data"]["go"]["local"] = str(SMALL)
    go = data_provenance(cfg)["go"]
    assert go["url"] is None and go["file_release"] == "releases/2000-01-01"
    assert go["local"] == [{"path": str(SMALL), "sha256": hashlib.sha256(SMALL.read_bytes()).hexdigest()}]
