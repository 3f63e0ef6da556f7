"""summary.html: the headline of the study report, rendered from summary.json.

One self-contained page (inline CSS, no script, no external file: it opens offline and inside
the report's iframe) with, in order: the verdict of the positive controls, a table of the
controls with the numbers each verdict rests on and what it required, the main metrics (test
metrics of the models, the best attention head per property, residue flipping, the DNA seeds,
the motifs of each DNA attribution method)
and the provenance (seed, config hash, packages, encoder, data). Verdicts are words (PASS /
FAIL / "not judged"), colour only repeats them (Okabe-Ito blue and vermillion).
"""
from __future__ import annotations

import html
import math
from pathlib import Path

from . import palette

CSS = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em; color: #222;
       max-width: 70em; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }}
h2 {{ font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }}
table {{ border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.pass {{ color: #fff; background: {palette.BLUE}; font-weight: bold; }}
.fail {{ color: #fff; background: {palette.VERMILLION}; font-weight: bold; }}
.unjudged {{ background: {palette.LIGHT_GREY}; }}
.verdict {{ font-size: 1.1em; padding: 0.4em 0.8em; display: inline-block; border-radius: 3px; }}
.note {{ color: #555; font-size: 0.85em; }}
code {{ font-size: 0.9em; }}
"""


def fmt(x) -> str:
    """A number for people: None/NaN -> "n/a", booleans as yes/no, small p in e-notation."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.2e}"
        return f"{x:.3g}"
    return str(x)


def _e(x) -> str:
    return html.escape(fmt(x))


def _table(header: list[str], rows: list[list], cls: str = "", numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are escaped unless given as ("html", markup)."""
    def cell(k, v):
        if isinstance(v, tuple) and v and v[0] == "html":
            return f"<td>{v[1]}</td>"
        return f'<td class="num">{_e(v)}</td>' if k in numeric else f"<td>{_e(v)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(cell(k, v) for k, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def _interval(rec: dict, area: str) -> str:
    """'mean [low, high]' of one faithfulness area (seqxai.faithfulness.METHOD_COLUMNS)."""
    return f"{fmt(rec.get(area + '_mean'))} [{fmt(rec.get(area + '_low'))}, {fmt(rec.get(area + '_high'))}]"


def _verdict_cell(passed, checked: bool) -> tuple[str, str]:
    if not checked or passed is None:
        return ("html", '<span class="verdict unjudged" data-verdict="not judged">not judged</span>')
    word, cls = ("PASS", "pass") if passed else ("FAIL", "fail")
    return ("html", f'<span class="verdict {cls}" data-verdict="{cls}">{word}</span>')


def control_rows(pc: dict) -> list[list]:
    """One row per positive control (embedding checks one row each): name, verdict, the numbers
    the verdict rests on, what it required."""
    checked = bool(pc.get("checked", True))
    rows = []
    emb = pc.get("embedding_enrichment") or {}
    for c in emb.get("checks", []):
        nulls = ", ".join(f"{k}: {'held' if v else 'did not hold'}" for k, v in (c.get("nulls") or {}).items())
        numbers = (f"p = {fmt(c.get('p'))}, p_composition = {fmt(c.get('p_composition'))}, "
                   f"median r = {fmt(c.get('median_r'))}, n = {fmt(c.get('n_proteins'))}"
                   + (f"; nulls: {nulls}" if nulls else ""))
        for name, ctl in (c.get("controls") or {}).items():
            numbers += (f"; vs {name}: median difference {fmt(ctl.get('median_difference'))}, "
                        f"p = {fmt(ctl.get('p'))}")
        need = f"p < {fmt(emb.get('max_p'))} and one null held"
        if emb.get("composition_max_p") is not None:
            need += f" (composition p < {fmt(emb['composition_max_p'])}"
            need += (f"; or controls p < {fmt(emb['controls_max_p'])}, difference >= "
                     f"{fmt(emb.get('controls_min_difference'))})" if emb.get("controls_max_p") is not None else ")")
        rows.append([f"IG relevance inside {c['annotation']} ({c['task']}, target {c['group']})",
                     _verdict_cell(c.get("pass"), checked), numbers, need])
    ca = pc.get("contact_attention")
    if ca is not None:
        b = ca.get("best") or {}
        numbers = (f"best head {b.get('model', '?')} L{b.get('layer', '?')} H{b.get('head', '?')}: share "
                   f"{fmt(b.get('share'))}, background {fmt(b.get('background'))}, enrichment "
                   f"{fmt(b.get('enrichment'))}" if b else "no head with enough high-confidence attention")
        rows.append(["attention on contacts (Vig et al.)", _verdict_cell(ca.get("pass"), checked), numbers,
                     f"share >= {fmt(ca.get('required_share'))} and enrichment >= "
                     f"{fmt(ca.get('required_enrichment'))}"])
    m10 = pc.get("dna_minus10_head")
    if m10 is not None:
        numbers = (f"L{m10.get('layer')} H{m10.get('head')}: peak {fmt(m10.get('peak_offset'))} "
                   f"(expected {fmt(m10.get('expected_centre'))}), consensus {m10.get('consensus')} "
                   f"({fmt(m10.get('mismatches'))} mismatches to {m10.get('expected_consensus')}), "
                   f"sequence-driven: {fmt(m10.get('sequence_driven'))} (TSS {fmt(m10.get('profile_at_peak'))}"
                   f" vs background {fmt(m10.get('background_at_peak'))} at the peak)")
        rows.append(["DNA head at the -10 box (Clauwaert et al.)", _verdict_cell(m10.get("pass"), checked),
                     numbers, f"peak within {fmt(m10.get('tolerance'))} nt, <= {fmt(m10.get('max_mismatches'))} "
                               "mismatches, sequence-driven"])
    tf = pc.get("dna_tf_head")
    if tf is not None:
        best = "; ".join(f"{name}: L{b.get('layer')} H{b.get('head')} mass difference "
                         f"{fmt(b.get('mass_difference'))}, q = {fmt(b.get('p_bh'))}"
                         for name, b in (tf.get("best_per_tf") or {}).items())
        numbers = (f"{fmt(tf.get('n_heads_associated'))} of {fmt(tf.get('n_heads'))} heads associated with a TF"
                   + (f"; best: {best}" if best else ""))
        rows.append(["DNA head on planted TF sites", _verdict_cell(tf.get("pass"), checked), numbers,
                     f"{tf.get('effect', 'effect')} >= {fmt(tf.get('min_effect'))} at BH q < alpha"])
    return rows


PROTEIN_METRICS = ("accuracy", "macro_f1", "fmax", "macro_pr_auc", "n")


def _metrics_section(s: dict) -> str:
    parts = []
    rows = []
    for task, t in (s.get("protein") or {}).items():
        m = t.get("metrics") or {}
        for split in ("test", "valid"):
            sm = m.get(split) or {}
            rows.append([f"protein {task}", split, *(sm.get(k) for k in PROTEIN_METRICS)])
        for variant, vm in (t.get("variants") or {}).items():
            if variant != "finetuned" and vm:
                rows.append([f"protein {task} ({variant})", "test", *(vm.get(k) for k in PROTEIN_METRICS)])
    if rows:
        parts.append("<h3>Protein classifiers</h3>" + _table(
            ["model", "split", "accuracy", "macro F1 (EC)", "Fmax (GO)", "macro PR AUC (GO)", "n"], rows,
            numeric={2, 3, 4, 5, 6}))
    dm = ((s.get("dna") or {}).get("metrics") or {}).get("splits") or {}
    if dm:
        parts.append("<h3>DNA TSS model</h3>" + _table(
            ["split", "ROC AUC", "PR AUC", "positive rate", "windows"],
            [[k, v.get("roc_auc"), v.get("pr_auc"), v.get("positive_rate"), v.get("n_windows")]
             for k, v in dm.items()], numeric={1, 2, 3, 4}))
    rows = [[model, prop, f"L{b['layer']} H{b['head']}", b.get("share"), b.get("background"), b.get("enrichment"),
             b.get("significant_heads")]
            for model, a in (s.get("attention") or {}).items() for prop, b in (a.get("best_head") or {}).items()]
    if rows:
        parts.append("<h3>Attention: best head per property</h3>" + _table(
            ["model", "property", "head", "share", "background", "enrichment", "significant heads"], rows,
            numeric={3, 4, 5, 6}))
    rows = []
    for task, t in (s.get("protein") or {}).items():
        for variant, comps in (t.get("residue_flipping") or {}).items():
            for comp, r in comps.items():
                rows.append([task, variant, comp, r.get("mean_aopc_a"), r.get("mean_aopc_b"), r.get("p"),
                             r.get("n_proteins")])
    if rows:
        parts.append("<h3>Residue flipping (AOPC, one-sided paired Wilcoxon)</h3>" + _table(
            ["task", "variant", "comparison", "mean AOPC (first)", "mean AOPC (second)", "p", "proteins"], rows,
            numeric={3, 4, 5, 6}))
    rows = []
    for task, t in (s.get("protein") or {}).items():
        for r in sorted((t.get("faithfulness") or {}).get("methods") or [], key=lambda r: r.get("rank") or 0):
            rows.append([task, r.get("method"), r.get("rank"), _interval(r, "morf_minus_lerf"),
                         _interval(r, "morf_minus_random"), r.get("p_most_vs_random"), r.get("time_ratio"),
                         r.get("flop_ratio"), r.get("n_proteins")])
    if rows:
        parts.append("<h3>Protein attribution methods: residue flipping (faithfulness)</h3>" + _table(
            ["task", "method", "rank", "MoRF - LeRF area (95 % CI)", "MoRF - random area (95 % CI)",
             "p (MoRF vs random)", "cost / fwd+bwd (time)", "cost / fwd+bwd (FLOPs)", "proteins"], rows,
            numeric={2, 5, 6, 7, 8}))
    rob = s.get("dna_seed_robustness")
    if rob:
        rows = [[k, v.get("found"), v.get("found_and_sequence_driven")] for k, v in rob.items()
                if isinstance(v, dict) and "found" in v]
        parts.append(f"<h3>DNA study over {fmt(rob.get('n_seeds'))} training seeds "
                     f"({html.escape(', '.join(map(str, rob.get('seeds', []))))})</h3>"
                     + _table(["element", "fraction of seeds found", "found and sequence-driven"], rows,
                              numeric={1, 2}))
    dam = s.get("dna_attribution_methods")
    if dam:
        def found(t):
            return f"q {fmt(t['q'])}, {t['n_seqlets_all']} seqlets" if t.get("found") else "not found"

        targets = dam.get("targets") or []
        rows = [[m, *(found(v["targets"][t]) for t in targets), v.get("n_patterns"), v.get("n_seqlets"),
                 v.get("relative_to_ig")]   # integrated gradients first (summary.json sorts its keys)
                for m, v in sorted((dam.get("methods") or {}).items(), key=lambda kv: kv[0] != "ig")]
        parts.append("<h3>DNA attribution methods: TF-MoDISco motifs (Tomtom)</h3>" + _table(
            ["method", *targets, "patterns", "seqlets", "cost / IG"], rows,
            numeric={len(targets) + 1, len(targets) + 2, len(targets) + 3}))
    papers = s.get("paper_numbers") or []
    if papers:
        def published(value):  # one number (the probed encoder is the paper's) or a range
            if value is None:
                return "n/a"
            return ", ".join(fmt(x) for x in value) if isinstance(value, (list, tuple)) else fmt(value)

        rows = [[p.get("quantity"), p.get("run"), published(p.get("published")), p.get("published_for")]
                for p in papers]
        parts.append("<h3>Beside the papers' numbers</h3>" + _table(
            ["quantity", "this run", "published", "published for"], rows, numeric={1}))
    return "\n".join(parts)


def _provenance_section(prov: dict) -> str:
    if not prov:
        return "<p>No provenance recorded.</p>"
    enc = prov.get("encoder") or {}
    data = prov.get("data") or {}
    rows = [["seed", prov.get("seed")], ["config sha256", prov.get("config_sha256")],
            ["protein encoder", enc.get("pretrained") or "demo encoder built and MLM-pretrained by the workflow"],
            ["encoder weights sha256", enc.get("weights_sha256")], ["encoder hub commit", enc.get("commit")],
            ["data source", data.get("source")]]
    if data.get("source") != "demo":
        rows += [["genome accession", (data.get("genome") or {}).get("accession")],
                 ["RegulonDB release", (data.get("regulondb") or {}).get("release")],
                 ["GO release", (data.get("go") or {}).get("pinned_release")],
                 ["structures", (data.get("structures") or {}).get("source")]]
    rows += [[f"package {k}", v] for k, v in (prov.get("packages") or {}).items()]
    return _table(["item", "value"], rows, cls="provenance")


def summary_html(summary: dict, title: str = "seqxai study summary") -> str:
    """The page for one summary.json (as :func:`seqxai.summary.build_summary` writes it)."""
    pc = summary.get("positive_controls") or {}
    rows = control_rows(pc)
    checked = bool(pc.get("checked", True))
    if not checked:
        headline = ('<span class="verdict unjudged" data-verdict="not judged">Positive controls not judged</span> '
                    '<span class="note">(real data: nothing was planted; the numbers are to read)</span>')
    else:
        n_fail = sum(1 for r in rows if 'data-verdict="fail"' in r[1][1])
        ok = pc.get("all_pass")
        headline = (f'<span class="verdict {"pass" if ok else "fail"}" id="all-pass" '
                    f'data-verdict="{"pass" if ok else "fail"}">'
                    + ("All positive controls pass" if ok else f"{n_fail} of {len(rows)} positive controls fail")
                    + "</span>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{headline}</p>
<h2>Positive controls</h2>
{_table(["control", "verdict", "numbers", "required"], rows, cls="controls")}
<p class="note">The controls and their thresholds are configured under <code>analysis</code> (config);
summary.json holds every number of this page and more.</p>
<h2>Main metrics</h2>
{_metrics_section(summary)}
<h2>Provenance</h2>
{_provenance_section(summary.get("provenance") or {})}
</body></html>
"""


def write_summary_page(summary_path, out_path) -> None:
    """Rule entry point: summary.json -> summary.html (written atomically)."""
    from .io import read_json, write_text

    write_text(Path(out_path), summary_html(read_json(summary_path)))
