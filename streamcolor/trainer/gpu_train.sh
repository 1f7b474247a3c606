#!/usr/bin/env bash
# Train on a GPU machine with Keras on JAX (TensorFlow not needed):
# photos -> shards (extractor on the GPU) -> fit for a wall-clock budget -> model.
#
#   streamcolor/trainer/gpu_train.sh [PHOTOS] [OUT] [MAX_MINUTES] [extra `fit` options...]
#   streamcolor/trainer/gpu_train.sh data/carry out/gpu 8 --mixed-precision --lr-schedule constant
#
# Environment knobs (defaults in brackets): PYTHON [python], SIZE [224],
# CROPS [8: random crops per photo], BATCH [100], CKPT_EVERY [500],
# KERAS_BACKEND [jax].  Rerunning resumes both the shards and the training.
# Writes OUT/shards/ and OUT/run/ (checkpoints/, log.csv, samples/,
# colorizer.keras, colorizer.weights.h5, run.json).  Export the bundle later
# on a machine with TensorFlow: `streamcolor train export OUT/run BUNDLE`.
set -euo pipefail
cd "$(dirname "$0")/.."

PHOTOS=${1:-data/carry}
OUT=${2:-out/gpu}
MINUTES=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
PY=${PYTHON:-python}
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
# Let JAX grow its GPU memory instead of taking 75% up front (the extractor and the colorizer share it).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}

"$PY" - <<'PYEOF'
import keras, jax
print(f"keras {keras.__version__} on {keras.backend.backend()}; jax devices: {jax.devices()}")
PYEOF

start=$(date +%s)
rc=0
"$PY" -m streamcolor.trainer.cli prepare "$PHOTOS" -o "$OUT/shards" --size "${SIZE:-224}" \
    --crops-per-photo "${CROPS:-8}" --embed-batch 64 || rc=$?
# Status 2: finished, but some unreadable files were skipped (listed above).
if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then exit "$rc"; fi
echo "prepare: $(( $(date +%s) - start )) s"

"$PY" -m streamcolor.trainer.cli fit "$OUT/shards" -r "$OUT/run" --max-minutes "$MINUTES" \
    --batch-size "${BATCH:-100}" --checkpoint-every "${CKPT_EVERY:-500}" --log-every 20 "$@"
echo "total: $(( $(date +%s) - start )) s"
tail -n 5 "$OUT/run/log.csv"
ls -la "$OUT/run"
