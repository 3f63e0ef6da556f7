"""The C allocator of the protein attribution jobs (CPU): freed memory kept in the process.

Standard library only, and called before torch is imported (scripts/attribute_proteins.py):
glibc's settings made after torch has started its threads and first allocations leave most of
the page faults in place (below)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
INT_MAX = 2**31 - 1
ENV = "SEQXAI_MALLOC"


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process instead of returning it to the
    system (no mmap for large blocks, no heap trimming below 2 GiB); True when it took effect.

    PyTorch on the CPU allocates every activation afresh. glibc serves blocks over its mmap
    threshold (at most 32 MiB) with a new mmap, unmaps them on free and trims the heap top, so
    every batch's attention tensors (batch x heads x T x T) are page-faulted in again. ESM-2 8M,
    202 tokens, 25 IG nodes in one batch, exact all-layer pass: 565,000 minor faults and 1.4 s
    of system time in 6.3 s; none when this runs before torch is imported (5.0 s); 145,000
    when it runs after (docs/performance.md). The process then keeps its peak memory until it
    exits, which a rule's job does anyway; where freed blocks cannot be reused the peak grows
    (the demo's DNA AttnLRP job went from under 3 GB to 3,134 MB), so only the protein
    attribution shards, where it was measured (same peak), use it. No effect where the C
    library is not glibc (macOS, musl) or with ``SEQXAI_MALLOC=system``."""
    if os.environ.get(ENV, "keep") == "system" or platform.system() != "Linux":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, INT_MAX))
