"""Diagnostic probes of Vig et al. (ICLR 2021): at which depth is a property linearly readable?

Per layer (0-based, as ``attn[layer]``) linear probes read a property from that layer alone:
- ``embedding`` -> residue property: features ``hidden[layer + 1][residue]``, the output of the
  layer (``hidden[0]``, the input embedding, is reported as layer -1);
- ``attention`` -> residue property: per head, the ``TOP_WEIGHTS`` largest weights residue j
  receives, ``sort_q(attn[layer, head, q, j])[-10:]`` (provis's attention probe, top 10);
- ``attention`` -> contact of the pair (i, j), i < j, j - i >= 6, both resolved: the weights of
  every head of the layer in both directions, ``[attn[layer, :, i, j], attn[layer, :, j, i]]``.
Each probe is a logistic regression on standardised features with balanced class weights,
fitted on proteins of the train split and scored on proteins of the test split (a protein is in
one of them only). Residue properties: every annotation type asked for (1 where the residue
carries it) and, where the DSSP table exists, the classes ``ss:H``, ``ss:E``, ``ss:-`` one
against the rest over residues with a known class. Metrics on the pooled held-out examples:
F1 at probability 0.5 and average precision (AP); contacts: AP over the held-out pairs and
precision of the top L/5 pairs per protein (long range j - i >= 24, and j - i >= 6 as provis),
averaged over proteins. Chance: AP and precision -> the held-out positive rate p; F1 -> the F1
of calling every example positive, 2p / (1 + p).

Memory is bounded: a seeded sample of at most ``max_tokens`` residues and ``max_pairs`` pairs
of each training protein is kept (features of every layer, float16), of at most
``max_train_proteins`` training proteins (seeded choice), about
proteins x (max_tokens x (layers + 1) x (hidden + 10 heads) + max_pairs x layers x 2 heads) x 2
bytes; held-out proteins keep scores only (a sample of ``max_pairs`` pairs for the pooled AP,
the precision at L/5 from all their pairs as one number per protein).

Arrays: ``hidden[layer + 1, residue, dim]``, ``attn[layer, head, query, key]``; residues 0-based.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import torch

from .attention_contacts import scored_pairs  # the contact probe's pairs, one definition

MIN_SEPARATION = 6
LONG_RANGE = 24
TOP_WEIGHTS = 10
COLUMNS = ["model", "layer", "property", "input", "metric", "value", "chance", "n_train", "n_test",
           "n_train_proteins", "n_test_proteins"]


@torch.no_grad()
def layer_outputs(encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  n_residues: int) -> tuple[np.ndarray, np.ndarray]:
    """(hidden[layer + 1, residue, dim], attn[layer, head, query, key]) over the residue tokens
    1..n_residues of one sequence, from one encoder pass."""
    out = encoder(input_ids=input_ids[None], attention_mask=attention_mask[None],
                  output_attentions=True, output_hidden_states=True)
    hidden = torch.stack([h[0] for h in out.hidden_states])[:, 1 : n_residues + 1]
    attn = torch.stack([a[0] for a in out.attentions])[:, :, 1 : n_residues + 1, 1 : n_residues + 1]
    return hidden.float().cpu().numpy(), attn.float().cpu().numpy()


def top_incoming(attn: np.ndarray, k: int = TOP_WEIGHTS) -> np.ndarray:
    """features[layer, residue, head * k + r]: the k largest weights each key residue receives
    from any query, per head, largest first (zeros where fewer than k queries exist)."""
    n_layers, n_heads, n, _ = attn.shape
    top = -np.sort(-attn, axis=2)[:, :, :k]  # [layer, head, r, key]
    if n < k:
        top = np.concatenate([top, np.zeros((n_layers, n_heads, k - n, n), attn.dtype)], axis=2)
    return np.ascontiguousarray(top.transpose(0, 3, 1, 2).reshape(n_layers, n, n_heads * k))


def pair_attention(attn: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """features[layer, pair, 2 * n_heads]: [a_ij of every head, a_ji of every head]."""
    return np.concatenate([attn[:, :, i, j], attn[:, :, j, i]], axis=1).transpose(0, 2, 1)


def protein_rng(seed: int, accession: str) -> np.random.Generator:
    """A generator fixed by (seed, accession): a protein's sample does not depend on the order
    or the company it is streamed in."""
    return np.random.default_rng([seed, zlib.crc32(accession.encode())])


def _sample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``cap`` of ``n`` items (all of them when n <= cap)."""
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, cap, replace=False))


