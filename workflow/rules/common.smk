# Config validation, wildcard constraints and input functions. No rules here.
import os
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The library's import graph (stdlib only), for library_inputs() below.
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from seqxai._deps import script_dependencies  # noqa: E402
from seqxai.config_check import (  # noqa: E402
    config_problems,
    cross_key_problems,
    format_problems,
    source_of,
    studies_on,
)


def _config_sources():
    """(label, mapping) of each file and --config the config was merged from, lowest
    precedence first: the Snakefile's config/config.yaml, each --configfile, --config.
    """
    from snakemake.common.configfile import load_configfile

    given = [Path(f).absolute() for f in workflow.overwrite_configfiles]
    defaults = [f for f in workflow.configfiles if Path(f).absolute() not in given]

    def label(f):
        rel = os.path.relpath(f)
        return rel if not rel.startswith("..") else str(f)

    sources = [(label(f), load_configfile(f)) for f in [*defaults, *given]]
    if workflow.config_settings.config:
        sources.append(("--config", dict(workflow.config_settings.config)))
    return sources


# One line per mistake (key path, the file it came from, the allowed keys or the nearest
# spelling) before Snakemake's validate, whose message prints the whole schema and config;
# validate then sets the schema defaults.
CONFIG_SOURCES = _config_sources()
with open(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") as _f:
    _problems = config_problems(config, yaml.safe_load(_f), CONFIG_SOURCES)
if _problems:
    raise WorkflowError(format_problems(_problems))

validate(config, schema="../schemas/config.schema.yaml")


def _keys_sorted(obj):
    """``obj`` with the keys of every mapping in sorted order (lists keep their order)."""
    if isinstance(obj, dict):
        return {k: _keys_sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_keys_sorted(x) for x in obj]
    return obj


# Snakemake compares params by their repr, and a config mapping's key order depends on how the
# YAML files were written and merged (defaults are added after the given keys). One canonical
# order makes equal settings equal params: reordering keys, or writing a default out, reruns
# nothing.
_canonical = _keys_sorted(dict(config))
config.clear()
config.update(_canonical)

OUT = config["outdir"].rstrip("/")
SEED = config["seed"]
DNA_SEEDS = config["dna"]["seed_robustness"][
    "seeds"
]  # extra training seeds of the DNA study
# The studies this run makes (config `studies`): rules of a study that is off are requested by
# no target, so they are not in the DAG and their data are not downloaded.
STUDIES = studies_on(config)
WENZEL, VIG, CLAUWAERT = ("wenzel" in STUDIES, "vig" in STUDIES, "clauwaert" in STUDIES)
PROTEIN = WENZEL or VIG  # protein data and, with protein.mlm, the MLM encoder
TASKS = sorted(config["protein"]["tasks"]) if WENZEL else []
ENCODER = config["protein"]["encoder"]
MLM = config["protein"]["mlm"]
# A scale rehearsal (config/scale_rehearsal.yaml): a random encoder of a published shape.
REHEARSAL = ENCODER["rehearsal"]
# Model variants per task (docs/methods.md section 1): the fine-tuned model and the controls
# (frozen pretrained encoder, shuffled encoder), each with a trained head. Every variant
# flows through attribution and head statistics under {variant} in the paths.
VARIANTS = ["finetuned"] + list(config["protein"]["controls"])
# Attribution methods besides integrated gradients (attribution.methods): their tables go
# under attribution/{task}/{method}/ (attribution_table), integrated gradients' stay where the
# head statistics and figures read them.
OTHER_METHODS = [m for m in config["attribution"]["methods"] if m != "ig"]
# ... and of the DNA study (dna.attribution.methods): attribution/dna/{dna_method}/ and
# analysis/dna/{dna_method}/, with the motifs of all methods side by side when there are any.
DNA_OTHER_METHODS = [m for m in config["dna"]["attribution"]["methods"] if m != "ig"]
# The faithfulness benchmark (docs/attribution_methods.md) compares the methods of
# attribution.methods on the same proteins when it lists two or more.
FAITHFULNESS_METHODS = (
    list(config["attribution"]["methods"])
    if len(config["attribution"]["methods"]) >= 2
    else []
)
# Attention probes (Vig) run on the pretrained encoder and on every fine-tuned model.
PROBE_MODELS = ["pretrained"] + TASKS if VIG else []
# A saved model folder has config.json and weights (one file or a sharded index).
MODEL_WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
# ... and its tokenizer's vocabulary (one of these; seqxai.model_files.VOCAB_FILES).
VOCAB_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def looks_local(name):
    """True when a model name is a local path rather than a hub id ('org/name'): it exists,
    is absolute, starts with . or ~, or has more than one path separator."""
    return (
        os.path.exists(os.path.expanduser(name))
        or os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count(os.sep) > 1
        or name.endswith(os.sep)
    )


def folder_files(folder):
    """Every non-hidden file under a folder, sorted (as inputs: a changed file reruns)."""
    folder = Path(os.path.expanduser(folder))
    return sorted(
        str(p)
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _encoder_problems(name):
    key = "protein.encoder.pretrained"
    if not looks_local(name):
        return []
    path = Path(os.path.expanduser(name))
    if not path.is_dir():
        return [
            f"{key}: '{name}' looks like a local folder but does not exist (a Hugging Face "
            f"hub id looks like 'facebook/esm2_t6_8M_UR50D')"
        ]
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / w).is_file() for w in MODEL_WEIGHTS):
        missing.append("weights (" + " or ".join(MODEL_WEIGHTS[:2]) + ")")
    if not any((path / v).is_file() for v in VOCAB_FILES):
        missing.append("tokenizer vocabulary (" + ", ".join(VOCAB_FILES) + ")")
    if missing:
        return [
            f"{key}: folder '{name}' is not a saved model (no {', no '.join(missing)}); "
            f"save one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"
        ]
    return []


