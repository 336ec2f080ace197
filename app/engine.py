"""The inference engine: a checked model plus the settings a user picks, turning frames into `FrameResult`s.

The CLI, the console and the tests all use this class; none of them call Ultralytics directly.
"""

from __future__ import annotations

import hashlib
import re
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ultralytics import YOLO

from .errors import ModelError, ModelExportError
from .export import MAX_BIN_BYTES, ExportInfo, openvino_precision_callback, read_onnx_info, read_openvino_info
from .results import FrameResult, from_ultralytics
from .sources import Frame

SUPPORTED_TASKS = ("detect", "segment")
TRACKER = "bytetrack.yaml"  # Ultralytics' ByteTrack settings, shipped with the package
MAX_CHECKPOINT_BYTES = MAX_BIN_BYTES  # one limit for every model file: a YOLO11x checkpoint is ~110 MB
# What torch.save writes into its zip archive (under one top-level folder): the pickle, tensor storages, metadata.
_CHECKPOINT_ENTRY = re.compile(
    r"^[^/]+/(data\.pkl|byteorder|version|\.format_version|\.storage_alignment|\.data/serialization_id|"
    r"\.data/version|data/\d+)$"
)



DEFAULT_CONF = 0.25
"""Confidence for a model that stores no calibrated default (Ultralytics' own predict default)."""
DEFAULT_IOU = 0.7
"""NMS IoU for a model that stores no calibrated default (Ultralytics' own)."""
DEFAULT_IMGSZ = 640
"""Inference size for a model that stores neither a default nor its training size."""


@dataclass(frozen=True)
class ModelDefaults:
    """The settings a model runs best at: its inference size, confidence and NMS IoU.

    Calibrated values live in the checkpoint under a `defaults` key (`{"imgsz": ..., "conf": ..., "iou": ...}`,
    written by `python -m app calibrate`); a model without them runs at its training size and `DEFAULT_CONF`.
    """

    imgsz: int = DEFAULT_IMGSZ
    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    calibrated: bool = False

    @classmethod
    def of(cls, stored: object, train_imgsz: object) -> ModelDefaults:
        """From a checkpoint's `defaults` entry (if valid) or else its training size."""
        if isinstance(stored, dict):
            try:
                imgsz, conf, iou = int(stored["imgsz"]), float(stored["conf"]), float(stored["iou"])
            except (KeyError, TypeError, ValueError):
                pass
            else:
                if imgsz >= 32 and 0 < conf < 1 and 0 < iou <= 1:
                    return cls(imgsz, conf, iou, calibrated=True)
        size = train_imgsz[0] if isinstance(train_imgsz, (list, tuple)) and train_imgsz else train_imgsz
        return cls(imgsz=size if isinstance(size, int) and size >= 32 else DEFAULT_IMGSZ)

    def as_dict(self) -> dict[str, float]:
        return {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou}


@dataclass(frozen=True)
class RunSettings:
    """What inference uses for one run; immutable, made once per run by `DetectionEngine.settings`.

    Attributes:
        conf: Minimum confidence, 0..1.
        iou: NMS IoU threshold, 0..1.
        classes: Class ids to keep, or None for all.
        imgsz: Inference size in pixels (multiple of 32): the size actually used, also for fixed-size exports.
        device: `cpu`, `0`, ... or None for Ultralytics' choice.
        track: Follow objects across video frames (ByteTrack), giving each a track id.
        tracker: Tracker settings YAML: Ultralytics' `bytetrack.yaml` or a path to a tuned copy.
    """

    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    classes: tuple[int, ...] | None = None
    imgsz: int = DEFAULT_IMGSZ
    device: str | None = None
    track: bool = False
    tracker: str = TRACKER

    def check(self, names: dict[int, str]) -> RunSettings:
        """These settings, if valid for a model with these class names; else `ModelError` saying why."""
        if not 0 <= self.conf <= 1 or not 0 <= self.iou <= 1:
            raise ModelError(f"confidence and IoU must be in 0..1, got conf={self.conf}, iou={self.iou}")
        if self.imgsz < 32:
            raise ModelError(f"image size must be >= 32, got {self.imgsz}")
        unknown = [c for c in self.classes or () if c not in names]
        if unknown:
            raise ModelError(f"unknown class ids {unknown}; this model has {len(names)} classes")
        return self


