#!/usr/bin/env bash
# The papers' full configurations on lesions inserted into real anatomy, for a machine with a GPU:
#
#   ichnode/training/gpu.sh [WORK]        (default WORK: var/training/gpu)
#
# Not run here: no GPU was lent to this project yet (docs/models/real-anatomy-2d.md, -3d.md have the
# CPU runs and their small configurations). Every step checkpoints each epoch under WORK and resumes
# where it stopped when run again; the training loops pick the GPU themselves (cuda when present).
# Needs ../shared/data/cq500-ct0 and ../shared/data/head-ct-png. Writes weights under WORK only:
# compare them with docs/models/ before putting any in ichnode/weights/.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-var/training/gpu}
PY=".venv/bin/python"
mkdir -p "$WORK"

# Real-anatomy data: 400 training cases (seeds 1000-1399), 100 held out (2000-2099), paired negatives.
[ -f "$WORK/train-2d.npz" ] || $PY -m ichnode.training.real_anatomy generate --seeds 1000:1400 \
    --paired-negatives --out "$WORK/train-2d.npz"
[ -f "$WORK/heldout-2d.npz" ] || $PY -m ichnode.training.real_anatomy generate --seeds 2000:2100 \
    --no-background --out "$WORK/heldout-2d.npz"
[ -f "$WORK/train-3d.npz" ] || $PY -m ichnode.training.real_anatomy_volumes generate --seeds 1000:1400 \
    --out "$WORK/train-3d.npz"

# 2D classifiers (004, 003, 001): the paper configuration at 224 px, 3 augmented copies of each real
# slice, head-ct-png 5-fold CV (scored on the held-out slices too), then the final model.
while read -r model epochs; do
  for step in crossval train; do
    $PY -m ichnode.training.real_anatomy "$step" "$model" --paper-size --image-size 224 --copies 3 \
        --epochs "$epochs" --real "$WORK/train-2d.npz" --heldout "$WORK/heldout-2d.npz" \
        --out "$WORK/$model-paper/$step" --threads 8
  done
done <<'MODELS'
resnet50_cls 30
vgg_wso 20
dtvit 50
MODELS

# Dense U-Net (002) with the shipped recipe (width 0.5: train_unet) for 40 epochs, and the 3D ResNet (000)
# for the paper's 300 epochs.
$PY -m ichnode.training.real_anatomy_volumes train-unet --sets "$WORK/train-3d.npz" --out "$WORK/unet" \
    --epochs 40 --threads 8
$PY -m ichnode.training.real_anatomy_volumes train-resnet --sets "$WORK/train-3d.npz" --out "$WORK/r3d" \
    --epochs 300 --threads 8