def _local_source_problems():
    """Local files named in data.* that are missing, before any job runs."""
    if config["data"]["source"] != "real":
        return []
    data, problems = config["data"], []
    st = data["structures"]

    def need(key, path, kind="file"):
        ok = Path(path).is_dir() if kind == "folder" else Path(path).is_file()
        if not ok:
            problems.append(f"{key}: {kind} not found: {path}")
        elif kind == "file" and Path(path).stat().st_size == 0:
            problems.append(
                f"{key}: file is empty (0 bytes; a failed download?): {path}"
            )

    # only the sources of the studies that run (config `studies`); the Vig presets' proteins
    # are the chains of data.structures
    if WENZEL or (VIG and st.get("source") != "pdb_list"):
        for f in data["uniprot"].get("local") or []:
            need("data.uniprot.local", f)
        if data["go"].get("local"):
            need("data.go.local", data["go"]["local"])
    if CLAUWAERT:
        if data["genome"].get("local"):
            need("data.genome.local", data["genome"]["local"])
        for k in ("promoters", "sites", "matrices"):
            f = (data["regulondb"].get(k) or {}).get("local")
            if f:
                need(f"data.regulondb.{k}.local", f)
    if not VIG:
        return problems
    if st.get("source") == "local":
        if not st.get("local"):
            problems.append(
                "data.structures.local: a folder is needed when "
                "data.structures.source is 'local'"
            )
        else:
            need("data.structures.local", st["local"], "folder")
    if st.get("mapping"):
        need("data.structures.mapping", st["mapping"])
    if st.get("source") == "pdb_list":
        if not st.get("chain_list"):
            problems.append(
                "data.structures.chain_list: a PISCES chain list (path or URL) is needed "
                "when data.structures.source is 'pdb_list'"
            )
        elif not str(st["chain_list"]).startswith(("http://", "https://")):
            need("data.structures.chain_list", st["chain_list"])
        if st.get("local"):
            need("data.structures.local", st["local"], "folder")
        sifts = st.get("sifts") or {}
        if sifts.get("enabled", True) and sifts.get("local"):
            kind = "folder" if Path(sifts["local"]).is_dir() else "file"
            need("data.structures.sifts.local", sifts["local"], kind)
        ul = (sifts.get("uniprot_local") or []) if sifts.get("enabled", True) else []
        for f in [ul] if isinstance(ul, str) else ul:
            need("data.structures.sifts.uniprot_local", f)
    return problems