class DetectionEngine:
    """A detect or segment model (ours with BRA, or plain YOLO) ready to run on frames.

    The engine holds the model only; each run brings its own `RunSettings`, so one engine serves concurrent
    runs (calls are serialised: Ultralytics keeps one predictor per model). Tracking keeps state in that
    predictor, so a tracking run needs an engine of its own.

    Example:
        >>> engine = DetectionEngine("models/weights/gloves-bra-n.pt")
        >>> frame = engine.predict(cv2.imread("hand.jpg"), engine.settings(conf=0.4))
        >>> [d.class_name for d in frame.detections]
    """

    def __init__(self, weights: str | Path) -> None:
        self.weights = Path(weights)
        task, self.fixed_imgsz = None, None  # an export with a static input runs at its own size only
        if is_openvino_folder(self.weights):
            task, self.fixed_imgsz = _export_task_and_size(self.weights, read_openvino_info)
            self.sha256 = folder_sha256(self.weights)
        else:
            if not self.weights.is_file():
                raise ModelError(f"{self.weights}: model file not found")
            if self.weights.suffix not in (".pt", ".onnx"):
                raise ModelError(
                    f"{self.weights.name}: expected a .pt checkpoint, an .onnx export or an OpenVINO export folder"
                )
            if self.weights.suffix == ".onnx":
                _check_size(self.weights)
                task, self.fixed_imgsz = _export_task_and_size(self.weights, read_onnx_info)
            else:
                check_checkpoint_archive(self.weights)
            self.sha256 = file_sha256(self.weights)
        try:
            self.model = YOLO(str(self.weights), task=task)
        except Exception as e:  # Ultralytics raises many types for files that are not its checkpoints
            if "references types outside" in str(e):  # the safe unpickler met a class off the allow-list
                raise ModelError(
                    f"{self.weights.name}: not a YOLO checkpoint we can load safely: it refers to code outside the "
                    "allowed model classes, so it was not loaded"
                ) from e
            raise ModelError(f"{self.weights.name}: not a YOLO checkpoint ({type(e).__name__}: {e})") from e
        if self.model.task not in SUPPORTED_TASKS:
            raise ModelError(f"{self.weights.name} is a {self.model.task} model; use a detect or segment model")
        if is_openvino_folder(self.weights):  # run in FP32, never the plugin's default (BF16 on AMX CPUs)
            self.model.add_callback("on_predict_start", openvino_precision_callback("f32"))
        self._names = dict(self.model.names)  # read once: for exports Ultralytics builds a predictor per access
        ckpt = getattr(self.model, "ckpt", None) or {}
        train_imgsz = (ckpt.get("train_args") or {}).get("imgsz") if isinstance(ckpt, dict) else None
        self.defaults = ModelDefaults.of(ckpt.get("defaults") if isinstance(ckpt, dict) else None, train_imgsz)
        if self.fixed_imgsz:
            self.defaults = replace(self.defaults, imgsz=self.fixed_imgsz[0])
        self._lock = threading.Lock()  # one Ultralytics predictor per model: calls must not interleave

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def names(self) -> dict[int, str]:
        return dict(self._names)

    def class_ids(self, names: Sequence[str | int]) -> tuple[int, ...]:
        """Map class names (or ids given as strings) to ids, e.g. for a `--classes bare_hand` filter."""
        by_name = {n.lower(): i for i, n in self.names.items()}
        ids = []
        for n in names:
            key = str(n).strip().lower()
            if key.isdigit() and int(key) in self.names:
                ids.append(int(key))
            elif key in by_name:
                ids.append(by_name[key])
            else:
                raise ModelError(f"unknown class {n!r}; this model has: {', '.join(self.names.values())}")
        return tuple(ids)

    def settings(
        self,
        conf: float | None = None,
        iou: float | None = None,
        imgsz: int | None = None,
        classes: Sequence[str | int] | None = None,
        device: str | None = None,
        track: bool = False,
        tracker: str = TRACKER,
    ) -> RunSettings:
        """Checked settings for a run: the model's defaults where a value is None, the size a fixed-size export
        needs, classes by name or id (None or empty = all)."""
        d = self.defaults
        return RunSettings(
            conf=d.conf if conf is None else float(conf),
            iou=d.iou if iou is None else float(iou),
            classes=self.class_ids(classes) if classes else None,
            imgsz=self.fixed_imgsz[0] if self.fixed_imgsz else d.imgsz if imgsz is None else int(imgsz),
            device=device,
            track=track,
            tracker=tracker,
        ).check(self.names)

    def reset(self) -> None:
        """Forget tracks: call at the start of each new video or stream."""
        with self._lock:
            for tracker in getattr(self.model.predictor, "trackers", None) or []:
                tracker.reset()

    def predict(
        self, frame: Frame | np.ndarray, settings: RunSettings | None = None, annotate: bool = True
    ) -> FrameResult:
        """Run the model on one BGR frame and return typed results (with the annotated frame if asked).

        `settings` default to the model's own (`self.settings()`).
        """
        if isinstance(frame, np.ndarray):
            frame = Frame(frame, 0, 0.0, "")
        s = settings or self.settings()
        kwargs = {"conf": s.conf, "iou": s.iou, "classes": list(s.classes) if s.classes else None, "imgsz": s.imgsz,
                  "verbose": False}  # fmt: skip
        if s.device is not None:
            kwargs["device"] = s.device
        with self._lock:
            if s.track:
                result = self.model.track(frame.image, persist=True, tracker=s.tracker, **kwargs)[0]
            else:
                result = self.model.predict(frame.image, **kwargs)[0]
            annotated = result.plot() if annotate else None
        out = from_ultralytics(result, frame.index, frame.timestamp, frame.name)
        out.annotated = annotated
        return out


