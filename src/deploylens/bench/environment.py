"""What a measurement ran on: libraries, CPU, ISA, threads, governor, GPU."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import torch

from deploylens.bench import malloc
from deploylens.hardware.local import cpu_info

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
