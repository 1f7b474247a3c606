#!/usr/bin/env bash
# Training recipes judged by package-grouped cross-validation: every training package is scored
# once, by a model trained without it, so the ranking rests on about 650 photos from sources each
# model never saw (benchmarks/ood_recipes.sh scored one set of ten packages, 105 photos, where one
# run per recipe could not tell recipes a few percent apart).
#
#   bash benchmarks/ood_cv.sh WORK_DIR [SEED]   # about 70 minutes on 2 AVX-512 cores
#
# Three folds of the training packages (the holdout packages are never touched): gcompris-qt-data
# alone (267 photos from many original sources); tuxpaint's photo stamps with the wallpapers,
# panoramas and library samples; the scene photos, textures, lab photos and the rest. For each fold
# the U-Net decoder is trained on the other two (12 crops a photo at 224) with each recipe,
# exported, and evaluated at render 320 on the fold's photos with per-image figures:
#   A  the shipped recipe's schedule: 2 epochs, Adam 1e-3, cosine, 100 warm-up steps
#   C  A with spatial dropout 0.3 and weight decay 0.05
#   E  C with the class-rebalanced loss
# Writes WORK_DIR/fold{1,2,3}/eval-{A,C,E}-s{SEED}.json.  python -m benchmarks.ood_cv WORK_DIR --out
# FILE pools them: a*b* MSE over gray and colourfulness over all folds' photos, per recipe and seed.
#
#   bash benchmarks/ood_cv.sh WORK_DIR all RECIPE   # RECIPE trained on all the training photos (24 crops
#                                                   # a photo, seed 0, the last weights) and scored on val
#                                                   # and the holdout: WORK_DIR/all/eval-RECIPE.json (30 min)
#   bash benchmarks/ood_cv.sh WORK_DIR all RECIPE FIT_SEED   # the same with another seed of the fit
#                                                   # (eval-RECIPE-sSEED.json); ENCODER=efficientnet_lite2
#                                                   # builds the U-Net on EfficientNet-Lite2 (WORK_DIR/all-lite2)
#
#   bash benchmarks/ood_cv.sh WORK_DIR gain SEED RECIPE GAIN...   # the folds' RECIPE models scored again
#                                   # with their a*b* times GAIN (train eval --saturation): eval-R-sS-gG.json
set -euo pipefail
WORK=${1:?usage: ood_cv.sh WORK_DIR [SEED | all RECIPE [FIT_SEED] | gain SEED RECIPE GAIN...]}
SEED=${2:-0}
RECIPES=${RECIPES:-A C E}
cd "$(dirname "$0")/.."
SC=${STREAMCOLOR:-.venv/bin/streamcolor}
P=data/photos
FOLD1="gcompris-qt-data"
FOLD2="tuxpaint-stamps-default stellarium-data lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds
       jigzo-data python3-skimage python3-sklearn python3-scipy python-matplotlib-data cimg-examples"
FOLD3="scratch kalzium-data tuxpaint-data sweethome3d grub2-splashimages plasma-workspace-wallpapers eyes17
       psychtoolbox-3-common palapeli-data wand-doc gimp-data gimp-data-extras sddm-theme-maldives libvips-doc
       imagemagick-6-doc digikam-data darktable"
dirs() { for n in "$@"; do [ -d "$P/$n" ] && echo "$P/$n"; done; }
recipe() {
  case $1 in
    A) echo "--epochs 2" ;;
    C) echo "--epochs 2 --dropout 0.3 --weight-decay 0.05" ;;
    E) echo "--epochs 2 --loss rebalanced --dropout 0.3 --weight-decay 0.05" ;;
    *) echo "unknown recipe $1" >&2; return 2 ;;
  esac
}
if [ "$SEED" = gain ]; then
  seed=${3:?}; name=${4:?}; shift 4
  for g in "$@"; do
    for k in 1 2 3; do
      case $k in 1) test=$FOLD1 ;; 2) test=$FOLD2 ;; 3) test=$FOLD3 ;; esac
      out="$WORK/fold$k/eval-$name-s$seed-g$g.json"
      [ -f "$out" ] && continue
      # shellcheck disable=SC2086
      $SC train eval -m "$WORK/fold$k/bundle-$name-s$seed" $(dirs $test) --size 320 --saturation "$g" --per-image \
        --json "${out%.json}.part.json" -q
      mv "${out%.json}.part.json" "$out"
    done
  done
  exit 0
fi
if [ "$SEED" = all ]; then
  recipe_name=${3:?usage: ood_cv.sh WORK_DIR all RECIPE [FIT_SEED]}
  fit_seed=${4:-0}
  args=$(recipe "$recipe_name")
  # ENCODER=efficientnet_lite2: the U-Net on EfficientNet-Lite2 (its own shards, in WORK_DIR/all-lite2)
  encoder=${ENCODER:-efficientnet_lite0}
  W="$WORK/all"
  [ "$encoder" = efficientnet_lite0 ] || W="$WORK/all-${encoder#efficientnet_}"
  name=$recipe_name
  [ "$fit_seed" = 0 ] || name="$recipe_name-s$fit_seed"
  mkdir -p "$W"
  [ -f "$W/shards/meta.json" ] || $SC train prepare "$P" -o "$W/shards" --crops-per-photo 24 --extractor "$encoder" -q
  # shellcheck disable=SC2086
  $SC train fit "$W/shards" -r "$W/run-$name" $args --seed "$fit_seed" -b 32 --lr 1e-3 --lr-schedule cosine \
    --warmup-steps 100 --mixed-precision --sample-images 0 -q
  $SC train export "$W/run-$name" "$W/bundle-$name" -q
  $SC train eval -m "$W/bundle-$name" "$P" --split val --split holdout --size 320 --per-image \
    --json "$W/eval-$name.json" -q
  rm -rf "$W/run-$name/checkpoints"
  exit 0
fi
mkdir -p "$WORK"
for k in 1 2 3; do
  case $k in
    1) test=$FOLD1; train="$FOLD2 $FOLD3" ;;
    2) test=$FOLD2; train="$FOLD1 $FOLD3" ;;
    3) test=$FOLD3; train="$FOLD1 $FOLD2" ;;
  esac
  W="$WORK/fold$k"
  mkdir -p "$W"
  # shellcheck disable=SC2086
  [ -f "$W/shards/meta.json" ] || $SC train prepare $(dirs $train) -o "$W/shards" --crops-per-photo 12 -q
  for name in $RECIPES; do
    args=$(recipe "$name")
    out="$W/eval-$name-s$SEED.json"
    [ -f "$out" ] && continue
    # shellcheck disable=SC2086
    $SC train fit "$W/shards" -r "$W/run-$name-s$SEED" $args --seed "$SEED" -b 32 --lr 1e-3 --lr-schedule cosine \
      --warmup-steps 100 --mixed-precision --sample-images 0 -q
    $SC train export "$W/run-$name-s$SEED" "$W/bundle-$name-s$SEED" -q
    # shellcheck disable=SC2086
    $SC train eval -m "$W/bundle-$name-s$SEED" $(dirs $test) --size 320 --per-image --json "${out%.json}.part.json" -q
    mv "${out%.json}.part.json" "$out"
    rm -rf "$W/run-$name-s$SEED/checkpoints"
  done
done
