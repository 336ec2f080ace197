"""Accuracy of a checkpoint on a labelled split, through Ultralytics' validator, as typed per-class scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from ultralytics import YOLO
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils.metrics import ConfusionMatrix, ap_per_class

from .data import FrameDataset, list_images, load_dataset_yaml, write_resolved_yaml, yolo_dataset
from .engine import DEFAULT_CONF, DEFAULT_IOU
from .errors import DatasetError
from .runtime import RUNS_DIR

MATRIX_CONF = DEFAULT_CONF  # the console's default: the confusion matrix shows what an operator sees
Canvas = Literal["frame", "square"]
"""What each image is letterboxed onto: `frame`, the canvas the engine runs a frame of its shape on (its own
aspect ratio, no border); `square`, the square `imgsz` canvas of a static export."""
LEVEL = 0.95  # of the bootstrap intervals
_STATS = ("tp", "conf", "pred_cls", "target_cls")  # per image, as Ultralytics' detection metrics keep them


class _MatrixAtConf(ConfusionMatrix):
    """A confusion matrix that counts only boxes above its own `conf`, whatever confidence the validator runs at
    (0.001 for mAP, where every weak box would count as a false positive)."""

    def __init__(self, conf: float, names: dict[int, str], save_matches: bool = False) -> None:
        super().__init__(names=names, save_matches=save_matches)
        self.conf = conf

    def process_batch(self, detections: dict, batch: dict, conf: float = 0.25, iou_thres: float = 0.45) -> None:
        """Count `detections` against `batch`; the validator's `conf` is ignored for this matrix's own."""
        super().process_batch(detections, batch, conf=self.conf, iou_thres=iou_thres)


@dataclass
class _Seen:
    """What a validator ran, for `evaluate` (Ultralytics makes the validator itself, so it reports here)."""

    wanted: Canvas
    canvas: str = ""  # what ran: `Evaluation.canvas`
    images: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)  # by image path: `_STATS`


def _validator(base: type[DetectionValidator], conf: float, seen: _Seen) -> type[DetectionValidator]:
    """`base` (the task's validator: detect or segment), its confusion matrix counted at `conf`, with `rect` each
    image on the engine's canvas for it (`yolo_dataset`) rather than Ultralytics' bordered one, reporting to `seen`
    the canvas and each image's matched boxes (for bootstrap intervals)."""

    class Validator(base):
        def init_metrics(self, model) -> None:
            super().init_metrics(model)
            self.confusion_matrix = _MatrixAtConf(conf, model.names, self.confusion_matrix.matches is not None)

        def build_dataset(self, img_path: str, mode: str = "val", batch: int | None = None):
            if not self.args.rect:  # asked for the square canvas, or a static export (Ultralytics turns `rect` off)
                seen.canvas = "square" if seen.wanted == "square" else "fixed"
                return super().build_dataset(img_path, mode, batch)
            seen.canvas = "frame"
            return yolo_dataset(self.args, img_path, batch, self.data, self.stride, train=False, cls=FrameDataset)

        def update_metrics(self, preds: list[dict], batch: dict) -> None:
            first = len(self.metrics.stats["tp"])
            super().update_metrics(preds, batch)  # appends one entry per image to each statistic
            for i, image in enumerate(batch["im_file"]):  # by path: two sources of a split may share a file name
                seen.images[str(image)] = tuple(self.metrics.stats[k][first + i] for k in _STATS)

    return Validator


@dataclass(frozen=True)
class ClassScore:
    """Box precision, recall and mAP of one class."""

    name: str
    instances: int
    precision: float
    recall: float
    map50: float
    map50_95: float


@dataclass(frozen=True)
class Evaluation:
    """One checkpoint on one split at one image size; `classes` holds the classes present in the split."""

    weights: str
    data: str
    imgsz: int
    split: str
    iou: float  # the NMS IoU the validator ran with
    agnostic: bool  # NMS across classes
    augment: bool  # test-time augmentation
    canvas: str  # what each image was letterboxed onto: a `Canvas`, or `fixed`, a static export's own input
    images: int
    precision: float
    recall: float
    map50: float
    map50_95: float
    ms_per_image: float  # the validator's inference time, on the device it ran on
    best_f1: float  # the mean over classes of F1, at the confidence where that mean peaks
    best_f1_conf: float  # that confidence: the calibrated default
    classes: list[ClassScore]
    plots_dir: str
    matrix_conf: float  # the confidence the confusion matrix counts boxes at
    confusion_matrix: list[list[int]]  # [predicted][true] over the dataset's classes, then background
    map50_interval: tuple[float, float] | None = None  # bootstrap interval over images (`with_interval`)
    per_image: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict, repr=False, compare=False)

    def matrix_summary(self) -> str:
        """What the confusion matrix says, in words: hands found, classes swapped, boxes on the background."""
        m, nc = self.confusion_matrix, len(self.confusion_matrix) - 1
        found = sum(m[i][i] for i in range(nc))
        swapped = sum(m[i][j] for i in range(nc) for j in range(nc) if i != j)
        truth = sum(m[i][j] for i in range(nc + 1) for j in range(nc))
        background = sum(m[i][nc] for i in range(nc))
        return (f"at confidence {self.matrix_conf}: {found} of {truth} labelled objects found with the right class, "
                f"{swapped} with the wrong one, {background} boxes on the background")  # fmt: skip

    def markdown(self) -> str:
        """A Markdown table: all classes, then one row per class."""
        rows = [("all", sum(c.instances for c in self.classes), self.precision, self.recall, self.map50, self.map50_95)]
        rows += [(c.name, c.instances, c.precision, c.recall, c.map50, c.map50_95) for c in self.classes]
        lines = ["| class | instances | P | R | mAP50 | mAP50-95 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {n} | {i} | {p:.3f} | {r:.3f} | {m50:.3f} | {m:.3f} |" for n, i, p, r, m50, m in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The scores, for JSON: without the per-image boxes."""
        scores = asdict(replace(self, per_image={}))
        del scores["per_image"]
        return scores

    def with_interval(self, resamples: int, seed: int = 0) -> Evaluation:
        """This evaluation with the `LEVEL` bootstrap interval of its mAP50: the images drawn again with replacement
        `resamples` times. On 126 images one model's score moves by several hundredths from sample to sample. Images
        of one source are alike, so for images from new sites the true spread is wider still."""
        names = sorted(self.per_image)
        draws = _draws(len(names), resamples, seed)
        scores = [_map50([self.per_image[names[i]] for i in draw]) for draw in draws]
        return replace(self, map50_interval=_interval(scores))


def map50_difference(a: Evaluation, b: Evaluation, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """mAP50 of `b` minus `a` on the images both scored, and its `LEVEL` paired bootstrap interval (the same images
    drawn for both): when the interval holds 0, these images do not tell the two apart."""
    names = sorted(set(a.per_image) & set(b.per_image))
    if not names:
        raise ValueError("the two evaluations share no images")
    draws = _draws(len(names), resamples, seed)
    full = _map50([b.per_image[n] for n in names]) - _map50([a.per_image[n] for n in names])
    diffs = [_map50([b.per_image[names[i]] for i in d]) - _map50([a.per_image[names[i]] for i in d]) for d in draws]
    return (full, *_interval(diffs))


def _draws(count: int, resamples: int, seed: int) -> np.ndarray:
    """`resamples` rows of `count` image indices drawn with replacement: one bootstrap sample of the images each."""
    return np.random.default_rng(seed).integers(0, count, (resamples, count))


def _map50(images: list[tuple[np.ndarray, ...]]) -> float:
    """mAP50 over the classes labelled in `images`, as Ultralytics' metrics compute it."""
    tp, conf, pred_cls, target_cls = (np.concatenate([image[k] for image in images]) for k in range(len(_STATS)))
    ap = ap_per_class(tp, conf, pred_cls, target_cls)[5]
    return float(ap[:, 0].mean()) if len(ap) else 0.0


def _interval(values: list[float]) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(lo), float(hi)


def evaluate(
    weights: str | Path,
    data: str | Path,
    imgsz: int = 640,
    split: str = "val",
    iou: float = DEFAULT_IOU,
    device: str | None = None,
    plots_dir: Path | None = None,
    model: YOLO | None = None,
    matrix_conf: float = MATRIX_CONF,
    agnostic: bool = False,
    canvas: Canvas = "frame",
    augment: bool = False,
) -> Evaluation:
    """Validate `weights` on a split (`val` or `test`) of the dataset YAML `data`, NMS at `iou` (across classes with
    `agnostic`); plots (PR curve, confusion matrix at `matrix_conf`) go to `plots_dir` (default
    `runs/evaluate/<weights>-<data>-<split>-<imgsz>`).
    `model`, if given, is `weights` already loaded (the CLI's checked engine), so the file is not read again.
    `canvas`: `frame` (the default) scores each image as the console and the CLI run it, one at a time on its own
    canvas; `square` on the square `imgsz` canvas a static export takes, so that an export and its checkpoint are
    scored alike. (Ultralytics' validator, as in training, adds half a stride of border around each batch: a
    640x640 photo runs at 672x672, which moves mAP50-95 on `gloves/` valid by 0.1.)
    `augment`: test-time augmentation, as the console and the CLI run photos (a checkpoint only).

    Raises:
        DatasetError: The dataset YAML is unusable.
    """
    spec = load_dataset_yaml(data)
    if split not in ("val", "test"):
        raise DatasetError(f"split must be val or test, got {split!r}")
    if split not in spec.splits:
        raise DatasetError(f"{data} has no {split} split")
    sources = spec.splits[split]
    images = sum(len(list_images(source)) for source in sources if source.exists())
    if not images:
        raise DatasetError(f"{data}: its {split} split ({', '.join(map(str, sources))}) has no images")
    name = f"{Path(weights).stem}-{Path(data).stem}-{split}-{imgsz}" + (f"-iou{iou:g}" if iou != DEFAULT_IOU else "")
    name += ("-agnostic" if agnostic else "") + ("-square" if canvas == "square" else "") + ("-tta" if augment else "")
    plots_dir = plots_dir or RUNS_DIR / "evaluate" / name
    model = model or YOLO(str(weights))
    seen = _Seen(canvas)
    metrics = model.val(
        validator=_validator(model.task_map[model.task]["validator"], matrix_conf, seen),
        data=str(write_resolved_yaml(spec)),
        imgsz=imgsz,
        split=split,
        iou=iou,
        agnostic_nms=agnostic,
        rect=canvas == "frame",
        augment=augment,
        batch=1 if canvas == "frame" else 16,  # a rect batch shares one canvas: one image each is its own
        device=device,
        plots=True,
        project=str(plots_dir.parent),
        name=plots_dir.name,
        exist_ok=True,
        verbose=False,
    )
    mean_f1 = metrics.box.f1_curve.mean(0)  # F1 per confidence (0..1, 1000 steps), averaged over classes
    best = int(mean_f1.argmax())
    classes = []
    for i, cls in enumerate(metrics.ap_class_index):
        p, r, ap50, ap = metrics.box.class_result(i)
        n = int(metrics.nt_per_class[cls])
        classes.append(ClassScore(spec.names[int(cls)], n, float(p), float(r), float(ap50), float(ap)))
    return Evaluation(
        weights=str(weights),
        data=str(data),
        imgsz=imgsz,
        split=split,
        iou=iou,
        agnostic=agnostic,
        augment=augment,
        canvas=seen.canvas,
        images=images,
        precision=float(metrics.box.mp),
        recall=float(metrics.box.mr),
        map50=float(metrics.box.map50),
        map50_95=float(metrics.box.map),
        ms_per_image=float(metrics.speed.get("inference", 0.0)),
        best_f1=float(mean_f1[best]),
        best_f1_conf=round(float(metrics.box.px[best]), 3),
        classes=classes,
        plots_dir=str(metrics.save_dir),
        matrix_conf=matrix_conf,
        confusion_matrix=metrics.confusion_matrix.matrix.astype(int).tolist(),
        per_image=seen.images,
    )