def precision_at_l5(score: np.ndarray, label: np.ndarray, separation: np.ndarray, n: int,
                    min_separation: int) -> float:
    """Precision of the top max(n // 5, 1) scored pairs with separation >= min_separation
    (ties keep the earlier pair first); NaN when there is no such pair."""
    m = separation >= min_separation
    if not m.any():
        return np.nan
    order = np.argsort(-score[m], kind="stable")[: max(n // 5, 1)]
    return float(label[m][order].mean())


def _fit(x: np.ndarray, y: np.ndarray, C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(
        C=C, class_weight="balanced", max_iter=2000, random_state=seed)).fit(x, y)


class DiagnosticProbes:
    """Per-layer linear probes, fed protein by protein: training proteins first (``add_train``),
    then ``fit``, then held-out proteins (``add_test``), then ``table``.

    ``add_train`` keeps a seeded sample of each protein's residues and pairs with the features of
    every layer; ``add_test`` scores a held-out protein with the fitted probes and keeps its scores.
    """

    def __init__(self, max_tokens: int = 64, max_pairs: int = 512, C: float = 1.0, seed: int = 0):
        self.max_tokens, self.max_pairs, self.C, self.seed = max_tokens, max_pairs, C, seed
        self.train_accessions: list[str] = []
        self.test_accessions: list[str] = []
        self.probes: dict[tuple[str, str, int], object] = {}  # (input, property, layer) -> model
        self.skipped: dict[tuple[str, str], str] = {}  # (input, property) -> why not fitted
        self._x: dict[str, list[np.ndarray]] = {"embedding": [], "attention": [], "pair": []}
        self._y: dict[str, list[np.ndarray]] = {}  # property -> labels of the sampled residues
        self._known: dict[str, list[np.ndarray]] = {}  # property -> label known (ss needs a backbone)
        self._pair_y: list[np.ndarray] = []
        self._scores: dict[tuple[str, str, int], list[np.ndarray]] = {}
        self._test_y: dict[str, list[np.ndarray]] = {}
        self._test_known: dict[str, list[np.ndarray]] = {}
        self._pair_scores: dict[int, list[np.ndarray]] = {}
        self._pair_test_y: list[np.ndarray] = []
        self._p_at: dict[tuple[int, int], list[float]] = {}  # (layer, min_separation) -> per protein
        self._long_rate = np.zeros(2, dtype=np.int64)  # held-out [contacts, pairs] at j - i >= 24
        self._mid_rate = np.zeros(2, dtype=np.int64)  # held-out [contacts, pairs] at j - i >= 6
        self._n_train: dict[tuple[str, str], int] = {}  # (input, property) -> training examples
        self.properties: list[str] = []
        self.n_layers: int | None = None
        self.fitted = False

    # ------------------------------------------------------------------ input checks
    def _check(self, accession, hidden, attn, properties, known, contact, resolved):
        n_layers, _, n, n2 = attn.shape
        if self.n_layers is None:
            self.n_layers = n_layers
        if n_layers != self.n_layers or hidden.shape[:2] != (n_layers + 1, n) or n != n2:
            raise ValueError(f"{accession}: hidden {hidden.shape} and attention {attn.shape} do not "
                             f"match {self.n_layers} layers x {n} residues")
        names = list(properties)
        if not self.properties:
            self.properties = names
        elif names != self.properties:
            raise ValueError(f"{accession}: properties {names}, earlier proteins {self.properties}")
        for name in names:
            for what, arr in (("property", properties[name]), ("known", (known or {}).get(name))):
                if arr is not None and np.shape(arr) != (n,):
                    raise ValueError(f"{accession}: {what} {name!r} has length {np.shape(arr)}, "
                                     f"the protein {n}")
        if contact is not None and np.shape(contact) != (n, n):
            raise ValueError(f"{accession}: contact map of shape {np.shape(contact)}, the protein {n}")
        if resolved is not None and np.shape(resolved) != (n,):
            raise ValueError(f"{accession}: resolved has length {np.shape(resolved)}, the protein {n}")
        if accession in self.train_accessions or accession in self.test_accessions:
            raise ValueError(f"{accession}: added twice (a protein is either trained on or held out)")
        return n

    def _labels(self, properties, known, n):
        y = {k: np.asarray(v, bool) for k, v in properties.items()}
        kn = {k: (np.ones(n, bool) if (known or {}).get(k) is None else np.asarray(known[k], bool))
              for k in properties}
        return y, kn

    # ------------------------------------------------------------------ training proteins
    def add_train(self, accession: str, hidden: np.ndarray, attn: np.ndarray,
                  properties: dict[str, np.ndarray], known: dict[str, np.ndarray] | None = None,
                  contact: np.ndarray | None = None, resolved: np.ndarray | None = None) -> None:
        """Keep a seeded sample of one training protein's residues (labels of every property) and
        of its scored pairs (contact labels), with the features of every layer.

        ``properties[name][residue]`` boolean; ``known[name][residue]``: where the label is
        known (default everywhere); ``contact[i, j]`` boolean (None: no contact probe).
        """
        if self.fitted:
            raise RuntimeError("add_train after fit: training proteins come first")
        n = self._check(accession, hidden, attn, properties, known, contact, resolved)
        rng = protein_rng(self.seed, accession)
        tok = _sample(n, self.max_tokens, rng)
        # float16 halves the kept features; each layer's block is cast back to float32 to fit
        self._x["embedding"].append(hidden[:, tok].astype(np.float16))
        self._x["attention"].append(top_incoming(attn)[:, tok].astype(np.float16))
        y, kn = self._labels(properties, known, n)
        for name in properties:
            self._y.setdefault(name, []).append(y[name][tok])
            self._known.setdefault(name, []).append(kn[name][tok])
        if contact is not None:
            i, j = scored_pairs(n, resolved)
            pick = _sample(len(i), self.max_pairs, rng)
            i, j = i[pick], j[pick]
            self._x["pair"].append(pair_attention(attn, i, j).astype(np.float16))
            self._pair_y.append(np.asarray(contact, bool)[i, j])
        self.train_accessions.append(accession)

    def fit(self, log=None) -> DiagnosticProbes:
        """Fit one probe per (input, property, layer); a property whose training sample lacks a
        class is skipped (``skipped`` says why)."""
        if not self.train_accessions:
            raise ValueError("diagnostic probes: no training protein")
        x = {k: np.concatenate(v, axis=1) for k, v in self._x.items() if v}
        jobs = [(kind, name, np.concatenate(self._y[name]), np.concatenate(self._known[name]))
                for name in self.properties for kind in ("embedding", "attention")]
        if self._pair_y:
            y = np.concatenate(self._pair_y)
            jobs.append(("attention", "contact", y, np.ones(len(y), bool)))
        for kind, name, y, kn in jobs:
            n_pos, n_neg = int(y[kn].sum()), int((~y[kn]).sum())
            if not (n_pos and n_neg):
                self.skipped[(kind, name)] = f"{n_pos} positive, {n_neg} negative training examples"
                if log:
                    log.warning("diagnostic probe %s from %s not fitted: %s", name, kind,
                                self.skipped[(kind, name)])
                continue
            feats = x["pair"] if name == "contact" else x[kind]
            layers = range(-1, self.n_layers) if kind == "embedding" else range(self.n_layers)
            for layer in layers:
                idx = layer + 1 if kind == "embedding" else layer
                self.probes[(kind, name, layer)] = _fit(feats[idx][kn].astype(np.float32), y[kn],
                                                        self.C, self.seed)
            self._n_train[(kind, name)] = len(y[kn])
        self._x = {}  # the training features are no longer needed
        self.fitted = True
        return self

    # ------------------------------------------------------------------ held-out proteins
    def add_test(self, accession: str, hidden: np.ndarray, attn: np.ndarray,
                 properties: dict[str, np.ndarray], known: dict[str, np.ndarray] | None = None,
                 contact: np.ndarray | None = None, resolved: np.ndarray | None = None) -> None:
        """Score one held-out protein with every fitted probe: all residues, a seeded sample of
        the scored pairs for the pooled AP, all scored pairs for the precision at L/5."""
        if not self.fitted:
            raise RuntimeError("add_test before fit")
        n = self._check(accession, hidden, attn, properties, known, contact, resolved)
        rng = protein_rng(self.seed, accession)
        _sample(n, self.max_tokens, rng)  # the same draws as for a training protein
        feats = {"embedding": hidden, "attention": top_incoming(attn)}
        y, kn = self._labels(properties, known, n)
        for name in properties:
            self._test_y.setdefault(name, []).append(y[name])
            self._test_known.setdefault(name, []).append(kn[name])
        for (kind, name, layer), model in self.probes.items():
            if name == "contact":
                continue
            idx = layer + 1 if kind == "embedding" else layer
            self._scores.setdefault((kind, name, layer), []).append(
                model.predict_proba(feats[kind][idx])[:, 1].astype(np.float32))
        if contact is not None and any(k[1] == "contact" for k in self.probes):
            i, j = scored_pairs(n, resolved)
            c = np.asarray(contact, bool)[i, j]
            sep = j - i
            pick = _sample(len(i), self.max_pairs, rng)
            x = pair_attention(attn, i, j)
            for layer in range(self.n_layers):
                s = self.probes[("attention", "contact", layer)].predict_proba(x[layer])[:, 1]
                self._pair_scores.setdefault(layer, []).append(s[pick].astype(np.float32))
                for m in (LONG_RANGE, MIN_SEPARATION):
                    self._p_at.setdefault((layer, m), []).append(precision_at_l5(s, c, sep, n, m))
            self._pair_test_y.append(c[pick])
            long = sep >= LONG_RANGE
            self._long_rate += (int(c[long].sum()), int(long.sum()))
            self._mid_rate += (int(c.sum()), len(c))
        self.test_accessions.append(accession)

    # ------------------------------------------------------------------ results
    def table(self, model: str = "") -> pd.DataFrame:
        """One row per (layer, property, input, metric): value, chance and the examples behind
        them (``n_test``: held-out residues or sampled pairs; for P@L/5 the held-out proteins
        with such pairs)."""
        from sklearn.metrics import average_precision_score, f1_score

        rows = []
        n_tr, n_te = len(self.train_accessions), len(self.test_accessions)
        for (kind, name, layer), scores in self._scores.items():
            kn = np.concatenate(self._test_known[name])
            y = np.concatenate(self._test_y[name])[kn]
            s = np.concatenate(scores)[kn]
            p = float(y.mean()) if len(y) else np.nan
            base = {"model": model, "layer": layer, "property": name, "input": kind,
                    "n_train": self._n_train[(kind, name)], "n_test": len(y),
                    "n_train_proteins": n_tr, "n_test_proteins": n_te}
            one_class = not (0 < p < 1)
            rows.append({**base, "metric": "F1", "chance": 2 * p / (1 + p),
                         "value": np.nan if one_class else f1_score(y, s >= 0.5)})
            rows.append({**base, "metric": "AP", "chance": p,
                         "value": np.nan if one_class else average_precision_score(y, s)})
        if self._pair_scores:
            y = np.concatenate(self._pair_test_y)
            p = float(y.mean()) if len(y) else np.nan
            for layer, scores in self._pair_scores.items():
                base = {"model": model, "layer": layer, "property": "contact", "input": "attention",
                        "n_train": self._n_train[("attention", "contact")], "n_test_proteins": n_te,
                        "n_train_proteins": n_tr}
                s = np.concatenate(scores)
                rows.append({**base, "metric": "AP", "value": average_precision_score(y, s)
                             if 0 < p < 1 else np.nan, "chance": p, "n_test": len(y)})
                for m, label, (hits, total) in ((LONG_RANGE, "long P@L/5", self._long_rate),
                                                (MIN_SEPARATION, "P@L/5", self._mid_rate)):
                    v = np.array(self._p_at[(layer, m)], dtype=float)
                    rows.append({**base, "metric": label, "value": float(np.nanmean(v)) if
                                 np.isfinite(v).any() else np.nan,
                                 "chance": hits / total if total else np.nan,
                                 "n_test": int(np.isfinite(v).sum())})
        df = pd.DataFrame(rows, columns=COLUMNS)
        return df.sort_values(["input", "property", "metric", "layer"]).reset_index(drop=True)


def run_diagnostic_probes(encoder_path, proteins_path, splits_path, contacts_path, annotations_path,
                          diagnostic: dict, types, max_residues: int, max_length: int, out_path,
                          model: str = "", seed: int = 0, device: str = "auto", threads: int = 1,
                          secondary_path=None) -> DiagnosticProbes:
    """Stream the proteins with a contact map through the encoder once, train split first, and
    write the probe table (returned: the fitted probes, with the accessions trained on and held
    out). ``diagnostic``: max_tokens_per_protein, max_pairs_per_protein, C and
    max_train_proteins (None: every train-split protein with a contact map).
    Properties: the annotation ``types`` and, with ``secondary_path`` (accession, ss), ``ss:H``,
    ``ss:E``, ``ss:-`` over residues with a known class; contacts from the contact maps."""
    import logging

    from .annotation_scores import annotation_masks
    from .attention_probes import contact_matrix
    from .devices import pick_device
    from .io import DataError, Progress, read_table, write_table
    from .protein_model import encode, load_encoder, load_tokenizer
    from .secondary_structure import CLASSES, SS_PREFIX, secondary_structure_masks

    log = logging.getLogger("seqxai.diagnostic_probes")
    torch.set_num_threads(threads)
    proteins = read_table(proteins_path, "proteins")
    splits = read_table(splits_path, "splits")
    twice = splits.loc[splits["accession"].duplicated(), "accession"]
    if len(twice):
        raise DataError(f"{splits_path}: accession {twice.iloc[0]} has more than one split record "
                        f"(field 'split'); a protein is either trained on or held out")
    split = splits.set_index("accession")["split"]
    contacts = read_table(contacts_path, "contact_maps").set_index("accession")
    annotations = read_table(annotations_path, "residue_annotations")
    secondary = (read_table(secondary_path).set_index("accession")["ss"].to_dict()
                 if secondary_path else None)
    todo = proteins[proteins["accession"].isin(contacts.index)].assign(
        split=lambda d: d["accession"].map(split))
    todo = todo[todo["split"].isin(["train", "test"])]
    cap = diagnostic.get("max_train_proteins")
    train = todo.loc[todo["split"] == "train", "accession"].sort_values().to_numpy()
    if cap is not None and len(train) > cap:
        keep = set(np.random.default_rng(seed).choice(train, cap, replace=False).tolist())
        log.info("diagnostic probes: %d of %d train proteins (max_train_proteins, seeded)", cap, len(train))
        todo = todo[(todo["split"] == "test") | todo["accession"].isin(keep)]
    todo = todo.sort_values(["split", "accession"], ascending=[False, True])  # train before test
    n_train, n_test = int((todo["split"] == "train").sum()), int((todo["split"] == "test").sum())
    log.info("diagnostic probes: %d train and %d test proteins with a contact map", n_train, n_test)
    if not n_train or not n_test:
        log.warning("diagnostic probes need train and test proteins with a contact map; table empty")
        write_table(out_path, pd.DataFrame(columns=COLUMNS))
        return DiagnosticProbes()
    dev = pick_device(device)
    encoder = load_encoder(encoder_path).to(dev).eval()
    tok = load_tokenizer(encoder_path)
    probes = DiagnosticProbes(diagnostic["max_tokens_per_protein"], diagnostic["max_pairs_per_protein"],
                              diagnostic["C"], seed)
    progress = Progress(len(todo), "diagnostic probes", logger=log)
    for r in todo.itertuples(index=False):
        cm = contacts.loc[r.accession]
        if cm["length"] != len(r.sequence):
            raise DataError(f"{contacts_path}: contact map of {r.accession} has length "
                            f"{cm['length']} (field 'length'), the sequence {len(r.sequence)}")
        n = min(len(r.sequence), max_residues, max_length - 2)
        enc = encode(tok, [r.sequence[:n]], max_length)
        hidden, attn = layer_outputs(encoder, enc["input_ids"][0].to(dev), enc["attention_mask"][0].to(dev), n)
        props = annotation_masks(annotations, r.accession, n, list(types))
        known = {}
        if secondary is not None:
            ss = secondary.get(r.accession)
            if ss is None:
                log.warning("%s: no secondary structure; its residues count as unknown", r.accession)
                ss = " " * n
            ss_masks, ss_known = secondary_structure_masks(ss[:n].ljust(n))
            props.update(ss_masks)
            known.update({SS_PREFIX + c: ss_known for c in CLASSES})
        resolved = np.frombuffer(cm["resolved"][:n].encode(), dtype=np.uint8) == ord("1")
        contact = contact_matrix(n, cm["contact_i"], cm["contact_j"])
        if r.split == "train":
            probes.add_train(r.accession, hidden, attn, props, known, contact, resolved)
        else:
            if not probes.fitted:
                probes.fit(log)
            probes.add_test(r.accession, hidden, attn, props, known, contact, resolved)
        progress.update()
    table = probes.table(model)
    best = table[table["metric"].isin(["AP"])].sort_values("value", ascending=False)
    for b in best.groupby(["input", "property"]).head(1).itertuples():
        log.info("%s from %s: best AP %.3f at layer %d (chance %.3f)", b.property, b.input, b.value,
                 b.layer, b.chance)
    write_table(out_path, table)
    return probes
