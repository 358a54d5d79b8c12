"""Keep glibc from returning activation memory to the OS between inferences.

With glibc's defaults, tensors above the (dynamic) mmap threshold are mapped fresh on
every allocation and page-faulted on first touch, so PyTorch eager latency on CPU
measures the kernel's page faults more than the kernel (the measurements are in
docs/measurement.md, "Allocator"). Caching allocators (jemalloc, tcmalloc, ONNX Runtime's
arena) avoid this; ``tune()`` makes glibc do the same for the process, and benchmarks
record that they did.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_LARGEST = 2**31 - 1
_state = {"tuned": False}


def tune() -> str:
    """Raise glibc's mmap and trim thresholds for this process; say what was done."""
    if _state["tuned"]:
        return "glibc mmap/trim thresholds raised to 2 GiB"
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return "default allocator (not glibc)"
    if mallopt(_M_MMAP_THRESHOLD, _LARGEST) and mallopt(_M_TRIM_THRESHOLD, _LARGEST):
        _state["tuned"] = True
        return "glibc mmap/trim thresholds raised to 2 GiB"
    return "default allocator (mallopt refused)"


def status() -> str:
    return "glibc mmap/trim thresholds raised to 2 GiB" if _state["tuned"] else "default allocator"
