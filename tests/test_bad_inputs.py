"""Bad inputs fail early with an error that names the file, record or config key, and leave
no output behind. Config problems are caught when the workflow is parsed (a dry run, before any
job); file contents at the first rule that reads them."""
import gzip
import inspect
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from seqxai.io import DataError
from seqxai.sources.http import DownloadError

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(tmp_path, config: dict, base="config/config.yaml"):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(config))
    outdir = tempfile.mkdtemp(prefix="seqxai-bad-")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", base,
                          str(extra), "--config", f"outdir={outdir}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert not list(Path(outdir).iterdir()), "a failed config check wrote output"
    return res.returncode, res.stdout + res.stderr


def test_missing_and_empty_local_files_and_encoder_path_fail_at_parse_time(tmp_path):
    empty = tmp_path / "uniprot.json"
    empty.write_text("")
    rc, msg = _dry_run(tmp_path, {
        "protein": {"encoder": {"pretrained": "./models/no_such_encoder"}},
        "data": {"uniprot": {"local": [str(empty)]},
                 "genome": {"local": str(tmp_path / "missing.fna.gz")},
                 "structures": {"mapping": str(tmp_path / "missing_map.tsv")}}})
    assert rc != 0
    assert "invalid config" in msg
    assert ("protein.encoder.pretrained: './models/no_such_encoder' looks like a local folder "
            "but does not exist") in msg
    assert f"data.uniprot.local: file is empty (0 bytes; a failed download?): {empty}" in msg
    assert f"data.genome.local: file not found: {tmp_path / 'missing.fna.gz'}" in msg
    assert f"data.structures.mapping: file not found: {tmp_path / 'missing_map.tsv'}" in msg


def test_encoder_folder_without_a_saved_model_fails_at_parse_time(tmp_path):
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "vocab.txt").write_text("A\n")
    rc, msg = _dry_run(tmp_path, {"protein": {"encoder": {"pretrained": str(enc)}}})
    assert rc != 0
    assert f"folder '{enc}' is not a saved model (no config.json, no weights" in msg


def test_encoder_folder_without_its_vocabulary_fails_at_parse_time(tmp_path, tiny_encoder):
    """Was: a TypeError in the tokenizer loader, several rules in."""
    import shutil

    enc = tmp_path / "enc"
    shutil.copytree(tiny_encoder, enc)
    (enc / "vocab.txt").unlink()
    rc, msg = _dry_run(tmp_path, {"protein": {"encoder": {"pretrained": str(enc)}}})
    assert rc != 0
    assert f"folder '{enc}' is not a saved model (no tokenizer vocabulary (vocab.txt, tokenizer.json" in msg


def test_misspelt_demo_encoder_key_is_rejected(tmp_path):
    rc, msg = _dry_run(tmp_path, {"protein": {"encoder": {"demo_config": {
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "max_position_embeddings": 256, "hiden_dropout": 0.1}}}}, base="config/demo.yaml")
    assert rc != 0
    assert (f"protein.encoder.demo_config.hiden_dropout: unknown key ({tmp_path / 'extra.yaml'}); "
            "allowed keys: hidden_size, initializer_range, intermediate_size,") in msg


def test_demo_encoder_keys_are_esm_config_fields_it_accepts(tmp_path):
    """The schema's demo_config keys are EsmConfig arguments (transformers' own signature),
    none of those build_demo_encoder fixes, and a config using all of them builds."""
    from transformers import EsmConfig

    from seqxai.protein_model import build_demo_encoder

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    demo = schema["properties"]["protein"]["properties"]["encoder"]["properties"]["demo_config"]
    assert demo["additionalProperties"] is False
    keys = set(demo["properties"])
    assert keys <= set(inspect.signature(EsmConfig.__init__).parameters)
    fixed = {"vocab_size", "pad_token_id", "mask_token_id", "token_dropout", "emb_layer_norm_before",
             "hidden_dropout_prob", "attention_probs_dropout_prob"}
    assert not keys & fixed
    spec = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8,
            "max_position_embeddings": 16, "position_embedding_type": "rotary",
            "initializer_range": 0.05, "layer_norm_eps": 1e-5}
    assert set(spec) == keys
    build_demo_encoder(spec, tmp_path / "enc")
    cfg = EsmConfig.from_pretrained(tmp_path / "enc")
    assert (cfg.layer_norm_eps, cfg.position_embedding_type) == (1e-5, "rotary")


