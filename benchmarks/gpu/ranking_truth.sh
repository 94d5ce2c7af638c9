#!/usr/bin/env bash
# The ranking benchmark's truth on one lent GPU (docs/gpu.md), inside a fixed time budget.
# The truth's networks are launch-bound on a GPU (50k-770k parameters at 32 px), so one CUDA
# process per architecture (WORKERS of them, one CPU core each) shares the chip, under MPS when
# the machine allows it, and each compiles its training step into CUDA graphs (recipe key
# `compile`; eager when the compiled step fails here). Jobs run seed-major, so a stop at the
# budget leaves whole seeds; what finished is packed into $OUT/truth.tgz (results, curves, logs:
# no checkpoints) and grows the truth anywhere later (`dnatool bench ranking --out ...`).
# DATA_OPTIONS (a YAML mapping of ClutterSpec knobs, e.g. '{fragments: 3, clutter: 0.8,
# noise: 0.2}') sets the task; SEED_TRUTH (a truth folder: plan.json + results/, e.g. one kept
# in docs/figures) is copied in first, so its finished jobs are kept and only the rest train.
# SPACE is the benchmark space (e.g. ranking-narrow, with SEED_TRUTH a truth of it, whose
# architectures the compiled-step check then uses). SAMPLE is the truth's sampling (macs, or
# log-macs: evenly spaced log MACs, denser among the small networks; a grown truth keeps its
# architectures and adds the new sampling's picks; truth with FROM_TRUTH, a truth.json, retrains
# that truth's architectures, e.g. the kept 24 x 2 one at another EPOCHS; accuracy with
# FROM_TRUTH, a pilot truth, picks ARCHS of its networks at evenly spaced pilot top-1).
# TRUTH_SEED sets the training seed of the recipe and STOP_AFTER stops each run after that many
# of its EPOCHS (a pilot: another seed than its truth's, the first epochs of the truth recipe:
# TRUTH_SEED=100 STOP_AFTER=8 EPOCHS=24 SEEDS=1 ARCHS=72 SAMPLE=log-macs, docs/ranking.md).
#   BUDGET=540 EPOCHS=24 bash benchmarks/gpu/ranking_truth.sh     (from the repository root)
set -u
began=$(date +%s)
OUT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/gpu-truth}
BUDGET=${BUDGET:-540}
EPOCHS=${EPOCHS:-24}
ARCHS=${ARCHS:-14}
SEEDS=${SEEDS:-3}
WORKERS=${WORKERS:-14}
MODE=${MODE:-reduce-overhead}
PY=${PY:-python3}
DATA_OPTIONS=${DATA_OPTIONS:-"{}"}
SEED_TRUTH=${SEED_TRUTH:-}
SPACE=${SPACE:-ranking-narrow}   # the benchmark's default space (recipes/bench-ranking.yaml)
SAMPLE=${SAMPLE:-macs}
FROM_TRUTH=${FROM_TRUTH:-}       # with SAMPLE=truth or accuracy
TRUTH_SEED=${TRUTH_SEED:-}       # the recipe's training seed (a pilot's: 100)
STOP_AFTER=${STOP_AFTER:-}       # a pilot's epochs of the EPOCHS schedule (8)
LR=${LR:-}                       # the peak learning rate; empty: the bench recipe's (0.006)
REUSE=${REUSE:-}                 # truths (comma-separated) whose identical jobs are copied in
mkdir -p "$OUT" "$WORK"
if [ -n "$SEED_TRUTH" ]; then
  mkdir -p "$WORK/truth" && cp -r "$SEED_TRUTH/plan.json" "$SEED_TRUTH/results" "$WORK/truth/"
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# truth_overrides below replaces the recipe's list, so its lr is carried over (one source: the
# recipe); LR=0.003 trains as the truths kept before 2026-12-06 evening did
LR=${LR:-$("$PY" -c "from dnatool.bench.ranking import load_ranking_recipe as r
print(*[o.split('=', 1)[1] for o in r('bench-ranking').truth_overrides if o.startswith('lr=')])")}
left() { echo $((BUDGET - ($(date +%s) - began))); }

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nproc --all
  "$PY" -c "import torch, timm, numpy, PIL; print('torch', torch.__version__, 'timm', timm.__version__, 'numpy', numpy.__version__, 'pillow', PIL.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

mps=0
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
if nvidia-cuda-mps-control -d 2>>"$OUT/machine.txt"; then mps=1; fi

"$PY" - "$WORK/data" "$DATA_OPTIONS" <<'EOF' &
import sys
import yaml
from dnatool.data.cluttered import generate, spec_from_options
generate(sys.argv[1], spec_from_options(yaml.safe_load(sys.argv[2])))
EOF
gen=$!
plan=${SEED_TRUTH:-docs/figures/ranking-truth-narrow18-2026-12-05}/plan.json  # archs of the same space
timeout 150 "$PY" benchmarks/gpu/step_speed.py "$plan" 13 "$MODE" >"$OUT/step_speed.json" 2>"$OUT/step_speed.err"
speed=$?
if [ $speed -ne 0 ] && [ $mps -eq 1 ]; then  # MPS itself may be what fails: retry without it
  echo quit | nvidia-cuda-mps-control; mps=0
  timeout 150 "$PY" benchmarks/gpu/step_speed.py "$plan" 13 "$MODE" >"$OUT/step_speed.json" 2>>"$OUT/step_speed.err"
  speed=$?
fi
[ $speed -eq 0 ] || MODE=null
wait $gen
(cd "$WORK/data" && find . -type f -name '*.png' | sort | xargs cat | sha256sum) >"$OUT/data.sha256"
echo "mps=$mps mode=$MODE space=$SPACE sample=$SAMPLE epochs=$EPOCHS lr=${LR:-recipe} data=$DATA_OPTIONS left=$(left)s" | tee -a "$OUT/machine.txt"

nvidia-smi dmon -s u -d 10 >"$OUT/dmon.log" 2>&1 &
dmon=$!
timeout -s INT -k 15 $(($(left) - 45)) "$PY" -m dnatool bench ranking -o space="$SPACE" -o sample="$SAMPLE" ${FROM_TRUTH:+-o from_truth="$FROM_TRUTH"} ${REUSE:+-o "reuse=[$REUSE]"} -o archs="$ARCHS" -o seeds="$SEEDS" \
  -o "truth_overrides=[epochs=$EPOCHS,compile=$MODE${TRUTH_SEED:+,seed=$TRUTH_SEED}${STOP_AFTER:+,stop_after=$STOP_AFTER}${LR:+,lr=$LR}]" -o "data_options=$DATA_OPTIONS" \
  --methods none --workers "$WORKERS" \
  --out "$WORK" >"$OUT/bench.log" 2>&1
echo "bench rc=$? left=$(left)s" | tee -a "$OUT/machine.txt"
kill $dmon 2>/dev/null
tar czf "$OUT/truth.tgz" -C "$WORK" --exclude='*.pt' --exclude='*.png' truth
ls "$WORK/truth/results" | wc -l
