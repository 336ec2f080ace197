"""Calibrated defaults: the inference size, NMS and confidence a model runs best at, stored in its checkpoint.

The console and the CLI start every run from a model's `defaults` (see `engine.ModelDefaults`), so an uploaded
`best.pt` brings its own. They are chosen on a held-apart validation split of real images: the size with the
best mAP50, then the NMS IoU and class-agnostic NMS (one box per hand, not a gloved and a bare one) that score
best there, then the confidence where the mean F1 over classes peaks.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from ultralytics.nn.tasks import torch_safe_load

from .engine import DEFAULT_IOU, DetectionEngine, Measured, ModelDefaults
from .errors import ModelError
from .evaluation import Evaluation, evaluate
from .export import file_sha256, relink_checked_exports
from .files import atomic_write

CANDIDATE_IOUS = (0.5, DEFAULT_IOU)
"""NMS IoU thresholds tried at the best size."""


def calibrate(
    weights: str | Path,
    data: str | Path,
    sizes: Sequence[int],
    device: str | None = None,
    ious: Sequence[float] = CANDIDATE_IOUS,
) -> tuple[ModelDefaults, list[Evaluation], list[Path]]:
    """Evaluate `weights` on `data`'s val split at each size (NMS IoU 0.7), then at the best size with each NMS
    IoU, then with the best IoU across classes (agnostic NMS); store the best (mAP50; ties keep the simpler, earlier
    setting) with the confidence at the best F1 and what it found there in the checkpoint (and its checked exports:
    `store_defaults`); return them with the evaluations and those exports. A lower IoU
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
    conf = max(best.best_f1_conf, 0.01)
    at_defaults = evaluate(weights, data, imgsz=size, iou=best.iou, device=device, model=model, agnostic=best.agnostic,
                           matrix_conf=conf, plots_dir=Path(f"{best.plots_dir}-at-defaults"))  # fmt: skip
    defaults = ModelDefaults(imgsz=size, conf=conf, iou=best.iou, calibrated=True, agnostic=best.agnostic,
                             measured=measured(at_defaults, model.names))  # fmt: skip
    return defaults, results, store_defaults(weights, defaults)


def measured(result: Evaluation, names: dict[int, str]) -> Measured:
    """An evaluation's confusion matrix (at the confidence it was run at) as what an operator reads of it: per class
    with labelled objects, how many were found with the right class; and the boxes on the background."""
    m, nc = result.confusion_matrix, len(result.confusion_matrix) - 1  # [predicted][true], background last
    classes = tuple((names[j], m[j][j], sum(m[i][j] for i in range(nc + 1))) for j in range(nc))
    data = Path(result.data)  # `gloves-scenes.yaml`, or a Roboflow export's `bandsaw/data.yaml`
    split = {"val": "valid"}.get(result.split, result.split)
    return Measured(f"{data.parent.name if data.stem == 'data' else data.stem} {split}", result.images,
                    tuple(c for c in classes if c[2]),
                    sum(m[i][nc] for i in range(nc)))  # fmt: skip


def store_defaults(weights: Path, defaults: ModelDefaults) -> list[Path]:
    """Write `defaults` into the checkpoint dict under `defaults` (atomically: a reader never sees half a file), and
    into the checked exports made from it (`relink_checked_exports`); returns those exports."""
    old_sha256 = file_sha256(weights)
    ckpt, _ = torch_safe_load(str(weights))  # the allow-listed unpickler (ULTRALYTICS_SAFE_LOAD, set by app)
    ckpt["defaults"] = defaults.as_dict()
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write(weights, buf.getvalue())
    return relink_checked_exports(weights, old_sha256, hashlib.sha256(buf.getvalue()).hexdigest(), defaults)
