"""The inference engine: a checked model plus the settings a user picks, turning frames into `FrameResult`s.

The CLI, the console and the tests all use this class; none of them call Ultralytics directly.

Runtimes: a `.pt` runs in PyTorch, or in ONNX Runtime or OpenVINO through FP32 exports made from it on first use
(`export.cached_export`). `auto`, the default, runs OpenVINO on the CPU (the INT8 export beside the weights where
it passed its accuracy check and the CPU has INT8 instructions) and PyTorch on a GPU. Each export is static, one
per input canvas: the canvas PyTorch itself would letterbox a frame to (`imgsz` on the long side, the short side
padded to a multiple of the stride), so OpenVINO sees exactly the pixels PyTorch would and does no more work.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox
from ultralytics.nn.modules import Detect
from ultralytics.utils.checks import check_imgsz

from .errors import ModelError, ModelExportError
from .export import (
    MAX_BIN_BYTES,
    ExportFormat,
    ExportInfo,
    cached_export,
    checked_int8,
    file_sha256,
    openvino_cpu,
    openvino_precision_callback,
    predictor_precision,
    quiet_ultralytics,
    read_onnx_info,
    read_openvino_info,
)
from .results import FrameResult, from_ultralytics
from .schema import RunRow
from .sources import Frame

SUPPORTED_TASKS = ("detect", "segment")
TRACKER = "bytetrack.yaml"  # Ultralytics' ByteTrack settings, shipped with the package
MAX_CHECKPOINT_BYTES = MAX_BIN_BYTES  # one limit for every model file: a YOLO11x checkpoint is ~110 MB
# What torch.save writes into its zip archive (under one top-level folder): the pickle, tensor storages, metadata.
_CHECKPOINT_ENTRY = re.compile(
    r"^[^/]+/(data\.pkl|byteorder|version|\.format_version|\.storage_alignment|\.data/serialization_id|"
    r"\.data/version|data/\d+)$"
)
RUNTIMES = ("auto", "torch", "onnx", "openvino")
"""What a model may be asked to run in: `auto` chooses (module docstring), the others force one."""
RUNTIME_HELP = (
    "auto: on a CPU, OpenVINO: the INT8 export beside the weights where it passed its accuracy check and the CPU has "
    "VNNI or AMX, else FP32 made from the .pt once and cached; PyTorch on a GPU. Or force torch, onnx or openvino"
)
"""The `--runtime` option's help, for the CLI and the console alike (a run records what it actually used)."""
RUNTIME_NAMES = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
"""The runtimes a run records, as people read them."""

DEFAULT_CONF = 0.25
"""Confidence for a model that stores no calibrated default (Ultralytics' own predict default)."""
DEFAULT_IOU = 0.7
"""NMS IoU for a model that stores no calibrated default (Ultralytics' own)."""
DEFAULT_IMGSZ = 640
"""Inference size for a model that stores neither a default nor its training size."""
MAX_IMGSZ = 4096  # a typed or stored size beyond any camera's: a 100,000 px canvas would take gigabytes


@dataclass(frozen=True)
class Measured:
    """What a model found at its calibrated defaults on the held-apart real images it was calibrated on, in the counts
    an operator reads (`python -m app calibrate` stores it in `defaults`): each class's labelled objects and how many
    were found with the right class, and the boxes on the background."""

    data: str  # the split: `gloves-scenes valid`
    images: int
    classes: tuple[tuple[str, int, int], ...]  # (class, found with the right class, labelled)
    false_boxes: int
    exported_from: str | None = None  # an export's: the checkpoint these are the numbers of (`gloves-n.pt`)

    @classmethod
    def of(cls, stored: object) -> Measured | None:
        """From its stored dict, if valid (a model's file can hold anything): None otherwise."""
        try:
            classes = tuple((str(name), int(found), int(labelled)) for name, found, labelled in stored["classes"])
            source = stored.get("exported_from")
            measured = cls(str(stored["data"]), int(stored["images"]), classes, int(stored["false_boxes"]),
                           source if isinstance(source, str) and 0 < len(source) <= 200 else None)  # fmt: skip
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            return None
        counts = [measured.images, measured.false_boxes, *(n for c in classes for n in c[1:])]
        valid = classes and min(counts) >= 0 and all(found <= labelled for _, found, labelled in classes)
        return measured if valid and len(measured.data) <= 200 else None

    def as_dict(self) -> dict:
        stored = {"data": self.data, "images": self.images, "classes": [list(c) for c in self.classes],
                  "false_boxes": self.false_boxes}  # fmt: skip
        return stored | ({"exported_from": self.exported_from} if self.exported_from else {})

    def text(self) -> str:
        """`measured on 126 images it did not train on (gloves-scenes val): it found 70 of 247 labelled objects
        (28%; gloved_hand 26 of 100, bare_hand 44 of 147); 49 boxes matched no labelled object`."""
        found, labelled = sum(c[1] for c in self.classes), sum(c[2] for c in self.classes)
        share = f"{found / labelled:.0%}; " if labelled else ""
        each = ", ".join(f"{name} {n} of {of}" for name, n, of in self.classes)
        return (
            f"measured on {self.images} images it did not train on ({self.data}): it found {found} of "
            f"{labelled} labelled objects ({share}{each}); {self.false_boxes} boxes matched no labelled object"
        )


