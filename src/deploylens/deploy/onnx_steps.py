"""ONNX deploy steps: export (+ simplification), INT8 static quantization, and the
quantization sensitivity report. Every step checks its numbers and writes its output
only when they pass (or when forced): a failed step leaves no file behind."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from deploylens.capture.loader import DEFAULT_IMAGE_SHAPE
from deploylens.errors import UserError, first_line
from deploylens.numerics import example_inputs, output_error
from deploylens.onnx_runtime import EXPORT_OPSET, export_for_runtime
from deploylens.onnx_runtime import session as onnxruntime_session
from deploylens.output import check_destination, move_into_place

EXPORT_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    path: str
    opset: int
    simplified_by: str | None
    max_abs_error: float
    max_rel_error: float
    nodes: int


def onnx_outputs(path: str | os.PathLike, x: torch.Tensor) -> list[np.ndarray]:
    """The outputs of the ONNX model at ``path`` on its one input ``x`` (graph-cleanup
    warnings are not the user's concern: errors only are logged)."""
    session = onnxruntime_session(path, quiet=True)
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def _simplify(path: str) -> str | None:
    """Clean the graph with onnxslim when it is installed (pip install onnxslim)."""
    if importlib.util.find_spec("onnxslim") is None:
        return None
    import onnx
    import onnxslim

    slimmed = onnxslim.slim(onnx.load(path))
    onnx.save(slimmed, path)
    return "onnxslim"


def export_onnx(model: nn.Module, path: str | os.PathLike, input_shape: tuple[int, ...] = DEFAULT_IMAGE_SHAPE,
                opset: int = EXPORT_OPSET, dynamic_batch: bool = False, simplify: bool = True,
                force: bool = False) -> ExportReport:
    """Export ``model`` to ONNX, simplify it where a maintained tool is installed, run it
    in ONNX Runtime and compare with torch; the file is written only if they agree."""
    import onnx

    path = Path(path)
    check_destination(path, force=True)  # a folder that exists and can be written; never made here
    [x] = example_inputs([(tuple(input_shape), "float")])
    model = model.eval()
    with torch.inference_mode():
        reference = model(x)
    with tempfile.TemporaryDirectory(dir=path.parent) as workdir:
        staged = os.path.join(workdir, path.name)
        try:
            export_for_runtime(model, [x], staged, opset, names=["input"], dynamic_batch=dynamic_batch)
        except Exception as error:  # noqa: BLE001 - the exporter's error, in one line
            raise UserError(f"ONNX export failed: {first_line(error)}") from error
        simplified_by = _simplify(staged) if simplify else None
        error = output_error(onnx_outputs(staged, x), reference)
        if error.max_rel > EXPORT_TOLERANCE and not force:
            raise UserError(f"the ONNX export differs from torch by {error.max_rel:.2e} (relative, tolerance "
                            f"{EXPORT_TOLERANCE:.0e}): not written (use --force)")
        move_into_place([(staged, path)])
    nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    return ExportReport(str(path), opset, simplified_by, error.max_abs, error.max_rel, nodes)


# --- calibration data ----------------------------------------------------------------------


def calibration_source(source: Any) -> None:
    """Refuse at once, before any step runs, calibration data that cannot be read: a
    missing path, a file that is not ``.npy``, a folder without images."""
    if source is None or isinstance(source, np.ndarray):
        return
    path = Path(source)
    if path.is_dir():
        if not _image_files(path):
            raise UserError(f"no images in {path} (looked for {', '.join(IMAGE_SUFFIXES)} files, in sub-folders too)")
        if importlib.util.find_spec("PIL") is None:
            raise UserError("reading a folder of images needs Pillow (pip install pillow); or pass an .npy file")
    elif not path.exists():
        raise UserError(f"no such calibration data: {path}")
    elif path.suffix != ".npy":
        raise UserError(f"calibration data {path}: give an .npy file, a folder of images or nothing")


def calibration_data(source: Any, input_shape: tuple[int, ...], samples: int = 32) -> tuple[np.ndarray, list[str]]:
    """Calibration samples as an (N, *input_shape[1:]) float32 array.

    ``source``: an array, an ``.npy`` file, a folder of images (needs Pillow; up to
    ``samples`` of them, spread evenly over the sorted files, sub-folders included) or
    None (generated data: the report then warns that accuracy figures mean nothing).
    """
    warnings_out: list[str] = []
    expected = tuple(input_shape[1:])
    calibration_source(source)
    if source is None:
        warnings_out.append("no calibration data given: generated random data was used, so the accuracy "
                            "figures (agreement, SQNR) say nothing about real inputs")
        data = np.random.default_rng(0).standard_normal((samples, *expected)).astype(np.float32)
    elif isinstance(source, np.ndarray):
        data = source
    elif Path(source).is_dir():
        data = _images(Path(source), expected, samples)
    else:
        try:
            with open(source, "rb") as handle:
                if handle.read(6) != b"\x93NUMPY":
                    raise UserError(f"cannot read calibration data {source}: not an .npy file (numpy.save writes one)")
            data = np.load(source, allow_pickle=False)  # never unpickle a user file
        except (ValueError, OSError) as error:
            raise UserError(f"cannot read calibration data {source}: {first_line(error)}") from error
    data = np.asarray(data, dtype=np.float32)
    if data.size == 0 or len(data) == 0:
        raise UserError("the calibration set is empty")
    if tuple(data.shape[1:]) != expected:
        raise UserError(f"calibration samples have shape {list(data.shape[1:])}; the model takes {list(expected)}")
    if not np.isfinite(data).all():
        raise UserError("the calibration data hold NaN or infinite values")
    return data, warnings_out


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _images(folder: Path, expected: tuple[int, ...], samples: int) -> np.ndarray:
    """Up to ``samples`` images of ``folder``, evenly spread over its sorted files (an
    ImageNet-style folder of class folders gives every class its share), each resized
    on its shorter side and centre-cropped to the model's input, scaled to [0, 1] and
    normalised with ImageNet's mean and std (RGB), or to [0, 1] only (one channel)."""
    calibration_source(folder)
    from PIL import Image, UnidentifiedImageError

    if len(expected) != 3 or expected[0] not in (1, 3):
        raise UserError(f"a folder of images calibrates a model that takes images (1 or 3 channels, height, width), "
                        f"not input {list(expected)}: pass an .npy file")
    channels, height, width = expected
    files = _image_files(folder)
    if len(files) > samples:
        files = [files[i * len(files) // samples] for i in range(samples)]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet normalisation
    arrays = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert("RGB" if channels == 3 else "L")
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise UserError(f"cannot read image {file}: {first_line(error)}") from error
        scale = max(width / image.width, height / image.height)
        resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))))
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        array = np.asarray(resized.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0
        array = ((array - mean) / std).transpose(2, 0, 1) if channels == 3 else array[None]
        arrays.append(array)
    return np.stack(arrays).astype(np.float32)


# --- quantization ----------------------------------------------------------------------------


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array, one sample a batch."""

    def __init__(self, input_name: str, data: np.ndarray):
        self.items = iter([{input_name: data[i:i + 1]} for i in range(len(data))])

    def get_next(self):
        return next(self.items, None)


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")


def check_quantize_options(method: str, activations: str) -> None:
    """Refuse an unknown calibration method or activation type, before anything runs."""
    if method not in CALIBRATION_METHODS:
        raise UserError(f"calibration method {method!r}: one of {', '.join(CALIBRATION_METHODS)}")
    if activations not in ACTIVATION_TYPES:
        raise UserError(f"activation type {activations!r}: uint8 or int8")


def quantize(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, calib: Any = None, per_channel: bool = True,
             method: str = "minmax", samples: int = 32, activations: str = "uint8") -> list[str]:
    """INT8 post-training static quantization (QDQ; int8 weights; uint8 activations by
    default, ONNX Runtime's fast path on x86, or int8) with onnxruntime's tools; returns
    warnings. The output is written only on success."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    check_quantize_options(method, activations)
    check_destination(onnx_out, force=True)  # a folder that exists and can be written; never made here
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    activation_types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    session = onnxruntime_session(str(onnx_in), quiet=True)
    first = session.get_inputs()[0]
    shape = tuple(d if isinstance(d, int) else 1 for d in first.shape)
    data, notes = calibration_data(calib, shape, samples)
    out = Path(onnx_out)
    root_level = logging.getLogger().level
    with tempfile.TemporaryDirectory() as workdir:
        prepared = os.path.join(workdir, "prepared.onnx")
        staged = os.path.join(workdir, "int8.onnx")
        try:
            # no graph optimization here: tensor names stay those of the FP32 model (for sensitivity)
            quant_pre_process(str(onnx_in), prepared, skip_optimization=True, skip_symbolic_shape=True)
            logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns on the root logger
            quantize_static(prepared, staged, _Reader(first.name, data), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=activation_types[activations],
                            weight_type=QuantType.QInt8,
                            calibrate_method=methods[method])
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - the quantizer's error, in one line
            raise UserError(f"quantization failed: {first_line(error)}") from error
        finally:
            logging.getLogger().setLevel(root_level)
        onnxruntime_session(staged, quiet=True)  # must load before it is written
        move_into_place([(staged, out)])
    return notes


# --- sensitivity ---------------------------------------------------------------------------


@dataclass
class Sensitivity:
    layers: list[dict]  # {"tensor", "op", "sqnr_db"}, worst first
    top1_agreement: float | None  # None when the FP32 output does not depend on the input (see warnings)
    cosine_similarity: float
    output_sqnr_db: float
    samples: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "HardSwish", "Sigmoid"})


