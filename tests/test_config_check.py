"""seqxai.config_check: one line per config mistake, naming the key path and the file."""
import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from seqxai.config_check import (
    config_problems,
    cross_key_problems,
    format_problems,
    source_of,
    studies_on,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
DEFAULTS = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def merge(*sources):
    cfg = {}
    for _, m in sources:
        update_config(cfg, copy.deepcopy(m))
    return cfg


def test_shipped_configs_have_no_problem():
    for user in (DEMO, *[yaml.safe_load(p.read_text()) for p in (ROOT / "config" / "paper").glob("*.yaml")]):
        sources = [("config/config.yaml", DEFAULTS), ("user.yaml", user)]
        cfg = merge(*sources)
        assert config_problems(cfg, SCHEMA, sources) == []
        validate(cfg, str(SCHEMA_PATH))  # sets the defaults the cross-key checks read
        assert cross_key_problems(cfg, sources) == []


def test_unknown_keys_name_path_file_and_nearest_spelling_or_the_allowed_keys():
    user = {"attribution": {"shardz": 3}, "dna": {"probe": {"xyzzy": 1}}, "sed": 2}
    sources = [("config/config.yaml", DEFAULTS), ("mine.yaml", user)]
    lines = config_problems(merge(*sources), SCHEMA, sources)
    allowed = sorted(SCHEMA["properties"]["dna"]["properties"]["probe"]["properties"])
    assert lines == [
        "attribution.shardz: unknown key (mine.yaml); did you mean 'shards'?",
        f"dna.probe.xyzzy: unknown key (mine.yaml); allowed keys: {', '.join(allowed)}",
        "sed: unknown key (mine.yaml); did you mean 'seed'?",
    ]


def test_value_errors_name_the_source_that_set_them_last():
    base = {"attribution": {"n_steps": 5}, "data": {"source": "demo"}}
    user = {"data": {"source": "rael"}, "studies": ["wenzel", "vig", "wenzel"]}
    sources = [("config/config.yaml", base), ("a.yaml", user), ("--config", {"attribution": {"n_steps": "x"}})]
    lines = config_problems(merge(*sources), SCHEMA, sources)
    assert "attribution.n_steps: 'x' is not of type integer (--config)" in lines
    assert "data.source: 'rael' is not one of demo, real (did you mean 'real'?) (a.yaml)" in lines
    assert any(x.startswith("studies: ") and "non-unique" in x and x.endswith("(a.yaml)") for x in lines)
    assert len(lines) == 3


def test_source_of_list_items_and_defaults():
    sources = [("d.yaml", {"dna": {"demo": {"tfs": [{"name": "A"}]}}}), ("u.yaml", {"seed": 3})]
    assert source_of(["dna", "demo", "tfs", 0, "name"], sources) == "d.yaml"
    assert source_of(["seed"], sources) == "u.yaml"
    assert source_of(["outdir"], sources) == "schema default"


def test_format_problems_is_one_line_each():
    text = format_problems(["a: x", "b: y"])
    assert text.splitlines() == ["invalid config (2 problems):", "  a: x", "  b: y"]


def _with_defaults(*sources):
    cfg = merge(*sources)
    validate(cfg, str(SCHEMA_PATH))
    return cfg


def test_cross_key_checks_name_both_keys_and_their_files():
    user = {"dna": {"probe": {"offset_min": 30}, "attribution": {"offset_max": -200, "n_steps": 64,
                                                                   "max_steps": 32},
                    "split": {"test_fraction": 0.6, "valid_fraction": 0.4}},
            "data": {"uniprot": {"min_length": 2000},
                     "demo": {"protein": {"length_range": [140, 80]}, "dna": {"spacer": [19, 15]}}}}
    sources = [("config/config.yaml", DEFAULTS), ("u.yaml", user)]
    lines = cross_key_problems(_with_defaults(*sources), sources)
    keys = [x.split(" ")[0] for x in lines]
    assert keys == ["dna.probe.offset_min", "dna.attribution.offset_min", "dna.attribution.n_steps",
                    "data.uniprot.min_length", "data.demo.protein.length_range", "data.demo.dna.spacer",
                    "dna.split.test_fraction"]
    assert lines[0].startswith("dna.probe.offset_min = 30 (u.yaml) > dna.probe.offset_max = 20 "
                               "(config/config.yaml)")
    # an empty protein split that the run reads
    user = {"split": {"fractions": {"train": 0.9, "valid": 0.1, "test": 0}}}
    sources = [("config/config.yaml", DEFAULTS), ("u.yaml", user)]
    (line,) = cross_key_problems(_with_defaults(*sources), sources)
    assert line == ("split.fractions.test = 0 (u.yaml): no protein in the test split, but "
                    "attribution.split reads it")
    user["studies"] = ["vig", "clauwaert"]  # no attribution; the Vig probe reads all proteins
    assert cross_key_problems(_with_defaults(*sources), sources) == []
    # equal bounds are a one-offset window, not a mistake
    user = {"dna": {"probe": {"offset_min": 20}}}
    sources = [("config/config.yaml", DEFAULTS), ("u.yaml", user)]
    assert cross_key_problems(_with_defaults(*sources), sources) == []


def _demo_encoder(mpe, kind="absolute", pretrained=None):
    user = copy.deepcopy(DEMO)
    user["protein"]["encoder"] = {"pretrained": pretrained, "demo_config": {
        **DEMO["protein"]["encoder"]["demo_config"], "max_position_embeddings": mpe,
        "position_embedding_type": kind}}
    sources = [("config/config.yaml", DEFAULTS), ("demo.yaml", user)]
    return cross_key_problems(_with_defaults(*sources), sources)


def test_max_position_embeddings_must_cover_max_length_plus_two():
    assert _demo_encoder(258) == []  # demo max_length 256: positions 2..257
    (line,) = _demo_encoder(257)
    assert line.startswith("protein.encoder.demo_config.max_position_embeddings = 257 (demo.yaml) < "
                           "protein.max_length = 256 (demo.yaml) + 2")
    assert _demo_encoder(100, kind="rotary") == []  # no position table
    assert _demo_encoder(100, pretrained="facebook/esm2_t6_8M_UR50D") == []  # demo_config unused


def test_the_position_bound_is_where_esm_fails(tiny_encoder):
    """The bound of the check above on a real ESM encoder (max_position_embeddings 128): an
    input of 126 tokens runs, one of 127 raises the IndexError the check prevents."""
    import torch
    from transformers import EsmModel

    model = EsmModel.from_pretrained(tiny_encoder).eval()
    mpe = model.config.max_position_embeddings
    with torch.no_grad():
        model(input_ids=torch.full((1, mpe - 2), 5))
        with pytest.raises(IndexError):
            model(input_ids=torch.full((1, mpe - 1), 5))


def test_studies_default_to_all_three():
    assert studies_on({}) == {"wenzel", "vig", "clauwaert"}
    assert studies_on({"studies": ["vig"]}) == {"vig"}
    cfg = {}
    validate(cfg, str(SCHEMA_PATH))
    assert cfg["studies"] == ["wenzel", "vig", "clauwaert"]


def test_summary_leaves_out_the_studies_that_did_not_run(tmp_path):
    """summary.json of a Clauwaert-only run: the DNA section and control, no protein or
    attention control (whose inputs were never made), and `studies` saying what ran."""
    import json

    from seqxai.summary import build_summary

    (tmp_path / "m.json").write_text(json.dumps({"splits": {"test": {"roc_auc": 0.9}}}))
    (tmp_path / "s.json").write_text(json.dumps({"positive_control": {
        "minus10_head_found": True, "minus10": {"layer": 0, "head": 1, "sequence_driven": True}}}))
    s = build_summary(tasks=[], models=[], embedding=[], heads=[], metrics=[], probes=[],
                      dna_metrics=tmp_path / "m.json", dna_summary=tmp_path / "s.json",
                      studies=["clauwaert"], expect=[], expect_max_p=1e-3, min_high_confidence=100)
    assert s["studies"] == {"wenzel": False, "vig": False, "clauwaert": True}
    assert set(s["positive_controls"]) == {"dna_minus10_head", "checked", "all_pass"}
    assert s["positive_controls"]["all_pass"] is True and s["dna"]["metrics"]["splits"]["test"]["roc_auc"] == 0.9
    s = build_summary(tasks=[], models=[], embedding=[], heads=[], metrics=[], probes=[],
                      studies=["wenzel"], expect=[], expect_max_p=1e-3, min_high_confidence=100)
    assert "dna" not in s and set(s["positive_controls"]) == {"embedding_enrichment", "checked", "all_pass"}
