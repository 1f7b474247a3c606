#!/usr/bin/env bash
# How the shipped default model was trained (device call, Keras 3 on JAX, no TensorFlow):
#   CROPS=32 MIN=5 BENCH_S=60 bash streamcolor/trainer/gpu/run_h200.sh   (carry: data/carry, .whl with keras/namex/optree)
# then here: python streamcolor/trainer/gpu/unpack.py run-a-final.npz run-a/run.json w/ && streamcolor train export w/colorizer.weights.h5 streamcolor/engines/weights/seed --ship
# One device call: Keras wheels, shards prepared on the GPU, two trainings side
# by side (method's lr 1e-3, and 3e-4), inference timing, then pack results.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
R=/tmp/runs; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
T0=$(date +%s)
python3 -m streamcolor.trainer.cli prepare ${PHOTOS:-data/carry} -o /tmp/shards --size 224 --crops-per-photo ${CROPS:-24} --embed-batch 128 > $R/prepare.log 2>&1
echo "prepare rc=$? $(( $(date +%s) - T0 )) s"; tail -4 $R/prepare.log
for cfg in "a 0.001" "b 0.0003"; do set -- $cfg
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 python3 -m streamcolor.trainer.cli fit /tmp/shards -r $R/run-$1 --max-minutes ${MIN:-5.5} \
    --batch-size 100 --lr $2 --checkpoint-every ${CKPT:-300} --keep-checkpoints 40 --log-every 50 --val-examples 1000 \
    > $R/fit-$1.log 2>&1 &
done
wait
echo "fit done $(( $(date +%s) - T0 )) s"
for r in a b; do cp $R/fit-$r.log $R/run-$r/fit.log; tail -2 $R/fit-$r.log; tail -3 $R/run-$r/log.csv; done
timeout ${BENCH_S:-80} python3 streamcolor/trainer/gpu/bench_infer.py > $R/bench.log 2>&1; tail -8 $R/bench.log
python3 streamcolor/trainer/gpu/pack.py
echo "total $(( $(date +%s) - T0 )) s"; ls -la $OUT
