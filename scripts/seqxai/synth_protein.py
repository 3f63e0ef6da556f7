"""Offline demo proteins: a positive control with known answers for every probe.

Proteins are drawn from synthetic families. Each family has its own number of columns, a
contact map over its columns built from beta-ladder-like stripes (1-3% of the pairs at
separation >= 6, the background of real proteins) and a position-specific profile. Each
protein is sampled from its family's profile with insertions and deletions: a column is
deleted with probability ``deletion_rate``, and after a column 1..``max_insertion`` random
residues are inserted with probability ``insertion_rate``. The protein's contact map is the
family map carried through the protein's own alignment (a contact between two columns is a
contact between the residues they became; a deleted column takes its contacts with it), so
the same contact sits at different positions in different members of a family. A subset of
the contacts is *coupled*: the residue at j is the complement of the residue at i with
probability ``coupling``, as coevolution makes contacting residues covary, so a model that
learns the sequences has a reason to attend between contacting residues. ``coupling: 0``
is the negative control: the same families, lengths, alignments and maps (the random draws
are the same), no covariation. With ``coupled_separation`` = d the coupled contacts are
hairpin-like pairs (i, i + d) with no indel between their ends: the partner is d residues
away in every member of every family, so one generic head at relative offset d can use the
covariation (a small encoder did not learn to find family-specific partners in the demo's
budget, docs/demo_controls.md).

Labels depend only on planted features, placed at random positions per protein:
- EC-like class (4 classes) = 2 * motif variant + active-site variant. The motif is one
  of two 6-mers (annotation ``motif``); the active site is the centre of a G-x-[S|C]-x-G
  context whose flanks are shared by both variants, so only the catalytic residue
  (annotation ``active_site``) tells the variants apart.
- GO-like terms: GO:0016020 (membrane) iff the protein has transmembrane helices
  (``transmembrane``), GO:0005524 (ATP binding) iff it has a P-loop G-x(4)-G-K-[ST]
  (``binding_site``). Their ``go_aspects`` are the real aspects of these terms: C (cellular
  component) for membrane, F (molecular function) for ATP binding.

Positions in the returned tables are 1-based inclusive (see :mod:`seqxai.tables`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .tables import STANDARD_AMINO_ACIDS as AA

# A fixed complement used for coupled contacts: salt bridges, aromatic and
# hydrophobic pairs, cysteines with cysteines.
_COMPLEMENT_PAIRS = [
    ("K", "E"), ("R", "D"), ("C", "C"), ("H", "H"), ("F", "Y"), ("W", "W"), ("L", "I"),
    ("V", "A"), ("S", "T"), ("N", "Q"), ("G", "P"), ("M", "M"),
]
COMPLEMENT = {}
for _a, _b in _COMPLEMENT_PAIRS:
    COMPLEMENT[_a], COMPLEMENT[_b] = _b, _a
assert sorted(COMPLEMENT) == sorted(AA)

MOTIFS = ("DPWNER", "NYFQMK")  # motif variant 0 / 1 (no C or H: those mark active sites)
ACTIVE_CONTEXT = "G{x}{c}{y}G"  # catalytic residue c in the centre
ACTIVE_RESIDUES = ("C", "H")  # active-site variant 0 / 1 (cysteine / histidine nucleophile)
PLOOP = "G{a}{b}{c}{d}GK{st}"  # Walker A motif; the whole motif is the binding site
GO_MEMBRANE = "GO:0016020"
GO_ATP = "GO:0005524"
GO_ASPECT = {GO_MEMBRANE: "C", GO_ATP: "F"}  # as in the Gene Ontology
# The demo's ontology (rule demo_proteins writes it; rule propagate_go reads it, as go-basic.obo
# in a real run): the two terms and what lies above them in go-basic, shortened for ATP binding
# (go-basic has nucleotide-binding terms between ATP binding and binding). Propagation adds the
# ancestors and keeps both terms, so the demo's labels of GO:0016020 and GO:0005524 stay the same.
DEMO_GO_OBO = """format-version: 1.2
data-version: demo
ontology: go
remark: the ontology of the offline demo (seqxai.synth_protein), not a go-basic release

