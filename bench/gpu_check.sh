#!/usr/bin/env bash
# The GPU check: the suite's CUDA tests, the engine bench's raw step per numeric mode, the ADA
# cycle as a fraction of it, the steady-state minutes per seed of the paper protocol, the
# train.ensemble epoch against branch by branch (aggregate img/s at batch 16) and the
# 3-seed demo on CUDA, in under 8 minutes; every figure lands in $OUT/gpu_check.json.
#
#   OUT=/tmp/x bash bench/gpu_check.sh            # on a CUDA machine
#   OUT=/tmp/x bash bench/gpu_check.sh --smoke    # every step on the CPU at tiny sizes (< 3 min;
#                                                 # tests/test_gpu_check.py runs it)
#
# The lent GPU machines have torch but cannot reach PyPI, so the pure-Python packages travel
# as wheels in .whl/ (ignored by git). Build them here, on a machine with the registry:
#   python3 -m pip wheel --no-deps -w .whl . plugins/ada-captum plugins/ada-scgm plugins/ada-unet
#   .venv/bin/python bench/gpu_check.py requirements --closure > /tmp/req.txt
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl -r /tmp/req.txt
# (the closure: pyproject.toml's requirements and what they require, pinned as installed in
# the venv, torch and its CUDA wheels left out). The check stops early, naming what is
# missing, when a requirement is not installed.
set -euo pipefail
SMOKE=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        *) echo "gpu_check.sh: unknown argument $arg (expected --smoke or nothing)" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ada-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

echo "== environment"
if [ "$SMOKE" = 0 ]; then
    if compgen -G ".whl/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
    DEVICE=cuda
else
    DEVICE=cpu
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
"$PY" bench/gpu_check.py installed

echo "== tests: the CUDA ones (they run on CUDA; on the CPU smoke a fast CPU selection)"
mapfile -t TESTS < <("$PY" bench/gpu_check.py cuda-tests)
if [ "$SMOKE" = 1 ]; then
    TESTS=(tests/test_masks.py)
fi
"$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/junit.xml" "${TESTS[@]}" 2>&1 | tail -15
"$PY" bench/gpu_check.py suite "$OUT/junit.xml" "$OUT/suite.json"

echo "== engine bench: raw step per mode, ADA cycle fraction, minutes per seed (extrapolated)"
if [ "$SMOKE" = 1 ]; then
    "$PY" bench/bench_engine.py --smoke --device cpu --modes fp32 --json "$OUT/engine.json"
else
    "$PY" bench/bench_engine.py --full --device cuda --modes fp32,bf16_cl,compile --repeat 2 \
        --json "$OUT/engine.json"
fi

echo "== train.ensemble: a seed's ADA branches as one batched epoch against one by one"
if [ "$SMOKE" = 1 ]; then
    "$PY" bench/bench_ensemble.py --quick --train 4 --branches 2 --reps 1 --json "$OUT/ensemble.json"
else
    "$PY" bench/bench_ensemble.py --paper --device cuda --batch 16 --reps 3 --json "$OUT/ensemble.json"
fi

echo "== demo on $DEVICE"
DEMO=(--set "train.device=$DEVICE" --set "output=$OUT/runs")
if [ "$SMOKE" = 1 ]; then
    DEMO+=(--set "train.seeds=[0]" --set train.standard_epochs=1 --set train.cycles=1
           --set train.ada_epochs=1 --set "data.params.n_subjects=6"
           --set "data.preprocess.size=[32, 32]" --set mask.params.size=4
           --set "evaluate=[]")
fi
start=$(date +%s.%N)
"$PY" -c "import sys; from ada_core.cli import main; sys.exit(main())" compare configs/demo.toml \
    --quiet "${DEMO[@]}" 2>&1 | tail -30
end=$(date +%s.%N)
"$PY" bench/gpu_check.py demo "$OUT/runs/demo" "$OUT/demo.json"
"$PY" -c "import sys; print(f'demo wall {float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$start" "$end"

echo "== $OUT/gpu_check.json"
"$PY" bench/gpu_check.py merge "$OUT"
