"""The demo protein generator plants what it says, with a realistic contact background."""
import itertools

import numpy as np
import pytest

from seqxai.synth_protein import (
    ACTIVE_RESIDUES,
    COMPLEMENT,
    GO_ATP,
    GO_MEMBRANE,
    MOTIFS,
    contact_ladders,
    generate_proteins,
)
from seqxai.tables import OPTIONAL_COLUMNS, SCHEMAS

# the demo's setting (config/demo.yaml): 20 families of 80-140 columns with indels, 20 coupled
# hairpin pairs (i, i + 6) of variable columns per family
DEMO = {"n_families": 20, "length_range": (80, 140), "n_coupled": 20, "coupled_separation": 6,
        "coupled_conservation": 5.0, "deletion_rate": 0.05, "insertion_rate": 0.05, "max_insertion": 3}


@pytest.fixture(scope="module")
def data():
    return generate_proteins(n_proteins=200, seed=5, **DEMO)


@pytest.fixture(scope="module")
def uncoupled():
    """The negative control: the same seed with coupling 0."""
    return generate_proteins(n_proteins=200, seed=5, coupling=0.0, **DEMO)


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
        # unresolved N-terminal residues, deletions and insertions move the 1-3% target a little
        assert 0.006 <= len(i) / n_long <= 0.031
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
        assert all(b[0] > a_[1] for a_, b in itertools.pairwise(spans))


def _excess_complement(data) -> np.ndarray:
    """Per coupled column pair (aligned through each member's indels): the share of members where
    residue j is the complement of residue i, minus that share if the columns were independent
    (product of the column frequencies); ~0 without covariation."""
    prot = data["proteins"].merge(data["truth"].drop(columns="family"), on="accession")
    out = []
    for f, fam in enumerate(data["families"]):
        members = prot[prot["family"] == f"family{f}"]
        for i, j in fam.coupled:
            a, b = (np.array([s[p[c]] for s, p in zip(members["sequence"], members["columns"])
                              if p[i] >= 0 and p[j] >= 0]) for c in (i, j))
            if len(a) < 5:
                continue
            observed = np.mean([COMPLEMENT[x] == y for x, y in zip(a, b)])
            expected = sum(np.mean(a == r) * np.mean(b == COMPLEMENT[r]) for r in COMPLEMENT)
            out.append(observed - expected)
    return np.array(out)


def test_coupled_contacts_covary(data):
    """Across a family, aligned through the indels, residue j of a coupled contact is the
    complement of residue i far more often than independent columns would make it."""
    excess = _excess_complement(data)
    assert len(excess) >= 200  # 20 coupled pairs x 20 families, less those with few members
    # coupling 0.95; planted segments overwrite some ends (measured median 0.70 at seed 5)
    assert np.median(excess) > 0.5


def test_without_coupling_nothing_covaries_and_nothing_else_changes(data, uncoupled):
    """coupling 0: the same families, lengths, alignments and contact maps, no covariation."""
    excess = _excess_complement(uncoupled)
    assert abs(np.median(excess)) < 0.05  # measured 0.00 at seed 5; coupled: 0.70
    for name in ("contact_maps", "residue_annotations"):
        assert data[name].equals(uncoupled[name])
    assert data["proteins"]["length"].equals(uncoupled["proteins"]["length"])
    assert data["truth"]["columns"].equals(uncoupled["truth"]["columns"])
    diff = [np.mean([x != y for x, y in zip(a, b)]) for a, b in
            zip(data["proteins"]["sequence"], uncoupled["proteins"]["sequence"])]
    assert 0.02 < np.mean(diff) < 0.3
    # ... and every residue that differs is a coupled end
    prot = data["proteins"].merge(data["truth"].drop(columns="family"), on="accession")
    for r, b in zip(prot.itertuples(), uncoupled["proteins"]["sequence"]):
        pos = np.asarray(r.columns)[data["families"][int(r.family[6:])].coupled.ravel()]
        changed = {k for k, (x, y) in enumerate(zip(r.sequence, b)) if x != y}
        assert changed <= set(pos[pos >= 0].tolist())


