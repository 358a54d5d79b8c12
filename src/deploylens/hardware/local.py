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
        # x86 only: which core generation (AMD family 0x19 = 25 is Zen 3/4, 0x1A = 26 Zen 5)
        "family": _integer(fields.get("cpu family")),
        "model_number": _integer(fields.get("model")),
    }


def _integer(text: str | None) -> int | None:
    try:
        return (int(text, 16) if text.lower().startswith("0x") else int(text)) if text else None
    except ValueError:
        return None


_SOURCE = ("derived: cores x clock x FLOPs per cycle of the ISA "
           "(AVX2+FMA 32, AVX-512 with two FMA units 64, Zen 4 AVX-512 32, Zen 5 AVX-512 64 on server and desktop "
           "cores, 32 on mobile ones, AMX BF16 ~1024 and INT8 ~2048, AVX-512 VNNI 256 per cycle: pigirons/cpufp "
           "measured per-core peaks; numberworld.org's Zen 4/5 AVX-512 analysis)")

# AMD family 0x1A (Zen 5) models whose cores keep Zen 4's 256-bit AVX-512 datapath: the
# mobile Strix Point (0x20-0x2F) and Krackan Point (0x60-0x6F); server (Turin, 0x00-0x1F),
# desktop (Granite Ridge, 0x40-0x4F) and Strix Halo (0x70-0x7F) cores run 512-bit ops in one
# pass (numberworld.org's Zen 5 analysis; AMD's Zen 5 briefings)
_ZEN5_HALF_WIDTH = (range(0x20, 0x30), range(0x60, 0x70))


def _full_width_avx512(amd: bool, family: int | None, model_number: int | None) -> bool:
    """Whether AVX-512 ops run on 512-bit units (two FMAs of 16 fp32 lanes per cycle):
    every Intel core with AVX-512; on AMD Zen 5 (family 26) server and desktop cores, not
    Zen 4 (family 25), which double-pumps them on 256-bit units, nor Zen 5's mobile cores.
    An AMD CPU of unknown family counts as Zen 4, the first AMD core with AVX-512."""
    if not amd:
        return True
    if family is None or family < 0x1A:
        return False
    return family > 0x1A or not any(model_number in models for models in _ZEN5_HALF_WIDTH)


def per_cycle(isa: list[str], model: str, family: int | None = None,
              model_number: int | None = None) -> dict[str, float]:
    """FLOPs (int8: ops) per cycle per core that the SIMD extensions allow; on AMD the CPU
    family and model number (/proc/cpuinfo's ``cpu family`` and ``model``) tell Zen 4's
    double-pumped AVX-512 from Zen 5's full-width one."""
    full = _full_width_avx512("AMD" in model.upper(), family, model_number)
    rates: dict[str, float] = {}
    if "avx512f" in isa:
        rates["fp32"] = 64 if full else 32
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
        rates["int8"] = 256 if full else 128
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


SYSFS_CPU = Path("/sys/devices/system/cpu")
# the largest boost / base clock ratio of the x86 server parts (Xeon 6980P 3.9 / 2.0 GHz,
# Xeon 8480+ 3.8 / 2.0; EPYC 9965 3.7 / 2.25): where the boost clock cannot be read (a VM
# without cpufreq), the physical bound takes /proc/cpuinfo's clock times this
BOOST_HEADROOM = 2.0
# the L1 data cache size assumed when sysfs does not say (larger than any x86 core's 48 KiB:
# a larger L1 applies the looser in-L1 bound to more cases)
DEFAULT_L1D = 64 * 1024
# bytes per cycle per core: in L1, two loads and one store of the widest vector; beyond L1,
# one 64-byte line from L2 per cycle (x86 cores since Skylake and Zen; Arm's big cores 32-64)
L1_VECTORS_PER_CYCLE, BEYOND_L1_BYTES_PER_CYCLE = 3, 64


def boost_mhz(root: Path = SYSFS_CPU) -> float | None:
    """The highest boost clock of any core, MHz: cpufreq's ``cpuinfo_max_freq`` (kHz) under
    ``root``; None where cpufreq is absent (most VMs)."""
    clocks = []
    for path in root.glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            clocks.append(int(path.read_text().strip()) / 1e3)
        except (OSError, ValueError):
            continue
    return max(clocks, default=None)


