#!/usr/bin/env bash
# handcli demo on the built-in synthetic default: synthesize a small InterHand2.6M dataset in its real
# layout, preprocess it into a cache (HandNeRF resolution 256x167) and print a summary.
set -euo pipefail
OUT=${1:-demo_out}
mkdir -p "$OUT"
echo "== handcli demo: outputs in $OUT" >&2
handcli synth interhand "$OUT/interhand" --frames 6 --cameras 8 --seqs right,interacting --seed 0 --force
handcli preprocess interhand "$OUT/interhand" -o "$OUT/cache.h5" --scale 0.5 --workers 2 --force
handcli hand show --pose fist -o "$OUT/hand.png" --force
handcli inspect "$OUT/cache.h5"
echo "== demo done: $OUT/cache.h5, $OUT/hand.png" >&2
