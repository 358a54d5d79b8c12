"""Studies of convolution kinds: depthwise against dense 3x3 per FLOP (G-GhostNet, MobileDets),
kernel sizes' computational density (RepVGG), channel counts aligned to the hardware's
multiple (NVIDIA's Tensor Core guide; the SIMD width on CPUs), and a regular conv against a
separable pair at low channel counts (MobileDets).

The verdicts compare times, so every comparison pairs arms of *equal FLOPs*: the ratio of
their times is then the ratio of their times per FLOP (the inverse ratio of their achieved
FLOP/s). Each arm is a stack of identical stride-1 convs (c -> c, no bias) so that one run is
long enough to time; the analyzer's FLOPs and bytes of each arm are in the result (bytes /
median time is its achieved bandwidth). The papers' numbers are the ones the cited papers
print, marked where only a second-hand transcription was read (V2) or where the value
could not be verified (U); where they have none, an expectation says only the claimed
direction."""

from __future__ import annotations

import statistics

import torch.nn as nn

from deploylens.dtypes import lookup
from deploylens.errors import UserError
from deploylens.hardware import calibration_profile as stored
from deploylens.hardware.kernel_classes import GPU_CHANNEL_MULTIPLE, channel_alignment
from deploylens.hardware.local import cpu_info, this_cpu, this_gpu, vector_lanes
from deploylens.hardware.spec import load_catalog
from deploylens.studies.core import Arm, Expectation, conv, conv_stack
from deploylens.studies.runner import Design, Settings, study



