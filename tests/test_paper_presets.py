"""config/paper/: one preset per figure set of the three studies (METHODS.md).

Each preset, layered on config/config.yaml as Snakemake layers it, must validate against the
schema, state the paper's settings (checked here against METHODS.md's numbers), and build the
whole DAG in a dry run without the network (every proxy points at a closed port, so a download
attempted during the dry run fails it).
"""
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "config" / "paper").glob("*.yaml"))
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "NO_PROXY": "", "no_proxy": ""}


def merged(preset: Path) -> dict:
    """config/config.yaml updated by the preset (Snakemake's own merge), schema defaults set."""
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    update_config(cfg, yaml.safe_load(preset.read_text()))
    validate(cfg, str(SCHEMA))
    return cfg


def test_there_is_a_preset_per_figure_set():
    assert {p.stem for p in PRESETS} >= {"wenzel_ec", "wenzel_go", "vig_protbert_bfd", "vig_esm2",
                                         "clauwaert_tss"}


@pytest.mark.parametrize("name", ["wenzel_ec", "wenzel_go"])
def test_wenzel_presets_follow_the_paper_recipe(name):
    cfg = merged(ROOT / "config" / "paper" / f"{name}.yaml")
    p = cfg["protein"]
    assert p["encoder"]["pretrained"] == "Rostlab/prot_bert_bfd" and not p["mlm"]["enabled"]
    assert p["max_length"] == 1000
    # sequences must fit with [CLS] and [SEP]
    assert cfg["data"]["uniprot"]["max_length"] <= p["max_length"] - 2
    ft = p["finetune"]
    assert (ft["batch_size"], ft["accumulation"], ft["head_lr"], ft["encoder_lr"],
            ft["freeze_encoder_epochs"], ft["patience"]) == (1, 64, 3e-5, 5e-6, 1, 2)
    assert cfg["attribution"]["n_steps"] == 500 and cfg["attribution"]["layers"]
    task = name.split("_")[1]
    assert list(p["tasks"]) == [task]  # the preset replaces the default ec + go tasks
    if task == "go":
        assert p["tasks"]["go"]["attribute_terms"] == ["GO:0016020"]


@pytest.mark.parametrize("name, encoder", [("vig_protbert_bfd", "Rostlab/prot_bert_bfd"),
                                           ("vig_esm2", "facebook/esm2_t33_650M_UR50D")])
def test_vig_presets(name, encoder):
    cfg = merged(ROOT / "config" / "paper" / f"{name}.yaml")
    assert cfg["protein"]["encoder"]["pretrained"] == encoder
    vig = cfg["analysis"]["vig"]
    assert (vig["theta"], vig["min_high_confidence"], vig["max_residues"]) == (0.3, 100, 510)
    # experimental non-redundant chains of the pinned PISCES-format list, C-alpha < 8 A (the paper)
    st = cfg["data"]["structures"]
    # a real PISCES list pinned by URL at a fixed commit and by its digest; a seeded 5,000 (the paper)
    assert st["source"] == "pdb_list" and re.search(r"/[0-9a-f]{40}/cullpdb_pc30_", st["chain_list"])
    assert re.fullmatch(r"[0-9a-f]{64}", st["chain_list_sha256"]) and st["max_chains"] == 5000
    assert st["sifts"]["enabled"]  # binding sites and PTMs of the chains through SIFTS
    assert st["max_resolution"] == 2.5 and st["contact"]["atom"] == "CA" and st["contact"]["cutoff"] == 8.0
    assert "ptm" in cfg["analysis"]["annotation_types"] and "ptm" in cfg["data"]["uniprot"]["features"]
    assert cfg["protein"]["tasks"] == {}  # the pretrained model only


def test_clauwaert_preset_is_the_paper_model():
    cfg = merged(ROOT / "config" / "paper" / "clauwaert_tss.yaml")
    m = cfg["dna"]["model"]
    assert (m["n_layers"], m["n_heads"], m["d_model"], m["context"], m["conv_width"],
            m["label_offset"]) == (6, 6, 32, 511, 7, 20)
    # the original's architecture and run_regulon.sh's training settings (seqxai.dna_clauwaert)
    t = cfg["dna"]["train"]
    assert (m["architecture"], m["d_head"], m["dropout"], m["attention_sink"]) == ("clauwaert2021", 32, 0.1,
                                                                                   False)
    assert (t["lr"], t["batch_size"], t["weight_decay"], t["pos_weight"], t["focal_gamma"],
            t["stride"]) == (1e-4, 10, 0, 1, 0.8, 512)
    assert cfg["data"]["genome"]["accession"] == "NC_000913.3"
    assert (cfg["dna"]["split"]["test_fraction"], cfg["dna"]["split"]["valid_fraction"]) == (0.2, 0.1)


