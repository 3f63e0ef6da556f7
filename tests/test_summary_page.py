"""summary.html, the report's first page: the controls table with verdicts and numbers, the
metrics, the provenance; self-contained; and as a browser shows it (headless chromium)."""
import re
import shutil
from pathlib import Path

import pytest

from seqxai.summary_page import control_rows, fmt, summary_html, write_summary_page

ROOT = Path(__file__).resolve().parents[1]


def _summary(checked=True, contact_pass=False):
    return {
        "positive_controls": {
            "checked": checked, "all_pass": (contact_pass if checked else None),
            "embedding_enrichment": {
                "max_p": 0.001, "composition_max_p": 0.01, "controls_max_p": None, "controls_min_difference": None,
                "pass": True,
                "checks": [{"task": "go", "group": "GO:0016020", "annotation": "transmembrane", "p": 9.3e-10,
                            "p_composition": 0.002, "median_r": 0.54, "n_proteins": 30, "controls": None,
                            "nulls": {"composition_null": True}, "held_by": ["composition_null"],
                            "pass": True},
                           {"task": "ec", "group": "all", "annotation": "<motif>", "p": 1e-12,
                            "p_composition": 0.005, "median_r": 0.17, "n_proteins": 63, "controls": None,
                            "nulls": {"composition_null": True}, "held_by": ["composition_null"], "pass": True}]},
            "contact_attention": {"required_share": 0.012, "required_enrichment": 1.0, "pass": contact_pass,
                                  "best": {"model": "go", "layer": 1, "head": 3, "share": 0.0158,
                                           "background": 0.016, "enrichment": 0.988}},
            "dna_minus10_head": {"layer": 0, "head": 2, "peak_offset": -9, "expected_centre": -9.5,
                                 "consensus": "GTATATAATG", "mismatches": 0, "expected_consensus": "TATAAT",
                                 "sequence_driven": True, "profile_at_peak": 0.38, "background_at_peak": 0.05,
                                 "tolerance": 3, "max_mismatches": 1, "pass": True},
        },
        "protein": {"ec": {"metrics": {"test": {"accuracy": 0.9, "macro_f1": 0.85, "n": 63}}}},
        "dna": {"metrics": {"splits": {"test": {"roc_auc": 0.984, "pr_auc": 0.185, "positive_rate": 0.0016,
                                                "n_windows": 64}}}},
        "attention": {"pretrained": {"best_head": {"contact": {"layer": 1, "head": 2, "share": 0.0124,
                                                               "background": 0.016, "enrichment": 0.775,
                                                               "significant_heads": 0}}}},
        "provenance": {"seed": 1, "config_sha256": "ab" * 32, "packages": {"torch": "2.13.0"},
                       "encoder": {"pretrained": None, "weights_sha256": "cd" * 32}, "data": {"source": "demo"}},
    }


def test_numbers_are_written_for_people():
    assert [fmt(x) for x in (None, float("nan"), True, 3, 0.0158, 9.3e-10, 0.0)] == [
        "n/a", "n/a", "yes", "3", "0.0158", "9.30e-10", "0"]


def test_the_controls_table_has_one_row_per_control_with_its_numbers():
    rows = control_rows(_summary()["positive_controls"])
    assert [r[0].split(" (")[0] for r in rows] == [
        "IG relevance inside transmembrane", "IG relevance inside <motif>", "attention on contacts",
        "DNA head at the -10 box"]
    verdicts = [re.search(r'data-verdict="([^"]+)"', r[1][1]).group(1) for r in rows]
    assert verdicts == ["pass", "pass", "fail", "pass"]
    assert "p = 9.30e-10" in rows[0][2] and "p_composition = 0.002" in rows[0][2]
    assert "go L1 H3: share 0.0158" in rows[2][2] and rows[2][3] == "share >= 0.012 and enrichment >= 1"


def test_the_page_says_how_many_controls_fail_and_escapes_names():
    page = summary_html(_summary())
    assert re.search(r'id="all-pass"[^>]*>1 of 4 positive controls fail<', page)
    assert "&lt;motif&gt;" in page and "<motif>" not in page
    assert "All positive controls pass" in summary_html(_summary(contact_pass=True))
    unjudged = summary_html(_summary(checked=False))
    assert "Positive controls not judged" in unjudged and 'data-verdict="fail"' not in unjudged
    # self-contained: opens offline and inside the report's iframe
    assert not re.search(r"<script|<link|src=|https?://", page)


def test_the_report_lists_the_summary_first():
    """Snakemake's report sorts categories alphabetically (localeCompare); summary.html and
    summary.json are in the first one, and summary.html is a final target."""
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    categories = set(re.findall(r'category="([^"]+)"', rules))
    first = min(categories, key=str.casefold)
    assert first == "Abstract"
    for target in ("summary.html", "summary.json"):
        block = rules[rules.index(f'out("{target}")'):][:200]
        assert 'category="Abstract"' in block, target
    assert 'out("summary.html")' in (ROOT / "workflow" / "rules" / "common.smk").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
