#!/bin/bash
# One GPU stage of both glove models side by side (same recipe, stopped by time), on a lent machine (models/README.md,
# "Training"). Run from the repository root after `models/gpu/compact_data.py`, with the Ultralytics wheels in
# .gpu/whl (the machine's image has torch but not Ultralytics); the checkpoints and results come back under $OUT.
#   INSTALL=1 bash models/gpu/stage.sh            # the card's stage: 0.13 h from the shipped files
#   env: HOURS (0.13), SZ (640), BATCH (32), WK (7 loader workers each), LR0 (0.01), LRF (0.05), WARM (2),
#        CM (close_mosaic, 5), TAG (run-name prefix, gpu), LIMIT (hard stop in s, 575), DEV (0), PY (python3),
#        EXTRA (more train.py options for both models, e.g. "--set cutmix=0.3" to ablate one ingredient)
DEV=${DEV:-0}; HOURS=${HOURS:-0.13}; SZ=${SZ:-640}; WK=${WK:-7}; LIMIT=${LIMIT:-575}; BATCH=${BATCH:-32}
LR0=${LR0:-0.01}; LRF=${LRF:-0.05}; WARM=${WARM:-2}; CM=${CM:-5}; TAG=${TAG:-gpu}; PY=${PY:-python3}
export PYTHONUNBUFFERED=1
if [ -n "$INSTALL" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; nproc
$PY -c "import torch, ultralytics; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__, 'cuda', torch.cuda.is_available())" || exit 4
# amp=False: Ultralytics' AMP check downloads a model (no network there)
COMMON="--data .gpu/gloves-all.yaml --epochs 300 --imgsz $SZ --batch $BATCH --device $DEV --workers $WK --seed 0
 --set optimizer=SGD --set lr0=$LR0 --set cos_lr=True --set lrf=$LRF --set warmup_epochs=$WARM --set close_mosaic=$CM
 --set scale=0.8 --set multi_scale=0.25 --set hsv_h=0.04 --set degrees=10 --set time=$HOURS --set amp=False
 --set deterministic=False --set cache=ram --set plots=False $EXTRA"
start=$(date +%s)
for m in n bra-n; do
  timeout "$LIMIT" $PY train.py $COMMON --model "models/weights/gloves-$m.pt" --name "$TAG-$m" > "$OUT/train-$m.log" 2>&1 &
done
wait
echo "trained in $(( $(date +%s) - start )) s"
for m in n bra-n; do  # 8 files at most come back: 2 x (best, last, results, log)
  d=runs/detect/$TAG-$m
  cp "$d/weights/best.pt" "$OUT/$m-best.pt"; cp "$d/weights/last.pt" "$OUT/$m-last.pt"; cp "$d/results.csv" "$OUT/$m-results.csv"
  echo "== $m"; cut -d, -f1,2,8,9 "$d/results.csv"
done
