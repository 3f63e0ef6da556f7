"""Every report caption renders cleanly: docutils reports no warning or error.

Snakemake renders captions with Jinja, then docutils; a bare ``|i-j|`` is RST substitution
syntax and comes out as an "Undefined substitution" error box in the report.
"""
import io
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"


def _messages(text: str):
    import docutils.core
    import docutils.nodes

    stream = io.StringIO()
    doctree = docutils.core.publish_doctree(
        text, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream})
    found = [(m["level"], m.astext()) for m in doctree.findall(docutils.nodes.system_message)]
    found += [(3, p.astext()) for p in doctree.findall(docutils.nodes.problematic)]
    return found


def test_a_bare_bar_is_caught():
    assert any(level >= 2 for level, _ in _messages("pairs with |i-j| >= 6"))
    assert not _messages(r"pairs with \|i-j\| >= 6")


@pytest.mark.parametrize("rst", sorted(REPORT.glob("*.rst")), ids=lambda p: p.name)
def test_caption_renders_without_warnings(rst):
    import jinja2
    import yaml

    for name in ("demo.yaml", "config.yaml"):  # the config keys the captions read, both layouts
        config = yaml.safe_load((REPORT.parents[1] / "config" / name).read_text())
        tmpl = jinja2.Template(rst.read_text(), undefined=jinja2.StrictUndefined)
        text = tmpl.render(snakemake={"config": config}, config=config)
        bad = [m for m in _messages(text) if m[0] >= 2]
        assert not bad, f"{rst} ({name}): {bad}"
