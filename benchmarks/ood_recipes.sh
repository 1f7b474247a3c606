#!/usr/bin/env bash
# Training recipes judged on whole packages held out from training (not the holdout): does a recipe
# that fits its own sources less closely colour photos from unseen sources better?
#
#   bash benchmarks/ood_recipes.sh WORK_DIR     # about 25 minutes on 2 AVX-512 cores
#
# Ten of the training packages (about 120 photos: panoramas, textures, wallpapers, puzzles, lab
# photos) are left out of the shards; the U-Net decoder is trained on the rest (12 crops a photo at
# 224) with three recipes, each exported and evaluated at render 320 on the ten packages' photos:
#   A  the shipped recipe's schedule: 2 epochs, Adam 1e-3, cosine, 100 warm-up steps
#   B  the same for 1 epoch
#   C  2 epochs with spatial dropout 0.3 and weight decay 0.05
#   D  2 epochs with the class-rebalanced loss (--loss rebalanced: more colour)
#   E  D with C's dropout and weight decay
# Writes WORK_DIR/eval-{A,B,C,D,E}-ood.json (streamcolor train eval --json).
#
#   bash benchmarks/ood_recipes.sh WORK_DIR all # then A and E on all the training data (24 crops a
#                                               # photo), scored on val and the holdout: 30 minutes
# writes WORK_DIR/all/eval-{A,E}.json.  python -m benchmarks.ood_recipes WORK_DIR --out FILE gathers
# them all into one results file.
set -euo pipefail
WORK=${1:?usage: ood_recipes.sh WORK_DIR}
cd "$(dirname "$0")/.."
SC=${STREAMCOLOR:-.venv/bin/streamcolor}
P=data/photos
OOD="stellarium-data sweethome3d lomiri-wallpapers-16.04 mate-backgrounds grub2-splashimages jigzo-data
     plasma-workspace-wallpapers palapeli-data eyes17 psychtoolbox-3-common"
HOLDOUT="budgie-backgrounds gnome-recipes-data hugin-data kphotoalbum lxqt-themes qtbase5-examples
         qtdeclarative5-examples wordpress-theme-twentytwentyfive wordpress-theme-twentytwentyfour"
TRAIN=()
for d in "$P"/*/; do
  n=$(basename "$d")
  case " $(echo $OOD $HOLDOUT) " in *" $n "*) ;; *) TRAIN+=("$d") ;; esac
done
OOD_DIRS=()
for n in $OOD; do OOD_DIRS+=("$P/$n"); done
mkdir -p "$WORK"
if [ "${2:-}" = all ]; then
  $SC train prepare "$P" -o "$WORK/all/shards" --crops-per-photo 24 -q
  for cfg in "E --epochs 2 --loss rebalanced --dropout 0.3 --weight-decay 0.05" "A --epochs 2"; do
    set -- $cfg
    name=$1
    shift
    $SC train fit "$WORK/all/shards" -r "$WORK/all/run-$name" "$@" -b 32 --lr 1e-3 --lr-schedule cosine \
      --warmup-steps 100 --mixed-precision --sample-images 0 -q
    $SC train export "$WORK/all/run-$name" "$WORK/all/bundle-$name" -q
    $SC train eval -m "$WORK/all/bundle-$name" "$P" --split val --split holdout --size 320 \
      --json "$WORK/all/eval-$name.json" -q
  done
  exit 0
fi
$SC train prepare "${TRAIN[@]}" -o "$WORK/shards" --crops-per-photo 12 -q
for cfg in "A --epochs 2" "B --epochs 1" "C --epochs 2 --dropout 0.3 --weight-decay 0.05" \
    "D --epochs 2 --loss rebalanced" "E --epochs 2 --loss rebalanced --dropout 0.3 --weight-decay 0.05"; do
  set -- $cfg
  name=$1
  shift
  $SC train fit "$WORK/shards" -r "$WORK/run-$name" "$@" -b 32 --lr 1e-3 --lr-schedule cosine --warmup-steps 100 \
    --mixed-precision --sample-images 0 -q
  $SC train export "$WORK/run-$name" "$WORK/bundle-$name" -q
  $SC train eval -m "$WORK/bundle-$name" "${OOD_DIRS[@]}" --size 320 --json "$WORK/eval-$name-ood.json" -q
done
