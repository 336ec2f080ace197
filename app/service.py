"""What the operator console can do, without any Gradio: models, image / video / live runs, history, exports.

The console (`app/console.py`) only turns widgets into calls here and results into widgets; everything a user can
do in the browser can be done (and is tested) through this class.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engine import DetectionEngine, EngineSettings
from .errors import ModelError, PolicyError, ServiceError
from .excel import export_workbook
from .outputs import atomic_write
from .pipeline import DetectionRun, RunSummary, RunUpdate
from .policy import SafetyPolicy, list_policies
from .records import RecordStore, RunRecord
from .results import FrameResult
from .runtime import DEFAULT_WEIGHTS, EXPORTS_DIR, WEIGHTS_DIR
from .sources import Frame, Source, open_source

NO_WEIGHTS_HELP = (
    "No trained weights in models/weights/. Train them with:\n"
    "  python train.py --data datasets/gloves.yaml --model models/yolo11n-bra.yaml --epochs 50 --imgsz 320 "
    "--export-to models/weights/gloves-bra-n.pt\n"
    "or upload a best.pt in the Model tab."
)


MODEL_SUFFIXES = (".pt", ".onnx")  # checkpoints and ONNX exports (python -m app export)



@dataclass
class RunOptions:
    """The controls of one console run."""

    weights: str | None
    conf: float = 0.25
    iou: float = 0.7
    classes: list[str] = field(default_factory=list)
    imgsz: int = 640
    track: bool = False
    policy: str | None = None  # a shipped policy name, or None for none
    zone: list[tuple[float, float]] | None = None  # overrides the policy's danger zone


@dataclass
class ModelInfo:
    path: Path
    task: str
    names: dict[int, str]
    sha256: str

    def describe(self) -> str:
        return f"{self.path.name}: {self.task} model, classes {', '.join(self.names.values())}"


class LiveSource(Source):
    """Frames pushed one at a time (a browser webcam); a run pulls exactly the frame just pushed."""

    kind = "stream"

    def __init__(self, description: str = "browser camera", fps: float = 10.0) -> None:
        self.description, self.fps = description, fps
        self._pending: deque[Frame] = deque()
        self._start = time.monotonic()
        self._index = 0

    def push(self, image: np.ndarray) -> None:
        self._pending.append(Frame(image, self._index, time.monotonic() - self._start, self.description))
        self._index += 1

    def frames(self) -> Iterator[Frame]:
        while self._pending:
            yield self._pending.popleft()


class LiveSession:
    """One user's webcam stream as a recorded run: each pushed frame is processed, saved and recorded."""

    def __init__(self, run: DetectionRun, source: LiveSource) -> None:
        self.run, self.source = run, source
        self._updates = iter(run)
        self._lock = threading.Lock()  # a frame may still be in flight when the user presses Stop
        self.closed = False
        self.last_frame_at = time.monotonic()

    def process(self, image_bgr: np.ndarray) -> RunUpdate:
        with self._lock:
            if self.closed:
                raise ServiceError("this live run has ended; start the camera again")
            self.source.push(image_bgr)
            self.last_frame_at = time.monotonic()
            return next(self._updates)

    def finish(self) -> RunSummary:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._updates.close()  # closes the run: video, files, database row
        return self.run.summary


