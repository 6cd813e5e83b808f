#!/usr/bin/env bash
# handcli demo on the built-in synthetic default (about 7 minutes on 2 CPU cores, docs/benchmarks.md):
# synth InterHand2.6M (realistic profile: annotation error, capture effects; docs/datasets.md) ->
# preprocess (256x167, masks refined against the image) -> targets (pseudo-depth, teacher features) ->
# train HandOcc and HandNeRF on the same views (fast presets, the training budget split between them) ->
# render held-out views + orbit videos -> eval -> one report page, demo_out/index.html.
set -euo pipefail
OUT=${1:-demo_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-330}                      # both trainings together
HANDOCC_SECONDS=${HANDOCC_SECONDS:-$((TRAIN_SECONDS * 4 / 11))}
HANDNERF_SECONDS=${HANDNERF_SECONDS:-$((TRAIN_SECONDS - HANDOCC_SECONDS))}
FRAMES=${DEMO_FRAMES:-6}          # per sequence; smaller values make a quick smoke run (tests/test_demo.py)
ORBIT=${DEMO_ORBIT:-12}
MAX_VIEWS=${DEMO_MAX_VIEWS:-8}
MESH_RES=${DEMO_MESH_RES:-64}
mkdir -p "$OUT"
say() { echo "== $*" >&2; }
say "handcli demo: outputs in $OUT (open $OUT/index.html when it is done)"
START=$(date +%s)
TRAIN_CAMS=400002,400004,400010,400012,400013,400016
TEST_CAMS=400009,400017
handcli synth interhand "$OUT/interhand" --frames "$FRAMES" --cameras 9 --seqs right,interacting \
  --camera-ids 400002,400009,400004,400017,400010,400012,400013,400016 --seed 0 --profile realistic --force
handcli preprocess interhand "$OUT/interhand" -o "$OUT/cache.h5" --scale 0.5 --refine-masks 8 --workers 2 --force
handcli inspect "$OUT/cache.h5"
handcli hand show --pose fist -o "$OUT/hand.png" --force
handcli targets depth "$OUT/cache.h5" -o "$OUT/depth.h5" --force
handcli targets features "$OUT/cache.h5" -o "$OUT/feats.h5" --teacher efficientnet-lite0 --dim 32 --force
for METHOD in handocc handnerf; do
  if [ "$METHOD" = handocc ]; then SECONDS_M=$HANDOCC_SECONDS; EXTRA=(); else
    SECONDS_M=$HANDNERF_SECONDS; EXTRA=(--depth "$OUT/depth.h5" --features "$OUT/feats.h5"); fi
  say "training $METHOD (fast preset, ${SECONDS_M}s budget)"
  mkdir -p "$OUT/$METHOD"
  handcli train "$OUT/cache.h5" --method "$METHOD" --preset fast -o "$OUT/$METHOD/run" "${EXTRA[@]}" \
    --cameras "$TRAIN_CAMS" --eval-cameras "$TEST_CAMS" --time-budget "$SECONDS_M" --fit-budget \
    --snapshot-every 100000 --log-every 10 --force
  handcli render "$OUT/$METHOD/run" "$OUT/cache.h5" -o "$OUT/$METHOD/renders" --views "$TEST_CAMS" \
    --max-views "$MAX_VIEWS" --orbit "$ORBIT" --force
  handcli eval "$OUT/$METHOD/renders" "$OUT/cache.h5" -o "$OUT/$METHOD/metrics.json" --depth "$OUT/depth.h5" \
    --force
done
# the mesh picture is optional in the report: a run too short to have a surface yet (tiny budgets) says so
handcli mesh "$OUT/handocc/run" --frame 0 -o "$OUT/handocc/mesh" --resolution "$MESH_RES" --force ||
  say "no HandOcc mesh (see the error above); the report goes on without it"
handcli report "$OUT" -o "$OUT/index.html" --title "handcli demo: HandOcc and HandNeRF" --seconds $(( $(date +%s) - START )) --force
say "demo done in $(( $(date +%s) - START )) s: open $OUT/index.html in a browser"