[Term]
id: GO:0005575
name: cellular_component
namespace: cellular_component

[Term]
id: GO:0110165
name: cellular anatomical entity
namespace: cellular_component
is_a: GO:0005575 ! cellular_component

[Term]
id: GO:0016020
name: membrane
namespace: cellular_component
is_a: GO:0110165 ! cellular anatomical entity

[Term]
id: GO:0003674
name: molecular_function
namespace: molecular_function

[Term]
id: GO:0005488
name: binding
namespace: molecular_function
is_a: GO:0003674 ! molecular_function

[Term]
id: GO:0005524
name: ATP binding
namespace: molecular_function
is_a: GO:0005488 ! binding
"""
HYDROPHOBIC = "LIVFAMW"
# The catalytic residues occur only at active sites, so each variant is a residue the
# model must read there (and the complement of a background residue is never one of them).
_BACKGROUND_AA = "".join(a for a in AA if a not in ACTIVE_RESIDUES)


@dataclass
class Family:
    length: int  # columns
    contacts: np.ndarray  # [n, 2] 0-based columns, i < j, |i-j| >= 6
    coupled: np.ndarray  # [m, 2] 0-based subset of contacts, no column twice
    profile: np.ndarray  # [length, 20] residue probabilities over _BACKGROUND_AA order of AA
    rigid: tuple | None = None  # (columns never deleted, columns never followed by an insertion)


def contact_ladders(length: int, density: float, rng: np.random.Generator,
                    min_sep: int = 6) -> np.ndarray:
    """Contact pairs [n, 2] (0-based, i<j) laid out as beta-ladder stripes.

    Stripes are antiparallel (i+t, j-t) or parallel (i+t, j+t) runs of 3-8 pairs,
    thickened by a neighbour on one side, until ``density`` of the pairs with
    |i-j| >= min_sep are contacts.
    """
    n_long = (length - min_sep) * (length - min_sep + 1) // 2
    target = max(1, round(density * n_long))
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < target:
        i0 = int(rng.integers(0, length - min_sep - 4))
        j0 = int(rng.integers(i0 + min_sep + 3, length))
        run = int(rng.integers(3, 9))
        anti = rng.random() < 0.6
        for t in range(run):
            i, j = i0 + t, (j0 - t if anti else j0 + t)
            for dj in (0, 1 if rng.random() < 0.5 else 0):
                a, b = sorted((i, j + dj))
                if 0 <= a and b < length and b - a >= min_sep and len(pairs) < target:
                    pairs.add((a, b))
            if len(pairs) >= target:
                break
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def make_family(length: int, density: float, n_coupled: int, conservation: float,
                rng: np.random.Generator, coupled_conservation: float | None = None,
                coupled_separation: int | None = None) -> Family:
    """A family: contact ladders, ``n_coupled`` of its contacts coupled, a Dirichlet profile
    (concentration ``conservation``; the coupled columns ``coupled_conservation`` when given:
    variable columns, as real covarying sites are, whose residue only its partner predicts).

    ``coupled_separation`` = d: the coupled contacts are instead ``n_coupled`` pairs of columns
    (i, i + d), no column twice, added to the contacts (a tight hairpin's two sides), and the
    columns between (and the ends, for insertions) are rigid: no indel, so the partner of a
    coupled residue sits d residues away in every member. A generic head at relative offset d
    then finds it, while the contact map still moves with the indels elsewhere.
    """
    if coupled_separation is not None:  # the hairpins are part of the contact density
        n_long = (length - 6) * (length - 5) // 2
        density = max(density - n_coupled / n_long, 1.0 / n_long)
    contacts = contact_ladders(length, density, rng)
    used: set[int] = set()
    coupled = []
    if coupled_separation is not None:  # hairpin-like pairs (i, i + d), added to the contacts
        d = coupled_separation
        for i in rng.permutation(length - d):
            i = int(i)
            if i not in used and i + d not in used:
                coupled.append((i, i + d))
                used.update((i, i + d))
            if len(coupled) >= n_coupled:
                break
        extra = np.array(coupled, dtype=np.int64).reshape(-1, 2)
        contacts = np.unique(np.concatenate([contacts, extra]), axis=0)
    for k in rng.permutation(len(contacts)) if coupled_separation is None else []:
        i, j = contacts[k]
        if i not in used and j not in used:
            coupled.append((i, j))
            used.update((i, j))
        if len(coupled) >= n_coupled:
            break
    # Dirichlet profile over the background alphabet: low concentration = conserved columns.
    alpha = np.full(len(_BACKGROUND_AA), conservation)
    prof = rng.dirichlet(alpha, size=length)
    if coupled_conservation is not None and len(coupled):
        cols = np.array(coupled).ravel()
        prof[cols] = rng.dirichlet(np.full(len(_BACKGROUND_AA), coupled_conservation), size=len(cols))
    full = np.zeros((length, len(AA)))
    for k, a in enumerate(_BACKGROUND_AA):
        full[:, AA.index(a)] = prof[:, k]
    rigid = None
    if coupled_separation is not None and len(coupled):
        inner = np.unique(np.concatenate([np.arange(i + 1, j) for i, j in coupled]))
        after = np.unique(np.concatenate([np.arange(i, j) for i, j in coupled]))
        rigid = (inner, after)
    return Family(length, contacts, np.array(sorted(coupled), dtype=np.int64).reshape(-1, 2), full, rigid)


def _sample_sequence(fam: Family, rng: np.random.Generator, deletion_rate: float = 0.0,
                     insertion_rate: float = 0.0, max_insertion: int = 3
                     ) -> tuple[list[str], np.ndarray]:
    """One member of the family: (residues, position[column]), position -1 for a deleted column.

    Every column is drawn from the profile, then deleted with probability ``deletion_rate``;
    after each column 1..``max_insertion`` background residues are inserted with probability
    ``insertion_rate``. The random draws do not depend on the profile's values, only on its shape.
    """
    cum = fam.profile.cumsum(axis=1)
    idx = (rng.random((fam.length, 1)) < cum).argmax(axis=1)
    deleted = rng.random(fam.length) < deletion_rate
    inserted = np.where(rng.random(fam.length) < insertion_rate,
                        rng.integers(1, max_insertion + 1, fam.length), 0)
    if fam.rigid is not None:  # no indel inside a rigid span (the ends themselves may go)
        deleted[fam.rigid[0]] = False
        inserted[fam.rigid[1]] = 0
    seq: list[str] = []
    position = np.full(fam.length, -1, dtype=np.int64)
    for c in range(fam.length):
        if not deleted[c]:
            position[c] = len(seq)
            seq.append(AA[idx[c]])
        if inserted[c]:
            seq.extend(rng.choice(list(_BACKGROUND_AA), int(inserted[c])).tolist())
    return seq, position


def remap_pairs(pairs: np.ndarray, position: np.ndarray, min_sep: int = 0) -> np.ndarray:
    """Column pairs [n, 2] -> residue pairs of one member (0-based, i < j): pairs with a deleted
    column are dropped, and so are pairs closer than ``min_sep`` residues in the member."""
    if not len(pairs):
        return pairs.reshape(0, 2)
    out = position[pairs]
    keep = (out >= 0).all(axis=1)
    out = np.sort(out[keep], axis=1)
    return out[out[:, 1] - out[:, 0] >= min_sep]


def _couple(seq: list[str], coupled: np.ndarray, coupling: float, planted: set[int],
            rng: np.random.Generator) -> None:
    """Make coupled contacts (residue pairs of this member) covary: with probability
    ``coupling`` one end becomes the complement of the other. A planted end keeps its residue
    and its partner adapts, as residues around real functional sites covary with them. One
    draw per pair whatever ``coupling`` is, so ``coupling: 0`` leaves every other draw as it was."""
    for i, j in coupled:
        if rng.random() >= coupling or (i in planted and j in planted):
            continue
        if seq[i] in ACTIVE_RESIDUES or seq[j] in ACTIVE_RESIDUES:
            continue  # catalytic residues stay unique to the active site
        if j in planted:
            seq[i] = COMPLEMENT[seq[j]]
        else:
            seq[j] = COMPLEMENT[seq[i]]


def _place(length: int, sizes: list[int], avoid: set[int], rng: np.random.Generator,
           tries: int = 50) -> list[int]:
    """Random non-overlapping 0-based starts for segments of ``sizes`` (in the given order of
    the list, laid out in a random order along the chain, at least one residue apart and
    clear of the termini), preferring placements that miss the positions in ``avoid``."""
    free = length - 2 - sum(sizes) - (len(sizes) - 1)
    if free < 0:
        raise ValueError(f"cannot place segments {sizes} in a protein of length {length}")
    best, best_hits = None, None
    for _ in range(tries):
        order = rng.permutation(len(sizes))
        gaps = rng.multinomial(free, np.ones(len(sizes) + 1) / (len(sizes) + 1))
        starts, pos = [0] * len(sizes), 1
        for g, k in zip(gaps, order):
            pos += g
            starts[k] = pos
            pos += sizes[k] + 1
        hits = sum(len(avoid & set(range(st, st + sz))) for st, sz in zip(starts, sizes))
        if best is None or hits < best_hits:
            best, best_hits = starts, hits
        if hits == 0:
            break
    return best


def generate_proteins(n_proteins: int = 300, n_families: int = 3,
                      length_range: tuple[int, int] = (80, 110),
                      contact_density: tuple[float, float] = (0.01, 0.03),
                      n_coupled: int = 12, coupling: float = 0.95, conservation: float = 0.3,
                      p_membrane: float = 0.4, p_atp: float = 0.4, max_unresolved: int = 3,
                      deletion_rate: float = 0.0, insertion_rate: float = 0.0,
                      max_insertion: int = 3, coupled_conservation: float | None = None,
                      coupled_separation: int | None = None, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Generate the demo protein data set.

    Returns the tables ``proteins`` (with the optional column ``family``: "family<k>"),
    ``residue_annotations`` and ``contact_maps`` of :mod:`seqxai.tables`, plus ``truth``
    (family, planted variants and ``columns``, each protein's position[column], per protein) and
    ``families`` (the :class:`Family` objects, column coordinates).
    """
    rng = np.random.default_rng(seed)
    families = [
        make_family(int(rng.integers(length_range[0], length_range[1] + 1)),
                    float(rng.uniform(*contact_density)), n_coupled, conservation, rng,
                    coupled_conservation, coupled_separation)
        for _ in range(n_families)
    ]
    proteins, annotations, maps, truth = [], [], [], []
    for n in range(n_proteins):
        acc = f"DEMO{n:05d}"
        f = int(rng.integers(n_families))
        fam = families[f]
        seq, position = _sample_sequence(fam, rng, deletion_rate, insertion_rate, max_insertion)
        length = len(seq)
        contacts = remap_pairs(fam.contacts, position, min_sep=6)
        coupled = remap_pairs(fam.coupled, position, min_sep=6)
        motif_v, active_v = int(rng.integers(2)), int(rng.integers(2))
        membrane, atp = rng.random() < p_membrane, rng.random() < p_atp
        segments = [("motif", MOTIFS[motif_v])]
        x, y = rng.choice(list(_BACKGROUND_AA), 2)
        segments.append(("active_site", ACTIVE_CONTEXT.format(x=x, c=ACTIVE_RESIDUES[active_v], y=y)))
        if atp:
            a, b, c, d = rng.choice(list(_BACKGROUND_AA), 4)
            segments.append(("binding_site", PLOOP.format(a=a, b=b, c=c, d=d, st=rng.choice(["S", "T"]))))
        if membrane:
            for _ in range(int(rng.integers(1, 3))):
                tm_len = int(rng.integers(18, 23))
                segments.append(("transmembrane", "".join(rng.choice(list(HYDROPHOBIC), tm_len))))
        avoid = set(coupled.ravel().tolist())
        starts = _place(length, [len(s) for _, s in segments], avoid, rng)
        planted: set[int] = set()
        for (kind, text), st in zip(segments, starts):
            seq[st : st + len(text)] = list(text)
            planted.update(range(st, st + len(text)))
            if kind == "active_site":  # only the catalytic residue is the annotated site
                annotations.append((acc, kind, st + 3, st + 3, "Nucleophile"))
            else:
                annotations.append((acc, kind, st + 1, st + len(text), kind.replace("_", " ")))
        _couple(seq, coupled, coupling, planted, rng)
        cls = 2 * motif_v + active_v + 1
        go = ([GO_MEMBRANE] if membrane else []) + ([GO_ATP] if atp else [])
        proteins.append((acc, "".join(seq), length, f"{cls}.1.1.{f + 1}", str(cls), go, 0,
                         [GO_ASPECT[t] for t in go], f"family{f}"))
        # A few unresolved N-terminal residues, as in real structures; their contacts are unknown.
        n_unres = int(rng.integers(0, max_unresolved + 1))
        resolved = "0" * n_unres + "1" * (length - n_unres)
        keep = contacts[:, 0] >= n_unres
        maps.append((acc, length, resolved,
                     (contacts[keep, 0] + 1).tolist(), (contacts[keep, 1] + 1).tolist(),
                     "demo", f"demo:family{f}"))
        truth.append((acc, f, motif_v, active_v, membrane, atp, position.tolist()))
    return {
        "proteins": pd.DataFrame(proteins, columns=["accession", "sequence", "length", "ec",
                                                    "ec_class", "go_terms", "organism_id",
                                                    "go_aspects", "family"]),
        "residue_annotations": pd.DataFrame(annotations, columns=["accession", "type", "start",
                                                                  "end", "description"]),
        "contact_maps": pd.DataFrame(maps, columns=["accession", "length", "resolved", "contact_i",
                                                    "contact_j", "definition", "source"]),
        "truth": pd.DataFrame(truth, columns=["accession", "family", "motif_variant",
                                              "active_variant", "membrane", "atp", "columns"]),
        "families": families,
    }


def write_demo_proteins(params: dict, seed: int, proteins_path, annotations_path, contacts_path,
                        report_path, ontology_path=None) -> None:
    """Generate the demo proteins and write the three tables, a data report and (when
    ``ontology_path`` is given) the demo's GO ontology :data:`DEMO_GO_OBO`."""
    import logging

    from .io import write_table, write_text

    log = logging.getLogger("seqxai.synth_protein")
    p = dict(params)
    for key in ("length_range", "contact_density"):
        if key in p:
            p[key] = tuple(p[key])
    data = generate_proteins(seed=seed, **p)
    write_table(proteins_path, data["proteins"], "proteins")
    write_table(annotations_path, data["residue_annotations"], "residue_annotations")
    write_table(contacts_path, data["contact_maps"], "contact_maps")
    counts = data["residue_annotations"]["type"].value_counts()
    report = pd.DataFrame(
        [{"source": "demo", "item": "proteins", "kept": len(data["proteins"]), "dropped": 0,
          "reason": ""}]
        + [{"source": "demo", "item": f"annotation:{t}", "kept": int(n), "dropped": 0, "reason": ""}
           for t, n in counts.items()]
    )
    write_table(report_path, report)
    if ontology_path is not None:
        write_text(ontology_path, DEMO_GO_OBO)
    dens = [len(r.contact_i) / ((r.length - 6) * (r.length - 5) / 2)
            for r in data["contact_maps"].itertuples()]
    log.info("wrote %d proteins in %d families, %d annotations; contact density %.4f (min %.4f, max %.4f)",
             len(data["proteins"]), p.get("n_families", 0), len(data["residue_annotations"]),
             float(np.mean(dens)), float(np.min(dens)), float(np.max(dens)))
