"""Write the published measurements deploylens fits its shipped device models on as rows
files (the format `deploylens hw fit` reads) in src/deploylens/hardware/measured/.

    python tools/import_published_rows.py /path/to/shared/reference

Sources: the timm project's benchmark CSVs (huggingface/pytorch-image-models `results/`,
commit aa4b585, Apache-2.0) for the networks the zoo has, under the zoo's names; and the
speed tables of the RepVGG paper (Table 4, GTX 1080 Ti, batch 128, fp32, deploy form) and
of the ShuffleNetV2 paper (Table 8: GTX 1080 Ti at batch 8, Snapdragon 810 on one thread),
as transcribed in reference/published.md.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "deploylens" / "hardware" / "measured"
COLUMNS = ("model", "input_shape", "batch", "precision", "runtime", "samples_per_s", "device", "threads", "source",
           "published_as")
# timm name -> zoo name (the same architecture: timm's RepVGG and MobileOne rows are the train-time form)
TIMM = {"resnet18": "resnet18", "resnet50": "resnet50", "mobilenetv1_100": "mobilenet_v1_100",
        **{f"mobilenetv2_{w}": f"mobilenet_v2_{w}" for w in ("050", "075", "100", "140")},
        "mobilenetv3_large_100": "mobilenet_v3_large_100", "mobilenetv3_small_100": "mobilenet_v3_small_100",
        "efficientnet_b0": "efficientnet_b0", "ghostnet_100": "ghostnet_100",
        **{f"repvgg_{v}": f"repvgg_{v}" for v in ("a0", "a1", "a2", "b0", "b1", "b1g4", "b2", "b3")},
        **{f"mobileone_s{i}": f"mobileone_s{i}" for i in range(5)},
        "densenet121": "densenet121", "vgg16": "vgg16", "cspresnet50": "cspresnet50", "cspdarknet53": "cspdarknet53",
        "vovnet39a": "vovnet39", "vovnet57a": "vovnet57"}
TIMM_FILES = {
    "benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv": ("nvidia_geforce_rtx_3090", "fp16", "eager"),
    "benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv": ("nvidia_geforce_rtx_4090", "fp16", "eager"),
    "benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv": ("intel_core_i7_12700h", "fp32", "fused"),
}
TIMM_SOURCE = "timm results {file} (PyTorch 2.4.0, {how}; huggingface/pytorch-image-models aa4b585)"
# RepVGG Table 4 (examples/s, batch 128, fp32, GTX 1080 Ti, deploy form; baselines' conv-BN fused)
REPVGG_T4 = {"repvgg_a0:deploy": 3256, "resnet18": 2442, "repvgg_a1:deploy": 2339, "repvgg_b0:deploy": 1817,
             "repvgg_a2:deploy": 1322, "repvgg_b1g4:deploy": 868, "efficientnet_b0": 829, "repvgg_b1g2:deploy": 792,
             "resnet50": 719, "repvgg_b1:deploy": 685, "repvgg_b2:deploy": 460, "vgg16": 415}
# ShuffleNetV2 Table 8 (batches/s at batch 8, GTX 1080 Ti, cuDNN 7.0, fused)
SNV2_T8 = {"shufflenet_v2_x0_5": 417, "shufflenet_v2_x1_0": 341, "shufflenet_v2_x1_5": 255,
           "shufflenet_v2_x2_0": 217, "shufflenet_v1_g3_100": 213, "mobilenet_v1_050": 382, "mobilenet_v1_075": 314,
           "mobilenet_v1_100": 247, "mobilenet_v2_100": 180, "mobilenet_v2_140": 137}
# ShuffleNetV2 Table 8 (images/s, batch 1, Snapdragon 810, one thread)
SNV2_T8_ARM = {"shufflenet_v2_x0_5": 57.0, "shufflenet_v2_x1_0": 24.4, "shufflenet_v2_x1_5": 11.8,
               "shufflenet_v2_x2_0": 6.7, "shufflenet_v1_g3_100": 21.8, "mobilenet_v1_050": 16.5,
               "mobilenet_v1_075": 10.6, "mobilenet_v1_100": 6.5, "mobilenet_v2_100": 8.9, "mobilenet_v2_140": 5.4}


def timm_rows(reference: Path) -> dict[str, list[dict]]:
    files = {}
    for name, (device, precision, runtime) in TIMM_FILES.items():
        how = "AMP, eager" if runtime == "eager" else "fp32, torch.compile"
        rows, seen = [], set()
        for record in csv.DictReader((reference / "measured" / name).open()):
            zoo = TIMM.get(record["model"])
            size = int(record["infer_img_size"])
            if zoo is None or (zoo, size) in seen:  # a model listed again at the same size: the first run
                continue
            seen.add((zoo, size))
            rows.append({"model": zoo, "input_shape": f"3x{size}x{size}", "batch": record["infer_batch_size"],
                         "precision": precision, "runtime": runtime, "samples_per_s": record["infer_samples_per_sec"],
                         "device": device, "source": TIMM_SOURCE.format(file=name, how=how),
                         "published_as": record["model"]})
        files[f"timm-{device}-{precision}-{runtime}.csv"] = rows
    return files


def paper_rows() -> dict[str, list[dict]]:
    repvgg = [{"model": m, "input_shape": "3x224x224", "batch": 128, "precision": "fp32", "runtime": "eager",
               "samples_per_s": v, "device": "nvidia_geforce_gtx_1080_ti",
               "source": "RepVGG (CVPR 2021) Table 4: batch 128, fp32, 1080 Ti", "published_as": m}
              for m, v in REPVGG_T4.items()]
    shufflenet = [{"model": m, "input_shape": "3x224x224", "batch": 8, "precision": "fp32", "runtime": "fused",
                   "samples_per_s": v * 8, "device": "nvidia_geforce_gtx_1080_ti",
                   "source": "ShuffleNetV2 (ECCV 2018) Table 8: batch 8 (batches/s x 8), 1080 Ti, cuDNN 7.0",
                   "published_as": m} for m, v in SNV2_T8.items()]
    arm = [{"model": m, "input_shape": "3x224x224", "batch": 1, "precision": "fp32", "runtime": "fused",
            "samples_per_s": v, "device": "snapdragon_810", "threads": 1,
            "source": "ShuffleNetV2 (ECCV 2018) Table 8: Snapdragon 810, one thread, optimized NEON",
            "published_as": m} for m, v in SNV2_T8_ARM.items()]
    return {"repvgg-nvidia_geforce_gtx_1080_ti-fp32-eager.csv": repvgg,
            "shufflenetv2-nvidia_geforce_gtx_1080_ti-fp32-fused.csv": shufflenet,
            "shufflenetv2-snapdragon_810-fp32-fused.csv": arm}


def main(reference: Path) -> None:
    for name, rows in {**timm_rows(reference), **paper_rows()}.items():
        with (OUT / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "reference")