def test_coupled_hairpins_sit_at_the_same_separation_in_every_member(data):
    """coupled_separation 6: each family's coupled pairs are contacts (i, i + 6) of distinct
    columns; no indel falls between their ends, so in every member that keeps both ends the
    partner is 6 residues away (and a contact of the member's map), while indels elsewhere
    still move the map (test_indels_move_the_contact_map)."""
    prot = data["proteins"].merge(data["truth"].drop(columns="family"), on="accession")
    maps = data["contact_maps"].set_index("accession")
    n_pairs = 0
    for f, fam in enumerate(data["families"]):
        assert len(fam.coupled) == 20 and len(np.unique(fam.coupled)) == 40
        assert (fam.coupled[:, 1] - fam.coupled[:, 0] == 6).all()
        assert {tuple(p) for p in fam.coupled} <= {tuple(p) for p in fam.contacts}
        for r in prot[prot["family"] == f"family{f}"].itertuples():
            pos = np.asarray(r.columns)[fam.coupled]
            pos = pos[(pos >= 0).all(axis=1)]
            assert (pos[:, 1] - pos[:, 0] == 6).all()
            cm = maps.loc[r.accession]
            n_unres = cm.resolved.count("0")
            got = set(zip(np.array(cm.contact_i) - 1, np.array(cm.contact_j) - 1))
            assert {tuple(p) for p in pos.tolist() if p[0] >= n_unres} <= got
            n_pairs += len(pos)
    assert n_pairs > 0.9 * 20 * len(prot)  # the ends themselves are still deleted now and then


def test_ladder_coupling_is_unchanged_without_a_separation():
    """coupled_separation null: coupled contacts come from the ladders, indels anywhere."""
    data = generate_proteins(n_proteins=50, seed=5, **{**DEMO, "coupled_separation": None})
    seps = np.concatenate([f.coupled[:, 1] - f.coupled[:, 0] for f in data["families"]])
    assert len(np.unique(seps)) > 5 and all(f.rigid is None for f in data["families"])


def test_at_least_20_families_of_varied_length(data):
    fam = data["proteins"]["family"]
    assert fam.nunique() == 20
    lengths = data["proteins"].groupby("family")["length"]
    assert lengths.median().max() - lengths.median().min() >= 30  # families differ in length
    assert (lengths.nunique() > 1).all()  # ... and so do members of one family (indels)


def test_indels_move_the_contact_map(data):
    """Each member's contact map is its family's map carried through the member's own
    alignment: the same column pairs, at residue positions that differ between members."""
    prot = data["proteins"].merge(data["truth"].drop(columns="family"), on="accession")
    maps = data["contact_maps"].set_index("accession")
    moved = 0
    for f, fam in enumerate(data["families"]):
        members = prot[prot["family"] == f"family{f}"]
        seen = []
        for r in members.itertuples():
            pos = np.asarray(r.columns)
            assert len(pos) == fam.length and len(r.sequence) == r.length
            kept = pos[pos >= 0]
            assert (np.diff(kept) > 0).all()  # an alignment keeps the column order
            col_of = {int(p): c for c, p in enumerate(pos) if p >= 0}
            cm = maps.loc[r.accession]
            n_unres = cm.resolved.count("0")
            got = {(col_of[i - 1], col_of[j - 1]) for i, j in zip(cm.contact_i, cm.contact_j)}
            # the family's contacts whose columns the member kept, >= 6 apart, past unresolved ones
            want = {(int(a), int(b)) for a, b in fam.contacts
                    if pos[a] >= n_unres and pos[b] >= 0 and abs(pos[b] - pos[a]) >= 6}
            assert got == want
            seen.append({(int(pos[a]), int(pos[b])) for a, b in fam.contacts if pos[a] >= 0 and pos[b] >= 0})
        moved += len(seen) > 1 and len(set.intersection(*seen)) < len(fam.contacts) // 2
    assert moved >= 15  # in most families no member shares half the others' contact positions
