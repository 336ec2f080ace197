"""Calibrated defaults: the inference size, NMS and confidence a model runs best at, stored in its checkpoint.

The console and the CLI start every run from a model's `defaults` (see `engine.ModelDefaults`), so an uploaded
`best.pt` brings its own. They are chosen on a held-apart validation split of real images: the size with the
best mAP50, then the NMS IoU and class-agnostic NMS (one box per hand, not a gloved and a bare one) that score
best there, then the confidence where the mean F1 over classes peaks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import torch
from ultralytics.nn.tasks import torch_safe_load

from .engine import DEFAULT_IOU, DetectionEngine, ModelDefaults
from .errors import ModelError
from .evaluation import Evaluation, evaluate
from .files import atomic_write

CANDIDATE_IOUS = (0.5, DEFAULT_IOU)
"""NMS IoU thresholds tried at the best size."""


def calibrate(
    weights: str | Path,
    data: str | Path,
    sizes: Sequence[int],
    device: str | None = None,
    ious: Sequence[float] = CANDIDATE_IOUS,
) -> tuple[ModelDefaults, list[Evaluation]]:
    """Evaluate `weights` on `data`'s val split at each size (NMS IoU 0.7), then at the best size with each NMS
    IoU, then with the best IoU across classes (agnostic NMS); store the best (mAP50; ties keep the simpler, earlier
    setting) with the confidence at the best F1 in the checkpoint and return them with the evaluations. A lower IoU
    merges more overlapping boxes of one class (several boxes on one hand). Each image is scored on the canvas the
    engine runs it on (`evaluate`'s `frame`), so the confidence is the best for what an operator runs."""
    weights = Path(weights)
    if weights.suffix != ".pt":
        raise ModelError(f"{weights.name}: calibrate a .pt checkpoint (exports take their defaults from it)")
    model = DetectionEngine(weights).model  # the same checks (and safe loading) as a detection run
    results = [evaluate(weights, data, imgsz=size, device=device, model=model) for size in sizes]
    size = max(results, key=lambda r: r.map50).imgsz
    results += [evaluate(weights, data, imgsz=size, iou=iou, device=device, model=model)
                for iou in ious if iou != DEFAULT_IOU]  # fmt: skip
    iou = max((r for r in results if r.imgsz == size), key=lambda r: r.map50).iou
    results.append(evaluate(weights, data, imgsz=size, iou=iou, device=device, model=model, agnostic=True))
    best = max((r for r in results if r.imgsz == size), key=lambda r: r.map50)
    defaults = ModelDefaults(imgsz=best.imgsz, conf=max(best.best_f1_conf, 0.01), iou=best.iou, calibrated=True,
                             agnostic=best.agnostic)  # fmt: skip
    store_defaults(weights, defaults)
    return defaults, results


def store_defaults(weights: Path, defaults: ModelDefaults) -> None:
    """Write `defaults` into the checkpoint dict under `defaults` (atomically: a reader never sees half a file)."""
    ckpt, _ = torch_safe_load(str(weights))  # the allow-listed unpickler (ULTRALYTICS_SAFE_LOAD, set by app)
    ckpt["defaults"] = defaults.as_dict()
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write(weights, buf.getvalue())
