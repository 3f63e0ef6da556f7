"""The demo protein generator plants what it says, with a realistic contact background."""
import numpy as np
import pytest

from seqxai.synth_protein import (ACTIVE_RESIDUES, COMPLEMENT, GO_ATP, GO_MEMBRANE, MOTIFS,
                                  contact_ladders, generate_proteins)
from seqxai.tables import OPTIONAL_COLUMNS, SCHEMAS


@pytest.fixture(scope="module")
def data():
    return generate_proteins(n_proteins=120, n_families=2, seed=5)


def test_tables_follow_the_schemas(data):
    for name in ("proteins", "residue_annotations", "contact_maps"):
        optional = OPTIONAL_COLUMNS[name].names if name in OPTIONAL_COLUMNS else []
        assert list(data[name].columns) == SCHEMAS[name].names + optional


def test_go_aspects_are_the_real_aspects_of_the_planted_terms(data):
    # GO:0016020 membrane is a cellular component, GO:0005524 ATP binding a molecular function
    p = data["proteins"]
    assert all(len(t) == len(a) for t, a in zip(p["go_terms"], p["go_aspects"]))
    pairs = {(t, a) for ts, As in zip(p["go_terms"], p["go_aspects"]) for t, a in zip(ts, As)}
    assert pairs == {(GO_MEMBRANE, "C"), (GO_ATP, "F")}


def test_deterministic_for_a_seed():
    a = generate_proteins(n_proteins=20, seed=3)
    b = generate_proteins(n_proteins=20, seed=3)
    c = generate_proteins(n_proteins=20, seed=4)
    assert a["proteins"].equals(b["proteins"])
    assert not a["proteins"]["sequence"].equals(c["proteins"]["sequence"])


def test_contact_background_is_realistic(data):
    for r in data["contact_maps"].itertuples():
        i, j = np.array(r.contact_i), np.array(r.contact_j)
        assert (j - i >= 6).all() and i.min() >= 1 and j.max() <= r.length
        n_long = (r.length - 6) * (r.length - 5) / 2
        # unresolved N-terminal residues remove a few contacts from the 1-3% target
        assert 0.008 <= len(i) / n_long <= 0.031
        n_unres = r.resolved.count("0")
        assert r.resolved == "0" * n_unres + "1" * (r.length - n_unres)
        assert (i > n_unres).all()


def test_ladders_reach_target_density():
    rng = np.random.default_rng(0)
    pairs = contact_ladders(100, 0.02, rng)
    assert len(pairs) == round(0.02 * 94 * 95 / 2)
    assert len({tuple(p) for p in pairs}) == len(pairs)


def test_planted_features_match_sequences_and_labels(data):
    ann = data["residue_annotations"]
    truth = data["truth"].set_index("accession")
    for p in data["proteins"].itertuples():
        a = ann[ann["accession"] == p.accession]
        t = truth.loc[p.accession]
        motif = a[a["type"] == "motif"].iloc[0]
        assert p.sequence[motif.start - 1 : motif.end] == MOTIFS[t.motif_variant]
        site = a[a["type"] == "active_site"].iloc[0]
        assert site.start == site.end
        assert p.sequence[site.start - 1] == ACTIVE_RESIDUES[t.active_variant]
        assert p.sequence[site.start - 3] == "G" and p.sequence[site.start + 1] == "G"
        # the catalytic residues occur nowhere else
        assert [i + 1 for i, a in enumerate(p.sequence) if a in ACTIVE_RESIDUES] == [site.start]
        assert p.ec_class == str(2 * t.motif_variant + t.active_variant + 1)
        tm = a[a["type"] == "transmembrane"]
        assert (GO_MEMBRANE in p.go_terms) == (len(tm) > 0)
        for r in tm.itertuples():
            assert set(p.sequence[r.start - 1 : r.end]) <= set("LIVFAMW")
            assert 18 <= r.end - r.start + 1 <= 22
        bs = a[a["type"] == "binding_site"]
        assert (GO_ATP in p.go_terms) == (len(bs) == 1)
        for r in bs.itertuples():
            s = p.sequence[r.start - 1 : r.end]
            assert s[0] == "G" and s[5:7] == "GK" and s[7] in "ST"
        # segments do not overlap
        spans = sorted((r.start, r.end) for r in a.itertuples() if r.type != "active_site")
        assert all(b[0] > a_[1] for a_, b in zip(spans, spans[1:]))


def test_coupled_contacts_covary(data):
    """Across a family, residue j of a coupled contact is the complement of residue i."""
    truth = data["truth"]
    prot = data["proteins"].merge(truth, on="accession")
    fam = prot[prot["family"] == 0]
    seqs = np.array([list(s) for s in fam["sequence"]])
    cm = data["contact_maps"].set_index("accession").loc[fam["accession"].iloc[0]]
    agree = []
    for i, j in zip(np.array(cm.contact_i) - 1, np.array(cm.contact_j) - 1):
        agree.append(np.mean([COMPLEMENT[a] == b for a, b in zip(seqs[:, i], seqs[:, j])]))
    agree = np.array(agree)
    # coupled pairs agree in ~95% of members (less where a planted segment overwrote them);
    # uncoupled contacts only by chance
    assert (agree > 0.7).sum() >= 10  # of the 12 coupled contacts per family
    assert np.median(agree) < 0.5
