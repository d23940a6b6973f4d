#!/usr/bin/env bash
# FCN-score on the real facades, on one GPU, in about 6 minutes:
#
#   bash benchmarks/gpu_eval_facades.sh DATA_ROOT OUT_DIR [SEG_SECONDS] [PIX_SECONDS]
#
# 1. train the facades segmenter (recipes/fcn_facades.toml, photo -> 12 classes), shortened;
# 2. train pix2pix with the paper recipe (labels -> photo) for PIX_SECONDS, then SIGTERM (checkpoint);
# 3. `tkit eval` pix2pix on the 106 test images with that segmenter, in eval and paper mode;
#    JSON reports and a 16-image result page go to OUT_DIR.
set -euo pipefail
data=${1:?data root with train/ val/ test/}
out=${2:?output folder}
seg_seconds=${3:-170}
pix_seconds=${4:-160}
runs=$(mktemp -d)
mkdir -p "$out"
common=(--set "data.root=$data" --set "run.dir=$runs" --device cuda)

echo "== segmenter (fcn_resnet50 from scratch, 25 + 10 epochs or ${seg_seconds}s)"
timeout --signal=TERM "$seg_seconds" tkit train fcn_facades "${common[@]}" \
  --set train.epochs=25 --set train.decay_epochs=10 --set train.checkpoint_every=5 || echo "segmenter stopped: $?"
echo "== pix2pix (paper recipe) for ${pix_seconds}s"
timeout --signal=TERM "$pix_seconds" tkit train pix2pix_facades "${common[@]}" \
  --set train.checkpoint_every=2 --set train.log_every=400 || echo "pix2pix stopped: $?"
echo "== eval, eval mode"
tkit eval "$runs/pix2pix_facades" --segmenter "$runs/fcn_facades" --data-root "$data" --device cuda \
  --no-images --json "$out/eval_mode.json"
echo "== eval, paper mode"
tkit eval "$runs/pix2pix_facades" --segmenter "$runs/fcn_facades" --data-root "$data" --device cuda \
  --mode paper --no-images --json "$out/paper_mode.json"
tkit eval "$runs/pix2pix_facades" --segmenter "$runs/fcn_facades" --data-root "$data" --device cuda \
  --limit 16 --out "$runs/page" > /dev/null
tar -czf "$out/eval_page.tar.gz" -C "$runs" page
tail -n 3 "$runs/fcn_facades/losses.jsonl" > "$out/segmenter_tail.jsonl"
tail -n 3 "$runs/pix2pix_facades/losses.jsonl" > "$out/pix2pix_tail.jsonl"
