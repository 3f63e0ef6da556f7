"""The Gene Ontology: OBO 1.2 parsing, ancestors over ``is_a`` and ``part_of``, label propagation.

A protein is positive for a GO term when it is annotated with the term or any of its
descendants over ``is_a`` and ``part_of`` (the true-path rule; the DeepGOPlus data of Wenzel et
al. 2024 are propagated this way; METHODS.md section 1). Other relations (``regulates``,
``has_part``, ``occurs_in``, ...) do not propagate: ``go-basic.obo`` keeps only relations that
are safe to propagate over, and of these only ``is_a`` and ``part_of`` point from a term to a
more general term of the same namespace.

Parsing reads ``[Term]`` stanzas (``id``, ``name``, ``namespace``, ``is_a``, ``relationship``,
``is_obsolete``, ``alt_id``) and skips ``[Typedef]`` and ``[Instance]`` stanzas and other tags.
A malformed line, a term without id or namespace, a duplicate id, an edge to a term the file
does not define, or a cycle is a :class:`~seqxai.io.DataError` naming the file and line.

Propagation maps alt ids to their primary id, drops obsolete and unknown terms (counted), and
returns the sorted union of the ancestor closures (each term included). The aspect of a term is
its namespace: molecular_function F, biological_process P, cellular_component C.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .io import DataError

log = logging.getLogger("seqxai")

ASPECT_OF_NAMESPACE = {"molecular_function": "F", "biological_process": "P", "cellular_component": "C"}
PROPAGATING_RELATIONS = ("is_a", "part_of")
_GO_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:\S+$")


@dataclass(frozen=True)
class Term:
    id: str
    name: str
    namespace: str
    parents: tuple[tuple[str, str], ...]  # (relation, parent id), relation in PROPAGATING_RELATIONS
    obsolete: bool
    line: int  # line of the [Term] header, for messages


@dataclass
class Ontology:
    """Terms by primary id, alt id -> primary id, and a memoised ancestor closure."""

    terms: dict[str, Term]
    alt_ids: dict[str, str]
    path: str = "ontology"
    data_version: str | None = None
    _closure: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.terms)

    def resolve(self, term: str) -> tuple[str | None, str]:
        """(primary id or None, status): status "ok", "alt_id" (remapped), "obsolete" or "unknown"."""
        status = "ok"
        if term not in self.terms and term in self.alt_ids:
            term, status = self.alt_ids[term], "alt_id"
        t = self.terms.get(term)
        if t is None:
            return None, "unknown"
        if t.obsolete:
            return None, "obsolete"
        return term, status

    def ancestors(self, term: str) -> frozenset[str]:
        """The term and every term above it over is_a and part_of (a primary, non-obsolete id)."""
        done = self._closure.get(term)
        if done is not None:
            return done
        if term not in self.terms:
            raise KeyError(f"{self.path}: unknown GO term '{term}'")
        # iterative post-order walk: a term's closure is built after its parents' closures
        stack, on_path = [(term, False)], set()
        while stack:
            t, expanded = stack.pop()
            if t in self._closure:
                continue
            parents = [p for _, p in self.terms[t].parents]
            if expanded:
                on_path.discard(t)
                closure = {t}
                for p in parents:
                    closure |= self._closure[p]
                self._closure[t] = frozenset(closure)
                continue
            on_path.add(t)
            stack.append((t, True))
            for p in parents:
                if p in on_path:
                    raise DataError(f"{self.path}:{self.terms[p].line}: cycle over is_a/part_of through "
                                    f"'{p}' and '{t}'")
                if p not in self._closure:
                    stack.append((p, False))
        return self._closure[term]

    def aspect(self, term: str) -> str:
        """F, P or C from the term's namespace ("" for a namespace outside the three)."""
        return ASPECT_OF_NAMESPACE.get(self.terms[term].namespace, "")

    def propagate(self, terms: Iterable[str], counts: Counter | None = None) -> list[str]:
        """Sorted primary ids of ``terms`` and all their ancestors; obsolete and unknown terms
        are dropped. ``counts`` (if given) gains "obsolete", "unknown" and "alt_id" per term."""
        out: set[str] = set()
        for g in terms:
            primary, status = self.resolve(g)
            if counts is not None and status != "ok":
                counts[status] += 1
            if primary is not None:
                out |= self.ancestors(primary)
        return sorted(out)


def _value(raw: str) -> str:
    """A tag value without its trailing ``! comment`` and ``{modifiers}``."""
    v = raw.split(" !", 1)[0].strip()
    if v.endswith("}") and "{" in v:
        v = v[: v.rindex("{")].strip()
    return v


