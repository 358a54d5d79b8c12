"""What a measurement ran on: libraries, CPU, ISA, threads, governor, GPU."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import torch

from deploylens.bench import malloc

_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
              "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16")


def cpu_info(cpuinfo: str | None = None) -> dict:
    """CPU model and the SIMD extensions relevant to inference, from /proc/cpuinfo."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "model": fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "mhz": float(fields["cpu MHz"]) if "cpu MHz" in fields else None,
        "isa": [flag for flag in _ISA_FLAGS if flag in flags],
    }


def _governor() -> str | None:
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def capture(threads: int) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "tensorrt": _version("tensorrt"),
        "cpu": cpu_info(),
        "threads": threads,
        "governor": _governor(),
        "allocator": malloc.status(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 1e9, 1),
                      "sm_count": props.multi_processor_count, "cuda": torch.version.cuda}
    return env
