#!/usr/bin/env bash
# The CUDA paths on a real NVIDIA GPU, the studies' verdicts on it, then the GPU
# predictor's accuracy on the zoo.
#
#   benchmarks/gpu_check.sh [OUT] [SECONDS]
#
# Runs from the repository root without installing (PYTHONPATH=src), so it works on a
# machine that already has torch with CUDA. Each step runs even when one before it
# failed. OUT (default gpu-check) receives log.txt, the bench JSON, the accuracy rows and
# the calibration profiles; SECONDS (default 480) bounds the run: the fp16 sweep starts
# only when it fits.
set -u
out=${1:-gpu-check}
budget=${2:-480}
mkdir -p "$out/calibration"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DEPLOYLENS_CALIBRATION_DIR="$out/calibration"
start=$SECONDS
step() { echo; echo "== $* ($((SECONDS - start)) s)"; }
deploylens() { python3 -m deploylens "$@"; echo "(exit $?)"; }
sweep() {  # calibrate this GPU for one dtype, then predicted vs measured on every zoo model
    python3 benchmarks/predict_accuracy.py --device cuda --dtype "$1" --backends torch --batches 1,32 \
        --passes 1 --min-time 0.2 --max-time 1 --json "$out/accuracy_$1.json"
}
{
    step environment
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import sys, torch, onnxruntime as ort
print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))
print('onnxruntime', ort.__version__, ort.get_available_providers())"
    python3 -c "import pynvml; pynvml.nvmlInit(); print('NVML driver', pynvml.nvmlSystemGetDriverVersion())"

    step "tests that need the GPU"
    timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py  # bounded: a hang keeps the sweep

    step "this machine"
    deploylens hw show this

    step "bench on CUDA: events, NVML, fractions of the catalog's peaks"
    deploylens bench resnet50 --device cuda --backend torch --batch 1,32 --min-time 0.5 --max-time 2 \
        --no-store --format json -o "$out/bench_resnet50.json"
    python3 - "$out/bench_resnet50.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    g = r["gpu"] or {}
    print(f"batch {r['batch']}: p50 {r['p50_ms']:.3f} ms host, {r['device_p50_ms']:.3f} ms CUDA events; "
          f"GPU-Util {g.get('gpu_util_mean')}% beside {g.get('achieved_tflops'):.2f} TFLOP/s "
          f"({g.get('fraction_of_peak_flops')}) and {g.get('achieved_gbs'):.0f} GB/s "
          f"({g.get('fraction_of_peak_bandwidth')}) of {g.get('catalog_entry')}; SM clock {g.get('sm_clock_mhz_mean')}")
PY
    deploylens bench resnet18 --device cuda --backend onnxruntime --batch 1 --min-time 0.2 --max-time 1 --no-store

    step "studies on CUDA (quick): the guide's claims, this GPU's verdicts"
    for name in $(python3 -c "import deploylens.studies as s; print(' '.join(n for n, x in s.STUDIES.items() if 'cuda' in x.devices))"); do
        deploylens study "$name" --device cuda --quick --no-store --format json -o "$out/study_$name.json" --force
    done

    step "catalog roofline for this GPU"
    deploylens predict resnet50 --target nvidia_h100_sxm5 --batch 32 --dtype float32 --top 3

    step "calibration and accuracy, fp32"
    sweep fp32
    if (( SECONDS - start < budget - 240 )); then
        step "calibration and accuracy, fp16"
        sweep fp16
    else
        step "fp16 sweep skipped: $((budget - SECONDS + start)) s left of $budget"
    fi
    step done
} 2>&1 | tee "$out/log.txt"
