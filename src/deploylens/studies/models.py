"""Studies of whole zoo networks: FLOPs rank against latency rank, the deploy form of a
re-parameterized net against its train form, INT8 PTQ (speed and accuracy risk), latency
against throughput as the batch grows, and what NVML's "GPU-Util" is not. On a CPU the models
run at 112x112, batch 1 (224x224 quartered, to fit the budget on two cores); on a GPU at
224x224. The papers' numbers are the ones the cited papers print; where they have none, an
expectation says only the claimed direction. A study's measured summary (a rank correlation,
throughputs, GPU-Util beside achieved FLOP/s) joins its notes after timing (``Design.summarize``)."""

from __future__ import annotations

import copy
import functools
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deploylens.bench.gpu import NvmlSampler, load_nvml, utilization_context
from deploylens.dtypes import torch_dtype
from deploylens.deploy import quantize
from deploylens.deploy.onnx_steps import sqnr_db
from deploylens.errors import UserError
from deploylens.hardware.local import this_gpu
from deploylens.hardware.spec import load_catalog
from deploylens.onnx_runtime import export_for_runtime, session as onnxruntime_session
from deploylens.studies.core import Arm, Expectation
from deploylens.studies.runner import Design, Settings, study
from deploylens.zoo import create as zoo_create
from deploylens.zoo.reparam import reparameterize
from deploylens.zoo.repvgg import RepVGG



def _image(settings: Settings, gpu_batch: int) -> tuple[int, ...]:
    return (gpu_batch, 3, 224, 224) if settings.device == "cuda" else (1, 3, 112, 112)


RESOLUTION = {"cuda": "224x224", "cpu": "112x112, batch 1 (224x224 quartered, to fit the budget on 2 CPU cores)"}


def _seconds(arm: Arm) -> float:
    return arm.median_ms / 1e3


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""
    def ranks(values: list[float]) -> list[float]:
        ordered = sorted(values)
        return [ordered.index(v) + (ordered.count(v) + 1) / 2 for v in values]
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


# --- flops-vs-latency ---------------------------------------------------------------------

# ShuffleNetV2 Table 8 (V): MFLOPs (= MACs) at 224x224, GPU batches/s (GTX 1080 Ti, batch 8),
# ARM images/s (Snapdragon 810, batch 1)
TABLE_8 = {"mobilenet_v1_050": (149, 382, 16.5), "mobilenet_v1_075": (325, 314, 10.6),
           "mobilenet_v1_100": (569, 247, 6.5), "mobilenet_v2_100": (300, 180, 8.9),
           "shufflenet_v2_x1_0": (146, 341, 24.4)}
# RepVGG Table 4 (V): Theo FLOPs (G MACs) and examples/s on a GTX 1080 Ti, batch 128, fp32
TABLE_4 = {"resnet18": (1.8, 2442), "repvgg_a0 (deploy)": (1.4, 3256)}
SIMILAR_FLOPS = 1.25  # pairs whose FLOPs lie within this factor count as "similar FLOPs"


@study("flops-vs-latency", "FLOPs rank is not latency rank across families; within one family a FLOPs ratio "
       "tracks the latency ratio", "ShuffleNetV2 (Ma et al., ECCV 2018) Table 8; RepVGG (Ding et al., CVPR 2021) "
       "Table 4")