def _check_config():
    """Problems of values that are valid alone but not together, one line each."""
    problems = cross_key_problems(config, CONFIG_SOURCES)
    if PROTEIN and ENCODER["pretrained"] is not None:
        problems += _encoder_problems(ENCODER["pretrained"])
    dc = ENCODER["demo_config"]
    if dc["hidden_size"] % dc["num_attention_heads"]:
        problems.append(
            f"protein.encoder.demo_config: hidden_size {dc['hidden_size']} is not a "
            f"multiple of num_attention_heads {dc['num_attention_heads']}"
        )
    problems += _local_source_problems()
    if REHEARSAL and (ENCODER["pretrained"] is not None or MLM["enabled"]):
        problems.append(
            "protein.encoder.rehearsal: a scale rehearsal fine-tunes a random encoder of the "
            "published shape as it is; set protein.encoder.pretrained: null and "
            "protein.mlm.enabled: false"
        )
    elif (
        PROTEIN
        and ENCODER["pretrained"] is None
        and not MLM["enabled"]
        and not REHEARSAL
    ):
        problems.append(
            "protein.encoder.pretrained is null (build the demo encoder) but protein.mlm.enabled "
            "is false: a randomly initialised encoder must be pretrained; set protein.mlm.enabled: "
            "true (protein.encoder.rehearsal skips this for a scale rehearsal only)"
        )
    for name, task in config["protein"]["tasks"].items():
        if (
            task["type"] == "multi_label"
            and not task.get("terms")
            and task.get("min_positives") is None
        ):
            problems.append(
                f"protein.tasks.{name}: a multi_label task needs 'terms' or 'min_positives'"
            )
        wrong = [
            k
            for k in (
                ("ec_level",)
                if task["type"] == "multi_label"
                else ("min_positives", "aspect")
            )
            if task.get(k) is not None
        ]
        if wrong:
            problems.append(
                f"protein.tasks.{name}: {wrong} do not apply to a {task['type']} task"
            )
        bad = set(task.get("attribute_terms", [])) - set(task.get("terms", []))
        if bad and task.get(
            "terms"
        ):  # with min_positives alone the check runs on the data
            problems.append(
                f"protein.tasks.{name}.attribute_terms: {sorted(bad)} not in 'terms'"
            )
    fr = config["split"]["fractions"]
    if abs(sum(fr.values()) - 1) > 1e-6:
        problems.append(
            f"split.fractions must sum to 1, got {fr} "
            f"({source_of(['split', 'fractions'], CONFIG_SOURCES)})"
        )
    for e in config["analysis"]["expect_embedding_enrichment"] if WENZEL else []:
        if e["task"] not in TASKS:
            problems.append(
                f"analysis.expect_embedding_enrichment: unknown task '{e['task']}'"
            )
    if SEED in DNA_SEEDS:
        problems.append(
            f"dna.seed_robustness.seeds: {SEED} is the run's own seed (listed already); "
            "list only the extra training seeds"
        )
    return problems


_problems = _check_config()
if _problems:
    raise WorkflowError(format_problems(_problems))


wildcard_constraints:
    task="|".join(TASKS),
    model="|".join(PROBE_MODELS),
    variant="|".join(VARIANTS),
    method="|".join(OTHER_METHODS) or "(?!)",
    dna_method="|".join(DNA_OTHER_METHODS) or "(?!)",
    scatteritem=r"\d+-of-\d+",


scattergather:
    attribution=config["attribution"]["shards"],


def shard_index(scatteritem):
    """(k, n) of a scattergather item "k-of-n", k 1-based."""
    k, n = scatteritem.split("-of-")
    return int(k), int(n)


# Speed-only keys of config sections passed as params: the scripts read them from the config
# (snakemake.config is not a rerun trigger), so that changing them reruns nothing (docs/reruns.md).
# max_memory_gb everywhere; per section the keys that are speed-only there only (a batch_size
# of training is a setting, the probe's batch of forward passes is not).
SPEED_KEYS = ("max_memory_gb",)


