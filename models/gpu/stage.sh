#!/bin/bash
# One lease's part of a GPU schedule for both glove models side by side (same recipe), on a lent machine
# (models/README.md, "Training"). Run from the repository root after `models/gpu/compact_data.py`, with the
# Ultralytics wheels in .gpu/whl (the machine's image has torch but not Ultralytics); files come back under $OUT.
#   INSTALL=1 bash models/gpu/stage.sh
# The schedule is EPOCHS long (a lease trains about 50 epochs of both): each model starts from its shipped file, or
# continues where models/gpu/resume/<model>.pt (committed from the last lease's <model>-resume.pt) left it. train.py's
# --stop-after ends the lease's part at an epoch's end, in time, and writes that resume file.
#   env: EPOCHS (100), STOP (training seconds, 520), LIMIT (hard stop in s, 575), SZ (640), BATCH (32),
#        WK (7 loader workers each), LR0 (0.01), LRF (0.05), WARM (2), CM (close_mosaic, 5), TAG (run-name prefix,
#        gpu), DEV (0), PY (python3), EXTRA (more train.py options for both fresh starts, e.g. "--set cutmix=0.3")
DEV=${DEV:-0}; EPOCHS=${EPOCHS:-100}; STOP=${STOP:-520}; SZ=${SZ:-640}; WK=${WK:-7}; LIMIT=${LIMIT:-575}
BATCH=${BATCH:-32}; LR0=${LR0:-0.01}; LRF=${LRF:-0.05}; WARM=${WARM:-2}; CM=${CM:-5}; TAG=${TAG:-gpu}; PY=${PY:-python3}
export PYTHONUNBUFFERED=1
if [ -n "$INSTALL" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; nproc
$PY -c "import torch, ultralytics; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__, 'cuda', torch.cuda.is_available())" || exit 4
# amp=False: Ultralytics' AMP check downloads a model (no network there)
FRESH="--epochs $EPOCHS --imgsz $SZ --batch $BATCH --device $DEV --workers $WK --seed 0
 --set optimizer=SGD --set lr0=$LR0 --set cos_lr=True --set lrf=$LRF --set warmup_epochs=$WARM --set close_mosaic=$CM
 --set scale=0.8 --set multi_scale=0.25 --set hsv_h=0.04 --set degrees=10 --set amp=False
 --set deterministic=False --set cache=ram --set plots=False $EXTRA"
start=$(date +%s)
for m in n bra-n; do
  if [ -f "models/gpu/resume/$m.pt" ]; then  # the checkpoint holds the schedule and the recipe
    ARGS="--resume --model models/gpu/resume/$m.pt"
  else
    ARGS="$FRESH --model models/weights/gloves-$m.pt --name $TAG-$m"
  fi
  timeout "$LIMIT" $PY train.py $ARGS --data .gpu/gloves-all.yaml --dedupe --stop-after "$STOP" > "$OUT/train-$m.log" 2>&1 &
done
wait
echo "trained in $(( $(date +%s) - start )) s"
for m in n bra-n; do  # 8 files at most come back: 2 x (best, resume, results, log)
  # the run's folder as the trainer logged it (a resumed run keeps the folder its first lease named)
  d=$(grep -a -o "Logging results to .*" "$OUT/train-$m.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g; s/^Logging results to //')
  if [ -z "$d" ]; then echo "$m: failed before training (see train-$m.log)"; continue; fi
  cp "$d/weights/best.pt" "$OUT/$m-best.pt" || echo "$m: no epoch of this lease beat the best so far"
  cp "$d/weights/resume.pt" "$OUT/$m-resume.pt" || echo "$m: the schedule is finished (or the run failed: see its log)"
  cp "$d/results.csv" "$OUT/$m-results.csv"
  echo "== $m"; cut -d, -f1,2,8,9 "$d/results.csv"
done