def flops_vs_latency(settings: Settings) -> Design:
    shape, gpu = _image(settings, 8), settings.device == "cuda"
    arms = [Arm(name, functools.partial(zoo_create, name), shape) for name in (*TABLE_8, "resnet18")] + \
        [Arm("repvgg_a0 (deploy)", functools.partial(zoo_create, "repvgg_a0", deploy=True), shape)]
    speed = {name: row[1 if gpu else 2] for name, row in TABLE_8.items()}

    def table_8(a: str, b: str) -> Expectation:  # a takes speed(b) / speed(a) times as long as b
        return Expectation(a, b, speed[b] / speed[a])
    repvgg = TABLE_4["repvgg_a0 (deploy)"][1] / TABLE_4["resnet18"][1]
    expectations = [table_8("mobilenet_v2_100", "mobilenet_v1_075"),  # 300 < 325 MFLOPs, slower on both
                    table_8("mobilenet_v1_050", "shufflenet_v2_x1_0"),  # 149 ~ 146 MFLOPs
                    table_8("mobilenet_v1_100", "mobilenet_v1_050"),  # one family: 569 / 149 FLOPs
                    Expectation("resnet18", "repvgg_a0 (deploy)", repvgg if gpu else None, True)]
    platform = "GPU batches/s (1080 Ti, batch 8)" if gpu else "ARM images/s (Snapdragon 810, batch 1)"
    paper = {"MFLOPs at 224 (MACs)": {**{n: row[0] for n, row in TABLE_8.items()},
                                      **{n: row[0] * 1e3 for n, row in TABLE_4.items()}},
             f"Table 8 {platform}": speed,
             "RepVGG Table 4 GPU images/s (1080 Ti, batch 128)": {n: row[1] for n, row in TABLE_4.items()}}
    notes = [f"zoo models at {RESOLUTION[settings.device]}; repvgg_a0 in its deploy form",
             "the paper's ratios are Table 8's " + ("GPU" if gpu else "ARM") + " column: time(a) / time(b) = "
             "speed(b) / speed(a); mobilenet_v2_100 has fewer FLOPs than mobilenet_v1_075 (300 vs 325 M) and is "
             "slower in both columns; mobilenet_v1_050 and shufflenet_v2_x1_0 have equal FLOPs (149 vs 146 M) and "
             "swap places between GPU and ARM",
             "RepVGG timed only a GPU (1080 Ti, batch 128; ResNet-18 took 1.33x RepVGG-A0's time): on a CPU the pair "
             "states only its direction"]
    return Design(arms, expectations, paper, notes, _ranks_summary)


def _ranks_summary(arms: list[Arm]) -> list[str]:
    flops = {a.name: a.flops for a in arms}
    seconds = {a.name: _seconds(a) for a in arms}
    names = list(flops)
    rho = spearman([flops[n] for n in names], [seconds[n] for n in names])
    paper = {column: spearman([row[0] for row in TABLE_8.values()], [1 / row[i] for row in TABLE_8.values()])
             for column, i in (("GPU", 1), ("ARM", 2))}
    lines = [f"Spearman rank correlation of FLOPs and median latency over the {len(names)} arms: {rho:.2f} (1: "
             f"the FLOPs rank is the latency rank); the paper's Table 8 over its {len(TABLE_8)} models: GPU "
             f"{paper['GPU']:.2f}, ARM {paper['ARM']:.2f}"]
    big, small = "mobilenet_v1_100", "mobilenet_v1_050"
    if big in flops and small in flops:
        lines.append(f"within mobilenet_v1: 1.0 / 0.5 FLOPs ratio {flops[big] / flops[small]:.2f}, measured time "
                     f"ratio {seconds[big] / seconds[small]:.2f}; the paper's FLOPs ratio "
                     f"{TABLE_8[big][0] / TABLE_8[small][0]:.2f}, time ratio GPU "
                     f"{TABLE_8[small][1] / TABLE_8[big][1]:.2f}, ARM {TABLE_8[small][2] / TABLE_8[big][2]:.2f}")
    similar = [(a, b) for a in names for b in names if a != b and seconds[a] >= seconds[b]
               and max(flops[a], flops[b]) <= SIMILAR_FLOPS * min(flops[a], flops[b])]
    if similar:
        a, b = max(similar, key=lambda p: seconds[p[0]] / seconds[p[1]])
        lines.append(f"largest latency gap at similar FLOPs (within {SIMILAR_FLOPS}x): {a} takes "
                     f"{seconds[a] / seconds[b]:.2f}x the time of {b} with {flops[a] / flops[b]:.2f}x its FLOPs")
    return lines


# --- reparam ------------------------------------------------------------------------------

# train / deploy params (M) and MACs (G) at 224x224: RepVGG-A0 mmpretrain (V2; train params =
# timm, V); MobileOne-S0 train timm (V), deploy mmpretrain (V2)
REPARAM_PAPER = {"repvgg_a0": ((9.11, 8.31), (1.52, 1.36)), "mobileone_s0": ((5.29, 2.08), (1.09, 0.27))}


@study("reparam", "The single-path deploy form of a re-parameterized net is faster and lighter than its branched "
       "train form", "RepVGG (Ding et al., CVPR 2021); MobileOne (Vasu et al., CVPR 2023); train/deploy params and "
       "MACs from mmpretrain and timm")
