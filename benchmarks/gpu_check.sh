#!/usr/bin/env bash
# Everything this project checks on an NVIDIA GPU, in one run (about 7 minutes on an H100):
#   1. the Triton kernels' tests compiled for the GPU (TRITON_INTERPRET=0 pytest tests/kernels), then the
#      tests that compare a CUDA run with the CPU's: the pipeline with the event gate, the training chain,
#   2. benchmarks/kernels.py: kernels vs float64, attention/GELU vs SDPA/eager, vector-field sessions per GPU,
#   3. benchmarks/engine_capacity.py: the engine's whole per-hop path with the shipped model per batch size,
#   4. benchmarks/train_speed.py: flow steps and reflow pairs per second for three field sizes.
# ENGINE_RUNS (default "fp32 eager,bf16 eager,bf16 cudagraph") and KERNELS_BUDGET_S (120) shorten it.
# Needs torch, triton, numpy, safetensors, tqdm, pytest and the MobileNetV2 asset under $FRIEREN_RT_CACHE
# (frieren-rt assets fetch). Works from a source tree without installing (it links the mapped packages).
# Logs go to $OUT (default ./gpu_out).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! python3 -c "import frieren_rt.streaming" 2>/dev/null; then  # a plain source tree: map as setup.py does
    ln -sfn ../streaming frieren_rt/streaming
    ln -sfn ../kernels frieren_rt/kernels
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"

echo "== 1. kernel tests on the GPU"
TRITON_INTERPRET=0 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels 2>&1 | tee "$OUT/pytest_kernels.log" | tail -5
TRITON_INTERPRET=0 timeout 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_pipeline.py \
    tests/train/test_stages.py -k "cuda or chain" 2>&1 | tee "$OUT/pytest_cuda.log" | grep -v "it/s" | tail -12

echo "== 2. kernel + vector-field benchmark"
timeout 260 python3 benchmarks/kernels.py --budget-s "${KERNELS_BUDGET_S:-120}" >"$OUT/kernels.md" 2>&1
echo "exit $?"

echo "== 3. engine capacity (shipped model, whole per-hop path)"
IFS=, read -ra runs <<< "${ENGINE_RUNS:-fp32 eager,bf16 eager,bf16 cudagraph}"
for run in "${runs[@]}"; do
    set -- $run
    timeout 90 python3 benchmarks/engine_capacity.py --device cuda --precision "$1" --backend "$2" --budget-s 45 \
        ${ENGINE_BATCHES:+--batches $ENGINE_BATCHES} 2>&1 | tee "$OUT/engine_capacity_$1_$2.md"
done

echo "== 4. training speed (vector-field stages)"
timeout 240 python3 benchmarks/train_speed.py --device cuda --threads 8 2>&1 | grep -v "it/s\|x64/s" | tee "$OUT/train_speed.md"
echo "== kernels.md"; cat "$OUT/kernels.md"