# The rules of each study (config `studies`); protein data serve Wenzel and Vig. A study that is
# off must leave all of its rules out of the DAG, its downloads included.
STUDY_RULES = {
    "wenzel": {"check_protein_tasks", "finetune_protein", "attribute_proteins", "gather_attributions",
               "head_statistics", "residue_flipping", "plot_head_significance", "plot_tracks",
               "plot_residue_flipping"},
    "vig": {"attention_probe", "plot_attention_probe", "diagnostic_probes", "plot_diagnostic_probes"},
    "clauwaert": {"train_dna", "tss_attention", "attribute_dna", "dna_modisco", "plot_dna",
                  "plot_dna_attribution"},
}
PROTEIN_DATA = {"propagate_go", "split_proteins"}
REAL_DATA = {"wenzel": {"download_uniprot", "download_go"},
             "vig": {"download_structures", "secondary_structure", "attention_3d_view"},
             "clauwaert": {"download_genome", "download_regulondb"}}
PRESET_STUDY = {"wenzel_ec": "wenzel", "wenzel_go": "wenzel", "vig_esm2": "vig",
                "vig_protbert_bfd": "vig", "clauwaert_tss": "clauwaert"}


def planned_rules(configfile, tmp_path, *config) -> set[str]:
    """Rule names of a dry run's job table, offline (a download attempted fails the run)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1",
           "--configfile", str(configfile),
           "--config", f"outdir={tmp_path}/results", f"cache_dir={tmp_path}/cache", *config]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, **NO_NETWORK})
    assert res.returncode == 0, res.stderr[-3000:]
    # rule names from the job-count table ("rule   count" lines), not from file paths
    return set(re.findall(r"^(\w+)\s+\d+$", res.stdout, flags=re.M))


def test_every_preset_names_its_study():
    for preset in PRESETS:
        assert yaml.safe_load(preset.read_text())["studies"] == [PRESET_STUDY[preset.stem]], preset.stem
    assert merged(ROOT / "config" / "paper" / "wenzel_ec.yaml")["studies"] == ["wenzel"]
    assert yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["studies"] == [
        "wenzel", "vig", "clauwaert"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_dry_run_runs_only_its_study_offline(preset, tmp_path):
    planned = planned_rules(preset, tmp_path)
    study = PRESET_STUDY[preset.stem]
    assert "summarize" in planned
    for name, rules in STUDY_RULES.items():
        if name == study:
            assert rules <= planned, rules - planned
        else:
            assert not rules & planned, (name, rules & planned)
    # protein splits for Wenzel and Vig; GO propagation only where UniProt gives the proteins
    assert ("split_proteins" in planned) == (study != "clauwaert")
    assert ("propagate_go" in planned) == (study == "wenzel")
    # the Vig presets' proteins are the chains of their pinned chain list, not a UniProt query;
    # their structures come with them (download_pdb_chains), so download_structures does not run
    expected_downloads = {"wenzel": REAL_DATA["wenzel"],
                          "vig": {"download_pdb_chains", "secondary_structure", "attention_3d_view"},
                          "clauwaert": REAL_DATA["clauwaert"]}[study]
    every_download = set().union(*REAL_DATA.values(), {"download_pdb_chains"})
    assert planned & every_download == expected_downloads
    # the training curves show the protein classifiers and the DNA model: none in the Vig study
    assert ("plot_training" in planned) == (study != "vig")
    assert "pretrain_protein_encoder" not in planned  # every preset starts from a hub encoder


@pytest.mark.parametrize("studies", [["wenzel"], ["vig"], ["vig", "clauwaert"]],
                         ids="+".join)
def test_demo_dry_run_runs_the_studies_it_names(studies, tmp_path):
    planned = planned_rules(ROOT / "config" / "demo.yaml", tmp_path,
                            f"studies=[{','.join(studies)}]")
    for name, rules in STUDY_RULES.items():
        assert (rules <= planned) == (name in studies), name
        assert (not rules & planned) == (name not in studies), name
    protein = "wenzel" in studies or "vig" in studies
    assert ({"demo_proteins", "pretrain_protein_encoder"} | PROTEIN_DATA <= planned) == protein
    assert ("demo_genome" in planned) == ("clauwaert" in studies)
    assert not any(r.startswith("download") for r in planned)
