"""The cost of each attribution method in forward+backward equivalents, measured side by side.

Unit: one plain forward and one backward pass of the classifier to its embedding output
(:func:`plain_forward_backward`, no rules, no head table). For every method of
seqxai.attribution_methods, on the same proteins and targets, in one process:

- ``time_ratio`` = median seconds of the method / median seconds of the plain pass (repeats
  interleaved method by method, so a change of the machine's load hits all alike);
- ``flop_ratio`` = matmul FLOPs of the method / those of the plain pass, counted with
  torch.utils.flop_counter's registry (forward, backward and forward-mode AD together). FLOPs
  do not move with the load: they are the number to compare across runs; the time adds what
  FLOPs miss (elementwise work, Python overhead).
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd
import torch

COST_COLUMNS = ["method", "n_proteins", "repeats", "seconds", "plain_seconds", "time_ratio",
                "flops", "plain_flops", "flop_ratio"]


def plain_forward_backward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           target: int) -> torch.Tensor:
    """dF/de at the embedding output by one forward and one backward pass: the unit of cost."""
    from .attribution import _hooks

    leaf = {}

    def grab(o):
        leaf["e"] = o.detach().requires_grad_(True)
        return leaf["e"]

    dev = next(model.parameters()).device
    ids, att = input_ids.to(dev)[None], attention_mask.to(dev)[None]
    with torch.enable_grad(), _hooks(model, grab, lambda l, o: None):
        logit = model(ids, att)[0, target]
        return torch.autograd.grad(logit, leaf["e"])[0]


def matmul_flops():
    """A dispatch mode that adds up the FLOPs of FlopCounterMode's registry (matmuls, attention)
    in ``.total``.

    FlopCounterMode itself also tracks modules with backward hooks, which torch refuses inside
    ``autograd.grad`` with respect to a leaf (what every method here calls)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            count = flop_registry.get(func._overloadpacket)
            if count is not None:
                self.total += count(*args, **kwargs, out_val=out)
            return out

    return Count()


def method_calls(model, tok, sequence: str, target: int, methods, max_length: int, n_steps: int,
                 batch_size: int = 16, layers: bool = True, conductance: str = "jvp") -> dict:
    """{name: zero-argument call}: ``plain`` and each method on one protein, as the workflow runs
    it (IG at ``n_steps`` nodes with its conductance; the head tables when ``layers``)."""
    from .attribution import baseline_ids
    from .attribution_methods import attribute
    from .protein_model import encode

    enc = encode(tok, [sequence], max_length)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    base = baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
    calls = {"plain": lambda: plain_forward_backward(model, ids, att, target)}
    for m in methods:
        calls[m] = (lambda m=m: attribute(m, model, ids, att, target, base, n_steps, batch_size,
                                          layers=layers, conductance=conductance))
    return calls


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def method_cost(calls_per_protein: list[dict], repeats: int = 3) -> pd.DataFrame:
    """Seconds and matmul FLOPs of every call, summed over the proteins, and their ratio to
    ``plain`` (:data:`COST_COLUMNS`, one row per method, ``plain`` left out).

    ``calls_per_protein[p]`` is :func:`method_calls`'s mapping for protein p (the same names
    for every protein). The first pass over each protein counts the FLOPs and warms up; then
    ``repeats`` interleaved rounds (every call once per round) are timed; per protein the median.
    """
    if not calls_per_protein:
        raise ValueError("method cost: no protein to measure on")
    if repeats < 1:
        raise ValueError(f"method cost: repeats must be >= 1, got {repeats}")
    names = list(calls_per_protein[0])
    if "plain" not in names:
        raise ValueError("method cost: the calls need the 'plain' forward+backward unit")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    flops = dict.fromkeys(names, 0)
    seconds = dict.fromkeys(names, 0.0)
    for calls in calls_per_protein:
        if list(calls) != names:
            raise ValueError(f"method cost: calls differ between proteins: {list(calls)} vs {names}")
        for name, call in calls.items():
            with matmul_flops() as count:
                call()
            flops[name] += count.total
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(repeats):
            for name, call in calls.items():
                _sync(device)
                t0 = time.perf_counter()
                call()
                _sync(device)
                times[name].append(time.perf_counter() - t0)
        for name in names:
            seconds[name] += statistics.median(times[name])
    rows = [{"method": n, "n_proteins": len(calls_per_protein), "repeats": repeats,
             "seconds": seconds[n], "plain_seconds": seconds["plain"],
             "time_ratio": seconds[n] / seconds["plain"] if seconds["plain"] > 0 else np.nan,
             "flops": float(flops[n]), "plain_flops": float(flops["plain"]),
             "flop_ratio": flops[n] / flops["plain"] if flops["plain"] else np.nan}
            for n in names if n != "plain"]
    return pd.DataFrame(rows, columns=COST_COLUMNS)