def test_truncated_genome_gz_names_the_file_and_writes_nothing(tmp_path):
    from seqxai.sources.genome import run_genome

    data = gzip.compress(b">NC_000913.3\n" + b"ACGT" * 20000 + b"\n")
    bad = tmp_path / "genome.fna.gz"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out" / "genome.fasta"
    match = r"genome\.fna\.gz: truncated or corrupt gzip file .*record 'NC_000913.3'"
    with pytest.raises(DataError, match=match):
        run_genome({"local": str(bad), "expected_length": None}, None, tmp_path / "cache", out)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir()), "partial output left"


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_uniprot_file_names_the_file(tmp_path, content):
    from seqxai.sources.uniprot import run_uniprot

    f = tmp_path / "entries.json.gz"
    f.write_bytes(gzip.compress(content))
    outs = [tmp_path / f"o{i}.parquet" for i in range(4)]
    with pytest.raises(DataError, match=r"entries\.json\.gz: the UniProt file is empty"):
        run_uniprot({"local": [str(f)]}, None, tmp_path / "cache", *outs)
    assert not any(o.exists() for o in outs)


@pytest.fixture
def closed_port():
    """A local port nobody listens on: connections are refused at once, as offline."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


OFFLINE_HTTP = {"attempts": 2, "backoff": 0, "max_backoff": 0, "min_interval": 0, "timeout": [2, 2]}


def test_offline_genome_download_points_to_the_local_option(tmp_path, closed_port):
    from seqxai.sources.genome import run_genome

    out = tmp_path / "genome.fasta"
    with pytest.raises(DownloadError) as err:
        run_genome({"url": f"{closed_port}/efetch", "accession": "NC_000913.3"}, OFFLINE_HTTP,
                   tmp_path / "cache", out)
    msg = str(err.value)
    assert "failed after 2 attempts" in msg and "set data.genome.local in the config" in msg
    assert not out.exists()


def test_offline_uniprot_query_points_to_the_local_option(tmp_path, closed_port):
    from seqxai.sources.uniprot import run_uniprot

    outs = [tmp_path / f"o{i}.parquet" for i in range(4)]
    with pytest.raises(DownloadError, match="set data.uniprot.local in the config"):
        run_uniprot({"query": "reviewed:true", "url": f"{closed_port}/search"}, OFFLINE_HTTP,
                    tmp_path / "cache", *outs)
    assert not any(o.exists() for o in outs)


def test_offline_regulondb_names_the_file_option(tmp_path, closed_port):
    from seqxai.io import write_fasta
    from seqxai.sources.regulondb import run_regulondb

    genome = tmp_path / "genome.fasta"
    write_fasta(genome, {"chr": "ACGT" * 100})
    outs = [tmp_path / f"o{i}" for i in range(4)]
    with pytest.raises(DownloadError, match=r"set data\.regulondb\.promoters\.local in the config"):
        run_regulondb({"chrom": "chr", "promoters": {"url": f"{closed_port}/PromoterSet.txt"}},
                      OFFLINE_HTTP, tmp_path / "cache", genome, *outs)
    assert not any(o.exists() for o in outs)


def test_server_error_answer_gets_no_offline_hint():
    from seqxai.sources.http import local_hint

    with pytest.raises(DownloadError) as err, local_hint("data.genome.local", "x"):
        raise DownloadError("GET u failed: HTTP 400 Bad Request", status=400)
    assert "data.genome.local" not in str(err.value)


def test_offline_structure_download_points_to_the_local_option(tmp_path, closed_port):
    import pandas as pd

    from seqxai.io import write_table
    from seqxai.sources.structures import run_structures

    proteins = tmp_path / "proteins.parquet"
    write_table(proteins, pd.DataFrame({
        "accession": ["P0A7V8"], "sequence": ["MKV"], "length": [3], "ec": [""], "ec_class": [""],
        "go_terms": [[]], "organism_id": [83333]}), table="proteins")
    outs = [tmp_path / f"o{i}.parquet" for i in range(3)]
    hint = r"set data\.structures\.local \(with data\.structures\.source: local\)"
    with pytest.raises(DownloadError, match=hint):
        run_structures({"source": "alphafold", "alphafold_api": f"{closed_port}/api/{{accession}}"},
                       OFFLINE_HTTP, tmp_path / "cache", proteins, None, *outs)
    assert not any(o.exists() for o in outs)


# ---------------------------------------------------------------- more bad inputs (g10)
def test_genome_with_an_invalid_letter_names_file_record_and_position(tmp_path):
    from seqxai.sources.genome import run_genome

    fasta = tmp_path / "genome.fna"
    seq = "ACGT" * 30
    fasta.write_text(">NC_000913.3 E. coli\n" + seq[:60] + "\n" + seq[60:70] + "J" + seq[71:] + "\n")
    out = tmp_path / "out" / "genome.fasta"
    with pytest.raises(DataError, match=r"genome\.fna: record NC_000913\.3 has a non-nucleotide "
                                         r"letter 'J' at 71"):
        run_genome({"local": str(fasta), "accession": "NC_000913.3", "expected_length": None},
                   None, tmp_path / "cache", out)
    assert not out.exists()


def test_empty_protein_table_fails_at_the_split_naming_the_file(tmp_path):
    import pandas as pd

    from seqxai.io import write_table
    from seqxai.splits import run_splits

    proteins = tmp_path / "proteins.parquet"
    empty = pd.DataFrame({"accession": [], "sequence": [], "length": [], "ec": [], "ec_class": [],
                          "go_terms": [], "organism_id": []}).astype(
        {"accession": str, "sequence": str, "length": "int64", "ec": str, "ec_class": str,
         "go_terms": object, "organism_id": "int64"})
    write_table(proteins, empty, table="proteins")
    out = tmp_path / "splits.parquet"
    with pytest.raises(DataError, match=r"proteins\.parquet: the protein table is empty \(0 proteins\)"):
        run_splits(proteins, {"method": "random", "fractions": {"train": 0.7, "valid": 0.15, "test": 0.15}},
                   1, out)
    assert not out.exists()


def test_zero_attribution_shards_fail_at_parse_time(tmp_path):
    rc, msg = _dry_run(tmp_path, {"attribution": {"shards": 0}}, base="config/demo.yaml")
    assert rc != 0
    assert f"attribution.shards: 0 is less than the minimum of 1 ({tmp_path / 'extra.yaml'})" in msg


def test_corrupt_attribution_shard_is_named_by_the_gather(tmp_path):
    import pandas as pd

    from seqxai.attribution_tables import gather_attributions

    good = tmp_path / "1-of-2.embedding.parquet"
    pd.DataFrame({"x": [1.0]}).to_parquet(good)
    bad = tmp_path / "2-of-2.embedding.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a half-written shard
    outs = [tmp_path / "out" / f for f in ("embedding.parquet", "heads.parquet", "convergence.parquet")]
    with pytest.raises(DataError, match=rf"{bad}: not a readable Parquet file"):
        gather_attributions([good, bad], [good, bad], *outs, 0.05)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("damage", ["truncated", "layer as text"])
def test_bad_head_shard_is_named_by_the_streaming_gather(tmp_path, damage):
    """The head table is streamed shard by shard: a bad second shard, found after the first
    was written, still leaves none of the three outputs (nor a temporary file)."""
    import pandas as pd

    from seqxai.attribution_tables import gather_attributions

    emb = tmp_path / "1-of-2.embedding.parquet"
    pd.DataFrame({"accession": ["A"], "target": ["1"], "relevance": [[1.0, 2.0]], "f_input": 1.0,
                  "f_baseline": 0.0, "delta": 0.0}).to_parquet(emb)
    heads = pd.DataFrame({"accession": ["A"] * 2, "target": "1", "layer": [1, 0], "head": 0,
                          "relevance": [[1.0, 2.0]] * 2, "relevance_start": 0.0, "relevance_end": 0.0})
    good, bad = tmp_path / "1-of-2.heads.parquet", tmp_path / "2-of-2.heads.parquet"
    heads.to_parquet(good)
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        match = rf"{bad}: not a readable Parquet file"
    else:
        heads.assign(accession="B", layer=["one", "zero"]).to_parquet(bad)
        match = rf"{bad}: head table field\(s\) \['layer'\] of type \['(large_)?string'\]"
    out = tmp_path / "out"
    with pytest.raises(DataError, match=match):
        gather_attributions([emb], [good, bad], out / "embedding.parquet", out / "heads.parquet",
                            out / "convergence.parquet", 0.05)
    assert not out.exists() or not any(out.iterdir())


def test_mapped_structure_of_another_protein_is_dropped_or_refused_naming_both(tmp_path, shared_dir, caplog):
    """data.structures.mapping points P00749 at 1AKI (lysozyme): the sequence does not match.
    Default: dropped, the log names accession, file and identity; on_mismatch: error raises."""
    import logging

    import pandas as pd

    from seqxai.sources.structure_chains import StructureMismatch
    from seqxai.sources.structures import StructureRules, build_contact_maps

    folder = tmp_path / "structs"
    folder.mkdir()
    (folder / "1aki.pdb").symlink_to(shared_dir / "data" / "structures" / "1aki.pdb")
    proteins = pd.DataFrame({"accession": ["P00749"], "sequence": ["MRALLARLLLCVLVVSDSKG" * 5]})
    mapping = pd.DataFrame({"accession": ["P00749"], "file": ["1aki.pdb"], "chain": ["A"]})
    with caplog.at_level(logging.INFO):
        cm, _, rep = build_contact_maps(proteins, source="local", local=folder, mapping=mapping)
    assert cm.empty
    r = rep.set_index(["item", "reason"])["count"]
    assert r[("protein", "sequence mismatch")] == 1
    assert re.search(r"P00749: 1aki\.pdb chain A does not match the UniProt sequence \(identity 0\.\d\d",
                     caplog.text), caplog.text
    with pytest.raises(StructureMismatch, match=r"P00749: 1aki\.pdb chain A does not match"):
        build_contact_maps(proteins, source="local", local=folder, mapping=mapping,
                           rules=StructureRules(on_mismatch="error"))