def _with_intermediate_outputs(path: str, names: list[str], workdir: str) -> str:
    import onnx

    model = onnx.load(path)
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n not in existing])
    probe = os.path.join(workdir, os.path.basename(path) + ".probe.onnx")
    onnx.save(model, probe)
    return probe


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    noise = float(np.sum((reference.astype(np.float64) - test) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal else -math.inf


def sensitivity(fp32_onnx: str | os.PathLike, int8_onnx: str | os.PathLike, data: Any = None,
                samples: int = 32) -> Sensitivity:
    """Per-layer SQNR (each conv / matmul output, FP32 vs INT8, ranked worst first) and
    model-level agreement: top-1 agreement and cosine similarity of the outputs."""
    import onnx

    fp32_onnx, int8_onnx = str(fp32_onnx), str(int8_onnx)
    session = onnxruntime_session(fp32_onnx, quiet=True)
    first = session.get_inputs()[0]
    shape = tuple(d if isinstance(d, int) else 1 for d in first.shape)
    inputs, notes = calibration_data(data, shape, samples)
    graph = onnx.load(fp32_onnx, load_external_data=False).graph
    int8_graph = onnx.load(int8_onnx, load_external_data=False).graph
    int8_tensors = {o for n in int8_graph.node for o in n.output}
    # the INT8 model's value of a tensor is its Quantize -> Dequantize result (the float
    # tensor before QuantizeLinear may even precede a ReLU the quantizer folded away)
    quantized_as = {n.input[0]: n.output[0] for n in int8_graph.node if n.op_type == "QuantizeLinear"}
    dequantized_as = {n.input[0]: n.output[0] for n in int8_graph.node if n.op_type == "DequantizeLinear"}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    layer_ops = {}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
            # the quantizer fuses Conv+Relu and names the result after the Relu's output
            after = readers.get(node.output[0], [])
            fused = after[0].output[0] if len(after) == 1 and after[0].op_type in _ACTIVATIONS else None
            layer_ops[fused if fused in int8_tensors else node.output[0]] = node.op_type
    names = [n for n in layer_ops if n in int8_tensors]
    int8_names = [dequantized_as.get(quantized_as.get(n, ""), n) for n in names]
    output_name = session.get_outputs()[0].name
    with tempfile.TemporaryDirectory() as workdir:
        reference = onnxruntime_session(_with_intermediate_outputs(fp32_onnx, names, workdir), quiet=True)
        quantized = onnxruntime_session(_with_intermediate_outputs(int8_onnx, int8_names, workdir), quiet=True)
        ref_runs = [reference.run([output_name] + names, {first.name: inputs[i:i + 1]}) for i in range(len(inputs))]
        q_runs = [quantized.run([output_name] + int8_names, {first.name: inputs[i:i + 1]})
                  for i in range(len(inputs))]
    layers = []
    for index, name in enumerate(names, start=1):
        ref = np.concatenate([r[index].ravel() for r in ref_runs])
        q = np.concatenate([r[index].ravel() for r in q_runs])
        layers.append({"tensor": name, "op": layer_ops[name], "sqnr_db": sqnr_db(ref, q)})
    layers.sort(key=lambda row: row["sqnr_db"])
    ref_out = np.stack([r[0].reshape(-1) for r in ref_runs])
    q_out = np.stack([r[0].reshape(-1) for r in q_runs])
    cosine = float(np.mean(np.sum(ref_out * q_out, axis=1) /
                           (np.linalg.norm(ref_out, axis=1) * np.linalg.norm(q_out, axis=1) + 1e-12)))
    agreement: float | None = float(np.mean(ref_out.argmax(axis=1) == q_out.argmax(axis=1)))
    if input_independent(ref_out):
        # every sample has the same top-1, by a margin the INT8 noise can flip for all of
        # them at once: 0% or 100% then says nothing about the INT8 model's accuracy
        agreement = None
        notes.append(f"the FP32 model gives the same output for all {len(inputs)} samples (untrained weights? "
                     "a zoo model has none): top-1 agreement is not reported, and the cosine only says that the "
                     "INT8 model reproduces that one output")
    elif len(inputs) == 1:
        notes.append("one sample: top-1 agreement can only be 0% or 100%")
    return Sensitivity(layers, agreement, cosine, sqnr_db(ref_out, q_out), len(inputs), notes)


def input_independent(outputs: np.ndarray, relative: float = 1e-3) -> bool:
    """Whether ``outputs`` (one row per sample) are the same for every sample: their
    spread over the samples is under ``relative`` of their spread over the classes."""
    if len(outputs) < 2:
        return False
    over_samples = float(np.mean(np.std(outputs.astype(np.float64), axis=0)))
    over_classes = float(np.mean(np.std(outputs.astype(np.float64), axis=1)))
    return over_samples <= relative * over_classes if over_classes > 0 else over_samples == 0
