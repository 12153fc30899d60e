#!/usr/bin/env bash
# GPU checks in one run, from the project root on a machine with a CUDA GPU: the parity and
# cone-beam tests (the rasterizer's CuPy parity among them), then benchmarks/bench_rasterize_xp.py
# (numpy against CuPy), then benchmarks/bench_gpu.py, whose table prints last. Logs go to $OUT
# (default /tmp/gpu_check). Optional: BENCH_ARGS (passed to bench_gpu.py), TEST_TIMEOUT.
set -o pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import astra, numpy; print('astra', astra.__version__, 'cuda', astra.use_cuda(), 'numpy', numpy.__version__)"
python3 -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'device(s)')" \
  || echo "no CuPy: FBP falls back to ASTRA's backprojection"
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q -rs -s -p no:cacheprovider -m "not slow" \
  tests/simulate/test_gpu.py tests/simulate/test_backend.py tests/simulate/test_geometry3d.py \
  tests/phantoms/test_rasterize_xp.py \
  2>&1 | tee "$OUT/tests.txt"
timeout "${TEST_TIMEOUT:-240}" python3 benchmarks/bench_rasterize_xp.py --mm 3 --namespace auto 2>&1 | tee "$OUT/bench_rasterize_xp.txt"
# shellcheck disable=SC2086
python3 benchmarks/bench_gpu.py ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt"
