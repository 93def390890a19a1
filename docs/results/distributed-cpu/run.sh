#!/usr/bin/env bash
# The CPU scaling measurement (docs/results/distributed-cpu.md): run from the repository root.
set -euo pipefail
DEST=${DEST:-docs/results/distributed-cpu}
DATA=${DATA:-$HOME/.cache/torch-api-bench/synthetic-5000-1000-0}
mkdir -p "$DEST/results"
COMMON="--device cpu --model resnet18 --data $DATA --train-limit 512 --test-limit 200 --epochs 2 --lr 0.02 --latency-iters 0 --no-sync-blocks 2"
job() {  # job LANG NPROC NAME FLAGS...
  local lang=$1 nproc=$2 name=$3; shift 3
  local launch="torchrun --standalone --nproc-per-node $nproc"
  if [ "$lang" = cpp ]; then launch="$launch --no-python build/bench_train"; else launch="$launch -m bench.train"; fi
  echo "$ $launch $COMMON $* --results $DEST/results/$name.json"
  $launch $COMMON "$@" --results "$DEST/results/$name.json" 2>&1 | grep -E "^epoch|error" || true
}
for repeat in 1 2; do
  for lang in python cpp; do
    job $lang 1 $lang-x1-t1-b32-r$repeat --batch-size 32 --threads 1 --repeat $repeat
    job $lang 2 $lang-x2-t1-b32-r$repeat --batch-size 32 --threads 1 --repeat $repeat
  done
done
for lang in python cpp; do
  job $lang 1 $lang-x1-t2-b64 --batch-size 64 --threads 2
  job $lang 2 $lang-x2-t1-b32-flat --batch-size 32 --threads 1 --grad-sync flat
  job $lang 2 $lang-x2-t1-b32-traced --batch-size 32 --threads 1 --trace-steps 4 --trace-dir $DEST/results/$lang-x2-t1-b32-traced-traces
done