def reparam(settings: Settings) -> Design:
    shape = _image(settings, 32)
    arms, expectations, paper = [], [], {"params M (train / deploy)": {}, "GMACs at 224": {}}
    for name, (params, macs) in REPARAM_PAPER.items():
        for form, deploy in (("train", False), ("deploy", True)):
            label = f"{name} {form}"
            arms.append(Arm(label, lambda name=name, deploy=deploy: zoo_create(name, deploy=deploy), shape))
            paper["params M (train / deploy)"][label], paper["GMACs at 224"][label] = params[deploy], macs[deploy]
        expectations.append(Expectation(f"{name} train", f"{name} deploy", None, slower=True))
    notes = [f"zoo models at {RESOLUTION[settings.device]}; mobileone_s0 trains with k=4 over-parameterized branches",
             "the reference has no train-vs-deploy timing: each comparison states only the claimed direction "
             "(the deploy form faster)"]

    def summary(timed: list[Arm]) -> list[str]:
        return [f"{a.name}: {a.params:,} params, peak activation memory {a.peak_activation_bytes / 1e6:.2f} MB "
                "(the analyzer's, as the runner costed the arm: ops run eagerly in order)" for a in timed]
    return Design(arms, expectations, paper, notes, summary)


# --- int8 ---------------------------------------------------------------------------------

INT8_SHAPE, SMALL_SHAPE = (1, 3, 112, 112), (1, 3, 32, 32)
# the small RepVGG trained here on generated textures (as benchmarks/deploy_gains.py), fixed steps
SMALL_STEPS, SMALL_BATCH, SMALL_NOISE, SMALL_CLASSES = 60, 32, 3.0, 10


class OnnxRuntimeModule(nn.Module):
    """An ONNX Runtime session as a module the runner's torch backend can time; the analyzer
    (which runs modules on meta tensors) sees ``reference``, the FP32 net it was exported from."""

    def __init__(self, reference: nn.Module, onnx: bytes, threads: int):
        super().__init__()
        self.reference = reference
        self.session = onnxruntime_session(onnx, threads, quiet=True)
        self.input = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_meta:
            return self.reference(x)
        return torch.from_numpy(self.session.run(None, {self.input: x.numpy()})[0])


def export(model: nn.Module, shape: tuple[int, ...]) -> bytes:
    """``model`` as ONNX (float32, eval mode, the batch dim dynamic)."""
    with tempfile.TemporaryDirectory(prefix="deploylens-study-") as work:
        path = os.path.join(work, "model.onnx")
        export_for_runtime(model, [torch.randn(shape)], path)
        return Path(path).read_bytes()


def quantize_int8(fp32: bytes, calibration: np.ndarray, per_channel: bool = True) -> bytes:
    """Static INT8 PTQ of an FP32 ONNX model as `deploylens deploy --int8` does it
    (:func:`deploylens.deploy.quantize`: QDQ, int8 weights, uint8 activations, MinMax)."""
    with tempfile.TemporaryDirectory(prefix="deploylens-study-") as work:
        source, target = os.path.join(work, "fp32.onnx"), os.path.join(work, "int8.onnx")
        Path(source).write_bytes(fp32)
        quantize(source, target, calibration, per_channel=per_channel, samples=len(calibration))
        return Path(target).read_bytes()


def run_onnx(onnx: bytes, x: np.ndarray) -> np.ndarray:
    session = onnxruntime_session(onnx, quiet=True)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@dataclass
class QuantizationRisk:
    model: nn.Module  # the deploy form
    fp32: bytes  # its ONNX
    int8: bytes  # its INT8 (per-channel)
    images: np.ndarray  # held-out generated images
    labels: np.ndarray
    fp32_accuracy: float
    rows: dict  # subject -> {"agreement", "sqnr_db", "accuracy"}


