#!/usr/bin/env bash
# Check translate-kit's GPU paths and train pix2pix on the real facades for a while on one GPU.
#
#   bash benchmarks/gpu_facades.sh DATA_ROOT OUT_DIR [SECONDS] [all|paper]
#
# 1. fp16 autocast with a grad scaler, 60 steps;  2. torch.compile, 200 steps;
# 3. the paper recipe (bf16 autocast, channels_last, batch 1, 256x256) until SECONDS have passed,
#    then SIGTERM: the trainer finishes its step, checkpoints and exits; the samples page, losses
#    and a speed summary are copied to OUT_DIR.
set -euo pipefail
data=${1:?data root with train/ val/ test/}
out=${2:?output folder}
seconds=${3:-300}
stages=${4:-all}
runs=$(mktemp -d)
common=(--set "data.root=$data" --set "run.dir=$runs" --device cuda)

nvidia-smi -L || true
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

if [ "$stages" = all ]; then
  echo "== fp16 + GradScaler"
  tkit train recipes/pix2pix_facades.toml "${common[@]}" --set run.name=fp16 --set train.precision=fp16 \
    --set train.max_steps=60 --set train.log_every=20
  echo "== torch.compile"
  tkit train recipes/pix2pix_facades.toml "${common[@]}" --set run.name=compiled --set train.compile=true \
    --set train.max_steps=200 --set train.log_every=50
fi
echo "== paper recipe, bf16, for ${seconds}s"
status=0
timeout --signal=TERM "$seconds" tkit train recipes/pix2pix_facades.toml "${common[@]}" \
  --set train.checkpoint_every=1 --set train.log_every=200 --set train.sample_every=5 || status=$?
echo "exit status $status (124 = stopped by timeout's SIGTERM after saving)"
run="$runs/pix2pix_facades"
ls "$run/checkpoints"
tkit train --resume "$run" --device cuda --set train.max_steps=$(( $(ls "$run/checkpoints" | tail -1 | tr -dc 0-9 | sed 's/^0*//') + 20 ))
python3 - "$runs" <<'PY'
import json, sys, statistics, pathlib
for run in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    records = [json.loads(l) for l in (run / "losses.jsonl").read_text().splitlines()]
    speeds = [r["images_per_s"] for r in records[1:]] or [records[-1]["images_per_s"]]
    last = records[-1]
    print(f"{run.name}: steps {last['step']}, median {statistics.median(speeds):.1f} img/s, "
          f"G_L1 {last['loss_G_L1']:.3f} G_GAN {last['loss_G_GAN']:.3f} D_real {last['loss_D_real']:.3f} D_fake {last['loss_D_fake']:.3f}")
PY
mkdir -p "$out"
tar -czf "$out/pix2pix_facades_run.tar.gz" -C "$runs" --exclude=checkpoints pix2pix_facades
cp "$run/losses.jsonl" "$out/"