def l1d_bytes(root: Path = SYSFS_CPU) -> int | None:
    """cpu0's L1 data cache size from sysfs (``cache/index*/``), None when not readable."""
    for index in sorted(root.glob("cpu0/cache/index[0-9]*")):
        try:
            if (index / "level").read_text().strip() == "1" and (index / "type").read_text().strip() == "Data":
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 1024, "M": 1024 ** 2}.get(size[-1:], 1)
                return int(size.rstrip("KMB")) * scale
        except (OSError, ValueError):
            continue
    return None


def clock(info: dict, root: Path = SYSFS_CPU) -> tuple[float | None, str]:
    """This CPU's clock for its ISA peak (MHz) and which clock it is: the highest boost
    clock from cpufreq where present, else /proc/cpuinfo's ``cpu MHz`` (the current clock;
    in a VM the nominal one, which turbo can exceed)."""
    boost = boost_mhz(root)
    if boost:
        return boost, "highest boost clock, cpufreq cpuinfo_max_freq"
    return info.get("mhz"), "/proc/cpuinfo cpu MHz, the current clock: no boost clock readable here"


def physical_bounds(threads: int, info: dict | None = None, root: Path = SYSFS_CPU) -> dict | None:
    """What ``threads`` cores of this CPU cannot exceed, for capping calibrated rates:
    ``flops`` (fp32 FLOP/s: cores x the highest boost clock x FLOPs per cycle; without a
    readable boost clock, /proc/cpuinfo's clock x BOOST_HEADROOM), ``in_l1_bps`` and
    ``beyond_l1_bps`` (bytes/s: cores x that clock x two loads and a store of the widest
    vector per cycle, or one 64-byte line per cycle for data that does not fit the cores'
    L1), ``l1_bytes`` (the cores' L1 data caches together) and ``source`` (in words).
    None without a clock or fp32 rate."""
    info = info or cpu_info()
    mhz, which = clock(info, root)
    rate = per_cycle(info["isa"], info["model"], info.get("family"), info.get("model_number")).get("fp32")
    if not (mhz and rate):
        return None
    boost_known = which.startswith("highest boost")
    ghz = mhz / 1e3 * (1.0 if boost_known else BOOST_HEADROOM)
    cores = max(1, min(threads, info.get("logical_cpus") or threads))
    vector_bytes = 4 * vector_lanes(info["isa"])
    clock_words = f"{ghz:.2f} GHz ({which}" + (")" if boost_known else f", x {BOOST_HEADROOM:g} for turbo)")
    return {"flops": cores * ghz * 1e9 * rate,
            "in_l1_bps": cores * ghz * 1e9 * L1_VECTORS_PER_CYCLE * vector_bytes,
            "beyond_l1_bps": cores * ghz * 1e9 * BEYOND_L1_BYTES_PER_CYCLE,
            "l1_bytes": cores * (l1d_bytes(root) or DEFAULT_L1D),
            "source": f"{cores} cores x {clock_words} x {rate:g} FLOPs/cycle; bandwidth x "
                      f"{L1_VECTORS_PER_CYCLE * vector_bytes} B/cycle in L1, {BEYOND_L1_BYTES_PER_CYCLE} beyond"}


def this_cpu(threads: int | None = None, root: Path = SYSFS_CPU) -> HardwareSpec:
    """This CPU as a spec: its ISA peak is cores x clock (the highest boost clock where
    cpufreq gives it, else /proc/cpuinfo's: see :func:`clock`) x FLOPs per cycle."""
    info = cpu_info()
    cores = threads or torch.get_num_threads()
    mhz, which = clock(info, root)
    ghz = (mhz or 0) / 1e3
    peak = {dtype: Figure(cores * ghz * 1e9 * rate, (_SOURCE,), "derived",
                          f"{cores} cores x {ghz:.2f} GHz ({which}) x {rate:g}/cycle")
            for dtype, rate in per_cycle(info["isa"], info["model"], info.get("family"),
                                         info.get("model_number")).items() if ghz}
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
