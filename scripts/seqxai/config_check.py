"""Config mistakes, one line each: the key path, the file the value came from, what is allowed.

``config_problems`` checks a merged config against the JSON schema before Snakemake's own
``validate`` (whose message prints the whole schema and config: thousands of lines for a
top-level typo); ``cross_key_problems`` checks values that are valid alone but not together,
after the schema defaults are set. A key path is written ``data.uniprot.max_length``; list
items by index (``dna.demo.tfs.0.name``).

``sources`` is the list of ``(label, mapping)`` the config was merged from, lowest precedence
first (config/config.yaml, then each ``--configfile``, then ``--config``); the last one that
holds a key path is where its value came from, and a key in none of them is a schema default.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

STUDIES = ("wenzel", "vig", "clauwaert")


def key_path(path: Iterable) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _lookup(mapping, path: Sequence):
    """(True, value) where ``mapping`` holds the key path, else (False, None)."""
    node = mapping
    for p in path:
        if isinstance(node, Mapping) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        else:
            return False, None
    return True, node


def source_of(path: Sequence, sources: Sequence[tuple[str, Mapping]]) -> str:
    """Label of the last source that sets ``path`` (its nearest ancestor for a list item), or
    'schema default'."""
    path = list(path)
    while path:
        for label, mapping in reversed(sources):
            if _lookup(mapping, path)[0]:
                return label
        path = path[:-1]
    return "schema default"


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed_keys(schema: Mapping) -> list[str]:
    return sorted((schema.get("properties") or {}).keys())


def _unknown_key_lines(error, sources) -> list[str]:
    allowed = _allowed_keys(error.schema)
    patterns = error.schema.get("patternProperties") or {}
    lines = []
    for key in sorted(k for k in error.instance if k not in allowed):
        if any(re.search(p, key) for p in patterns):
            continue
        path = [*error.absolute_path, key]
        near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = (f"did you mean '{near[0]}'?" if near
                else f"allowed keys: {', '.join(allowed)}" if allowed else "no keys allowed here")
        lines.append(f"{key_path(path)}: unknown key ({source_of(path, sources)}); {hint}")
    return lines


def _error_line(error, sources) -> str:
    path = list(error.absolute_path)
    where = source_of(path, sources)
    v, val, inst = error.validator, error.validator_value, error.instance
    if v == "type":
        want = " or ".join(val) if isinstance(val, list) else val
        what = f"{_short(inst)} is not of type {want}"
    elif v == "enum":
        what = f"{_short(inst)} is not one of {', '.join(map(str, val))}"
        near = difflib.get_close_matches(str(inst), [str(x) for x in val], n=1, cutoff=0.6)
        if near:
            what += f" (did you mean '{near[0]}'?)"
    else:
        what = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"{key_path(path)}: {what} ({where})"


def config_problems(config: Mapping, schema: Mapping, sources: Sequence[tuple[str, Mapping]]) -> list[str]:
    """One line per schema violation of ``config`` (no defaults are set here)."""
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    lines: list[str] = []
    for error in cls(schema).iter_errors(config):
        if error.validator == "additionalProperties" and error.validator_value is False:
            lines += _unknown_key_lines(error, sources)
        else:
            lines.append(_error_line(error, sources))
    return sorted(lines)  # by key path


def format_problems(lines: Sequence[str], header: str = "invalid config") -> str:
    n = len(lines)
    return f"{header} ({n} problem{'s' if n != 1 else ''}):\n" + "\n".join(f"  {x}" for x in lines)


def _get(config, dotted: str):
    return _lookup(config, dotted.split("."))[1]


def cross_key_problems(config: Mapping, sources: Sequence[tuple[str, Mapping]] = ()) -> list[str]:
    """Values valid alone but not together (the config carries its schema defaults)."""
    lines: list[str] = []

    def at(dotted):
        return f"{dotted} = {_short(_get(config, dotted))} ({source_of(dotted.split('.'), sources)})"

    def ordered(lo: str, hi: str, why: str, strict: bool = False):
        a, b = _get(config, lo), _get(config, hi)
        if a is None or b is None:
            return
        if a > b or (strict and a == b):
            lines.append(f"{at(lo)} {'>=' if strict else '>'} {at(hi)}: {why}")

    def pair(dotted: str, why: str):
        v = _get(config, dotted)
        if isinstance(v, list) and len(v) == 2 and v[0] > v[1]:
            lines.append(f"{at(dotted)}: the first value must not exceed the second ({why})")

    protein = config.get("protein") or {}
    enc = protein.get("encoder") or {}
    demo_cfg = enc.get("demo_config") or {}
    if enc.get("pretrained") is None and demo_cfg and not enc.get("rehearsal"):
        # ESM numbers positions from pad_token_id + 1 = 2 (create_position_ids_from_input_ids):
        # a max_length-token input reads position max_length + 1 of the learned table
        if demo_cfg.get("position_embedding_type", "absolute") == "absolute":
            mpe, ml = demo_cfg.get("max_position_embeddings"), protein.get("max_length")
            if mpe is not None and ml is not None and mpe < ml + 2:
                lines.append(
                    f"{at('protein.encoder.demo_config.max_position_embeddings')} < "
                    f"{at('protein.max_length')} + 2: absolute positions of a {ml}-token input reach "
                    f"{ml + 1} (ESM counts from 2); raise max_position_embeddings to >= {ml + 2} "
                    "or use position_embedding_type: rotary")
    ordered("dna.probe.offset_min", "dna.probe.offset_max",
            "the probe's TSS-relative window would be empty")
    ordered("dna.attribution.offset_min", "dna.attribution.offset_max",
            "the attribution's TSS-relative window would be empty")
    ordered("dna.attribution.n_steps", "dna.attribution.max_steps",
            "n_steps is doubled up to max_steps, so max_steps must be >= n_steps")
    ordered("data.uniprot.min_length", "data.uniprot.max_length", "no protein could pass both")
    for dotted, why in (("data.demo.protein.length_range", "a range of lengths"),
                        ("data.demo.protein.contact_density", "a range of densities"),
                        ("data.demo.dna.spacer", "a range of spacer lengths")):
        pair(dotted, why)
    # a protein split the run reads must receive proteins
    studies = studies_on(config)
    fractions = (config.get("split") or {}).get("fractions") or {}
    readers = []
    if studies & {"wenzel", "vig"}:
        readers.append(("train", "the models and the contact regression are fitted on it"))
    if "wenzel" in studies:
        readers.append((_get(config, "attribution.split"), "attribution.split reads it"))
    if "vig" in studies:
        readers.append((_get(config, "analysis.vig.split"), "analysis.vig.split reads it"))
    for name, why in readers:
        if name in fractions and not fractions[name] > 0:
            lines.append(f"{at(f'split.fractions.{name}')}: no protein in the {name} split, but {why}")
    split = (config.get("dna") or {}).get("split") or {}
    if split.get("test_fraction") is not None and split.get("valid_fraction") is not None:
        if split["test_fraction"] + split["valid_fraction"] >= 1:
            lines.append(f"{at('dna.split.test_fraction')} + {at('dna.split.valid_fraction')} >= 1: "
                         "no genome is left for training")
    return lines


def studies_on(config: Mapping) -> set[str]:
    """The studies a config runs (``studies``; all three when absent)."""
    return set(config.get("studies") or STUDIES)
