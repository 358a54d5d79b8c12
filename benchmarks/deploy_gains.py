"""What the deploy steps buy and cost, side by side in one run.

    python benchmarks/deploy_gains.py [--train-seconds 120]

1. RepVGG-A0 train-time vs deploy (re-parameterized) form: latency on CPU, torch eager
   and ONNX Runtime.
2. FP32 vs INT8 (QDQ, per-channel; uint8 and int8 activations) ONNX Runtime latency:
   ResNet-18, RepVGG-A0, MobileNetV2.
3. Quantization sensitivity of a small RepVGG trained for a couple of minutes on data
   the script generates (10 classes of noisy synthetic textures: each class a random
   3x32x32 template plus noise), per-tensor vs per-channel: per-layer SQNR, top-1
   agreement with FP32, and accuracy on held-out generated data.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from record import recorded  # the benchmarks folder is the script's own

from deploylens import zoo
from deploylens.bench.harness import bench
from deploylens.bench.runner import StopRule
from deploylens.deploy import export_onnx, quantize, sensitivity
from deploylens.zoo.reparam import reparameterize
from deploylens.zoo.repvgg import RepVGG

RULE = StopRule(min_time=1.0, max_time=4.0)
ROUNDS = 3  # alternate the variants this many times: a shared VM drifts by tens of percent over minutes


def latency(model, backend: str, shape=(1, 3, 224, 224)) -> float:
    return bench(model, [backend], [1], input_shape=[shape], rule=RULE)[0].p50_ms


def side_by_side(variants: dict, backend: str) -> dict[str, float]:
    """Median over ROUNDS alternated measurements of each variant."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, subject in variants.items():
            samples[name].append(latency(subject, backend))
    return {name: sorted(values)[len(values) // 2] for name, values in samples.items()}


def synthetic_data(n: int, seed: int, templates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(templates), (n,), generator=generator)
    images = templates[labels] + 0.8 * torch.randn(n, 3, 32, 32, generator=generator)
    return images, labels


def train_small_repvgg(seconds: float) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    templates = torch.randn(10, 3, 32, 32)
    model = RepVGG((1, 2, 2, 1), (0.5, 0.5, 0.5, 0.5), num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    start, step = time.time(), 0
    while time.time() - start < seconds:
        images, labels = synthetic_data(64, step, templates)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    model.eval()
    test_images, test_labels = synthetic_data(512, 10**6, templates)
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    print(f"   trained {step} steps in {seconds:.0f} s: held-out accuracy {accuracy * 100:.1f}%")
    return model, test_images, test_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=120.0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    print("1. RepVGG-A0, 224x224, batch 1: train-time vs deploy form")
    train = zoo.create("repvgg_a0")
    deploy = zoo.create("repvgg_a0", deploy=True)
    for backend in ("torch", "onnxruntime"):
        times = side_by_side({"train": train, "deploy": deploy}, backend)
        t, d = times["train"], times["deploy"]
        print(f"   {backend:12s} train {t:8.2f} ms   deploy {d:8.2f} ms   speed-up x{t / d:.2f} "
              f"(median of {ROUNDS} alternated runs)")

    print("2. ONNX Runtime FP32 vs INT8 (QDQ, per-channel weights, 32 generated calibration samples), batch 1")
    with tempfile.TemporaryDirectory() as workdir:
        for name in ("resnet18", "repvgg_a0", "mobilenet_v2_100"):
            model = zoo.create(name, deploy=True)
            fp32 = os.path.join(workdir, f"{name}.onnx")
            export_onnx(model, fp32, (1, 3, 224, 224))
            files = {"fp32": fp32}
            for activations in ("uint8", "int8"):
                files[activations] = os.path.join(workdir, f"{name}.{activations}.onnx")
                quantize(fp32, files[activations], None, per_channel=True, activations=activations)
            times = side_by_side(files, "onnxruntime")
            print(f"   {name:18s} fp32 {times['fp32']:7.2f} ms   int8 (u8 act) {times['uint8']:7.2f} ms "
                  f"x{times['fp32'] / times['uint8']:.2f}   int8 (s8 act) {times['int8']:7.2f} ms "
                  f"x{times['fp32'] / times['int8']:.2f}")

        print("3. sensitivity of a small RepVGG trained here on generated data (say which: synthetic textures)")
        model, images, labels = train_small_repvgg(args.train_seconds)
        deployed = reparameterize(model)
        fp32 = os.path.join(workdir, "small.onnx")
        export_onnx(deployed, fp32, (1, 3, 32, 32))
        calib = images[:128].numpy()
        evaluation = images[128:384].numpy()
        for per_channel in (False, True):
            int8 = os.path.join(workdir, f"small_{per_channel}.int8.onnx")
            quantize(fp32, int8, calib, per_channel=per_channel)
            report = sensitivity(fp32, int8, evaluation)
            import onnxruntime as ort

            session = ort.InferenceSession(int8, providers=["CPUExecutionProvider"])
            predictions = np.concatenate([session.run(None, {session.get_inputs()[0].name: evaluation[i:i + 1]})[0]
                                          for i in range(len(evaluation))]).argmax(1)
            accuracy = float((predictions == labels[128:384].numpy()).mean())
            worst = ", ".join(f"{row['tensor'].removesuffix('_output_0')} "
                              f"{row['sqnr_db']:.1f} dB" for row in report.layers[:3])
            print(f"   {'per-channel' if per_channel else 'per-tensor ':12s} top-1 agreement "
                  f"{report.top1_agreement * 100:5.1f}%  cosine {report.cosine_similarity:.4f}  output SQNR "
                  f"{report.output_sqnr_db:5.1f} dB  INT8 accuracy {accuracy * 100:5.1f}%  worst layers: {worst}")


if __name__ == "__main__":
    with recorded("deploy_gains") as run:
        run.results = main() or {}