def finetune_mem_mb(wildcards, input):
    """mem_mb of a finetune_protein job: seqxai.micro_batches.finetune_job_mb for the encoder it
    starts from (read when the job is scheduled: an encoder that a rule writes, the MLM or
    rehearsal one, shows <TBD> until then). A hub id (no local files before the job downloads
    it) or a folder that cannot be sized (a test's stand-in) gets the floor, 8000 MB (the former
    fixed value).
    """
    from seqxai.micro_batches import finetune_job_mb

    name = pretrained_encoder()
    if (MLM["enabled"] or REHEARSAL) and not os.path.isdir(name):
        raise FileNotFoundError(2, "encoder folder not written yet", name)
    f = config["protein"]["finetune"]
    return finetune_job_mb(
        name,
        config["protein"]["max_length"],
        f["batch_size"],
        f["accumulation"],
        f.get("max_memory_gb"),
        config["device"],
        # the encoder trains after its frozen epochs, in the recipe's variant only
        wildcards.variant == "finetuned" and f["epochs"] > f["freeze_encoder_epochs"],
        f.get("micro_batch"),
    )


def attribution_mem_mb(wildcards, input):
    """mem_mb of an attribute_proteins job: the memory estimate of seqxai.micro_batches for its
    model folders (read when the job is scheduled, after fine-tuning wrote them). A folder not
    written yet raises FileNotFoundError: Snakemake shows <TBD> and asks again when the job is
    scheduled. A folder without the model's files (made by hand, or a test's stand-in) gets the
    floor, 4000 MB."""
    from seqxai.micro_batches import attribution_job_mb

    for model in input.models:
        if not os.path.isdir(model):
            raise FileNotFoundError(2, "model folder not written yet", model)
    needed = ("seqxai_model.json", "encoder/config.json")
    if not all(
        os.path.isfile(os.path.join(m, f)) for m in input.models for f in needed
    ):
        return 4000
    a = config["attribution"]
    return attribution_job_mb(
        input.models,
        a["n_steps"],
        a["batch_size"],
        a.get("max_memory_gb"),
        config["device"],
        a["layers"],
        a["conductance"],
    )


def tracked(section, speed=()):
    """A config section as a tracked param: without its speed-only keys (SPEED_KEYS, ``speed``)."""
    return {k: v for k, v in section.items() if k not in SPEED_KEYS + tuple(speed)}


def out(path):
    """A path under the run's output folder."""
    return f"{OUT}/{path}"


def killed_run_hint(snakemake_dir=".snakemake"):
    """The recovery after a killed run, printed where the next run fails: a `kill -9` (or a
    lost node) leaves Snakemake's locks and incomplete markers, and its own errors name one
    step each. Printed once, by the main process, whenever markers are there."""
    if not workflow.is_main_process:
        return
    sm = Path(snakemake_dir)
    incomplete = (
        list((sm / "incomplete").glob("*")) if (sm / "incomplete").is_dir() else []
    )
    locked = any((sm / "locks").glob("*.lock")) if (sm / "locks").is_dir() else False
    if not incomplete and not locked:
        return
    print(
        f"seqxai: {sm} holds {'locks and ' if locked else ''}{len(incomplete)} incomplete-job "
        "marker(s): a run was killed (kill -9, a lost node) or another Snakemake still runs "
        "in this folder. If none runs, recover with the same options as the run: first "
        "`snakemake --unlock ...`, then `snakemake --rerun-incomplete ...`; interrupted "
        f"training jobs resume from {out('checkpoints')} when their inputs are unchanged "
        "(README, Troubleshooting).",
        file=sys.stderr,
    )


killed_run_hint()


def pretrained_encoder(wildcards=None):
    """The encoder fine-tuning starts from: MLM output, the rehearsal's random encoder, or the
    configured hub id / folder."""
    if MLM["enabled"]:
        return out("models/protein/pretrained")
    if REHEARSAL:
        return out("models/protein/rehearsal_encoder")
    return ENCODER["pretrained"]


def encoder_files(wildcards=None):
    """The files of protein.encoder.pretrained when it is a local folder (a hub id is no file)."""
    name = ENCODER["pretrained"]
    return folder_files(name) if name and looks_local(name) else []


def pretrained_input(wildcards=None):
    """The encoder as an input: the MLM output when the workflow builds it, else the files of
    a local encoder folder (so that a changed local encoder reruns fine-tuning and probes).
    """
    if MLM["enabled"]:
        return [out("models/protein/pretrained")]
    if REHEARSAL:
        return [out("models/protein/rehearsal_encoder")]
    return encoder_files()


