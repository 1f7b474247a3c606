#!/usr/bin/env bash
# The U-Net trained on data/photos plus a folder of more photos (the surveys' finds of
# docs/training-data.md, gathered by hand: they are not collected or shipped), with the shipped
# schedule at 24 crops a photo, two seeds, scored on data/photos' val and holdout, for
# python -m benchmarks.encoders lite0=... more=WORK/extra (against the same schedule without them,
# benchmarks/ood_cv.sh WORK all A [1]).  The extra photos have no manifest: about a tenth of them
# go to prepare's own val split by a hash, which training leaves out like any val photo.
#
#   bash benchmarks/more_photos.sh WORK_DIR EXTRA_DIR     # about 45 minutes on 2 cores
set -euo pipefail
WORK=${1:?usage: more_photos.sh WORK_DIR EXTRA_DIR}
EXTRA=${2:?usage: more_photos.sh WORK_DIR EXTRA_DIR}
cd "$(dirname "$0")/.."
SC=${STREAMCOLOR:-.venv/bin/streamcolor}
W="$WORK/extra"
mkdir -p "$W"
[ -f "$W/shards/meta.json" ] || $SC train prepare data/photos "$EXTRA" -o "$W/shards" --crops-per-photo 24 -q
for seed in 0 1; do
  name=A; [ "$seed" = 0 ] || name="A-s$seed"
  [ -f "$W/eval-$name.json" ] && continue
  $SC train fit "$W/shards" -r "$W/run-$name" --epochs 2 --seed "$seed" -b 32 --lr 1e-3 --lr-schedule cosine \
    --warmup-steps 100 --mixed-precision --sample-images 0 -q
  $SC train export "$W/run-$name" "$W/bundle-$name" -q
  $SC train eval -m "$W/bundle-$name" data/photos --split val --split holdout --size 320 --per-image \
    --json "$W/eval-$name.json" -q
  rm -rf "$W/run-$name/checkpoints"
done
