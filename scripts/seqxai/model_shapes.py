"""The dimensions of the published protein encoders, and randomly initialised ones of their shape.

``SHAPES[name] = (architecture, dims)``: the ``config.json`` of facebook/esm2_* and
Rostlab/prot_bert_bfd (layers, hidden size, heads, MLP width), plus "tiny" for tests. A
rehearsal (``protein.encoder.rehearsal``) runs the workflow's real rules on an encoder of one
of these shapes with random weights: costs and memory are those of the paper, the science is
meaningless. Nothing is downloaded: the folder is written with ``save_pretrained``.
"""
from __future__ import annotations

from pathlib import Path

SHAPES = {
    "tiny": ("esm", dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                         intermediate_size=64)),
    "esm2_8M": ("esm", dict(num_hidden_layers=6, hidden_size=320, num_attention_heads=20,
                            intermediate_size=1280)),
    "esm2_35M": ("esm", dict(num_hidden_layers=12, hidden_size=480, num_attention_heads=20,
                             intermediate_size=1920)),
    "esm2_150M": ("esm", dict(num_hidden_layers=30, hidden_size=640, num_attention_heads=20,
                              intermediate_size=2560)),
    "esm2_650M": ("esm", dict(num_hidden_layers=33, hidden_size=1280, num_attention_heads=20,
                              intermediate_size=5120)),
    "protbert_bfd": ("bert", dict(num_hidden_layers=30, hidden_size=1024, num_attention_heads=16,
                                  intermediate_size=4096)),
}

# Rostlab/prot_bert_bfd's vocab.txt (residues are fed separated by spaces, rare ones as X).
PROTBERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "L", "A", "G", "V", "E", "S",
                  "I", "K", "R", "D", "T", "P", "N", "Q", "F", "Y", "M", "H", "C", "W", "X",
                  "U", "B", "Z", "O"]


def shape_dims(name: str, num_hidden_layers: int | None = None) -> tuple[str, dict]:
    """(architecture, dims) of shape ``name``, with ``num_hidden_layers`` replaced when given
    (a reduced rehearsal: the exact widths, fewer layers)."""
    if name not in SHAPES:
        raise ValueError(f"unknown model shape {name!r}; one of {sorted(SHAPES)}")
    arch, dims = SHAPES[name]
    dims = dict(dims)
    if num_hidden_layers is not None:
        if num_hidden_layers < 1:
            raise ValueError(f"num_hidden_layers must be >= 1, not {num_hidden_layers}")
        dims["num_hidden_layers"] = int(num_hidden_layers)
    return arch, dims


def build_random_encoder(name: str, out_dir: str | Path, *, num_hidden_layers: int | None = None,
                         seed: int = 0) -> Path:
    """Save a randomly initialised encoder of shape ``name`` and its tokenizer in ``out_dir``.

    ESM: ESM-2's vocabulary, rotary positions, no dropout (as facebook/esm2_*; token_dropout off,
    as in the demo encoder). BERT: ProtBert-BFD's vocabulary and 40,000 absolute positions,
    no dropout (as Rostlab/prot_bert_bfd).
    """
    import torch

    from seqxai.protein_model import ESM_VOCAB

    arch, dims = shape_dims(name, num_hidden_layers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab = out_dir / "vocab.txt"
    if arch == "esm":
        from transformers import EsmConfig, EsmModel, EsmTokenizer

        vocab.write_text("\n".join(ESM_VOCAB) + "\n")
        tok = EsmTokenizer(str(vocab))
        cfg = EsmConfig(vocab_size=len(ESM_VOCAB), pad_token_id=1, mask_token_id=32,
                        max_position_embeddings=1026, position_embedding_type="rotary",
                        token_dropout=False, emb_layer_norm_before=False, layer_norm_eps=1e-5,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **dims)
        model = EsmModel(cfg, add_pooling_layer=False)
    else:
        from transformers import BertConfig, BertModel, BertTokenizer

        vocab.write_text("\n".join(PROTBERT_VOCAB) + "\n")
        tok = BertTokenizer(str(vocab), do_lower_case=False)
        cfg = BertConfig(vocab_size=len(PROTBERT_VOCAB), pad_token_id=0,
                         max_position_embeddings=40000, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, **dims)
        model = BertModel(cfg, add_pooling_layer=False)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def write_random_encoder(rehearsal: dict, out_dir: str | Path, *, seed: int) -> Path:
    """The rehearsal's encoder (``protein.encoder.rehearsal``: shape, num_hidden_layers),
    written atomically to ``out_dir``."""
    import logging

    from seqxai.io import atomic_dir

    with atomic_dir(out_dir) as tmp:
        build_random_encoder(rehearsal["shape"], tmp, seed=seed,
                             num_hidden_layers=rehearsal.get("num_hidden_layers"))
    arch, dims = shape_dims(rehearsal["shape"], rehearsal.get("num_hidden_layers"))
    logging.getLogger("seqxai.model_shapes").info(
        "random %s encoder of shape %s (%s) in %s: a rehearsal, its results mean nothing",
        arch, rehearsal["shape"], dims, out_dir)
    return Path(out_dir)
