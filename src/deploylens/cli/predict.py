"""``deploylens predict``: latency per kernel on a catalogued device (roofline) or this machine (calibrated)."""

from __future__ import annotations

from typing import List, Optional

import typer

from deploylens.cli.app import (MODEL_HELP, OUTPUT_HELP, SHAPE_HELP, Format, app, joined_shapes, progress, show,
                                table, warn)
from deploylens.output import check_destination, emit


@app.command()
def predict(
    model: str = typer.Argument(..., help=MODEL_HELP),
    target: str = typer.Option("this", help="mobile-cpu, npu, nvidia-gpu, a catalog device (deploylens hw list), "
                                            "or this (calibrated: deploylens hw calibrate); the same targets as "
                                            "lint and recommend."),
    backend: str = typer.Option("torch", help="torch (eager), torch-compile, onnxruntime, openvino or tensorrt: how "
                                              "the network runs (on 'this': torch or onnxruntime, calibrated)."),
    batch: int = typer.Option(1, min=1, help="Batch size."),
    dtype: Optional[str] = typer.Option(None, help="float32, float16, bfloat16 or int8 (default: the target's "
                                                   "deploy precision: float16 on NVIDIA GPUs, int8 on NPUs, "
                                                   "float32 on CPUs and this)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Threads of the calibration on 'this'."),
    device: str = typer.Option("cpu", help="On 'this': cpu, or cuda (this machine's GPU, calibrated)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    deploy: bool = typer.Option(False, "--deploy", help="Predict the zoo model's deploy form (RepVGG/MobileOne "
                                                         "branches folded)."),
    device_model: Optional[str] = typer.Option(None, "--device-model", help="A device model fitted with `deploylens "
                                                                            "hw fit` (JSON) to rate --target with."),
    top: int = typer.Option(10, min=0, help="Slowest kernels to list (0: all)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
) -> None:
    """Latency per kernel on a catalogued device (its family's fitted device model, else its roofline) or this
    machine (its calibration: `hw calibrate`); the answer says where its figures come from."""
    check_destination(output, force)
    from deploylens.hardware.device_model import load
    from deploylens.predict import predict as run_prediction
    from deploylens.report.tables import to_csv

    family_model = load(device_model) if device_model else None
    with progress() as shown:
        shown.add_task(f"predicting {model} on {target}", total=None)
        prediction = run_prediction(model, target, backend, batch, dtype, joined_shapes(input_shape), threads,
                                    device=device, deploy=deploy, family_model=family_model)
    for note in prediction.notes:
        if note.startswith("incomplete"):
            warn(note)
    data = prediction.to_dict()
    if fmt is Format.csv:
        emit(to_csv(data["kernels"]), output)
        return
    show(data, fmt, lambda console, _data: _render(console, prediction, top), output)


def _render(console, prediction, top: int) -> None:
    t = prediction.totals
    console.print(f"[bold]{prediction.model}[/] on {prediction.target} ({prediction.backend}), "
                  f"batch {prediction.batch}, "
                  f"{prediction.dtype}: [bold]{t['latency_ms']:.3f} ms[/]  ({t['throughput']:.1f} samples/s)  "
                  f"kernels {t['kernels']}: {t['bound_counts']['compute']} compute-, {t['bound_counts']['memory']} "
                  f"memory-, {t['bound_counts']['overhead']} overhead-bound  complete {t['complete']}")
    console.print(f"source: {prediction.source['describe']}", markup=False)
    by_share = sorted(prediction.share_by_kind.items(), key=lambda kv: -kv[1])
    shares = ", ".join(f"{k} {v * 100:.1f}%" for k, v in by_share)
    console.print(f"time by kind: {shares}", markup=False)
    shown = table(("kernel", "class", "MFLOPs", "KB", "compute ms", "memory ms", "overhead ms", "time ms", "bound"),
                  left=("kernel", "class", "bound"), optional=("overhead ms", "compute ms", "memory ms"))
    slowest = sorted(prediction.kernels, key=lambda k: -k.time_ms)
    for k in slowest[:top] if top else slowest:
        shown.add_row(k.name, k.kernel_class, f"{k.flops / 1e6:.2f}", f"{k.bytes / 1e3:.1f}", f"{k.compute_ms:.4f}",
                      f"{k.memory_ms:.4f}", f"{k.overhead_ms:.4f}", f"{k.time_ms:.4f}", k.bound)
    console.print(shown)
    for note in prediction.notes:
        console.print(f"note: {note}", markup=False)
