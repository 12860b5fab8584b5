#!/usr/bin/env bash
# The GPU numbers, on a CUDA machine, from a fresh clone after the README's install:
#
#     make install && bash benchmarks/gpu.sh        (or: make bench-gpu)
#
# Prints (each table opens with the line naming the CPU, GPU, torch and time):
#   1. training-step images/s, plain fp32 against the default path (params.yaml's train section resolved on CUDA),
#      at model.downsample true and false (benchmarks/train_step.py on CUDA);
#   2. the loader's images/s by worker count over rendered data in DenseDepth's zip layout, JPEG decoding included
#      (benchmarks/data.py --zip-pairs), with its projection for the real nyu_data.zip;
#   3. one line: does the loader, at each worker count, keep up with the default training step of table 1?
# Exits with a message, and status 1, where there is no venv or torch sees no CUDA device.
#
# Settings, from the environment: PYTHON (.venv/bin/python), STEPS (50 timed steps a process), WARMUP (5),
# ROUNDS (2), ZIP_PAIRS (800 training pairs to render), ZIP_TEST (16 test pairs), WORKERS ("1 2 4 8"),
# OUT (where the JSON records go; default: a temporary folder, removed at the end).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-.venv/bin/python}
if [[ ! -x $python ]]; then
    echo "gpu.sh: no $python here: run \`make install\` in the repository root first (README), or set PYTHON" >&2
    exit 1
fi
if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu.sh: torch ($python) sees no CUDA device on this machine, and these are the GPU numbers;" \
        "run it on a machine with an NVIDIA GPU and a CUDA build of torch (\`make bench\` measures the CPU)" >&2
    exit 1
fi

if [[ -n ${OUT:-} ]]; then
    out=$OUT
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
read -r -a workers <<<"${WORKERS:-1 2 4 8}"

echo "== 1. training step on CUDA: fp32 and the default path, model.downsample true and false"
"$python" benchmarks/train_step.py --device cuda --modes true false \
    --steps "${STEPS:-50}" --warmup "${WARMUP:-5}" --rounds "${ROUNDS:-2}" --save "$out/step.json"

echo
echo "== 2. the loader, by worker count, and 3. does it keep up with the default training step?"
"$python" benchmarks/data.py --device cuda --zip-pairs "${ZIP_PAIRS:-800}" --zip-test "${ZIP_TEST:-16}" \
    --workers "${workers[@]}" --against "$out/step.json" --save "$out/data.json"
