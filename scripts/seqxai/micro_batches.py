"""Micro-batches that fit a memory budget, at a fixed effective batch (gradient accumulation).

The optimisation is defined by the effective batch B = ``batch_size`` x ``accumulation`` of
the config: every optimiser step follows the gradient of the mean loss over B proteins. How
many of them go through the model at once (the micro-batch m) only sets speed and memory: a
step runs ceil(B / m) micro-batches, micro-batch k of n_k proteins adds the gradient of
``loss_k * n_k / n_step`` (``loss_k`` its mean loss, n_step the proteins of this step, fewer
than B in the last step of an epoch), which sums to the gradient of the step's mean loss.

The micro-batch comes from a memory budget (``max_memory_gb``: GiB, or "auto" for the free
memory of the CUDA device; null keeps the configured ``batch_size``) and this estimate of
training memory, in bytes:

- fixed: p parameters in fp32 (4 B each); for trainable ones also the gradient (4 B) and
  Adam's two moments (8 B); under bf16 autocast a bf16 copy of the weights (2 B); in
  fine-tuning the best epoch's weights, kept for early stopping (4 B; a ProtBert-BFD-shaped
  fine-tuning on the CPU peaked 11 % above the estimate without them, 6 % below it with
  them: docs/performance.md "Scale rehearsal").
- per sequence of s tokens, for an encoder of L layers, hidden size h, a heads and MLP width
  I: the activations each layer keeps for the backward pass, after Korthikanti et al. 2022
  ("Reducing activation recomputation in large transformer models", section 4.1, without
  parallelism), with e bytes per activation (2 under bf16 autocast, 4 in fp32) and q bytes
  for what autocast keeps in fp32 (softmax and LayerNorm: q = 4 always),
      e (6 s h + 2 s I)      inputs of the Q/K/V, output and MLP projections, Q, K, V, the
                             MLP's first output and its GELU
    + 2 q s h                the two LayerNorm inputs
    + 2 s h                  1-byte dropout masks after attention and MLP
    + (2 q + 1) a s^2        attention probabilities before and after dropout, its mask
    + e a s^2 if e != q      the bf16 copy of the probabilities the product with V keeps
  which for e = q = 2 and I = 4h is the paper's s h (34 + 5 a s / h). Add one more layer
  for the gradients in flight during the backward pass, and per token 4 e h (embeddings,
  last hidden state, pooling) plus 8 V for an output vocabulary V (MLM logits and their
  fp32 softmax).

Only 90% of the budget is planned (allocator fragmentation, cuBLAS workspaces). The
estimate assumes eager attention (``load_encoder`` uses it), which materialises the a s^2
scores; on CUDA the peak memory actually used is logged after the first step to check it.
"""
from __future__ import annotations

import logging
import math

log = logging.getLogger("seqxai.micro_batches")

GIB = 2 ** 30
USABLE_FRACTION = 0.9


def layer_activation_bytes(tokens: int, hidden: int, heads: int, intermediate: int,
                           act_bytes: int, fp32_bytes: int = 4) -> int:
    """Bytes one transformer layer keeps for the backward pass, for one sequence (above)."""
    s, h, a, i, e, q = tokens, hidden, heads, intermediate, act_bytes, fp32_bytes
    copy = e * a * s * s if e != q else 0
    return e * (6 * s * h + 2 * s * i) + 2 * q * s * h + 2 * s * h + (2 * q + 1) * a * s * s + copy


def sequence_bytes(encoder_config, tokens: int, act_bytes: int, vocab: int = 0,
                   train_encoder: bool = True) -> int:
    """Training memory per sequence of ``tokens`` tokens for a Hugging Face encoder config
    (``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``, ``intermediate_size``).
    A frozen encoder keeps no activations: one layer's worth is in flight at a time."""
    c = encoder_config
    per_layer = layer_activation_bytes(tokens, c.hidden_size, c.num_attention_heads,
                                       c.intermediate_size, act_bytes)
    layers = c.num_hidden_layers + 1 if train_encoder else 1
    return layers * per_layer + tokens * (4 * act_bytes * c.hidden_size + 8 * vocab)


def fixed_bytes(n_params: int, n_trainable: int, bf16_copy: bool = False,
                best_copy: bool = False) -> int:
    """Weights (fp32), gradients and Adam moments of the trainable ones, autocast's bf16 copy,
    the best weights kept in fp32 (``best_copy``: fine-tuning's early stopping)."""
    return (4 * n_params + 12 * n_trainable + (2 * n_params if bf16_copy else 0)
            + (4 * n_params if best_copy else 0))


