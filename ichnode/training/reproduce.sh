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
