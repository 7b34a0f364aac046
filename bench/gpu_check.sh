#!/usr/bin/env bash
# The GPU check: the test suite, the demo and a paper-sized compare on a CUDA machine.
#
# The lent GPU machines have torch but cannot reach PyPI, so the pure-Python packages travel
# as wheels in .whl/ (ignored by git): ADA's own wheels built here with
#   pip wheel --no-deps -w .whl . plugins/ada-captum plugins/ada-scgm plugins/ada-unet \
#       docs/examples/ada-example-plugin
# plus pydantic, pydantic-core (cp312), annotated-types, typing-inspection, typing-extensions,
# captum, nibabel and segmentation-models-pytorch fetched with `pip download --python-version 3.12`.
# Figures it printed are recorded in docs/reproducing.md.
set -euo pipefail
OUT=${OUT:-/tmp/ada-gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

echo "== tests (CPU-pinned tests plus the CUDA ones that skip on CPU machines)"
python3 -m pytest -q -p no:cacheprovider tests -n 8 2>&1 | tail -25 || true

echo "== demo on CUDA"
/usr/bin/time -f "demo wall %e s" ada compare configs/demo.toml --quiet \
    --set train.device=cuda --set output=$OUT/runs | tail -30

echo "== paper-sized compare: 200x200 phantom, unet-paper width 64, every branch, short schedule"
/usr/bin/time -f "paper-sized wall %e s" ada compare configs/paper.toml --quiet \
    --set data.name=phantom --set 'data.params={n_subjects = 20, slices_per_subject = 12}' \
    --set train.standard_epochs=3 --set train.cycles=1 --set train.ada_epochs=2 \
    --set output=$OUT/runs | tail -40
python3 - "$OUT/runs/paper" <<'PY'
import json, sys, pathlib
run = pathlib.Path(sys.argv[1])
def rows(p): return [json.loads(x) for x in p.read_text().splitlines()]
std = rows(run / "standard/metrics.jsonl")
print("standard epoch s:", [round(r["seconds"], 2) for r in std], "img/s:", [round(r["images_per_s"]) for r in std])
for b in sorted((run / "branches").iterdir()):
    r = rows(b / "metrics.jsonl")
    print(b.name, "ada epoch s:", [round(x["seconds"], 2) for x in r], "img/s:", [round(x["images_per_s"]) for x in r])
s = json.loads((run / "summary.json").read_text())
print("robustness s:", round(s["seconds"]["robustness"], 1), "total s:", round(s["seconds"]["total"], 1))
PY
cp -r "$OUT/runs/paper/summary.txt" "$OUT/paper_summary.txt" 2>/dev/null || true