def parse_obo(path: str | Path) -> Ontology:
    """Read an OBO 1.2 file (go-basic.obo) into an :class:`Ontology`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"GO ontology not found: {path}")
    header: dict[str, str] = {}
    stanzas: list[tuple[str, int, list[tuple[int, str, str]]]] = []  # (type, line, [(line, tag, value)])
    current: list[tuple[int, str, str]] | None = None
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.rstrip("\n").strip()
                if not line or line.startswith("!"):
                    continue
                if line.startswith("["):
                    if not line.endswith("]"):
                        raise DataError(f"{path}:{lineno}: malformed stanza header {line!r}")
                    current = []
                    stanzas.append((line[1:-1], lineno, current))
                    continue
                tag, sep, value = line.partition(":")
                if not sep or not tag or " " in tag:
                    raise DataError(f"{path}:{lineno}: malformed line {line[:80]!r} (expected 'tag: value')")
                if current is None:
                    header.setdefault(tag, value.strip())
                else:
                    current.append((lineno, tag, value.strip()))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text OBO file ({exc})") from exc
    if not stanzas and "format-version" not in header:
        raise DataError(f"{path}: not an OBO file (no header 'format-version' and no [Term] stanza)")
    default_ns = header.get("default-namespace")
    terms: dict[str, Term] = {}
    alt_ids: dict[str, tuple[str, int]] = {}
    for kind, start, tags in stanzas:
        if kind != "Term":
            continue  # [Typedef], [Instance]
        tid = name = namespace = None
        parents: list[tuple[str, str, int]] = []
        obsolete = False
        alts: list[tuple[str, int]] = []
        for lineno, tag, raw in tags:
            value = _value(raw)
            if tag == "id":
                if tid is not None:
                    raise DataError(f"{path}:{lineno}: second 'id' in the [Term] stanza of '{tid}'")
                if not _GO_ID.match(value):
                    raise DataError(f"{path}:{lineno}: malformed term id {value!r}")
                tid = value
            elif tag == "name":
                name = raw
            elif tag == "namespace":
                namespace = value
            elif tag == "is_a":
                parents.append(("is_a", value.split()[0] if value else "", lineno))
            elif tag == "relationship":
                parts = value.split()
                if len(parts) < 2:
                    raise DataError(f"{path}:{lineno}: malformed relationship {raw!r} "
                                    f"(expected 'relationship: <type> <term id>')")
                if parts[0] in PROPAGATING_RELATIONS:
                    parents.append((parts[0], parts[1], lineno))
            elif tag == "is_obsolete":
                if value not in ("true", "false"):
                    raise DataError(f"{path}:{lineno}: is_obsolete must be true or false, not {value!r}")
                obsolete = value == "true"
            elif tag == "alt_id":
                alts.append((value, lineno))
        if tid is None:
            raise DataError(f"{path}:{start}: [Term] stanza without 'id'")
        namespace = namespace or default_ns
        if not namespace:
            raise DataError(f"{path}:{start}: term '{tid}' has no 'namespace' (and the header no "
                            f"'default-namespace')")
        if tid in terms:
            raise DataError(f"{path}:{start}: term '{tid}' defined twice (first at line {terms[tid].line})")
        for rel, p, lineno in parents:
            if not _GO_ID.match(p):
                raise DataError(f"{path}:{lineno}: term '{tid}': malformed {rel} target {p!r}")
        terms[tid] = Term(tid, name or "", namespace, tuple((r, p) for r, p, _ in parents) if not obsolete
                          else (), obsolete, start)
        for a, lineno in alts:
            if a in alt_ids and alt_ids[a][0] != tid:
                raise DataError(f"{path}:{lineno}: alt_id '{a}' of '{tid}' is already an alt_id of "
                                f"'{alt_ids[a][0]}'")
            alt_ids[a] = (tid, lineno)
    if not terms:
        raise DataError(f"{path}: no [Term] stanzas")
    for t in terms.values():
        for rel, p in t.parents:
            if p not in terms:
                raise DataError(f"{path}:{t.line}: term '{t.id}': {rel} '{p}' is not defined in the file")
            if terms[p].obsolete:
                raise DataError(f"{path}:{t.line}: term '{t.id}': {rel} '{p}' is an obsolete term")
    for a, (tid, lineno) in alt_ids.items():
        if a in terms:
            raise DataError(f"{path}:{lineno}: alt_id '{a}' of '{tid}' is also a term id")
    onto = Ontology(terms, {a: t for a, (t, _) in alt_ids.items()}, str(path), header.get("data-version"))
    for tid, term in terms.items():  # the whole closure once: finds cycles here, naming the file
        if not term.obsolete:
            onto.ancestors(tid)
    return onto


def propagate_proteins(proteins: pd.DataFrame, onto: Ontology, keep_aspects: Iterable[str] = ("F", "P", "C"),
                       column: str = "go_terms", where: str = "proteins.parquet") -> tuple[pd.DataFrame, dict]:
    """The proteins table with ``column`` replaced by the propagated terms (sorted) and
    ``go_aspects`` by their aspects from the ontology, limited to ``keep_aspects``.

    Returns (table, counts): proteins, annotations (protein-term pairs) before and after,
    distinct terms before and after, annotations dropped as obsolete or unknown, alt ids
    remapped, propagated terms outside ``keep_aspects``, and up to 5 examples per drop kind.
    """
    if column not in proteins.columns:
        raise DataError(f"{where}: no column '{column}' (GO terms) to propagate")
    keep = set(keep_aspects)
    counts: Counter = Counter()
    examples: dict[str, list[str]] = {"obsolete": [], "unknown": []}
    aspect_of = {t: ASPECT_OF_NAMESPACE.get(term.namespace, "") for t, term in onto.terms.items()}
    resolved: dict[str, tuple[str | None, str]] = {}  # per distinct term, resolved once
    new_terms, new_aspects = [], []
    before: set[str] = set()
    after: set[str] = set()
    for acc, terms in zip(proteins["accession"], proteins[column]):
        terms = [] if terms is None else [str(t) for t in terms]
        before.update(terms)
        counts["annotations_before"] += len(terms)
        closure: set[str] = set()
        for g in terms:
            r = resolved.get(g)
            if r is None:
                r = resolved[g] = onto.resolve(g)
            primary, status = r
            if status != "ok":
                counts[status] += 1
                if status in examples and len(examples[status]) < 5:
                    examples[status].append(f"{acc}:{g}")
            if primary is not None:
                closure |= onto.ancestors(primary)
        prop = sorted(closure)
        aspects = [aspect_of[t] for t in prop]
        if not keep.issuperset(aspects):
            kept = [(t, a) for t, a in zip(prop, aspects) if a in keep]
            counts["outside_aspects"] += len(prop) - len(kept)
            prop, aspects = [t for t, _ in kept], [a for _, a in kept]
        new_terms.append(prop)
        new_aspects.append(aspects)
        after.update(prop)
        counts["annotations_after"] += len(prop)
    out = proteins.copy()
    out[column] = new_terms
    out["go_aspects"] = new_aspects
    report = {
        "proteins": len(proteins),
        "annotations_before": counts["annotations_before"],
        "annotations_after": counts["annotations_after"],
        "terms_before": len(before),
        "terms_after": len(after),
        "obsolete_dropped": counts["obsolete"],
        "unknown_dropped": counts["unknown"],
        "alt_ids_remapped": counts["alt_id"],
        "outside_aspects": counts["outside_aspects"],
        "examples": examples,
    }
    return out, report


def run_propagate_go(proteins_in, obo, proteins_out, keep_aspects=("F", "P", "C")) -> dict:
    """Rule entry point: the proteins table as read from its source -> the same table with
    ``go_terms`` propagated over the ontology and ``go_aspects`` from its namespaces. Logs and
    returns the counts of :func:`propagate_proteins`."""
    from .io import read_table, write_table

    onto = parse_obo(obo)
    proteins = read_table(proteins_in, table="proteins")
    out, rep = propagate_proteins(proteins, onto, keep_aspects, where=str(proteins_in))
    log.info("GO: ontology %s (%s): %d terms, %d alt ids", obo, onto.data_version or "no data-version",
             len(onto), len(onto.alt_ids))
    log.info("GO: %d proteins; annotations %d -> %d after propagation over is_a and part_of; "
             "distinct terms %d -> %d", rep["proteins"], rep["annotations_before"], rep["annotations_after"],
             rep["terms_before"], rep["terms_after"])
    log.info("GO: dropped %d obsolete and %d unknown annotations, remapped %d alt ids, left out %d "
             "propagated terms outside aspects %s", rep["obsolete_dropped"], rep["unknown_dropped"],
             rep["alt_ids_remapped"], rep["outside_aspects"], sorted(keep_aspects))
    for kind in ("obsolete", "unknown"):
        if rep["examples"][kind]:
            log.warning("GO: %s terms dropped, e.g. %s", kind, ", ".join(rep["examples"][kind]))
    if rep["unknown_dropped"] > 0.05 * max(rep["annotations_before"], 1):
        log.warning("GO: %d of %d annotations name terms that %s does not define: an ontology older "
                    "than the annotations, or not go-basic (data.go)?", rep["unknown_dropped"],
                    rep["annotations_before"], obo)
    write_table(proteins_out, out, table="proteins")
    return rep