@dataclass(frozen=True)
class ModelDefaults:
    """The settings a model runs best at: its inference size, confidence and NMS IoU.

    Calibrated values live in the checkpoint under a `defaults` key (`{"imgsz": ..., "conf": ..., "iou": ...,
    "agnostic": ..., "measured": ...}`, written by `python -m app calibrate`); a model without them runs at its
    training size and `DEFAULT_CONF`. Exports carry their checkpoint's in their metadata
    (`app.export.checkpoint_defaults`), the size being the export's own where its input is static. `agnostic`: NMS
    across classes, so one hand gets one box; `measured`: what the defaults found on the calibration's images.
    """

    imgsz: int = DEFAULT_IMGSZ
    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    calibrated: bool = False
    agnostic: bool = False
    measured: Measured | None = None

    @classmethod
    def of(cls, stored: object, train_imgsz: object) -> ModelDefaults:
        """From a `defaults` entry as a checkpoint or an export stores it (if valid), or else the training size."""
        if isinstance(stored, dict):
            try:
                imgsz, conf, iou = int(stored["imgsz"]), float(stored["conf"]), float(stored["iou"])
            except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
                pass
            else:
                if 32 <= imgsz <= MAX_IMGSZ and 0 < conf < 1 and 0 < iou <= 1:
                    return cls(imgsz, conf, iou, calibrated=True, agnostic=stored.get("agnostic") is True,
                               measured=Measured.of(stored.get("measured")))  # fmt: skip
        size = train_imgsz[0] if isinstance(train_imgsz, (list, tuple)) and train_imgsz else train_imgsz
        return cls(imgsz=size if isinstance(size, int) and size >= 32 else DEFAULT_IMGSZ)

    def as_dict(self) -> dict:
        stored = {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou, "agnostic": self.agnostic}
        return stored | ({"measured": self.measured.as_dict()} if self.measured else {})


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
        agnostic: NMS across classes: overlapping boxes of different classes (a hand as gloved and bare) keep one.
        augment: Test-time augmentation (Ultralytics' `augment`): the frame also flipped and at two smaller scales,
            the boxes merged before NMS; about twice the arithmetic, PyTorch only (a checkpoint, never an export).
    """

    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    classes: tuple[int, ...] | None = None
    imgsz: int = DEFAULT_IMGSZ
    device: str | None = None
    track: bool = False
    tracker: str = TRACKER
    agnostic: bool = False
    augment: bool = False

    def check(self, names: dict[int, str]) -> RunSettings:
        """These settings, if valid for a model with these class names; else `ModelError` saying why."""
        if not 0 <= self.conf <= 1 or not 0 <= self.iou <= 1:
            raise ModelError(f"confidence and IoU must be in 0..1, got conf={self.conf}, iou={self.iou}")
        if not 32 <= self.imgsz <= MAX_IMGSZ:
            raise ModelError(f"image size must be 32..{MAX_IMGSZ}, got {self.imgsz}")
        unknown = [c for c in self.classes or () if c not in names]
        if unknown:
            raise ModelError(f"unknown class ids {unknown}; this model has {len(names)} classes")
        return self


@dataclass(frozen=True)
class Backend:
    """What a run's frames go through: the runtime, the precision its layers compute in (read from the runtime where
    it has a choice) and, where `auto` fell back from OpenVINO, why.

    `precision`: `f32`; `fp16` (an export's FP16 weights, computed in f32); `int8` (INT8 layers, the rest f32).
    """

    runtime: str  # a key of RUNTIME_NAMES
    precision: str
    note: str = ""
    model: YOLO | None = field(default=None, repr=False, compare=False)
    """The model for every frame; None: an export of the checkpoint per input canvas (`DetectionEngine.predict`)."""

    @property
    def label(self) -> str:
        return runtime_label(self.runtime, self.precision)


def runtime_label(runtime: str | None, precision: str | None) -> str:
    """`OpenVINO f32`: a run's runtime and precision as people read them (empty for runs recorded before both were)."""
    return f"{RUNTIME_NAMES.get(runtime, runtime)} {precision}" if runtime else ""


def settings_line(record: RunRow, strong: Callable[[str], str] = str) -> str:
    """The settings that produced a run's results, in one line, as the CLI's summary and the console's stamp show
    them (`strong` marks the model, policy and runtime: bold in the console)."""
    runtime = runtime_label(record.runtime, record.precision)
    kept = ", ".join(map(str, json.loads(record.classes))) if record.classes is not None else None
    return (f"model {strong(Path(record.model).name)} at {record.imgsz} px, confidence {record.conf:g}, "
            f"IoU {record.iou:g}{' across classes' if record.agnostic_nms else ''}"
            f"{', test-time augmentation' if record.augment else ''}"
            f"{f', only {strong(kept)}' if kept is not None else ''}, policy {strong(record.policy or 'none')}, "
            f"runtime {strong(runtime) if runtime else 'not recorded'}")  # fmt: skip


class DetectionEngine:
    """A detect or segment model (ours with BRA, or plain YOLO) ready to run on frames, in a runtime (`RUNTIMES`).

    The engine holds the model only; each run brings its own `RunSettings`, so one engine serves concurrent
    runs (calls are serialised: Ultralytics keeps one predictor per model). Tracking keeps state in that
    predictor, so a tracking run needs an engine of its own.

    Example:
        >>> engine = DetectionEngine("models/weights/gloves-bra-n.pt")  # runtime="auto"
        >>> settings = engine.settings(conf=0.4)
        >>> engine.backend(settings).label  # made (or loaded from the cache) now
        'OpenVINO f32'
        >>> frame = engine.predict(cv2.imread("hand.jpg"), settings)
        >>> [d.class_name for d in frame.detections]
    """

    def __init__(self, weights: str | Path, runtime: str = "auto") -> None:
        if runtime not in RUNTIMES:
            raise ModelError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.weights, self.runtime = Path(weights), runtime
        task, self.fixed_imgsz = None, None  # an export with a static input runs at its own size only
        exported_defaults = None  # the calibrated defaults an export carries from its checkpoint
        self._stored_precision = "fp32"  # what an OpenVINO export folder stores
        if is_openvino_folder(self.weights):
            info = _export_info(self.weights, read_openvino_info)
            task, self.fixed_imgsz, self._stored_precision = info.task, info.input_hw, info.precision
            exported_defaults = info.defaults
            self.sha256, self.format = folder_sha256(self.weights), "openvino"
        else:
            if not self.weights.is_file():
                raise ModelError(f"{self.weights}: model file not found")
            if self.weights.suffix not in (".pt", ".onnx"):
                raise ModelError(
                    f"{self.weights.name}: expected a .pt checkpoint, an .onnx export or an OpenVINO export folder"
                )
            if self.weights.suffix == ".onnx":
                _check_size(self.weights)
                info = _export_info(self.weights, read_onnx_info)
                task, self.fixed_imgsz, self.format = info.task, info.input_hw, "onnx"
                exported_defaults = info.defaults
            else:
                check_checkpoint_archive(self.weights)
                self.format = "torch"
            self.sha256 = file_sha256(self.weights)
        if self.format != "torch" and runtime not in ("auto", self.format):
            name = "ONNX Runtime" if self.format == "onnx" else "OpenVINO"
            raise ModelError(
                f"{self.weights.name} is an {self.format} export: it runs in {name} only (runtime auto or "
                f"{self.format}), not {runtime}"
            )
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
        stored = ckpt.get("defaults") if isinstance(ckpt, dict) else None
        self.defaults = ModelDefaults.of(exported_defaults or stored, train_imgsz)
        if self.fixed_imgsz:
            self.defaults = replace(self.defaults, imgsz=self.fixed_imgsz[0])
        self._lock = threading.Lock()  # one Ultralytics predictor per model: calls must not interleave
        self._backends: dict[tuple[int, bool, bool], Backend] = {}  # by (imgsz, on the CPU, augment)
        self._exports: dict[tuple[ExportFormat, tuple[int, int]], YOLO] = {}  # by (format, canvas)

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def supports_augment(self) -> bool:
        """Whether runs can use test-time augmentation: Ultralytics has it for a detect checkpoint in PyTorch only
        (a segment or end-to-end head, or an export, quietly runs one pass), so not under a forced ONNX Runtime /
        OpenVINO runtime either."""
        head = self.model.model.model[-1] if self.format == "torch" else None
        return (type(head) is Detect and not getattr(self.model.model, "end2end", False)
                and self.runtime in ("auto", "torch"))  # fmt: skip

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
        agnostic: bool | None = None,
        augment: bool = False,
    ) -> RunSettings:
        """Checked settings for a run: the model's defaults where a value is None, the size a fixed-size export
        needs, classes by name or id (None or empty = all). `augment` applies where the model supports it
        (`supports_augment`); elsewhere the run goes without it, and records so."""
        d = self.defaults
        return RunSettings(
            conf=d.conf if conf is None else float(conf),
            iou=d.iou if iou is None else float(iou),
            classes=self.class_ids(classes) if classes else None,
            imgsz=self.fixed_imgsz[0] if self.fixed_imgsz else d.imgsz if imgsz is None else int(imgsz),
            device=device,
            track=track,
            tracker=tracker,
            agnostic=d.agnostic if agnostic is None else agnostic,
            augment=augment and self.supports_augment,
        ).check(self.names)

    def backend(self, settings: RunSettings) -> Backend:
        """What runs with these settings use, chosen (and its model made or loaded, checked and compiled) on the
        first call for their size and device.

        Raises:
            ModelError, ModelExportError: A forced runtime (not `auto`) cannot run this model.
        """
        with self._lock:
            return self._backend(settings)

    def model_for(self, image: np.ndarray, settings: RunSettings) -> YOLO:
        """The Ultralytics model that predicts `image` under `settings` (for benchmarks: `predict` uses it)."""
        with self._lock:
            return self._model_for(image, settings)

    def reset(self) -> None:
        """Forget tracks: call at the start of each new video or stream."""
        with self._lock:
            models = [b.model for b in self._backends.values() if b.model is not None] + list(self._exports.values())
            for model in models:
                for tracker in getattr(model.predictor, "trackers", None) or []:
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
                  "agnostic_nms": s.agnostic, "augment": s.augment, "verbose": False}  # fmt: skip
        if s.device is not None:
            kwargs["device"] = s.device
        with self._lock:
            model = self._model_for(frame.image, s)
            if s.track:
                result = model.track(frame.image, persist=True, tracker=s.tracker, **kwargs)[0]
            else:
                result = model.predict(frame.image, **kwargs)[0]
            annotated = result.plot() if annotate else None
        out = from_ultralytics(result, frame.index, frame.timestamp, frame.name)
        out.annotated = annotated
        return out

    def _backend(self, s: RunSettings) -> Backend:
        """`backend`, with the lock held."""
        key = (s.imgsz, _on_cpu(s.device), s.augment)
        if key not in self._backends:
            self._backends[key] = self._choose(*key)
        return self._backends[key]

    def _model_for(self, image: np.ndarray, s: RunSettings) -> YOLO:
        """`model_for`, with the lock held."""
        backend = self._backend(s)
        if backend.model is not None:
            return backend.model
        # an export per canvas: the frame's own, so it sees exactly what PyTorch would
        return self._export(_EXPORT_FORMAT[backend.runtime], self._canvas(image, s.imgsz))

    def _choose(self, imgsz: int, cpu: bool, augment: bool = False) -> Backend:
        """The backend for a size and device: the runtime asked for, or `auto`'s choice (module docstring); runs
        with test-time augmentation go through PyTorch, where Ultralytics implements it."""
        if self.format == "onnx":
            return Backend("onnxruntime", "f32", model=self.model)
        if self.format == "openvino":
            size = self.fixed_imgsz or (imgsz, imgsz)
            compiled = _warm_up(self.model, size)
            precision = compiled if self._stored_precision == "fp32" else self._stored_precision
            return Backend("openvino", precision, model=self.model)
        if self.runtime == "torch" or (self.runtime == "auto" and not cpu):
            return Backend("torch", "f32", model=self.model)
        if augment:  # the run's stamp says so (runtime PyTorch, test-time augmentation): not a fallback to note
            return Backend("torch", "f32", model=self.model)
        square = self._square(imgsz)
        if self.runtime == "onnx":
            self._export("onnx", square)  # made and checked now: a failure is reported before the run starts
            return Backend("onnxruntime", "f32")
        int8 = checked_int8(self.weights, self.sha256, square[0]) if self.runtime == "auto" else None
        try:
            if int8 is not None and openvino_cpu().fast_int8:  # without VNNI / AMX INT8 is no faster, less accurate
                model = self._load_export(int8, "openvino")  # run as it was checked: every frame on its square
                return Backend("openvino", "int8", model=model)
            precision = predictor_precision(self._export("openvino", square))
        except ModelExportError as e:
            if self.runtime == "openvino":
                raise
            note = f"OpenVINO could not run this model, so PyTorch did: {e}"
            return Backend("torch", "f32", note=note, model=self.model)
        return Backend("openvino", precision)

    def _square(self, imgsz: int) -> tuple[int, int]:
        """The canvas of a square frame: `imgsz` rounded up to a multiple of the stride, as Ultralytics does."""
        h, w = check_imgsz(imgsz, stride=self._stride, min_dim=2)
        return h, w

    def _canvas(self, image: np.ndarray, imgsz: int) -> tuple[int, int]:
        """The input PyTorch would letterbox `image` to: Ultralytics' own minimum rectangle for the size."""
        p = LetterBox(self._square(imgsz), auto=True, stride=self._stride).get_params({"img": image})
        return p["new_unpad"][1] + p["top"] + p["bottom"], p["new_unpad"][0] + p["left"] + p["right"]

    @property
    def _stride(self) -> int:
        return int(self.model.model.stride.max())

    def _export(self, fmt: ExportFormat, canvas: tuple[int, int]) -> YOLO:
        """The checkpoint's `fmt` export for a canvas, loaded and compiled (once per engine; made once per cache)."""
        key = (fmt, canvas)
        if key not in self._exports:
            self._exports[key] = self._load_export(cached_export(self.weights, self.sha256, fmt, canvas), fmt)
        return self._exports[key]

    def _load_export(self, path: Path, fmt: ExportFormat) -> YOLO:
        """An export of this checkpoint loaded in Ultralytics; OpenVINO ones compiled in f32 now (`_warm_up`)."""
        try:
            with quiet_ultralytics():
                model = YOLO(str(path), task=self.task)
                if fmt == "openvino":
                    model.add_callback("on_predict_start", openvino_precision_callback("f32"))
                    _warm_up(model, read_openvino_info(path).input_hw)
        except ModelExportError:
            raise
        except Exception as e:  # Ultralytics and OpenVINO raise many types for a model they cannot load or compile
            raise ModelExportError(f"{path.name}: {fmt} cannot run it: {type(e).__name__}: {e}") from e
        return model