def textures(n: int, seed: int, templates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated images: each a class's random template plus Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(templates), (n,), generator=generator)
    return templates[labels] + SMALL_NOISE * torch.randn(n, *templates.shape[1:], generator=generator), labels


@functools.lru_cache(maxsize=2)
def quantization_risk(steps: int = SMALL_STEPS, seed: int = 0) -> QuantizationRisk:
    """A small RepVGG trained ``steps`` steps on generated textures (one thread: two on a shared
    2-core VM can be ten times slower), quantized per-tensor and per-channel in its deploy form
    and per-tensor in its train form (branches quantized apart): top-1 agreement with FP32,
    output SQNR and accuracy on held-out generated images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        templates = torch.randn(SMALL_CLASSES, *SMALL_SHAPE[1:])
        model = RepVGG((1, 2, 2, 1), (0.5, 0.5, 0.5, 0.5), num_classes=SMALL_CLASSES)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for step in range(steps):
            images, labels = textures(SMALL_BATCH, seed * 1_000_003 + step, templates)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        images, labels = (t.numpy() for t in textures(640, 10**9 + seed, templates))
        calibration, images, labels = images[:128], images[128:], labels[128:]
        train_onnx = export(model, SMALL_SHAPE)
        deploy = reparameterize(copy.deepcopy(model))
        fp32 = export(deploy, SMALL_SHAPE)
    finally:
        torch.set_num_threads(threads)
    rows, int8 = {}, {}
    for subject, (source, per_channel) in {"deploy form, per-tensor": (fp32, False),
                                           "deploy form, per-channel": (fp32, True),
                                           "train form, per-tensor": (train_onnx, False)}.items():
        quantized = quantize_int8(source, calibration, per_channel)
        reference, out = run_onnx(source, images), run_onnx(quantized, images)
        rows[subject] = {"agreement": float(np.mean(reference.argmax(1) == out.argmax(1))),
                         "sqnr_db": sqnr_db(reference, out), "accuracy": float(np.mean(out.argmax(1) == labels))}
        int8[subject] = quantized
    accuracy = float(np.mean(run_onnx(fp32, images).argmax(1) == labels))
    return QuantizationRisk(deploy, fp32, int8["deploy form, per-channel"], images, labels, accuracy, rows)


@study("int8", "INT8 post-training quantization speeds a re-parameterized net up, at a risk to its accuracy",
       "RepOpt (Ding et al., ICLR 2023); QARepVGG (Chu et al., AAAI 2024); RepVGG (Ding et al., CVPR 2021) Table 4",
       devices=("cpu",))
def int8(settings: Settings) -> Design:
    if settings.backend != "torch" or settings.dtype != "fp32":
        raise UserError("study int8 times ONNX Runtime sessions it builds itself (FP32 and INT8 ONNX files), hosted "
                        "by the default torch backend in fp32: run it without --backend and --dtype")
    cache: dict[str, tuple] = {}

    def zoo_onnx(index: int) -> nn.Module:
        if not cache:
            model = zoo_create("repvgg_a0", deploy=True)
            fp32 = export(model, INT8_SHAPE)
            calibration = np.random.default_rng(0).standard_normal((8, *INT8_SHAPE[1:])).astype(np.float32)
            cache["zoo"] = (model, fp32, quantize_int8(fp32, calibration))
        model, *onnx = cache["zoo"]
        return OnnxRuntimeModule(model, onnx[index], settings.threads)

    def small_onnx(quantized: bool) -> nn.Module:
        risk = quantization_risk()
        return OnnxRuntimeModule(risk.model, risk.int8 if quantized else risk.fp32, settings.threads)
    forms = ("FP32", "INT8")
    arms = [Arm(f"repvgg_a0 {f}", functools.partial(zoo_onnx, i), INT8_SHAPE) for i, f in enumerate(forms)] + \
        [Arm(f"small RepVGG {f}", functools.partial(small_onnx, i == 1), SMALL_SHAPE) for i, f in enumerate(forms)]
    expectations = [Expectation(f"{n} FP32", f"{n} INT8", None, slower=True) for n in ("repvgg_a0", "small RepVGG")]
    paper = {"ImageNet top-1 % (FP32: RepVGG Table 4, V; INT8 PTQ: QARepVGG Fig. 1, V2)":
             {"repvgg_a0 FP32": 72.41, "repvgg_a0 INT8": 52.2}}
    notes = [f"every arm is an ONNX Runtime session the study builds (CPU provider, {settings.threads} threads), "
             "whatever --backend: INT8 is static PTQ, QDQ, int8 per-channel weights, uint8 activations, MinMax "
             "calibration (as deploylens.deploy.quantize)",
             "repvgg_a0: deploy form, 112x112, calibrated on 8 generated samples: its INT8 speed is measured, its "
             "accuracy would mean nothing (random weights); the INT8 arms' MFLOPs and MB are the FP32 net's",
             "the reference has no INT8 timing: each speed comparison states only the claimed direction (INT8 faster)",
             "INT8 PTQ on ImageNet (reference section 3): RepVGG-A0 72.4 -> 52.2 and QARepVGG-A0 72.2 -> 70.4 "
             "(QARepVGG Fig. 1, V2); RepVGG-B1 -> about 54.55 and RepOpt-VGG-B1 78.47 -> 75.89 (RepOpt, V2); "
             "QARepVGG's abstract: 'more than 20% top-1 accuracy drop' for RepVGG (V)"]

    def summary(timed: list[Arm]) -> list[str]:
        risk = quantization_risk()
        rows = "; ".join(f"{subject}: top-1 agreement {row['agreement'] * 100:.1f}%, output SQNR "
                         f"{row['sqnr_db']:.1f} dB, accuracy {row['accuracy'] * 100:.1f}%"
                         for subject, row in risk.rows.items())
        return [f"accuracy risk on a small RepVGG (stages 1-2-2-1, width 0.5, 32x32) trained here {SMALL_STEPS} "
                f"steps on generated textures ({SMALL_CLASSES} classes, seed 0), {len(risk.labels)} held-out "
                f"images: FP32 accuracy {risk.fp32_accuracy * 100:.1f}%; INT8 {rows}"]
    return Design(arms, expectations, paper, notes, summary)


# --- latency-throughput -------------------------------------------------------------------

class OneByOne(nn.Module):
    """``model`` on each sample of the batch in turn: the batch's work done at batch 1."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i:i + 1]) for i in range(x.shape[0])])


def _batch_arms(batches: tuple[int, ...], resolution: int,
                build: Callable[[str, int, bool], Callable[[], nn.Module]]) -> list[Arm]:
    """One arm per batch, and the largest batch's samples run one by one."""
    n, image = batches[-1], (3, resolution, resolution)
    return [Arm(f"batch {b}", build(f"batch {b}", b, False), (b, *image)) for b in batches] + \
        [Arm(f"{n} x batch 1", build(f"{n} x batch 1", n, True), (n, *image))]


def _batch_expectations(batches: tuple[int, ...]) -> list[Expectation]:
    n = batches[-1]
    return [Expectation(f"batch {n}", f"batch {batches[0]}", None, slower=True),  # more time per batch
            Expectation(f"{n} x batch 1", f"batch {n}", None, slower=True)]  # less time per sample


THROUGHPUT_MODEL = "mobilenet_v2_100"
SATURATED = 1.10  # throughput gained by the next batch below this factor: saturated


@study("latency-throughput", "As the batch grows, latency (time per batch) grows while throughput (samples/s) "
       "grows too, until the device saturates", "the field guide's measurement rules (throughput = batch / "
       "latency); no paper's batch sweep was read")
def latency_throughput(settings: Settings) -> Design:
    gpu = settings.device == "cuda"
    batches, resolution = ((1, 4, 16, 64), 224) if gpu else ((1, 2, 4, 8), 112)

    def build(label: str, batch: int, one_by_one: bool) -> Callable[[], nn.Module]:
        return lambda: OneByOne(zoo_create(THROUGHPUT_MODEL)) if one_by_one else zoo_create(THROUGHPUT_MODEL)
    arms = _batch_arms(batches, resolution, build)
    n = batches[-1]
    notes = [f"{THROUGHPUT_MODEL} at {resolution}x{resolution}; '{n} x batch 1' runs the {n} samples of a batch one "
             f"at a time: batch {n} taking less time than it is batch {n} taking less time per sample than batch 1",
             "no paper timing: each comparison states only the claimed direction"]

    def summary(timed: list[Arm]) -> list[str]:
        sweep = [a for a in timed if a.name.startswith("batch ")]
        rates = [(a.input_shape[0], a.input_shape[0] / _seconds(a)) for a in sweep]
        line = ", ".join(f"batch {b}: {a.median_ms:.2f} ms, {r:.0f} samples/s" for (b, r), a in zip(rates, sweep))
        flat = next((b for (b, r), (_, r_next) in zip(rates, rates[1:]) if r_next < SATURATED * r), None)
        growth = f"throughput gains under {SATURATED - 1:.0%} past batch {flat}" if flat else \
            "throughput still growing at the largest batch"
        return [f"latency and throughput: {line}; {growth}"]
    return Design(arms, _batch_expectations(batches), {}, notes, summary)


# --- gpu-util -----------------------------------------------------------------------------

GPU_UTIL_MODEL, GPU_UTIL_BATCHES = "resnet18", (1, 8, 64)


def nvml_window(model: nn.Module, shape: tuple[int, ...], dtype: str, seconds: float) -> dict | None:
    """NVML's GPU-Util while ``model`` runs alone on the GPU for ``seconds`` (NvmlSampler around
    the run, as bench's harness samples a timed round); None without NVML."""
    nvml = load_nvml()
    if nvml is None:
        return None
    precision = torch_dtype(dtype)
    model = copy.deepcopy(model).to("cuda", precision).eval()
    x = torch.randn(shape, device="cuda", dtype=precision)
    with torch.inference_mode():
        model(x)
        torch.cuda.synchronize()
        with NvmlSampler(nvml) as sampler:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                model(x)
                torch.cuda.synchronize()
    return sampler.report()


def utilization_notes(arms: list[Arm], util: dict[str, dict | None], peak_flops: float | None,
                      peak_bandwidth: float | None) -> list[str]:
    """Per arm: GPU-Util beside achieved FLOP/s and bytes/s as fractions of the catalog's peaks."""
    lines = []
    for arm in arms:
        s = _seconds(arm)
        c = utilization_context(util.get(arm.name), arm.flops / s / 1e12, arm.bytes / s / 1e9,
                                (peak_flops or 0) / 1e12, (peak_bandwidth or 0) / 1e9)
        gpu_util = "not sampled" if "gpu_util_mean" not in c else \
            f"{c['gpu_util_mean']:.0f}% (max {c['gpu_util_max']:.0f}%)"
        share = {key: "" if c[f"fraction_of_peak_{key}"] is None else f" = {c[f'fraction_of_peak_{key}']:.1%} of peak"
                 for key in ("flops", "bandwidth")}
        lines.append(f"{arm.name}: GPU-Util {gpu_util}; achieved {c['achieved_tflops']:.2f} TFLOP/s{share['flops']}, "
                     f"{c['achieved_gbs']:.0f} GB/s{share['bandwidth']}")
    return lines


@study("gpu-util", "NVML's GPU-Util is the share of time some kernel was running, not the share of compute units "
       "busy: a batch-1 run can read it high while a bigger batch does the same work much faster",
       "NVML nvmlDeviceGetUtilizationRates; the field guide's measurement rules", devices=("cuda",))
def gpu_util(settings: Settings) -> Design:
    util: dict[str, dict | None] = {}
    window = 0.5 if settings.quick else 1.0

    def build(label: str, batch: int, one_by_one: bool) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            model = OneByOne(zoo_create(GPU_UTIL_MODEL)) if one_by_one else zoo_create(GPU_UTIL_MODEL)
            if settings.device == "cuda" and torch.cuda.is_available():  # the runner's preparation only
                util[label] = nvml_window(model, (batch, 3, 224, 224), settings.dtype, window)
            return model
        return make
    arms = _batch_arms(GPU_UTIL_BATCHES, 224, build)
    n = GPU_UTIL_BATCHES[-1]
    notes = [f"{GPU_UTIL_MODEL} at 224x224; GPU-Util sampled by NVML every 50 ms while each arm ran alone for "
             f"{window:g} s at preparation; achieved FLOP/s and bytes/s from the analyzer's FLOPs and fused bytes over "
             "the interleaved median, as fractions of the catalog's peaks of this GPU",
             f"'{n} x batch 1' slower than 'batch {n}' with batch 1's GPU-Util near 100% is the claim borne out: "
             "the GPU was 'busy' yet had room for the same work in less time; no paper numbers"]

    def summary(timed: list[Arm]) -> list[str]:
        spec = this_gpu(load_catalog())
        peak = spec.peak_flops(settings.dtype) if spec else None
        bandwidth = spec.bandwidth.value if spec and spec.bandwidth else None
        missing = [] if spec else ["this GPU is not in the catalog: no fractions of peak"]
        return utilization_notes(timed, util, peak, bandwidth) + missing
    return Design(arms, _batch_expectations(GPU_UTIL_BATCHES), {}, notes, summary)