class DetectionService:
    """Shared by all console users: the records store and a cache of loaded engines (one per checkpoint)."""

    def __init__(self, exports_dir: Path = EXPORTS_DIR, weights_dir: Path = WEIGHTS_DIR) -> None:
        self.exports_dir, self.weights_dir = Path(exports_dir), Path(weights_dir)
        self.store = RecordStore(self.exports_dir / "records.sqlite")
        self.uploads_dir = self.exports_dir / "uploaded-models"
        self._engines: dict[tuple[str, int], DetectionEngine] = {}
        self._lock = threading.Lock()

    # models
    def available_models(self) -> list[Path]:
        """Shipped / trained weights and earlier uploads, newest first."""
        found = [p for d in (self.weights_dir, self.uploads_dir) for p in d.glob("*") if p.suffix in MODEL_SUFFIXES]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def default_model(self) -> Path | None:
        if DEFAULT_WEIGHTS.is_file() and self.weights_dir == WEIGHTS_DIR:
            return DEFAULT_WEIGHTS
        models = self.available_models()
        return models[0] if models else None

    def model_info(self, weights: str | Path) -> ModelInfo:
        engine = self._engine(weights)
        return ModelInfo(engine.weights, engine.task, engine.names, engine.sha256)

    def add_upload(self, uploaded: str | Path) -> ModelInfo:
        """Check an uploaded model and keep it beside the other uploads (named by its content hash)."""
        uploaded = Path(uploaded)
        if uploaded.suffix not in MODEL_SUFFIXES:
            raise ServiceError(f"{uploaded.name}: upload a .pt checkpoint (a trained best.pt) or an .onnx export")
        info = self.model_info(uploaded)
        kept = self.uploads_dir / f"{uploaded.stem}-{info.sha256[:8]}{uploaded.suffix}"
        if not kept.exists():
            atomic_write(kept, uploaded.read_bytes())
        return self.model_info(kept)

    @staticmethod
    def policies() -> list[str]:
        return [p.stem for p in list_policies()]

    # runs
    def start(self, source: Source, options: RunOptions) -> DetectionRun:
        """A ready run for a source under the user's options (not started)."""
        # Tracker state lives in the model's predictor: a tracking run gets a model of its own.
        engine = self._engine(options.weights, dedicated=options.track)
        try:
            settings = EngineSettings(
                conf=options.conf, iou=options.iou, imgsz=options.imgsz, track=options.track,
                classes=engine.class_ids(options.classes) if options.classes else None,
            )  # fmt: skip
            policy = SafetyPolicy.load(options.policy) if options.policy else None
            if policy is not None and options.zone:
                policy = policy.with_zone(options.zone)
            # Engines are shared between users: each run gets its own copy of the settings.
            run_engine = _EngineView(engine, settings)
            return DetectionRun(run_engine, source, policy, self.store, exports_dir=self.exports_dir)
        except (ModelError, PolicyError) as e:
            raise ServiceError(str(e)) from e

    def detect_file(self, path: str | Path, options: RunOptions, stride: int = 1) -> DetectionRun:
        """A run over an uploaded image or video (iterate it for progress and partial results)."""
        try:
            source = open_source(Path(path), stride=stride)
        except ValueError as e:
            raise ServiceError(str(e)) from e
        return self.start(source, options)

    def live(self, options: RunOptions) -> LiveSession:
        source = LiveSource()
        return LiveSession(self.start(source, options), source)

    # history
    def history(self, start: str | None, end: str | None, source: str | None = None) -> list[RunRecord]:
        return self.store.runs(start=start or None, end=end or None, source=source or None)

    def workbook(self, run_id: str | None = None, start: str | None = None, end: str | None = None) -> Path:
        name = f"run-{run_id}.xlsx" if run_id else f"runs-{start or 'first'}-to-{end or 'last'}.xlsx"
        try:
            return export_workbook(
                self.store, self.exports_dir / "workbooks" / name, run_id, start or None, end or None
            )
        except ValueError as e:
            raise ServiceError(str(e)) from e

    def _engine(self, weights: str | Path | None, dedicated: bool = False) -> DetectionEngine:
        """The cached engine for a checkpoint (or a fresh one), with load errors as console errors."""
        if not weights:
            raise ServiceError(NO_WEIGHTS_HELP)
        path = Path(weights)
        if not path.is_file():
            raise ServiceError(f"model file not found: {path}")
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        with self._lock:
            if dedicated or key not in self._engines:
                try:
                    engine = DetectionEngine(path)
                except ModelError as e:
                    raise ServiceError(str(e)) from e
                if dedicated:
                    return engine
                self._engines[key] = engine
            return self._engines[key]


class _EngineView:
    """An engine with one run's own settings: the model is shared, the thresholds and tracker state are not."""

    def __init__(self, engine: DetectionEngine, settings: EngineSettings) -> None:
        settings.check(engine.names)
        self._engine, self.settings = engine, settings
        self.weights, self.sha256 = engine.weights, engine.sha256
        self._lock = engine.lock

    @property
    def task(self) -> str:
        return self._engine.task

    @property
    def names(self) -> dict[int, str]:
        return self._engine.names

    def reset(self) -> None:
        with self._lock:
            self._engine.reset()

    def predict(self, frame: Frame, annotate: bool = True) -> FrameResult:
        with self._lock:  # one Ultralytics predictor per model: calls must not interleave
            return self._engine.predict(frame, annotate, self.settings)
