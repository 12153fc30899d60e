#!/usr/bin/env bash
# GPU checks in one run, from the project root on a machine with a CUDA GPU (after
# `bash .gpu/setup.sh && . .gpu/env.sh`, see /work/shared/gpu/README.md):
#   0. benchmarks/gpu_smoke.py: one line per CuPy facility the stages use (seconds);
#   1. the parity and cone-beam tests: ASTRA CUDA against CPU, the rasterizer's and the case
#      pipeline's CuPy parity (tests skipped without a GPU);
#   2. benchmarks/bench_case.py: a quick case on device cuda, stage times and the namespace of
#      each stage (a z range of QUICK_Z, default the hips' 60 mm, keeps it short);
#   3. benchmarks/bench_rasterize_xp.py (numpy against CuPy);
#   4. benchmarks/bench_gpu.py, whose table prints last (BENCH_ARGS, default "--case none": the
#      case ran in step 2).
# Logs go to $OUT (default /tmp/gpu_check). TEST_TIMEOUT bounds each step (default 240 s); about
# 6 minutes in all on an H100.
# CPU_ONLY=1 runs the CPU-safe parts on a machine without a GPU: step 1 (the GPU tests skip) and
# step 2 on device cpu; no CUDA call is made.
# Every phantom needs edt and musculoskeletal-models, the array_api_strict tests array-api-strict and
# the mesh test scikit-image, none of which the lent machine has: build the bundle with
#   EXTRA_WHEELS="edt musculoskeletal-models array-api-strict" bash ../shared/gpu/make_bundle.sh
# A module that is still missing is named first; pytest then runs the test files that import.
set -o pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LIMIT=${TEST_TIMEOUT:-240}
QUICK_Z=${QUICK_Z:-"-30 30"}
if [ "${CPU_ONLY:-0}" = 1 ]; then
  DEVICE=cpu
else
  DEVICE=cuda
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'device(s)')" \
    || echo "no CuPy: the stages run in numpy, FBP falls back to ASTRA's backprojection"
  # each CuPy facility the stages use (FFT, sparse, ndimage, ASTRA's DLPack link): ok or the error
  timeout 120 python3 benchmarks/gpu_smoke.py 2>&1 | tee "$OUT/gpu_smoke.txt"
fi
python3 -c "import astra, numpy; print('astra', astra.__version__, 'cuda', astra.use_cuda(), 'numpy', numpy.__version__)"
python3 - <<'PY' 2>&1 | tee "$OUT/modules.txt"
import importlib.util
need = {"edt": "every phantom", "musculoskeletal": "every phantom (LLP26 bones)",
        "array_api_strict": "the array_api_strict tests", "skimage": "the mesh-shape tests",
        "odl": "TV", "cupy": "the CuPy stages"}
missing = [f"{m} ({why})" for m, why in need.items() if importlib.util.find_spec(m) is None]
print("missing modules: " + ("; ".join(missing) if missing else "none"))
PY
timeout "$LIMIT" python3 -m pytest -q -rs -s -p no:cacheprovider -m "not slow" --continue-on-collection-errors \
  tests/simulate/test_gpu.py tests/simulate/test_backend.py tests/simulate/test_geometry3d.py \
  tests/phantoms/test_rasterize_xp.py tests/simulate/test_pipeline_xp.py \
  tests/phantoms/test_shapes_xp.py::test_cuda_distances_and_depths_match_numpy \
  2>&1 | tee "$OUT/tests.txt"
# shellcheck disable=SC2086
timeout "$LIMIT" python3 benchmarks/bench_case.py --preset quick --device "$DEVICE" --z-range $QUICK_Z \
  2>&1 | tee "$OUT/bench_case.txt"
[ "$DEVICE" = cpu ] && exit 0
timeout "$LIMIT" python3 benchmarks/bench_rasterize_xp.py --mm 3 --namespace auto 2>&1 | tee "$OUT/bench_rasterize_xp.txt"
# shellcheck disable=SC2086
timeout "$LIMIT" python3 benchmarks/bench_gpu.py ${BENCH_ARGS:---case none} 2>&1 | tee "$OUT/bench.txt"
