#!/usr/bin/env bash
# The GPU numbers, on a CUDA machine, from a fresh clone after the README's install:
#
#     make install && bash benchmarks/gpu.sh        (or: make bench-gpu)
#
# One run of `benchmarks/epoch.py --paper`, about 5 minutes on one H100 (a little more on a machine of 8), which
# prints three tables ready to paste, after the line naming the CPU, GPU, torch and time:
#   1. training in the paper's profile (model.downsample false, the half decoder, batch 8 a process, train.precision
#      auto: bf16 on Ampere and later, channels_last) under torchrun, 1 process and one per visible GPU: images/s
#      together and per process, the scaling efficiency, a step's time, and the share of the time the slowest
#      process waited for its batches, its loader workers sharing the machine's cores with the other processes'
#      (train.num_workers auto);
#   2. an epoch over DenseDepth's 50,688 training pairs, its validation pass and the paper's 20 epochs, projected
#      from those rates;
#   3. the evaluate stage on the test split.
# The data: a zip rendered in DenseDepth's layout (JPEG and 8-bit PNG pairs), sharded as the shard stage shards the
# real one. More, separately: `benchmarks/train_step.py --device cuda` (fp32 against the default path) and
# `benchmarks/data.py --zip-pairs N --device cuda` (the loader alone, by worker count).
#
# Flags: --device cpu runs it on the CPU (gloo; 2 processes against 1 unless NPROC says otherwise); --tiny at a tiny
# size (model.downsample true, batch 1, 2 steps, a few rooms): a check that it runs end to end, not a measurement.
# Exits with a message, and status 1, where there is no venv, or torch sees no CUDA device and --device cpu is not
# given.
#
# Settings, from the environment: PYTHON (.venv/bin/python), NPROC (the processes compared with 1; default every
# GPU), STEPS (150 timed steps a process), WARMUP (10 untimed steps first), OUT (where the JSON record goes; default
# a temporary folder, removed at the end).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

device=cuda
tiny=false
while (($#)); do
    case $1 in
    --device)
        device=${2:?gpu.sh: --device needs a value: cuda or cpu}
        shift 2
        ;;
    --tiny)
        tiny=true
        shift
        ;;
    *)
        echo "gpu.sh: unknown argument $1; expected --device cuda|cpu and --tiny" >&2
        exit 1
        ;;
    esac
done
if [[ $device != cuda && $device != cpu ]]; then
    echo "gpu.sh: expected --device cuda or cpu, got $device" >&2
    exit 1
fi

python=${PYTHON:-.venv/bin/python}
if [[ ! -x $python ]]; then
    echo "gpu.sh: no $python here: run \`make install\` in the repository root first (README), or set PYTHON" >&2
    exit 1
fi
if [[ $device == cuda ]] && ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu.sh: torch ($python) sees no CUDA device on this machine, and these are the GPU numbers;" \
        "run it on a machine with an NVIDIA GPU and a CUDA build of torch, or with --device cpu" >&2
    exit 1
fi

if [[ -n ${OUT:-} ]]; then
    out=$OUT
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi

nproc=${NPROC:-}
if [[ -z $nproc && $device == cpu ]]; then
    nproc=2
fi
if [[ $tiny == true ]]; then
    size=(--downsample true --batch-size 1 --scenes 2 --frames 4 --test 2)
    size+=(--steps "${STEPS:-1}" --warmup-steps "${WARMUP:-1}")
else
    size=(--steps "${STEPS:-150}" --warmup-steps "${WARMUP:-10}")
fi

echo "== the paper's profile: training on 1 process and on ${nproc:-one per GPU}, the projected epoch, evaluation"
"$python" benchmarks/epoch.py --paper --device "$device" ${nproc:+--nproc "$nproc"} "${size[@]}" \
    --save "$out/paper.json"
