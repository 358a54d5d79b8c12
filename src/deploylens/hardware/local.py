"""This machine: CPU model, cores, ISA and the theoretical peak the ISA allows; the CUDA
GPU when present, matched to the catalog."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from deploylens.hardware.spec import Figure, HardwareSpec

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


_SOURCE = ("derived: cores x clock (/proc/cpuinfo) x FLOPs per cycle of the ISA "
           "(AVX2+FMA 32, AVX-512 with two FMA units 64, Zen 4 AVX-512 32, AMX BF16 ~1024 and INT8 ~2048, AVX-512 "
           "VNNI 256 per cycle: pigirons/cpufp measured per-core peaks; numberworld.org's Zen 4/5 AVX-512 analysis)")


def per_cycle(isa: list[str], model: str) -> dict[str, float]:
    """FLOPs (int8: ops) per cycle per core that the SIMD extensions allow."""
    amd = "AMD" in model.upper()
    rates: dict[str, float] = {}
    if "avx512f" in isa:
        rates["fp32"] = 32 if amd else 64  # Zen 4 double-pumps 512-bit ops on 256-bit units
    elif "avx2" in isa and "fma" in isa:
        rates["fp32"] = 32
    elif "avx" in isa:
        rates["fp32"] = 16
    elif "asimd" in isa:
        rates["fp32"] = 8  # one 128-bit FMA pipe (A53/A55/A72); A76-class cores have two
    if "amx_bf16" in isa:
        rates["bf16"] = 1024
    if "amx_int8" in isa:
        rates["int8"] = 2048
    elif "avx512_vnni" in isa:
        rates["int8"] = 128 if amd else 256
    elif "avx_vnni" in isa:
        rates["int8"] = 128
    return rates


def vector_lanes(isa: list[str]) -> int:
    """fp32 lanes of the widest SIMD register: oneDNN and ONNX Runtime block channels by
    this many, and a conv whose channels are not a multiple of it runs a slower path."""
    if "avx512f" in isa:
        return 16
    if "avx" in isa or "avx2" in isa:
        return 8
    if "asimd" in isa:
        return 4
    return 1


def this_cpu(threads: int | None = None) -> HardwareSpec:
    info = cpu_info()
    cores = threads or torch.get_num_threads()
    ghz = (info["mhz"] or 0) / 1e3
    peak = {dtype: Figure(cores * ghz * 1e9 * rate, (_SOURCE,), "derived",
                          f"{cores} cores x {ghz:.2f} GHz x {rate:g}/cycle")
            for dtype, rate in per_cycle(info["isa"], info["model"]).items() if ghz}
    return HardwareSpec(name="this", device_class="cpu", family="local", peak=peak,
                        notes=f"{info['model']} ({', '.join(info['isa'])}); bandwidth and per-kernel rates come "
                              "from `deploylens hw calibrate`")


def this_gpu(catalog: dict[str, HardwareSpec]) -> HardwareSpec | None:
    """The visible CUDA GPU's catalog entry: its model token (t4, h100, a100, ...) must
    appear in the device name; among those, the entry naming most of it (sxm5, pcie, 80gb)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_properties(0).name.lower().replace("-", " ")
    words = set(name.split())

    def score(spec: HardwareSpec) -> int:
        tokens = spec.name.removeprefix("nvidia_").split("_")
        return sum(t in words for t in tokens) if tokens[0] in words else 0

    gpus = [s for s in catalog.values() if s.device_class == "gpu"]
    best = max(gpus, key=score, default=None)
    return best if best is not None and score(best) > 0 else None