def is_openvino_folder(path: Path) -> bool:
    """An OpenVINO export: a folder named `*_openvino_model` (as Ultralytics names them)."""
    return path.is_dir() and path.name.endswith("_openvino_model")


def _export_task_and_size(
    path: Path, read_info: Callable[[Path], ExportInfo]
) -> tuple[str, tuple[int, int] | None]:
    """The task and static input size (None if dynamic) an export declares, read without running anything."""
    try:
        info = read_info(path)
    except ModelExportError as e:
        raise ModelError(str(e)) from e
    return info.task, info.input_hw


def check_checkpoint_archive(path: Path) -> None:
    """Refuse, before unpickling anything, a file that is not a plausible torch.save archive: empty, over
    `MAX_CHECKPOINT_BYTES` (packed or unpacked), truncated or not a zip, or holding entries torch never writes.

    Raises:
        ModelError: Saying which of these it is.
    """
    if path.stat().st_size == 0:
        raise ModelError(f"{path.name}: empty file, not a checkpoint")
    _check_size(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelError(f"{path.name}: not a YOLO checkpoint (truncated, damaged or another format)") from e
    unexpected = [e.filename for e in entries if not _CHECKPOINT_ENTRY.match(e.filename)]
    if unexpected or len({e.filename.split("/", 1)[0] for e in entries}) != 1:
        shown = ", ".join(unexpected[:3]) or "several top-level folders"
        raise ModelError(f"{path.name}: the archive holds entries torch.save never writes ({shown}); not loaded")
    if sum(e.file_size for e in entries) > MAX_CHECKPOINT_BYTES:
        raise ModelError(f"{path.name}: unpacks to more than {MAX_CHECKPOINT_BYTES // 2**20} MB; not loaded")


def _check_size(path: Path) -> None:
    """Refuse model files over `MAX_CHECKPOINT_BYTES` before reading them."""
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise ModelError(f"{path.name}: {size / 2**20:.0f} MB is over the {MAX_CHECKPOINT_BYTES // 2**20} MB limit")


def folder_sha256(folder: Path) -> str:
    """Hex SHA-256 over an export folder's files (names and contents, in name order)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0" + bytes.fromhex(file_sha256(path)))
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