def probe_model_input(wildcards):
    if wildcards.model == "pretrained":
        return pretrained_input()
    return [out(f"models/protein/{wildcards.model}/finetuned/model")]


def probe_model_path(wildcards):
    if wildcards.model == "pretrained":
        return pretrained_encoder()
    return out(f"models/protein/{wildcards.model}/finetuned/model/encoder")


# Where structure files are found again after the contact maps were built from them.
STRUCTURE_FOLDERS = [
    config["data"].get("structures", {}).get("local"),
    f"{config['cache_dir']}/alphafold",
    f"{config['cache_dir']}/pdb",
]


def secondary_structure_input(wildcards=None):
    """The DSSP table as an input of the attention probe, where structure files exist."""
    if config["data"]["source"] == "demo":
        return []
    return [out("data/protein/secondary_structure.parquet")]


def local_inputs(*paths):
    """Local source files as inputs, so that a changed local file reruns its rule."""
    out = []
    for p in paths:
        if isinstance(p, (list, tuple)):
            out.extend(str(x) for x in p if x)
        elif p:
            out.append(str(p))
    return out


def content_digest(path):
    """SHA-256 of a local file's text, decompressed when gzipped (None without a file): as a
    param it reruns a job when the content changes, whatever the file's time stamp or
    compression (with the file as an ancient() input)."""
    if not path or not Path(path).is_file():
        return None
    import gzip
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with (gzip.open if gzipped else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def viewer_js_file():
    """analysis.vig.viewer_js when it is a local file (an input: a new version reruns the view)."""
    js = config["analysis"]["vig"].get("viewer_js")
    return js if js and not str(js).startswith(("http://", "https://")) else None


def structure_inputs():
    """Local structure files and the mapping table (data.structures), as download inputs."""
    st = config["data"]["structures"]
    files = []
    if st.get("source") == "local" and st.get("local"):
        files += folder_files(st["local"])
    if st.get("mapping"):
        files.append(st["mapping"])
    return files


def _input_path(path):
    """Relative to the working directory when under it (Snakemake's convention), else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def library_inputs(script):
    """The seqxai library modules a script can import (seqxai._deps), as input files;
    Snakemake's `code` rerun trigger sees only the script file itself."""
    files, _ = script_dependencies(script)
    return [_input_path(f) for f in files]


# script stem -> the library modules it can import: inputs of its library_fingerprint job
LIBRARY_BY_SCRIPT = {}


def track_library_code():
    """Make every script rule depend on the library modules its script can import.

    Called once in the Snakefile after all rules are defined, so that rule modules need no
    extra line and a new rule cannot forget it. The input `library` of a rule is the
    fingerprint of its script (rule library_fingerprint, code.smk), whose inputs are the
    modules. A changed module (newer mtime) reruns exactly the rules whose scripts can import
    it."""
    for r in workflow.rules:
        if r.script:
            script = Path(str(r.basedir)) / r.script
            if (
                r.input_modifier is None
            ):  # no input section yet; set_input needs a modifier
                r.input_modifier = r.output_modifier
            LIBRARY_BY_SCRIPT[script.stem] = library_inputs(script)
            r.set_input(library=out(f"code/{script.stem}.tsv"))


# rule library_fingerprint's program and the root its module names are relative to, given
# like its inputs (relative to the working directory where the clone is there)
FINGERPRINT_PROGRAM = _input_path(
    Path(workflow.basedir) / "scripts" / "seqxai" / "_deps.py"
)
FINGERPRINT_ROOT = _input_path(Path(workflow.basedir) / "scripts")


def seed_robustness_runs(wildcards=None):
    """Per training seed of the DNA study (the run's own, then dna.seed_robustness.seeds) the
    model's metrics and the probe's summary, head motifs and Tomtom tables."""
    runs = [
        {
            "seed": SEED,
            "metrics": out("models/dna/metrics.json"),
            "summary": out("analysis/dna/dna_summary.json"),
            "head_motifs": out("analysis/dna/head_motifs.parquet"),
            "tomtom": out("analysis/dna/tomtom.parquet"),
        }
    ]
    for s in DNA_SEEDS:
        runs.append(
            {
                "seed": s,
                "metrics": out(f"models/dna/seeds/seed{s}/metrics.json"),
                "summary": out(f"analysis/dna/seeds/seed{s}/dna_summary.json"),
                "head_motifs": out(f"analysis/dna/seeds/seed{s}/head_motifs.parquet"),
                "tomtom": out(f"analysis/dna/seeds/seed{s}/tomtom.parquet"),
            }
        )
    return runs


def attribution_table(method, table):
    """The path pattern ({task}, {variant} left as wildcards) of one method's gathered table
    (embedding, heads or convergence): integrated gradients keep attribution/{task}/{variant}/,
    the other methods go under attribution/{task}/{method}/{variant}/."""
    if method == "ig":
        return out(f"attribution/{{task}}/{{variant}}/{table}.parquet")
    return out(f"attribution/{{task}}/{method}/{{variant}}/{table}.parquet")


def dna_method_inputs(pattern):
    """One path per DNA attribution method, integrated gradients first: ``pattern`` with its
    ``{}`` filled by "" (ig) or "<method>/"."""
    return [out(pattern.format(""))] + [
        out(pattern.format(f"{m}/")) for m in DNA_OTHER_METHODS
    ]


def method_analysis(method, table):
    """The path pattern ({task}, {variant} left as wildcards) of one method's head-statistics
    table: integrated gradients keep analysis/protein/{task}/{variant}/, the other methods go
    under analysis/protein/{task}/{method}/{variant}/."""
    if method == "ig":
        return out(f"analysis/protein/{{task}}/{{variant}}/{table}.parquet")
    return out(f"analysis/protein/{{task}}/{method}/{{variant}}/{table}.parquet")


def faithfulness_inputs(table, attribution=False):
    """One table per method of FAITHFULNESS_METHODS (in their order), fine-tuned model, {task}
    left as a wildcard: a gathered attribution table or a head-statistics table."""
    path = attribution_table if attribution else method_analysis
    return [
        expand(path(m, table), variant="finetuned", allow_missing=True)[0]
        for m in FAITHFULNESS_METHODS
    ]


def final_targets():
    """The targets of the default rule: summary.json and the figures of the studies that run."""
    targets = [out("summary.json"), out("summary.html")]
    if WENZEL:
        for method in OTHER_METHODS:
            for table in ("embedding", "heads", "convergence"):
                targets += expand(
                    attribution_table(method, table), task=TASKS, variant=VARIANTS
                )
        targets += expand(
            out("figures/{task}_{fig}.png"),
            task=TASKS,
            fig=[
                "head_significance",
                "embedding_significance",
                "tracks",
                "residue_flipping",
            ],
        )
        if FAITHFULNESS_METHODS:
            targets += expand(out("figures/{task}_faithfulness.png"), task=TASKS)
        if len(VARIANTS) > 1:
            targets += expand(
                out("analysis/protein/{task}/variant_comparison.parquet"), task=TASKS
            )
            targets += expand(out("figures/{task}_control_comparison.png"), task=TASKS)
    if VIG:
        targets += expand(
            out("figures/attention_{model}{fig}.png"),
            model=PROBE_MODELS,
            fig=["", "_top_heads", "_layer_trend", "_blosum", "_contacts"],
        )
        if config["analysis"]["vig"]["diagnostic"]["enabled"]:
            targets += expand(
                out("figures/attention_{model}_diagnostic_probes.png"),
                model=PROBE_MODELS,
            )
        if config["data"]["source"] != "demo":
            targets += expand(
                out("figures/attention_{model}_3d.html"), model=PROBE_MODELS
            )
    if TASKS or CLAUWAERT:
        targets += [out("figures/training_curves.png")]
    if CLAUWAERT:
        if DNA_SEEDS:
            targets += [out("analysis/dna/seed_robustness.parquet")]
        targets += [
            out("figures/dna_tss_profiles.png"),
            out("figures/dna_logos.png"),
            out("figures/dna_ig_profile.png"),
            out("figures/dna_motif_sources.png"),
        ]
        if DNA_OTHER_METHODS:
            targets += [out("figures/dna_method_motifs.png")]
    return targets
