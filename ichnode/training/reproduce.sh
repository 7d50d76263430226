#!/usr/bin/env bash
# Exact commands behind docs/models/{004,003,001}/ (5-fold CV reports) and ichnode/weights/ (shipped weights).
# Run from the repository root with the project's virtualenv active; CPU, one torch thread, low priority.
# Checkpoints (resumable) go to var/training/ (git-ignored). Data: ../shared/data/head-ct-png (not in the repo).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=../shared/data/head-ct-png
PY="nice -n 19 python"
# model  seed  epochs (= the paper's)  image size
while read -r seed epochs; do
  $PY -m ichnode.training.crossval "$seed" --data "$DATA" --out "docs/models/$seed" \
      --work "var/training/cv/$seed" --folds 5 --epochs "$epochs" --image-size 128 --seed 0 --threads 1
  $PY -m ichnode.training.classify "$seed" --data "$DATA" --out ichnode/weights \
      --work "var/training/final/$seed" --epochs "$epochs" --image-size 128 --seed 0 --threads 1 \
      --cv-metrics "docs/models/$seed/metrics.json" --cv-report "docs/models/$seed/report.md"
done <<'MODELS'
004 30
003 20
001 50
MODELS

# Synthetic phantoms (no data needed): seed 002 Dense U-Net and seed 000 3D ResNet, then the held-out
# evaluation (docs/models/synthetic/) that also writes the measured numbers into their model cards.
# Adam and width 0.5 for 002: see ichnode/training/segment.py (SGD at the paper's lr did not learn in budget).
$PY -m ichnode.training.segment --out ichnode/weights --work var/training/synthetic/002 --phantoms 160 \
    --epochs 6 --optimizer adam --width 0.5 --max-positive 8 --val 12 --seed 0 --threads 1 \
    --report docs/models/synthetic/report.md
$PY -m ichnode.training.regress3d --out ichnode/weights --work var/training/synthetic/000 --phantoms 320 \
    --epochs 24 --val 12 --seed 0 --threads 1 --report docs/models/synthetic/report.md
$PY -m ichnode.training.evaluate_synthetic --out docs/models/synthetic --per-group 8 --none 4 --seed 0 \
    --threads 1 --update-cards
