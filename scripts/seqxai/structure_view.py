"""Standalone HTML 3-D view of a structure with a head's strongest attention drawn as lines.

The page is written by py3Dmol and holds the structure and the lines. 3Dmol.js itself comes
from ``viewer_js``: ``None`` = its CDN, loaded when the page is opened (needs internet then);
a local file = written into the page, which then opens offline; an http(s) URL = loaded
from there. Attention ``attn[query, key]`` is indexed by the
0-based positions of ``sequence``; chain residues are mapped to it by the same alignment as
the contact maps (sources/structure_chains.py), so lines join C-alpha atoms of the right residues.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import palette
from .io import write_text
from .sources.structure_files import find_structure


def strongest_pairs(attn: np.ndarray, top: int = 20, min_separation: int = 6,
                    allowed: np.ndarray | None = None) -> list[tuple[int, int, float]]:
    """The ``top`` (i, j, weight) with the largest attn[i, j], |i - j| >= min_separation,
    both residues allowed; ties keep the lower flat index first."""
    a = np.asarray(attn, float)
    n = a.shape[0]
    idx = np.arange(n)
    ok = np.abs(idx[:, None] - idx[None, :]) >= min_separation
    if allowed is not None:
        ok &= np.outer(allowed, allowed)
    flat = np.where(ok, a, -np.inf).ravel()
    order = np.argsort(-flat, kind="stable")[:top]
    return [(int(k // n), int(k % n), float(flat[k])) for k in order if np.isfinite(flat[k])]


def viewer_script(viewer_js: str | None) -> tuple[str, str | None]:
    """(HTML to put before py3Dmol's fragment, js URL for py3Dmol.view or None = its CDN).

    A local file is inlined and ``$3Dmolpromise`` set resolved, so py3Dmol's loader (which
    only runs while that variable is undefined) fetches nothing."""
    from .io import DataError

    if not viewer_js:
        return "", None
    if str(viewer_js).startswith(("http://", "https://")):
        return "", str(viewer_js)
    p = Path(viewer_js)
    if not p.is_file():
        raise DataError(f"analysis.vig.viewer_js: {p} is not a file (a local 3Dmol-min.js, an http(s) URL "
                        "or null for the CDN)")
    code = p.read_text(encoding="utf-8").replace("</script", "<\\/script")
    return f"<script>\n{code}\n</script>\n<script>var $3Dmolpromise = Promise.resolve();</script>\n", None


def attention_view_html(structure_path, attn: np.ndarray, path, sequence: str | None = None,
                        chain: str | None = None, top: int = 20, contact: np.ndarray | None = None,
                        title: str = "", viewer_js: str | None = None) -> list[tuple[int, int, float]]:
    """Write the HTML view; returns the drawn pairs (0-based sequence positions).

    Without ``sequence`` the chain's observed residues are the positions. Lines are blue
    where ``contact[i, j]``, vermillion otherwise (:mod:`seqxai.palette`, colour-blind safe);
    their radius grows with the attention weight.
    """
    import py3Dmol

    from .sources.structure_chains import align_to_uniprot, protein_chains, read_structure

    st = read_structure(structure_path)
    chains = protein_chains(st)
    if not chains:
        raise ValueError(f"{structure_path}: no protein chain")
    if chain is None:
        chain = max(chains, key=lambda c: len(chains[c][0]))
    if chain not in chains:
        raise ValueError(f"{structure_path}: no protein chain {chain!r} (has {sorted(chains)})")
    chain_seq, residues = chains[chain]
    n = np.asarray(attn).shape[0]
    ca = np.full((n, 3), np.nan)
    mapping = (np.arange(len(chain_seq)) if sequence is None
               else align_to_uniprot(sequence, chain_seq)[0])
    for k, r in enumerate(residues):
        atom = r.find_atom("CA", "*")
        if atom is not None and 0 <= mapping[k] < n:
            ca[mapping[k]] = atom.pos.x, atom.pos.y, atom.pos.z
    pairs = strongest_pairs(attn, top, allowed=~np.isnan(ca).any(axis=1))
    for model in list(st):
        for ch in list(model):
            if ch.name != chain:
                model.remove_chain(ch.name)
    st.remove_ligands_and_waters()
    head, js_url = viewer_script(viewer_js)
    view = py3Dmol.view(width=800, height=600, **({"js": js_url} if js_url else {}))
    view.addModel(st.make_pdb_string(), "pdb")
    view.setStyle({"cartoon": {"color": "lightgrey"}})
    wmax = max((w for _, _, w in pairs), default=1.0) or 1.0
    for i, j, w in pairs:
        colour = palette.CONTACT_PAIR if contact is not None and contact[i, j] else palette.NON_CONTACT_PAIR
        view.addCylinder({"start": dict(zip("xyz", map(float, ca[i]))),
                          "end": dict(zip("xyz", map(float, ca[j]))),
                          "radius": 0.1 + 0.4 * w / wmax, "color": colour, "fromCap": 1, "toCap": 1})
    view.zoomTo()
    body = view.write_html()  # the viewer fragment: model and lines inline
    html = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
            f"<body><h3>{title}</h3>\n{head}{body}\n</body></html>\n")
    write_text(Path(path), html)
    return pairs


def run_attention_view(summary_path, quality_path, folders, out_path, top: int = 20,
                       viewer_js: str | None = None) -> None:
    """Rule entry point: the probe's example protein (best contact head) in 3-D.

    The structure file is the one its contact map came from (quality table: file, chain),
    looked up in ``folders`` (the local structure folder and the download caches). Without a
    file the page says so instead of failing: the figures do not depend on it.
    """
    import html as _html

    from .io import read_json, read_table

    example = read_json(summary_path).get("example")
    msg = None
    if not example:
        msg = "the probe had no protein with a contact map"
    else:
        q = read_table(quality_path)
        q = q[q["accession"] == example["accession"]]
        path = find_structure(str(q["file"].iloc[0]), folders) if len(q) else None
        if path is None:
            msg = f"structure file of {example['accession']} not found in {list(map(str, folders))}"
    if msg:
        write_text(Path(out_path), f"<!DOCTYPE html>\n<html><body><p>{_html.escape(msg)}</p></body></html>\n")
        return
    n = example["length"]
    contact = np.zeros((n, n), bool)
    ci, cj = np.asarray(example["contact_i"], int) - 1, np.asarray(example["contact_j"], int) - 1
    contact[ci, cj] = contact[cj, ci] = True
    title = (f"{example['accession']}: the {top} strongest attention pairs (|i-j| >= 6) of layer "
             f"{example['layer']} head {example['head']}; blue = contact, vermillion = no contact")
    attention_view_html(path, np.asarray(example["attention"]), out_path, sequence=example["sequence"],
                        chain=str(q["chain"].iloc[0]), top=top, contact=contact, title=_html.escape(title),
                        viewer_js=viewer_js)
