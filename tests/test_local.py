"""This machine as a spec: the ISA's FLOPs per cycle (Zen 4 against Zen 5), the boost clock
from cpufreq and the physical bounds a calibration's rates are capped at."""

from __future__ import annotations

import pytest

from deploylens.hardware import local
from deploylens.hardware.local import (
    BOOST_HEADROOM,
    DEFAULT_L1D,
    boost_mhz,
    clock,
    cpu_info,
    l1d_bytes,
    per_cycle,
    physical_bounds,
)

AVX512 = "fpu sse4_2 avx avx2 fma avx512f avx512_vnni avx512_bf16"


def cpuinfo(name: str, family: int, model: int, flags: str = AVX512, mhz: float = 2596.12) -> str:
    """/proc/cpuinfo's first processor, as Linux writes it."""
    return (f"processor\t: 0\nvendor_id\t: {'AuthenticAMD' if 'AMD' in name else 'GenuineIntel'}\n"
            f"cpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {name}\nstepping\t: 1\n"
            f"cpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n\n")


def rates(text: str) -> dict[str, float]:
    info = cpu_info(text)
    return per_cycle(info["isa"], info["model"], info["family"], info["model_number"])


def test_per_cycle_tells_zen_4_from_zen_5_by_family_and_model():
    genoa = cpuinfo("AMD EPYC 9654 96-Core Processor", 25, 17)  # Zen 4: 512-bit ops on 256-bit units
    turin = cpuinfo("AMD EPYC 9575F 64-Core Processor", 26, 2)  # Zen 5 server: full 512-bit datapaths
    granite_ridge = cpuinfo("AMD Ryzen 9 9950X 16-Core Processor", 26, 68)  # Zen 5 desktop
    strix_point = cpuinfo("AMD Ryzen AI 9 HX 370", 26, 36)  # Zen 5 mobile: 256-bit, as Zen 4
    sapphire_rapids = cpuinfo("Intel(R) Xeon(R) Platinum 8480+", 6, 143)
    assert cpu_info(turin)["family"] == 26 and cpu_info(turin)["model_number"] == 2
    assert rates(genoa)["fp32"] == 32 and rates(genoa)["int8"] == 128
    assert rates(turin)["fp32"] == 64 and rates(turin)["int8"] == 256
    assert rates(granite_ridge)["fp32"] == 64
    assert rates(strix_point)["fp32"] == 32
    assert rates(sapphire_rapids)["fp32"] == 64
    # without AVX-512 the family does not matter; an AMD CPU of unknown family counts as Zen 4
    assert rates(cpuinfo("AMD EPYC 7763", 25, 1, flags="fpu avx avx2 fma"))["fp32"] == 32
    assert per_cycle(["avx512f"], "AMD EPYC")["fp32"] == 32
    assert cpu_info("model name\t: Odd CPU\ncpu family\t: ?\n")["family"] is None


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_boost_clock_is_the_highest_cpufreq_max(tmp_path):
    assert boost_mhz(tmp_path) is None  # no cpufreq: a VM
    write(tmp_path / "cpu0/cpufreq/cpuinfo_max_freq", "3700000\n")  # kHz
    write(tmp_path / "cpu1/cpufreq/cpuinfo_max_freq", "5000000\n")  # a faster core
    write(tmp_path / "cpu2/cpufreq/cpuinfo_max_freq", "garbled\n")
    assert boost_mhz(tmp_path) == 5000.0
    info = cpu_info(cpuinfo("AMD EPYC 9575F", 26, 2, mhz=3300.0))
    assert clock(info, tmp_path) == (5000.0, "highest boost clock, cpufreq cpuinfo_max_freq")
    mhz, which = clock(info, tmp_path / "elsewhere")
    assert mhz == 3300.0 and which.startswith("/proc/cpuinfo cpu MHz")


def test_physical_bounds_take_the_boost_clock_or_headroom_over_cpuinfo(tmp_path):
    info = {**cpu_info(cpuinfo("AMD EPYC 9575F", 26, 2, mhz=2500.0)), "logical_cpus": 4}
    write(tmp_path / "cpu0/cache/index0/level", "1\n")
    write(tmp_path / "cpu0/cache/index0/type", "Data\n")
    write(tmp_path / "cpu0/cache/index0/size", "48K\n")
    write(tmp_path / "cpu0/cache/index1/level", "1\n")
    write(tmp_path / "cpu0/cache/index1/type", "Instruction\n")
    write(tmp_path / "cpu0/cache/index1/size", "32K\n")
    assert l1d_bytes(tmp_path) == 48 * 1024 and l1d_bytes(tmp_path / "none") is None
    # no boost clock readable: cpuinfo's 2.5 GHz x BOOST_HEADROOM, 2 of the 4 cores
    bounds = physical_bounds(2, info, tmp_path)
    ghz = 2.5 * BOOST_HEADROOM
    assert bounds["flops"] == pytest.approx(2 * ghz * 1e9 * 64)
    assert bounds["in_l1_bps"] == pytest.approx(2 * ghz * 1e9 * 3 * 64)  # two loads and a store of 64 B
    assert bounds["beyond_l1_bps"] == pytest.approx(2 * ghz * 1e9 * 64)  # a line per cycle from L2
    assert bounds["l1_bytes"] == 2 * 48 * 1024 and "x 2 for turbo" in bounds["source"]
    write(tmp_path / "cpu0/cpufreq/cpuinfo_max_freq", "5000000\n")
    bounds = physical_bounds(8, info, tmp_path)  # more threads than cores: the cores
    assert bounds["flops"] == pytest.approx(4 * 5.0e9 * 64) and "turbo" not in bounds["source"]
    assert physical_bounds(2, {**info, "isa": []}, tmp_path) is None  # no fp32 rate known
    assert physical_bounds(2, {**info, "mhz": None}, tmp_path / "bare") is None  # no clock known
    avx2 = physical_bounds(1, {**info, "isa": ["avx2", "fma"]}, tmp_path / "bare")  # no sysfs at all
    assert avx2["l1_bytes"] == DEFAULT_L1D and avx2["in_l1_bps"] == pytest.approx(ghz * 1e9 * 3 * 32)


def test_this_cpu_peak_names_its_clock(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "cpu_info", lambda: cpu_info(cpuinfo("AMD EPYC 9575F", 26, 2, mhz=2500.0)))
    nominal = local.this_cpu(2, tmp_path).peak["fp32"]
    assert nominal.value == pytest.approx(2 * 2.5e9 * 64) and "/proc/cpuinfo cpu MHz" in nominal.note
    write(tmp_path / "cpu0/cpufreq/cpuinfo_max_freq", "4000000\n")
    boosted = local.this_cpu(2, tmp_path).peak["fp32"]
    assert boosted.value == pytest.approx(2 * 4.0e9 * 64) and "boost clock" in boosted.note