def is_openvino_folder(path: Path) -> bool:
    """An OpenVINO export: a folder named `*_openvino_model` (as Ultralytics names them)."""
    return path.is_dir() and path.name.endswith("_openvino_model")


_EXPORT_FORMAT: dict[str, ExportFormat] = {"onnxruntime": "onnx", "openvino": "openvino"}


def _on_cpu(device: str | None) -> bool:
    """Whether inference runs on the CPU: asked for, or left to Ultralytics on a machine without CUDA."""
    if device is None or not str(device).strip():
        return not torch.cuda.is_available()
    return str(device).strip().lower() == "cpu"


def _warm_up(model: YOLO, canvas: tuple[int, int] | None) -> str:
    """Predict once on a blank frame, so an OpenVINO model is compiled (at the precision its callback pins) before
    the first real frame; returns that precision, read from the plugin."""
    h, w = canvas or (DEFAULT_IMGSZ, DEFAULT_IMGSZ)
    model.predict(np.zeros((h, w, 3), np.uint8), imgsz=[h, w], verbose=False)
    return predictor_precision(model)


def _export_info(path: Path, read_info: Callable[[Path], ExportInfo]) -> ExportInfo:
    """What an export declares (task, static input size or None, precision), read without running anything."""
    try:
        return read_info(path)
    except ModelExportError as e:
        raise ModelError(str(e)) from e


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
