#!/usr/bin/env bash
# The prepared GPU check of issue 13 (item 6), one command for a lent GPU machine (about 8 minutes):
#   1. the 10,240-sample figure: published architecture, 1000 Eq. 7 steps (goal <= 2 min; projected if longer);
#   2. sampling throughput, published and compact, Perov-5 and Carbon-24, two batch sizes;
#   3. training throughput and torch.cuda.max_memory_allocated, published and compact, batch 256;
#   4. the whole Table II protocol for Perov-5 (benchmarks/bench_protocol.py; sampling on the GPU, metrics on the
#      CPU cores), when pymatgen / matminer / smact are importable there;
#   5. batched CHGNet relaxation, when chgnet/ase/pymatgen are importable there (carry their wheels).
# Run from the repository root: `bash scripts/gpu_session.sh`; logs and JSON lines go to $OUT (default
# runs/gpu_session). Each step is bounded by its own timeout so that one slow step cannot eat the others' time.
set -u
OUT=${OUT:-runs/gpu_session}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEV=${DEV:-cuda}
step() {  # step NAME SECONDS SCRIPT ARGS...: run one benchmark, keep its log, print its final JSON line
    local name=$1 secs=$2
    shift 2
    echo "== $name (at most ${secs} s)"
    timeout "$secs" python3 "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 1 "$OUT/$name.log"
    [ $rc -eq 0 ] || echo "$name: exit status $rc (124 = timed out); see $OUT/$name.log"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$OUT/device.txt"
step full_sampling "${T_FULL:-200}" benchmarks/full_sampling_run.py --device "$DEV" --config published --n 10240 \
    --batch-size "${BS_FULL:-2048}" --max-seconds "${MAX_FULL:-150}" ${FULL_SET:+--set $FULL_SET}
step sampling "${T_SAMPLING:-150}" benchmarks/bench_sampling.py --device "$DEV" --configs published compact \
    --kinds perov carbon --batch-sizes ${BS_SAMPLING:-256 2048} --warmup 5 --steps 10 --repeats 3
step train "${T_TRAIN:-100}" benchmarks/bench_train.py --device "$DEV" --configs published compact \
    --batch-size "${BS_TRAIN:-256}" --warmup 3 --steps 5
if python3 -c "import pymatgen, matminer, smact" 2>/dev/null; then  # issue 27: Table II at 10,240, projected
    step protocol "${T_PROTOCOL:-240}" benchmarks/bench_protocol.py --device "$DEV" --datasets perov_5 \
        --n-time "${N_PROTOCOL:-2048}" --workers "${WORKERS_PROTOCOL:-16}" --no-table1
else
    echo "== protocol: pymatgen / matminer / smact not importable here (carry their wheels); skipped"
fi
if python3 -c "import chgnet, ase, pymatgen" 2>/dev/null; then
    step relax "${T_RELAX:-60}" benchmarks/bench_relax.py --device "$DEV" --n 32 --max-steps 30 --modes batched
else
    echo "== relax: chgnet / ase / pymatgen not importable here (carry their wheels, see the device notes); skipped"
fi
