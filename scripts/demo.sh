#!/usr/bin/env bash
# handcli demo on the built-in synthetic default (about 10 minutes on 2 CPU cores):
# synth InterHand2.6M -> preprocess (256x167) -> targets (pseudo-depth, teacher features) ->
# train HandNeRF (fast preset) -> render held-out views + an orbit video -> eval (metrics table).
set -euo pipefail
OUT=${1:-demo_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-240}
mkdir -p "$OUT"
say() { echo "== $*" >&2; }
say "handcli demo: outputs in $OUT"
TRAIN_CAMS=400002,400004,400010,400012,400013,400016
TEST_CAMS=400009,400017
handcli synth interhand "$OUT/interhand" --frames 6 --cameras 9 --seqs right,interacting \
  --camera-ids 400002,400009,400004,400017,400010,400012,400013,400016 --seed 0 --force
handcli preprocess interhand "$OUT/interhand" -o "$OUT/cache.h5" --scale 0.5 --workers 2 --force
handcli inspect "$OUT/cache.h5"
handcli hand show --pose fist -o "$OUT/hand.png" --force
handcli targets depth "$OUT/cache.h5" -o "$OUT/depth.h5" --force
handcli targets features "$OUT/cache.h5" -o "$OUT/feats.h5" --teacher efficientnet-lite0 --dim 32 --force
say "training HandNeRF (fast preset, ${TRAIN_SECONDS}s budget)"
handcli train "$OUT/cache.h5" --method handnerf --preset fast -o "$OUT/run" --depth "$OUT/depth.h5" \
  --features "$OUT/feats.h5" --cameras "$TRAIN_CAMS" --eval-cameras "$TEST_CAMS" \
  --steps 3000 --time-budget "$TRAIN_SECONDS" --snapshot-every 500 --force
handcli render "$OUT/run" "$OUT/cache.h5" -o "$OUT/renders" --views "$TEST_CAMS" --max-views 8 --orbit 12 --force
handcli eval "$OUT/renders" "$OUT/cache.h5" -o "$OUT/metrics.json" --depth "$OUT/depth.h5" --force
say "demo done: $OUT/metrics.json, $OUT/renders/contact_sheet.png, $OUT/renders/orbit.mp4, $OUT/run/curves.png"
