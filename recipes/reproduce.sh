#!/usr/bin/env bash
# The reproduction run and the paper's ablation table on the embedded synthetic default
# (docs/results.md): one dataset, seven rows, each row's model trained for $STEPS generator
# steps, evaluated on the test split and on a test split of another seed.
#
#   bash recipes/reproduce.sh            # ~1 hour on 2 cores; rerun the same command to resume
#   STEPS=600 OUT=runs/long bash recipes/reproduce.sh
#
# Rows: full (start from coarse + WGAN-GP); without decoder, without refiner, without identity
# loss (each against the model without GAN, whose steps cost 5x fewer); without GAN; the
# release's architecture and objective (tanh output, 7-channel input, L_sym 0.5, the
# release's per-epoch schedule). Every step resumes: make_synthetic continues after its last
# shard, train restores its latest checkpoint, evaluation reruns in a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-300}
OUT=${OUT:-runs/reproduce}
DATA=$OUT/data
"$PYTHON" -m scripts.make_synthetic --output_dir="$DATA" --num_train=512 --num_val=16 --num_test=64
"$PYTHON" -m scripts.make_synthetic --output_dir="$OUT/data_seed1" --seed=1 --num_train=0 \
  --num_val=0 --num_test=64

train() {
  local name=$1
  shift
  "$PYTHON" -m scripts.train --data_dir="$DATA" --checkpoint_dir="$OUT/$name" \
    --sampling_dir="$OUT/sampling" --restore --max_steps="$STEPS" "$@"
}
train no_gan --flagfile=recipes/reproduce.flags
train no_decoder --flagfile=recipes/reproduce.flags --ablation=no_decoder
train no_refiner --flagfile=recipes/reproduce.flags --ablation=no_refiner
train no_identity --flagfile=recipes/reproduce.flags --lambda_id=0
train release --epoch=1000
train full --flagfile=recipes/reproduce.flags --gan

ROWS=full,no_decoder,no_refiner,no_gan,no_identity,release
LABELS="full,without decoder,without refiner,without GAN,without identity loss,release architecture"
for split in data data_seed1; do
  "$PYTHON" -m scripts.evaluate --data_dir="$OUT/$split" --output_dir="$OUT/evaluate_$split" \
    --checkpoints="$(echo "$ROWS" | sed "s|\([^,]*\)|$OUT/\1|g")" --labels="$LABELS"
done
echo "Tables: $OUT/evaluate_data/results.md, $OUT/evaluate_data_seed1/results.md"