def conv_macs(c_in: int, c_out: int, kernel: int, hw: int, groups: int = 1) -> int:
    """Multiply-accumulates of one stride-1 ``kernel`` conv on an ``hw`` x ``hw`` map."""
    return kernel * kernel * (c_in // groups) * c_out * hw * hw


def conv_bytes(c_in: int, c_out: int, kernel: int, hw: int, groups: int = 1, element: int = 4) -> int:
    """What one such conv moves: its input map and weights read, its output map written."""
    return element * (c_in * hw * hw + kernel * kernel * (c_in // groups) * c_out + c_out * hw * hw)


def conv_intensity(c_in: int, c_out: int, kernel: int, hw: int, groups: int = 1, element: int = 4) -> float:
    """FLOPs per byte of one such conv (2 FLOPs a MAC)."""
    return 2 * conv_macs(c_in, c_out, kernel, hw, groups) / conv_bytes(c_in, c_out, kernel, hw, groups, element)


def copy_bandwidth(settings: Settings) -> tuple[float | None, str]:
    """This CPU's copy bandwidth (bytes/s) from its stored calibration for the settings'
    backend and threads (the largest copy timed: the one least helped by the caches), and
    where it came from; None and why not when there is none."""
    backend = settings.backend if settings.backend in stored.BACKENDS else "torch"
    path = stored.profile_path(backend, settings.threads, "cpu", "fp32")
    if not path.exists():
        return None, (f"no stored calibration of this CPU for {backend} with {settings.threads} threads gives its copy "
                      "bandwidth (deploylens hw calibrate)")
    try:
        copies = [p for p in stored.load(path).points.get("copy", []) if p.seconds > 0 and p.bytes > 0]
    except UserError as error:
        return None, f"the stored calibration could not be read ({error})"
    if not copies:
        return None, "the stored calibration has no copy timings"
    largest = max(copies, key=lambda p: p.bytes)
    rate = largest.bytes / statistics.median(largest.seconds_each or [largest.seconds])
    return rate, f"the largest copy of the stored {backend} calibration ({largest.bytes / 1e6:.1f} MB)"


def ridge_point(settings: Settings) -> tuple[float | None, str]:
    """This device's ridge point (FLOPs per byte: peak / bandwidth) and how it was found;
    None and why not when either is unknown. On a CPU the peak is the ISA's theoretical one
    and the bandwidth a stored calibration's copy rate; on a GPU both are its catalog entry's."""
    if settings.device == "cuda":
        spec = this_gpu(load_catalog())
        if spec is None:
            return None, "this GPU has no catalog entry (deploylens hw list)"
        ridge = spec.ridge_point(settings.dtype)
        if ridge is None:
            return None, f"the catalog entry {spec.name} lacks a {settings.dtype} peak or a bandwidth"
        return ridge, f"catalog {spec.name}: {settings.dtype} peak / memory bandwidth"
    peak = this_cpu(settings.threads).peak_flops("fp32")
    if not peak:
        return None, "this CPU's peak is unknown (no clock or ISA in /proc/cpuinfo)"
    bandwidth, where = copy_bandwidth(settings)
    if bandwidth is None:
        return None, f"peak {peak / 1e9:.0f} GFLOP/s ({settings.threads} cores, ISA), but {where}"
    return peak / bandwidth, (f"peak {peak / 1e9:.0f} GFLOP/s ({settings.threads} cores, ISA) / {bandwidth / 1e9:.1f} "
                              f"GB/s, {where}")


def roofline_note(settings: Settings, layers: dict[str, float]) -> str:
    """Where each arm's layers (name -> FLOPs per byte) sit against this device's ridge point."""
    ridge, how = ridge_point(settings)
    listed = ", ".join(f"{name} {intensity:.1f}" for name, intensity in layers.items())
    head = f"arithmetic intensity per layer (FLOPs / bytes it moves, {settings.dtype}): {listed}"
    if ridge is None:
        return f"{head}; this device's ridge point is unknown: {how}"
    below = [name for name, intensity in layers.items() if intensity < ridge]
    above = [name for name in layers if name not in below]
    return (f"{head}; this device's ridge point is {ridge:.1f} FLOPs/byte ({how}): memory-bound below it: "
            f"{', '.join(below) or 'none'}; compute-bound above it: {', '.join(above) or 'none'}")


# ---------------------------------------------------------------------------------------------
# depthwise

DW_LAYERS = 10
# every layer below does 9 x 200704 MACs: depthwise c x h^2 = dense c^2 x h^2 = 200704
DW_DEPTHWISE = ((16, 112), (64, 56), (256, 28), (1024, 14))  # MobileNet-like: 4x the channels at half the side
DW_DENSE = ((16, 28), (32, 14), (64, 7))
# (depthwise, dense) compared: same channels where a dense conv of equal FLOPs has them, else same map
DW_PAIRS = (((16, 112), (16, 28)), ((64, 56), (64, 7)), ((256, 28), (16, 28)), ((1024, 14), (32, 14)))
DW_BATCH = {"cpu": 1, "cuda": 128}  # on a GPU a batch-1 layer of 3.6 MFLOPs is all launch


def _dw_name(c: int, hw: int) -> str:
    return f"depthwise 3x3 c={c} {hw}x{hw}"


def _dense_name(c: int, hw: int) -> str:
    return f"dense 3x3 c={c} {hw}x{hw}"


@study("depthwise", "Depthwise conv is memory-bound and slow per FLOP on GPUs/NPUs (fine on mobile CPUs): at equal "
       "FLOPs a depthwise 3x3 takes longer than a dense 3x3",
       "G-GhostNet (Han et al., IJCV 2022) abstract: depth-wise convolution is GPU-inefficient; MobileDets (Xiong et "
       "al., CVPR 2021): depthwise-based inverted bottlenecks vs regular convs on accelerators")
def depthwise(settings: Settings) -> Design:
    batch = DW_BATCH[settings.device]
    arms = [Arm(_dw_name(c, hw), lambda c=c: conv_stack(c, 3, DW_LAYERS, groups=c), (batch, c, hw, hw))
            for c, hw in DW_DEPTHWISE]
    arms += [Arm(_dense_name(c, hw), lambda c=c: conv_stack(c, 3, DW_LAYERS), (batch, c, hw, hw)) for c, hw in DW_DENSE]
    expectations = [Expectation(_dw_name(*dw), _dense_name(*dense), None, slower=True) for dw, dense in DW_PAIRS]
    element = lookup(settings.dtype).bytes
    layers = {_dw_name(c, hw): conv_intensity(c, c, 3, hw, c, element) for c, hw in DW_DEPTHWISE}
    layers |= {_dense_name(c, hw): conv_intensity(c, c, 3, hw, 1, element) for c, hw in DW_DENSE}
    cpu = settings.device == "cpu"
    notes = [
        f"{DW_LAYERS} stride-1 3x3 convs c->c per arm, batch {batch}; every layer does 9 x 200704 MACs (depthwise: "
        "9 c h^2; dense: 9 c^2 h^2), so each time ratio is a ratio of times per FLOP; pairs share the channels, or "
        "the map size where a dense conv of equal FLOPs cannot have them",
        roofline_note(settings, layers),
        "time per byte: each arm's bytes (the analyzer's, in the result) over its median time; a depthwise layer "
        "moves ~8 bytes per 18 FLOPs at any width, a dense one c times the FLOPs for the same maps",
        "G-GhostNet and MobileDets give no per-layer timing (reference §2.3, §2.6: U): the expectation is the "
        "claimed direction only, no paper ratio",
    ]
    if cpu:
        notes.append("on a CPU the study expects the same direction: the claim's 'fine on mobile CPUs' is about wall "
                     "time (depthwise saves c-fold FLOPs, and a mobile CPU's low peak puts its ridge point near a "
                     "depthwise layer's ~2 FLOPs/byte), not per FLOP. Below the ridge depthwise is still slower per "
                     "FLOP, only by less: a small ratio here is what 'fine' means, a large one what the GPU half "
                     "describes; 'contradicted' would say this CPU runs depthwise faster per FLOP than dense")
    else:
        notes.append(f"batch {batch}: a layer at batch 1 is a few MFLOPs, shorter than a kernel launch, and would "
                     "time the launches rather than the memory traffic the claim is about")
    return Design(arms, expectations, {}, notes)


# ---------------------------------------------------------------------------------------------
# kernel-density

KD_KERNELS = (1, 3, 5, 7)
KD_SIDE = 105  # k x h = 105: every kernel size does k^2 c^2 h^2 = 105^2 c^2 MACs
KD_LAYERS = 4
KD_CHANNELS = {"cpu": 64, "cuda": 256}
KD_BATCH = {"cpu": 1, "cuda": 32}
# RepVGG §2.4 (V2, a public transcription): "The theoretical computational density of 3x3 conv is
# around 4x as the others": each other kernel takes ~4x as long per FLOP
KD_DENSITY_RATIO = 4.0
# RepVGG Table 1 (1080Ti, cuDNN 7.5.0) in TFLOPS: U in the reference (a recollection; 5x5's is
# internally inconsistent there, so absent): shown beside the measured ones, never judged on
KD_TABLE_1_TFLOPS_U = {1: 9.96, 3: 38.10, 7: 9.38}


def _kd_name(kernel: int, channels: int, hw: int) -> str:
    return f"{kernel}x{kernel} c={channels} {hw}x{hw}"


@study("kernel-density", "Dense 3x3 is the densest conv on GPUs: at equal FLOPs a 1x1, 5x5 or 7x7 conv takes ~4x as "
       "long as a 3x3 (RepVGG: 3x3's computational density is 'around 4x as the others')",
       "RepVGG (Ding et al., CVPR 2021), §2.4 and Table 1 (cuDNN 7.5.0, GTX 1080 Ti)")
def kernel_density(settings: Settings) -> Design:
    c, batch = KD_CHANNELS[settings.device], KD_BATCH[settings.device]
    names = {k: _kd_name(k, c, KD_SIDE // k) for k in KD_KERNELS}
    arms = [Arm(names[k], lambda k=k: conv_stack(c, k, KD_LAYERS), (batch, c, KD_SIDE // k, KD_SIDE // k))
            for k in KD_KERNELS]
    expectations = [Expectation(names[k], names[3], KD_DENSITY_RATIO) for k in KD_KERNELS if k != 3]
    paper = {"3x3 density / this one's (§2.4 text, V2)": {names[k]: 1.0 if k == 3 else KD_DENSITY_RATIO
                                                          for k in KD_KERNELS},
             "TFLOPS 1080Ti (Table 1, U: not a target)": {names[k]: v for k, v in KD_TABLE_1_TFLOPS_U.items()}}
    element = lookup(settings.dtype).bytes
    notes = [
        f"{KD_LAYERS} stride-1 convs {c}->{c} per arm, batch {batch}, on maps of side {KD_SIDE} / k (105, 35, 21, 15): "
        "every arm has the same FLOPs, so a time ratio is the inverse ratio of achieved FLOP/s. RepVGG's Table 1 "
        "kept channels and map (reference: batch 32, 2048 channels, 56x56, U) and let FLOPs vary; here the channels "
        "stay and the map shrinks as the kernel grows",
        "the paper ratio is RepVGG's '3x3 around 4x as the others' (§2.4, V2) for each of 1x1, 5x5, 7x7; its Table 1 "
        "cells are unverified (U) in the reference and only shown (5x5 left out: its recollected time and TFLOPS "
        "disagree)",
        "per layer FLOPs / bytes: " + ", ".join(f"{names[k]} {conv_intensity(c, c, k, KD_SIDE // k, 1, element):.0f}"
                                                for k in KD_KERNELS),
        "the claim's mechanism is cuDNN's Winograd F(2x2,3x3) (3x3 stride 1 at 4/9 of the multiplications, §2.4, "
        "V2); a runtime without it for 3x3 need not show the 3x3 advantage over 5x5 and 7x7: this measures whether "
        "the GPU claim transfers to this device",
    ]
    return Design(arms, expectations, paper, notes)


# ---------------------------------------------------------------------------------------------
# channel-align

# (aligned channels, its side, misaligned channels, its side, layers): c x h equal in a pair, so
# equal FLOPs (9 c^2 h^2 MACs a layer); 56 is a multiple of 8 but not of 16
CA_PAIRS = ((64, 31, 62, 32, 4), (64, 33, 66, 32, 4), (64, 56, 56, 64, 2), (128, 63, 126, 64, 1))
CA_BATCH = {"cpu": 1, "cuda": 32}


def channel_multiple(settings: Settings) -> tuple[int, str]:
    """The channel multiple this device's fast path wants, and why."""
    if settings.device == "cuda":
        return GPU_CHANNEL_MULTIPLE, "tensor cores (NVIDIA's Deep Learning Performance Guide)"
    lanes = vector_lanes(cpu_info()["isa"])
    return lanes, "this CPU's SIMD width in fp32 lanes (oneDNN / ONNX Runtime block channels by it)"


def _ca_name(c: int, hw: int) -> str:
    return f"c={c} {hw}x{hw}"


@study("channel-align", "Channel counts in multiples of 16 (8 on tensor cores) run faster per FLOP than nearby "
       "misaligned counts",
       "NVIDIA Deep Learning Performance Guide, Tensor Core requirements (FP16: multiples of 8; INT8: 16); on CPUs "
       "the SIMD width (oneDNN nChw16c blocking, ONNX Runtime's NCHWc transformer)")
def channel_align(settings: Settings) -> Design:
    multiple, why = channel_multiple(settings)
    batch = CA_BATCH[settings.device]
    arms, expectations, skipped = [], [], []
    for aligned, side, misaligned, misaligned_side, layers in CA_PAIRS:
        # the levels of kernel_classes.channel_alignment: whole vectors, multiples of 4, other
        if channel_alignment(misaligned, misaligned, 1, multiple) >= channel_alignment(aligned, aligned, 1, multiple):
            skipped.append(f"{misaligned} vs {aligned}")
            continue
        for c, hw in ((aligned, side), (misaligned, misaligned_side)):
            arms.append(Arm(_ca_name(c, hw), lambda c=c, n=layers: conv_stack(c, 3, n), (batch, c, hw, hw)))
        expectations.append(Expectation(_ca_name(misaligned, misaligned_side), _ca_name(aligned, side), None,
                                        slower=True))
    notes = [
        f"stride-1 3x3 convs c->c, batch {batch}; in each pair channels x side is equal (64x31 = 62x32, 64x33 = "
        "66x32, 64x56 = 56x64, 128x63 = 126x64), so FLOPs are equal and a time ratio is a ratio of times per FLOP",
        f"this device's channel multiple: {multiple} ({why}); a pair is judged where the misaligned count fills "
        "fewer whole vectors than the aligned one (deploylens.hardware.kernel_classes.channel_alignment)"
        + (f"; not judged here, so not timed: {', '.join(skipped)}" if skipped else ""),
        "the sources give the multiples, not a slowdown: no paper ratio, the expectation is the direction only",
    ]
    if settings.device == "cuda" and settings.dtype == "fp32":
        notes.append("fp32 on a GPU: cuDNN runs fp32 convs on TF32 tensor cores by default, whose channel "
                     "requirement the reference does not state; --dtype fp16 tests the guide's multiple of 8")
    return Design(arms, expectations, {}, notes)


# ---------------------------------------------------------------------------------------------
# early-sep

ES_SETTINGS = ((16, 112), (32, 112), (32, 56), (64, 56))  # channels and map side of early stages
ES_LAYERS = 10
ES_BATCH = {"cpu": 1, "cuda": 32}


def separable_stack(channels: int, layers: int) -> nn.Module:
    """``layers`` depthwise-separable pairs: depthwise 3x3 then pointwise 1x1, c -> c."""
    return nn.Sequential(*(nn.Sequential(conv(channels, channels, 3, groups=channels), conv(channels, channels, 1))
                           for _ in range(layers)))


def _es_names(c: int, hw: int) -> tuple[str, str]:
    return f"regular 3x3 c={c} {hw}x{hw}", f"dw3x3+pw1x1 c={c} {hw}x{hw}"


@study("early-sep", "At low channel counts and early resolutions a regular 3x3 conv is not slower than a "
       "depthwise-separable pair on accelerators, despite its several times more FLOPs (MobileDets)",
       "MobileDets (Xiong et al., CVPR 2021) abstract; Google's EdgeTPU vision README (tensorflow/models, fused IBN: "
       "a full convolution replacing pointwise expansion and depthwise can be faster)")
def early_sep(settings: Settings) -> Design:
    batch = ES_BATCH[settings.device]
    accelerator = settings.device != "cpu"
    arms, expectations = [], []
    for c, hw in ES_SETTINGS:
        regular, separable = _es_names(c, hw)
        arms.append(Arm(regular, lambda c=c: conv_stack(c, 3, ES_LAYERS), (batch, c, hw, hw)))
        arms.append(Arm(separable, lambda c=c: separable_stack(c, ES_LAYERS), (batch, c, hw, hw)))
        # on an accelerator: the regular conv is the faster; on a CPU: the separable pair
        expectations.append(Expectation(regular, separable, None, slower=not accelerator))
    ratios = ", ".join(f"c={c} {9 * c / (9 + c):.2f}x" for c in sorted({c for c, _ in ES_SETTINGS}))
    notes = [
        f"{ES_LAYERS} layers per arm, batch {batch}: a regular 3x3 conv c->c against a depthwise 3x3 then a "
        f"pointwise 1x1 c->c, same channels in and out; FLOPs regular / separable = 9c / (9 + c): {ratios}",
        "the paper's per-layer latencies were not retrieved (reference §2.3: U); its abstract's gains (+3.7 mAP on "
        "EdgeTPU, +3.4 on DSP, +2.7 on Jetson GPU at equal latency) are whole detectors: no paper ratio, the "
        "expectation is the direction only",
    ]
    if accelerator:
        notes.append("on a GPU the study expects the claim: the regular conv faster than the separable pair. A "
                     "regular conv merely as fast ('not worse') reads inconclusive; batch "
                     f"{batch}, since at batch 1 these layers are shorter than their launches")
    else:
        notes.append("the claim is made for accelerators (EdgeTPU, DSP, GPU), which is what sets it apart: on a CPU it "
                     "predicts the usual, that the separable pair's several times fewer FLOPs make it the faster, "
                     "and the study expects that here. 'Contradicted' on a CPU says this runtime treats depthwise "
                     "the way an accelerator does")
    return Design(arms, expectations, {}, notes)
