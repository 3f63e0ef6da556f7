"""3-D attention view: the strongest pairs are chosen right and drawn between the right atoms."""
from pathlib import Path

import numpy as np
import pytest

from seqxai import palette
from seqxai.structure_view import attention_view_html, strongest_pairs

pytest.importorskip("py3Dmol")
SHARED = Path(__file__).resolve().parents[2] / "shared"


def test_strongest_pairs_by_hand():
    a = np.zeros((10, 10))
    a[0, 9], a[2, 8], a[1, 3] = 0.9, 0.5, 0.99  # (1, 3) is too close
    assert strongest_pairs(a, top=2) == [(0, 9, 0.9), (2, 8, 0.5)]
    allowed = np.ones(10, bool)
    allowed[9] = False
    assert strongest_pairs(a, top=1, allowed=allowed) == [(2, 8, 0.5)]


def _helix_pdb(n=12):
    lines = []
    for k in range(n):
        x, y, z = 2.3 * np.cos(k * 1.745), 2.3 * np.sin(k * 1.745), 1.5 * k
        lines.append(f"ATOM  {k + 1:5d}  CA  ALA A{k + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00           C")
    return "\n".join(lines) + "\nEND\n", n


def test_html_draws_lines_between_the_attended_c_alphas(tmp_path):
    text, n = _helix_pdb()
    pdb = tmp_path / "helix.pdb"
    pdb.write_text(text)
    attn = np.zeros((n, n))
    attn[1, 10] = 0.8
    contact = np.zeros((n, n), bool)
    contact[1, 10] = True
    out = tmp_path / "view.html"
    pairs = attention_view_html(pdb, attn, out, top=1, contact=contact, title="test head")
    assert pairs == [(1, 10, 0.8)]
    html = out.read_text()
    assert "3Dmol" in html and "addCylinder" in html and "test head" in html
    x1 = f"{2.3 * np.cos(1.745):.3f}"
    z10 = f"{1.5 * 10:.1f}"
    assert x1.rstrip("0") in html and z10 in html and f"\"{palette.CONTACT_PAIR}\"" in html


def test_viewer_js_inline_url_or_cdn(tmp_path):
    """A local 3Dmol.js is written into the page (opens offline: nothing is fetched), a URL is
    loaded from there, and the default is the CDN; a missing file is a clear error."""
    from seqxai.io import DataError

    text, n = _helix_pdb()
    pdb = tmp_path / "helix.pdb"
    pdb.write_text(text)
    attn = np.zeros((n, n))
    attn[1, 10] = 0.8
    js = tmp_path / "3Dmol-min.js"
    js.write_text("/* local 3Dmol build */ window.$3Dmol = {}; var s = '</script>';")
    attention_view_html(pdb, attn, tmp_path / "inline.html", top=1, viewer_js=str(js))
    html = (tmp_path / "inline.html").read_text()
    assert "/* local 3Dmol build */" in html and "var $3Dmolpromise = Promise.resolve();" in html
    assert html.index("local 3Dmol build") < html.index("createViewer")   # defined before use
    assert "'<\\/script>'" in html                     # a literal </script> cannot end the inline block
    attention_view_html(pdb, attn, tmp_path / "url.html", top=1, viewer_js="https://example.org/3Dmol.js")
    url = (tmp_path / "url.html").read_text()
    assert "loadScriptAsync('https://example.org/3Dmol.js')" in url and "cdn.jsdelivr" not in url
    attention_view_html(pdb, attn, tmp_path / "cdn.html", top=1)
    assert "cdn.jsdelivr.net/npm/3dmol" in (tmp_path / "cdn.html").read_text()
    with pytest.raises(DataError, match="analysis.vig.viewer_js: .*nope.js is not a file"):
        attention_view_html(pdb, attn, tmp_path / "x.html", top=1, viewer_js=str(tmp_path / "nope.js"))


def test_real_structure_with_sequence_mapping(tmp_path):
    path = SHARED / "data" / "structures" / "1aki.pdb"
    if not path.is_file():
        pytest.skip(f"{path} is absent: real structures live only on developer machines and CI")
    from seqxai.sources.structure_chains import protein_chains, read_structure

    seq = protein_chains(read_structure(path))["A"][0]
    padded = "MM" + seq  # the reference sequence has two extra residues in front
    attn = np.zeros((len(padded), len(padded)))
    attn[2 + 5, 2 + 40] = 1.0  # chain residues 5 and 40
    pairs = attention_view_html(path, attn, tmp_path / "v.html", sequence=padded, chain="A", top=1)
    assert pairs == [(7, 42, 1.0)]
    res = protein_chains(read_structure(path))["A"][1]
    ca = res[40].find_atom("CA", "*").pos
    assert f"{ca.x:.3f}".rstrip("0") in (tmp_path / "v.html").read_text()


def test_run_attention_view_finds_the_file_or_says_why(tmp_path):
    import json

    import pandas as pd

    from seqxai.io import write_table
    from seqxai.structure_view import run_attention_view

    text, n = _helix_pdb()
    folder = tmp_path / "structures"
    folder.mkdir()
    (folder / "helix.pdb").write_text(text)
    attn = np.zeros((n, n))
    attn[0, 11] = 0.7
    example = {"accession": "P1", "length": n, "layer": 1, "head": 2, "sequence": "A" * n,
               "contact_i": [1], "contact_j": [12], "resolved": "1" * n, "attention": attn.tolist()}
    (tmp_path / "s.json").write_text(json.dumps({"example": example}))
    write_table(tmp_path / "q.parquet", pd.DataFrame({"accession": ["P1"], "file": ["helix.pdb"], "chain": ["A"]}))
    run_attention_view(tmp_path / "s.json", tmp_path / "q.parquet", [None, folder], tmp_path / "v.html", top=1)
    html = (tmp_path / "v.html").read_text()
    assert "addCylinder" in html and f"\"{palette.CONTACT_PAIR}\"" in html and "layer 1 head 2" in html
    run_attention_view(tmp_path / "s.json", tmp_path / "q.parquet", [tmp_path / "none"], tmp_path / "w.html")
    assert "not found" in (tmp_path / "w.html").read_text()