def test_the_page_in_a_headless_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (requirements-dev.txt)")
    import json

    (tmp_path / "summary.json").write_text(json.dumps(_summary()))
    page_path = tmp_path / "summary.html"
    write_summary_page(tmp_path / "summary.json", page_path)
    with sync_api.sync_playwright() as p:
        # Debian's chromium, not Playwright's download (no internet); no sandbox as root in CI
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_path.as_uri())
            assert page.title() == "seqxai study summary"
            rows = page.locator("table.controls tbody tr")
            assert rows.count() == 4
            assert rows.nth(2).locator("td").nth(1).inner_text().strip() == "FAIL"
            assert "share 0.0158" in rows.nth(2).inner_text()
            assert page.locator("#all-pass").inner_text() == "1 of 4 positive controls fail"
            assert page.locator("#all-pass").is_visible()
            assert "ab" * 32 in page.locator("table.provenance").inner_text()
            shot = tmp_path / "summary_page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_paper_numbers_show_one_published_value_or_a_range():
    """paper_numbers holds a range for the papers' models and one number when the probed
    encoder is the paper's own (a real ESM-2 run: a float, which once crashed the page)."""
    s = _summary()
    s["paper_numbers"] = [
        {"quantity": "top contact head share", "run": 0.31, "published": 0.44, "published_for": "ESM-2 8M"},
        {"quantity": "BLOSUM62 r", "run": 0.2, "published": [0.6, 0.74], "published_for": "TapeBert"},
        {"quantity": "long-range P@L", "run": None, "published": None, "published_for": "-"},
    ]
    page = summary_html(s)
    assert re.search(r"<td>ESM-2 8M</td>", page) and ">0.44<" in page
    assert "0.6, 0.74" in page and "n/a" in page


def test_dna_attribution_methods_show_the_targets_each_method_finds():
    """summary.json's dna_attribution_methods (issue 18.4): one row per method, per target its
    q and seqlets or "not found", and the cost relative to integrated gradients."""
    s = _summary()
    hit = {"pattern": "pos_pattern_0", "n_seqlets": 75, "q": 0.0013, "found": True, "n_patterns": 2,
           "n_seqlets_all": 92}
    miss = {"pattern": None, "n_seqlets": 0, "q": None, "found": False, "n_patterns": 0, "n_seqlets_all": 0}
    s["dna_attribution_methods"] = {"alpha": 0.05, "targets": ["sigma70_minus10", "RepB"], "methods": {
        "attnlrp": {"n_patterns": 3, "n_seqlets": 160, "relative_to_ig": 0.0303,
                    "targets": {"sigma70_minus10": hit, "RepB": miss}},
        "ig": {"n_patterns": 3, "n_seqlets": 168, "relative_to_ig": 1.0,
               "targets": {"sigma70_minus10": {**hit, "q": 0.0005, "n_seqlets_all": 88}, "RepB": miss}}}}
    page = summary_html(s)
    section = page.split("DNA attribution methods", 1)[1].split("</table>", 1)[0]
    assert "<th>sigma70_minus10</th>" in section and "<th>RepB</th>" in section
    assert "q 0.0013, 92 seqlets" in section and "q 5.00e-04, 88 seqlets" in section
    assert section.count("not found") == 2 and ">0.0303<" in section
    assert section.index("<td>ig</td>") < section.index("<td>attnlrp</td>")   # IG first, whatever the key order
    assert "DNA attribution methods" not in summary_html(_summary())


def test_protein_faithfulness_shows_each_method_by_rank_with_its_intervals():
    """summary.json's protein/<task>/faithfulness (issue 18.3): one row per method in rank
    order, the MoRF - LeRF and MoRF - random areas with their bootstrap intervals, the cost."""
    s = _summary()
    rec = {"n_proteins": 40, "morf_minus_random_mean": 0.21, "morf_minus_random_low": 0.15,
           "morf_minus_random_high": 0.27, "p_most_vs_random": 1e-6, "flop_ratio": 1.0}
    s["protein"]["ec"]["faithfulness"] = {"methods": [
        {**rec, "method": "ig", "rank": 2, "morf_minus_lerf_mean": 0.373, "morf_minus_lerf_low": 0.307,
         "morf_minus_lerf_high": 0.441, "time_ratio": 31.5},
        {**rec, "method": "attnlrp", "rank": 1, "morf_minus_lerf_mean": 0.578, "morf_minus_lerf_low": 0.49,
         "morf_minus_lerf_high": 0.661, "time_ratio": 1.49}], "pairs": [], "enrichment": []}
    page = summary_html(s)
    section = page.split("Protein attribution methods", 1)[1].split("</table>", 1)[0]
    assert "0.578 [0.49, 0.661]" in section and "0.373 [0.307, 0.441]" in section
    assert section.index("<td>attnlrp</td>") < section.index("<td>ig</td>")   # by rank
    assert ">31.5<" in section
    assert "Protein attribution methods" not in summary_html(_summary())
