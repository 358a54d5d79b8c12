"""NVML sampling during a timed run: "GPU-Util" is only the share of time some kernel
was running, so it is reported beside achieved FLOP/s and bytes/s, never alone."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class NvmlSampler:
    """Samples utilization and memory of GPU ``index`` every ``interval`` seconds.

    ``nvml`` is the pynvml module (or a fake with the same functions, in tests).
    """

    nvml: Any
    index: int = 0
    interval: float = 0.05
    utilization: list[int] = field(default_factory=list)
    memory_used: list[int] = field(default_factory=list)
    clocks_mhz: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "NvmlSampler":
        self.nvml.nvmlInit()
        self._handle = self.nvml.nvmlDeviceGetHandleByIndex(self.index)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        self.utilization.append(self.nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        self.memory_used.append(self.nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        self.clocks_mhz.append(self.nvml.nvmlDeviceGetClockInfo(self._handle, self.nvml.NVML_CLOCK_SM))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()  # at least one sample, even for a run shorter than the interval
        self.nvml.nvmlShutdown()

    def report(self) -> dict:
        n = len(self.utilization)
        return {"gpu_util_mean": sum(self.utilization) / n, "gpu_util_max": max(self.utilization),
                "memory_used_max_mb": max(self.memory_used) / 1e6, "sm_clock_mhz_mean": sum(self.clocks_mhz) / n,
                "samples": n}


def load_nvml():
    """The pynvml module, or None where it or a GPU driver is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return pynvml
    except Exception:  # noqa: BLE001 - no driver, no library, no GPU: all mean "no NVML"
        return None


def utilization_context(util: dict | None, achieved_tflops: float | None, achieved_gbs: float | None,
                        peak_tflops: float | None, peak_gbs: float | None) -> dict:
    """GPU-Util beside what the hardware actually delivered, as fractions of peak."""
    return {
        **(util or {}),
        "achieved_tflops": achieved_tflops,
        "achieved_gbs": achieved_gbs,
        "fraction_of_peak_flops": achieved_tflops / peak_tflops if achieved_tflops and peak_tflops else None,
        "fraction_of_peak_bandwidth": achieved_gbs / peak_gbs if achieved_gbs and peak_gbs else None,
    }