def plan(effective: int, per_sequence: int, fixed: int, budget: int | None,
         fallback: int) -> tuple[int, int]:
    """(micro-batch, accumulation steps) for an effective batch of ``effective`` sequences.

    No budget: the configured micro-batch ``fallback``. Else the largest m <= effective with
    fixed + m * per_sequence <= 0.9 budget (at least 1); accumulation = ceil(effective / m).
    """
    if budget is None:
        micro = min(fallback, effective)
    else:
        room = USABLE_FRACTION * budget - fixed
        micro = int(min(effective, max(1, room // per_sequence)))
        if room < per_sequence:
            log.warning("memory budget %.2f GiB is below the estimate for one sequence (%.2f GiB "
                        "fixed + %.2f GiB per sequence); trying micro-batches of 1",
                        budget / GIB, fixed / GIB, per_sequence / GIB)
    return micro, math.ceil(effective / micro)


def budget_bytes(max_memory_gb, device) -> int | None:
    """The memory budget in bytes: ``max_memory_gb`` GiB; "auto": on CUDA the device's free
    memory plus what this process already holds there, elsewhere None; None: None."""
    if max_memory_gb is None:
        return None
    if max_memory_gb == "auto":
        import torch

        if getattr(device, "type", str(device)) != "cuda":
            log.info("max_memory_gb auto: no CUDA device, keeping the configured batch size")
            return None
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_allocated(device))
    if float(max_memory_gb) <= 0:
        raise ValueError(f"max_memory_gb must be > 0, 'auto' or null, not {max_memory_gb}")
    return int(float(max_memory_gb) * GIB)


def micro_batch_for(model, tokens: int, effective: int, batch_size: int, max_memory_gb, device,
                    *, bf16: bool, vocab: int = 0, train_encoder: bool = True,
                    micro_batch: int | None = None, best_copy: bool = False) -> tuple[int, int]:
    """Plan the micro-batch of ``model`` (an encoder or a module with ``.encoder``) on
    ``device``, or take ``micro_batch`` when given, and log it; ``best_copy``: the caller keeps
    a copy of the weights. Returns (micro-batch, accumulation steps)."""
    if micro_batch is not None:
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1, not {micro_batch}")
        micro_batch = min(micro_batch, effective)
        log.info("effective batch %d = micro-batch %d x %d accumulation steps (micro-batch given)",
                 effective, micro_batch, math.ceil(effective / micro_batch))
        return micro_batch, math.ceil(effective / micro_batch)
    budget = budget_bytes(max_memory_gb, device)
    encoder = getattr(model, "encoder", model)
    cuda_bf16 = bf16 and getattr(device, "type", str(device)) == "cuda"
    per_seq = sequence_bytes(encoder.config, tokens, 2 if cuda_bf16 else 4, vocab, train_encoder)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    n_train = n_params if train_encoder else n_params - sum(p.numel() for p in encoder.parameters())
    fixed = fixed_bytes(n_params, n_train, cuda_bf16, best_copy)
    micro, steps = plan(effective, per_seq, fixed, budget, batch_size)
    log.info("effective batch %d = micro-batch %d x %d accumulation steps (budget %s; estimate "
             "%.3f GiB fixed + %.4f GiB per sequence of %d tokens)", effective, micro, steps,
             "none: configured batch_size" if budget is None else f"{budget / GIB:.2f} GiB",
             fixed / GIB, per_seq / GIB, tokens)
    return micro, steps


def chunks(n: int, size: int):
    """Consecutive slices of ``range(n)`` of ``size`` (the last one shorter)."""
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


# Attribution (seqxai.attribution.integrated_gradients) runs fp32 with the weights held
# constant, one batch of path nodes ("rows") at a time, each row a copy of the protein. Per row:
# - embedding-only IG and conductance "difference": one forward+backward pass, which keeps the
#   training activations of every layer (the estimate above at e = q = 4; without weight
#   gradients it keeps less, measured 0.89x);
# - conductance "jvp": the same forward carries the tangents (forward-mode AD) beside the kept
#   activations. Since the attention, LayerNorm and GELU tangents are computed without a graph
#   (seqxai.forward_tangents) the pass holds 0.94-1.03x the estimate above on ESM-2 8M (202
#   tokens, batches of 20-25, 1 to 8 batches: 1.55-2.12 GiB) and 1.22x on the ESM-2 650M shape
#   (505 tokens, 2 nodes: 7.5 GiB above the resident weights); planned as 1.3x, so that the
#   measured peak is 0.74-0.80x (8M) and 0.94x (650M) of the plan; held out, the ProtBert-BFD
#   shape (505 tokens, 2 nodes): 0.76x. (With PyTorch's own rules
#   it held 3.0x, planned as 3.5x; with the attention alone explicit 1.45-1.7x, planned 2.0x.)
# - both keep, per attributed layer, the context and the layer output's tangent (or activation)
#   and their gradients: 4 s h fp32 values;
# - conductance "polynomial": a row costs as in "difference", but its context, layer output and
#   their weighted gradients wait for the stencils in up to four copies (the batch's own, the
#   buffer it is appended to, that buffer rebuilt after settling, the slope temporaries), and the
#   pass holds the earlier points and nodes that later stencils still need: at most 3 stencils
#   (16 points) of contexts and layer outputs, or all 2 n + 2 when fewer (path_store_bytes),
#   fixed like the weights. Measured on ESM-2 8M, 202 tokens, batches of 25: 0.76x the estimate
#   with 25 nodes, 1.00x with 200 before the four copies were counted (then 0.67x and 0.87x).
# Measured against this estimate in benchmarks/attribution_benchmark.py (docs/performance.md).
JVP_ACTIVATION_FACTOR = 1.3


def attribution_row_bytes(encoder_config, tokens: int, layers: bool = True,
                          conductance: str = "jvp") -> int:
    """Memory of one path row of integrated gradients over ``tokens`` tokens (above)."""
    c = encoder_config
    acts = sequence_bytes(c, tokens, act_bytes=4)
    factor = JVP_ACTIVATION_FACTOR if layers and conductance == "jvp" else 1
    kept = 4 * 4 * tokens * c.hidden_size * c.num_hidden_layers if layers else 0
    if layers and conductance == "polynomial":
        kept *= 4
    return int(factor * acts) + kept


PATH_STENCIL = 16  # = seqxai.attribution.PATH_STENCIL (a test keeps them equal; no torch here)


def path_store_bytes(encoder_config, tokens: int, n_steps: int, layers: bool = True,
                     conductance: str = "jvp") -> int:
    """Memory that conductance "polynomial" holds across path batches (above); 0 otherwise."""
    if not layers or conductance != "polynomial":
        return 0
    c = encoder_config
    return 4 * 2 * min(2 * n_steps + 2, 3 * PATH_STENCIL) * tokens * c.hidden_size * c.num_hidden_layers


def path_batch_for(model, tokens: int, n_steps: int, batch_size: int, max_memory_gb, device, *,
                   layers: bool = True, conductance: str = "jvp", budget: int | None = None) -> int:
    """Path nodes per pass for a protein of ``tokens`` tokens: the largest batch whose estimate
    (weights + :func:`path_store_bytes` + rows x :func:`attribution_row_bytes`) fits 90% of the
    budget (``max_memory_gb`` GiB, "auto", or ``budget`` bytes when given), else ``batch_size``;
    never above ``n_steps``."""
    if budget is None:
        budget = budget_bytes(max_memory_gb, device)
    encoder = getattr(model, "encoder", model)
    per_row = attribution_row_bytes(encoder.config, tokens, layers, conductance)
    fixed = (4 * sum(p.numel() for p in model.parameters())
             + path_store_bytes(encoder.config, tokens, n_steps, layers, conductance))
    return plan(n_steps, per_row, fixed, budget, batch_size)[0]


HOST_OVERHEAD_MB = 1500  # Python, torch, tokenizer and the tables of one shard
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt"}
ENCODER_DIMS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def weight_bytes(folder) -> int:
    """Bytes of the weight files (:data:`WEIGHT_SUFFIXES`) under ``folder``, subfolders included."""
    from pathlib import Path

    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.suffix in WEIGHT_SUFFIXES)


def _host_plan(device: str, max_memory_gb) -> tuple[bool, int | None]:
    """Whether a job's steps run in host memory (``device`` cpu, or auto without the GPU budget
    "auto"), and the budget in bytes that sizes their batches there (a number of GiB; else None)."""
    on_cpu = device == "cpu" or (device == "auto" and max_memory_gb != "auto")
    return on_cpu, None if max_memory_gb in (None, "auto") else int(float(max_memory_gb) * GIB)


def attribution_job_mb(model_dirs, n_steps: int, batch_size: int, max_memory_gb, device: str,
                       layers: bool = True, conductance: str = "jvp", floor_mb: int = 4000) -> int:
    """Host memory (MB) of one attribution job over the model folders ``model_dirs`` (written by
    fine-tuning: ``seqxai_model.json``, ``encoder/config.json``, weight files), for its rule's
    ``mem_mb``: the overhead, the weights, and the larger of a second copy of the weights
    (loading) and, when the path batches run on the CPU (``device`` cpu, or auto without a GPU
    budget "auto"), the planned batch of :func:`path_batch_for` at the model's ``max_length``
    tokens with the polynomial mode's store; at least ``floor_mb``. Measured on the ESM-2 650M
    shape (one 505-token protein, 2 nodes, peak RSS / this estimate): jvp 10,600 / 12,127 MiB
    (0.87), polynomial 10,510 / 13,328 (0.79), difference 9,971 / 10,398 (0.96)."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    need = floor_mb
    on_cpu, budget = _host_plan(device, max_memory_gb)
    for d in map(Path, [model_dirs] if isinstance(model_dirs, (str, Path)) else model_dirs):
        weights = weight_bytes(d)
        batch = 0
        if on_cpu:
            cfg = SimpleNamespace(**json.loads((d / "encoder" / "config.json").read_text()))
            tokens = json.loads((d / "seqxai_model.json").read_text())["max_length"]
            per_row = attribution_row_bytes(cfg, tokens, layers, conductance)
            store = path_store_bytes(cfg, tokens, n_steps, layers, conductance)
            batch = store + plan(n_steps, per_row, weights + store, budget, batch_size)[0] * per_row
        need = max(need, math.ceil(attribution_host_bytes(weights, batch) / 2 ** 20))
    return need


def finetune_job_mb(encoder_dir, max_length: int, batch_size: int, accumulation: int,
                    max_memory_gb, device: str, train_encoder: bool, micro_batch: int | None = None,
                    floor_mb: int = 8000) -> int:
    """Host memory (MB) of one fine-tuning job from the encoder folder ``encoder_dir``
    (``config.json`` and weight files; fp32 files: parameters = bytes / 4), for its rule's
    ``mem_mb``: the overhead plus
    - on a GPU, the loading copy (2 x the weights): the weights, their best copy and the
      training state live on the device;
    - when the steps run on the CPU (``device`` cpu, or auto without ``max_memory_gb: auto``),
      the larger of training, :func:`fixed_bytes` (the encoder's Adam state only when
      ``train_encoder``, the best weights kept) plus the planned micro-batch at ``max_length``
      tokens, and the end of training: the weights, the best copy and the one
      ``save_pretrained`` writes from (3 x the weights; a frozen encoder's job peaks there).
    At least ``floor_mb``, which is also the answer for a folder that cannot be sized: no
    weight files, or a ``config.json`` that is missing, unreadable or lacks the encoder's
    dimensions (a hub id before the job downloads it, a test's stand-in). Measured on the
    ESM-2 650M shape at ``max_length`` 512: trained on the CPU 18,185 MiB against 16,830
    (1.08), frozen 8,314 MiB (sampled) against 8,932 (0.93); ProtBert-BFD trained 9,929
    against 11,637 (0.85) (docs/performance.md)."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    d = Path(encoder_dir).expanduser()
    weights = weight_bytes(d)
    if not weights:
        return floor_mb
    try:
        raw = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        return floor_mb  # nothing to size from: the job itself reports the folder
    if not isinstance(raw, dict) or not all(k in raw for k in ENCODER_DIMS):
        return floor_mb
    cfg = SimpleNamespace(**raw)
    n_params = weights // 4
    peak = 2 * weights
    on_cpu, budget = _host_plan(device, max_memory_gb)
    if on_cpu:
        peak = 3 * weights
        fixed = fixed_bytes(n_params, n_params if train_encoder else 0, best_copy=True)
        per_seq = sequence_bytes(cfg, max_length, act_bytes=4, train_encoder=train_encoder)
        micro = min(micro_batch, batch_size * accumulation) if micro_batch else plan(
            batch_size * accumulation, per_seq, fixed, budget, batch_size)[0]
        peak = max(peak, fixed + micro * per_seq)
    return max(floor_mb, math.ceil((HOST_OVERHEAD_MB * 2 ** 20 + peak) / 2 ** 20))


def attribution_host_bytes(weights: int, batch: int) -> int:
    """Host memory of an attribution process with ``weights`` bytes of weight files whose path
    batches hold ``batch`` bytes in host memory (0 on a GPU): the overhead, the weights, and the
    larger of their loading copy and the batch (never held at once)."""
    return HOST_OVERHEAD_MB * 2 ** 20 + weights + max(batch, weights)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux ``ru_maxrss``, KiB), in bytes: on the CPU the
    measured counterpart of the estimate, interpreter and libraries included."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
