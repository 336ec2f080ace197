"""The detection service: what the console and the CLI do, without any UI: models, runs (files, folders, videos,
streams, browser cameras), history and workbooks.

The console (`app/console.py`) and the CLI (`app/cli.py`) only turn their inputs into calls here and results into
output; everything a user can do can be done (and is tested) through this module.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .engine import DetectionEngine, Measured, ModelDefaults, is_openvino_folder
from .errors import GloveSafetyError, ServiceError
from .excel import export_workbook
from .files import atomic_write
from .pipeline import DetectionRun, RunSummary, RunUpdate
from .policy import SafetyPolicy, list_policies, parse_zone
from .records import open_store, utc_bound
from .runtime import DEFAULT_WEIGHTS, EXPORTS_DIR, WEIGHTS_DIR
from .schema import EventRow, MonitorRow, RunRow, run_tallies
from .sources import ImageSource, LiveSource, Source, VideoSource, display_name, open_source

NO_WEIGHTS_HELP = (
    "No trained weights in models/weights/. Train them with:\n"
    "  python train.py --data datasets/gloves-all.yaml --dedupe --model models/yolo11n-bra.yaml --epochs 50 "
    "--imgsz 416 --export-to models/weights/gloves-bra-n.pt\n"
    "or upload a best.pt in the Model tab."
)
log = logging.getLogger(__name__)
MODEL_SUFFIXES = (".pt", ".onnx")  # checkpoints and ONNX exports (python -m app export)
LIVE_GAP_S = 5.0
"""A camera pause longer than this ends the live run (saved within `LIVE_WATCH_S`); the next frame starts a new one."""
LIVE_WATCH_S = 1.0
"""How often the live sessions are looked at for a paused camera."""
LIVE_TIME_LIMIT_S = 8 * 3600.0
"""A live run is saved and ended after this long (one shift); the next frame starts a new one."""
LATENCY_WINDOW = 50
"""Frames a live session's median frame-to-result latency is taken over."""
MONITOR_STALE_S = 15.0
"""A monitor whose status row is older than this is shown as not responding (its process is gone or stuck)."""


@dataclass(frozen=True)
class RunOptions:
    """What a user asks for one run (console controls, CLI flags); None means the model's own default.

    Attributes:
        weights: Model file (.pt or .onnx).
        conf, iou, imgsz: Thresholds and inference size; None takes the model's calibrated defaults.
        classes: Class names or ids to keep (empty = all).
        track: Follow objects across frames (unique counts).
        policy: A shipped policy name, a policy YAML path or a loaded policy (a camera monitor's, read once with its
            config), or None for no verdicts.
        zone: Danger zone overriding the policy's own: (x, y) points in 0..1, or text `x,y x,y x,y`.
        device: `cpu`, `0`, ... or None for Ultralytics' choice.
        runtime: `auto`, `torch`, `onnx` or `openvino` (`engine.RUNTIMES`), or None for the service's own.
        augment_photos: Test-time augmentation for photos (an image or a folder of images): on
            `gloves-scenes/valid` mAP50 0.258 -> 0.283 with the default model, for about 5x the time (PyTorch, three
            passes), which a photo can afford; videos, streams and cameras never use it (models/README.md).
    """

    weights: str | Path | None
    conf: float | None = None
    iou: float | None = None
    imgsz: int | None = None
    classes: tuple[str, ...] = ()
    track: bool = False
    policy: str | Path | SafetyPolicy | None = None
    zone: str | tuple[tuple[float, float], ...] | None = None
    device: str | None = None
    runtime: str | None = None
    augment_photos: bool = True


@dataclass(frozen=True)
class ModelInfo:
    """A model as the console presents it, with what it runs in at its default size on this machine."""

    path: Path
    task: str
    names: dict[int, str]
    sha256: str
    defaults: ModelDefaults
    runtime: str  # e.g. `OpenVINO f32 (runtime auto)`

    @property
    def short_name(self) -> str:
        """`gloves-bra-n.pt (detect: gloved_hand, bare_hand; 416 px)`: what the operator reads."""
        return f"{self.path.name} ({self.task}: {', '.join(self.names.values())}; {self.defaults.imgsz} px)"

    def describe(self) -> str:
        d = self.defaults
        source = "calibrated with the model" if d.calibrated else "the model's training size and the usual 0.25"
        return (
            f"{self.path.name}: {self.task} model, classes {', '.join(self.names.values())}; defaults: "
            f"{d.imgsz} px, confidence {d.conf:g}, IoU {d.iou:g} ({source}); runs in {self.runtime}"
        ) + (f". At these defaults it {_measured(d.measured)}." if d.measured else "")

    @property
    def notice(self) -> str:
        return measured_notice(self.path, self.defaults)


def measured_notice(weights: Path, defaults: ModelDefaults) -> str:
    """What an operator is told of a model's measured worth where its verdicts are read (above the console's tabs,
    as a monitor starts), a model that misses hands must say so; empty where it was not measured."""
    if not defaults.measured:
        return ""
    return (f"{weights.name} {_measured(defaults.measured)}. Try it on your own camera's pictures before a machine "
            "relies on its verdicts.")  # fmt: skip


def _measured(m: Measured) -> str:
    """`was measured on ...`; an export's are the numbers of the checkpoint it was made from, and it says so."""
    return (f"was exported from {m.exported_from}, which " if m.exported_from else "") + f"was {m.text()}"


@dataclass(frozen=True)
class MonitorView:
    """A camera monitor as the console's Monitors tab shows it: its status row and today's events."""

    row: MonitorRow
    events: list[EventRow]  # recorded today (this machine's day), newest first
    stale: bool  # no status for MONITOR_STALE_S while it should be running: its process is gone or stuck

    @property
    def state(self) -> str:
        """What the operator reads: running, reconnecting, failed, stopped, or not responding."""
        return "not responding" if self.stale else self.row.status

    @property
    def violation(self) -> bool:
        return self.row.violation and not self.stale and self.row.status == "running"


@dataclass(frozen=True)
class EventMedia:
    """An event's files: its snapshot and clip where they exist, and why not where they do not."""

    event: EventRow
    snapshot: Path | None
    clip: Path | None
    note: str  # e.g. "clip pruned by retention on 2026-12-07" or "clip still recording"


class LiveSession:
    """One browser camera watched as recorded runs.

    Each pushed frame is processed, saved and recorded. A pause longer than `gap_s` (the camera was stopped),
    a run older than `time_limit_s` or changed options save the run, and the next frame starts a new one.
    `stop()` saves the run and ignores frames until the camera pauses (is stopped by the user), so a stream
    still running when Stop is pressed does not start another run.
    """

    def __init__(
        self, service: DetectionService, options: RunOptions | None = None, gap_s: float = LIVE_GAP_S,
        time_limit_s: float = LIVE_TIME_LIMIT_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.service, self.options = service, options
        self.gap_s, self.time_limit_s, self.clock = gap_s, time_limit_s, clock
        self.run: DetectionRun | None = None
        self.saved: list[RunSummary] = []  # runs this session has finished, oldest first
        self.stopped = False
        self._source: LiveSource | None = None
        self._updates: Iterator[RunUpdate] | None = None
        self._started_at = self._last_frame_at = 0.0
        self._refused: RunOptions | None = None  # options a run was refused under (a policy the filter blinds)
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)  # seconds from a frame's arrival to its result
        # a frame may still be in flight when the user presses Stop; reentrant, so that a page can hold it while
        # it processes a frame and draws its result (`drawing`)
        self._lock = threading.RLock()

    def process(self, image_bgr: np.ndarray, options: RunOptions | None = None) -> RunUpdate | None:
        """Process one camera frame (under new options, if given); None when it was ignored (after Stop, until
        the camera pauses)."""
        arrived = time.perf_counter()  # before the lock: waiting for the frame in flight is latency too
        with self._lock:
            now = self.clock()
            paused = now - self._last_frame_at > self.gap_s
            self._last_frame_at = now
            if self.stopped and not paused:
                return None
            self.stopped = False
            # the photos' switch changes nothing on a camera: ticking it does not split the live run
            changed = options is not None and replace(options, augment_photos=True) != replace(
                self.options or options, augment_photos=True
            )
            if self.run is not None and (paused or changed or now - self._started_at > self.time_limit_s):
                self._finish()
            self.options = options or self.options
            if self.options is None:
                raise ServiceError("choose a model before starting the camera")
            if self.run is None:
                if self.options == self._refused:
                    return None  # refused with these options already: said once, not once a frame
                source = LiveSource()
                try:
                    self.run = self.service.open_run(source, self.options)
                except GloveSafetyError:
                    self._refused = self.options
                    raise
                self._source, self._updates, self._started_at = source, iter(self.run), now
            self._source.push(image_bgr)
            update = next(self._updates)
            self._latencies.append(time.perf_counter() - arrived)
            # the gap counts from the result too: a first frame that took longer than the gap (an export compiled
            # when the run opened) is no pause, and the next frame goes on in the same run
            self._last_frame_at = self.clock()
            return update

    def drawing(self) -> threading.RLock:
        """Hold while processing a frame and drawing its result: Stop waits until the result is drawn, so a frame's
        result never lands on the page after the message that the run was saved."""
        return self._lock

    def results_per_s(self) -> float:
        """Frames processed per second in the current run (what the camera actually achieved)."""
        if self.run is None:
            return 0.0
        elapsed = self._last_frame_at - self._started_at
        return (self.run.summary.frames - 1) / elapsed if elapsed > 0 else 0.0

    def latency_ms(self) -> float:
        """Median time from a frame reaching the server to its result, over the last `LATENCY_WINDOW` frames."""
        return 1000 * statistics.median(self._latencies) if self._latencies else 0.0

    def __deepcopy__(self, memo: dict) -> LiveSession:
        """The session itself: it is a handle on a recording run, not a value (Gradio deep-copies state values)."""
        return self

    def close_if_paused(self) -> RunSummary | None:
        """Save the run when no frame came for `gap_s` (the camera stopped with its own button, the tab closed):
        the records say it ended, not running, without waiting for a next frame that may never come."""
        if not self._lock.acquire(blocking=False):
            return None  # a frame in flight: the camera is not paused
        try:
            if self.run is not None and self.clock() - self._last_frame_at > self.gap_s:
                return self._finish()
            return None
        finally:
            self._lock.release()

    def stop(self) -> RunSummary | None:
        """Save the current run (None if there is none) and ignore frames until the camera pauses."""
        with self._lock:
            self.stopped = True
            return self._finish()

    def _finish(self) -> RunSummary | None:
        if self.run is None:
            return None
        self._updates.close()  # closes the run: video, files, database row
        summary, self.run, self._updates, self._source = self.run.summary, None, None, None
        self.saved.append(summary)
        return summary


class DetectionService:
    """What the console and the CLI do, without any UI: models, runs, live cameras, history and workbooks.

    Shared by all console users: the records store and a cache of loaded engines (one per model file and runtime).
    `runtime` is what runs whose options name none run in (`engine.RUNTIMES`); a `reader` only reads the records.
    """

    def __init__(
        self,
        exports_dir: Path = EXPORTS_DIR,
        weights_dir: Path = WEIGHTS_DIR,
        db: str | Path | None = None,
        runtime: str = "auto",
        reader: bool = False,
    ) -> None:
        self.exports_dir, self.weights_dir, self.runtime = Path(exports_dir), Path(weights_dir), runtime
        # A SQLite file or a postgresql:// URL; else $GLOVE_RECORDS, else the exports folder's records.sqlite.
        self.store = open_store(db, default=self.exports_dir / "records.sqlite")
        self.uploads_dir = self.exports_dir / "uploaded-models"
        self.served_dirs: list[Path] = [self.exports_dir]
        """Folders whose files the console may serve (results; camera monitors add their recordings)."""
        self._engines: dict[tuple[str, int, str], DetectionEngine] = {}
        self._sessions: weakref.WeakSet[LiveSession] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closing = threading.Event()  # set by shutdown: the live sessions' watcher ends
        self._watcher: threading.Thread | None = None
        # left `running` by a crash or a kill of an earlier process; a `reader` (history, reports: perhaps the
        # records' read-only role) leaves them to the next console or monitor to start
        self.interrupted = [] if reader else self.store.close_interrupted()

    def shutdown(self) -> None:
        """Save every open live run and close what else this process still has running as `interrupted`."""
        self._closing.set()
        for session in list(self._sessions):
            session.stop()
        self.store.close_interrupted(ending_pid=os.getpid())

    # models
    def available_models(self) -> list[Path]:
        """Shipped / trained weights, their OpenVINO exports and earlier uploads, newest first."""
        found = [p for d in (self.weights_dir, self.uploads_dir) for p in d.glob("*")
                 if p.suffix in MODEL_SUFFIXES or is_openvino_folder(p)]  # fmt: skip
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def default_model(self) -> Path | None:
        if DEFAULT_WEIGHTS.is_file() and self.weights_dir == WEIGHTS_DIR:
            return DEFAULT_WEIGHTS
        models = self.available_models()
        return models[0] if models else None

    def model_info(self, weights: str | Path | None) -> ModelInfo:
        """A model's description; what it runs in at its default size is chosen (an export made) now, so the first
        run does not wait for it."""
        engine = self.engine(weights)
        try:
            backend = engine.backend(engine.settings())
        except GloveSafetyError as e:
            raise ServiceError(str(e)) from e
        runtime = f"{backend.label} (runtime {engine.runtime})"
        if engine.supports_augment:
            runtime += "; photos with test-time augmentation: PyTorch f32"
        return ModelInfo(engine.weights, engine.task, engine.names, engine.sha256, engine.defaults, runtime)

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

    def policies(self, weights: str | Path | None = None) -> list[str]:
        """Shipped policy names; with a model, only those whose classes and rule fit it."""
        names = [p.stem for p in list_policies()]
        if weights is None:
            return names
        model_names = self.engine(weights).names
        return [n for n in names if SafetyPolicy.load(n).fits(model_names)]

    # runs
    def open_run(self, source: Source, options: RunOptions, monitor: str | None = None) -> DetectionRun:
        """A ready run for a source under the user's options (iterate it, or call `run()`); `monitor` names the
        camera monitor it belongs to."""
        # Tracker state lives in the model's predictor: a tracking run gets a model of its own.
        engine = self.engine(options.weights, dedicated=options.track, runtime=options.runtime)
        try:
            settings = engine.settings(
                conf=options.conf, iou=options.iou, imgsz=options.imgsz, classes=options.classes,
                device=options.device, track=options.track,
                augment=options.augment_photos and source.still,  # photos: no frame waits for it
            )  # fmt: skip
            policy = options.policy or None
            if isinstance(policy, str | Path):
                policy = SafetyPolicy.load(policy)
            zone = parse_zone(options.zone) if isinstance(options.zone, str) else options.zone
            if policy is not None and zone:
                policy = policy.with_zone(zone)
            return DetectionRun(
                engine, source, settings, policy, self.store, exports_dir=self.exports_dir, monitor=monitor
            )
        except GloveSafetyError as e:
            raise ServiceError(str(e)) from e

    def detect_file(
        self, path: str | Path | int, options: RunOptions, stride: int = 1, name: str | None = None
    ) -> DetectionRun:
        """A run over an image, folder, video, camera index or stream URL. `name`: what the records call an image
        or video file whose path means nothing to people (an upload's own file name, not the server's temporary
        copy); a camera or a stream keeps its own (redacted) description."""
        try:
            source = open_source(path, stride=stride)
        except GloveSafetyError as e:
            raise ServiceError(str(e)) from e
        if name and isinstance(source, ImageSource | VideoSource):
            source.description = display_name(name)
        return self.open_run(source, options)

    def live(self, options: RunOptions | None = None) -> LiveSession:
        """A browser camera session (runs start with its first frame; options may come with the frames)."""
        if options is not None:
            self.engine(options.weights, runtime=options.runtime)  # a bad model is reported now, not on the first frame
        session = LiveSession(self, options)
        with self._lock:
            self._sessions.add(session)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_live, name="live-pauses", daemon=True)
                self._watcher.start()
        return session

    def _watch_live(self) -> None:
        """Save the live runs whose camera paused, once a second (`LiveSession.close_if_paused`)."""
        while not self._closing.wait(LIVE_WATCH_S):
            for session in list(self._sessions):
                try:
                    session.close_if_paused()
                except Exception:  # a run that fails to close is logged; the other cameras' runs still close
                    log.exception("closing a paused live run failed")

    # camera monitors (started by `python -m app monitor` or `webui.py --monitors`, any process on these records)
    def monitors(self, now: datetime | None = None) -> list[MonitorView]:
        """Every monitor that has recorded a status, with today's events."""
        now = now or datetime.now(timezone.utc)
        since = utc_bound(now.astimezone().date().isoformat())  # this machine's midnight, as History's days
        rows = self.store.monitors()
        events = self.store.monitor_events([row.name for row in rows], since)
        views = []
        for row in rows:
            age = (now - datetime.fromisoformat(row.updated_at)).total_seconds() if row.updated_at else 1e9
            stale = row.status in ("starting", "running", "reconnecting") and age > MONITOR_STALE_S
            views.append(MonitorView(row, events[row.name], stale))
        return views

    def acknowledge(self, event_id: int, by: str) -> EventRow:
        """Record that `by` (a name or initials) acknowledged an event's alarm; the first acknowledgement stands."""
        return self.store.acknowledge(event_id, by)

    def event_media(self, event_id: int) -> EventMedia:
        """An event's snapshot and clip, where they still exist."""
        event = self.store.event(event_id)
        if event is None:
            raise ServiceError(f"no event {event_id} in the records")
        run = self.store.run(event.run_id)
        snapshot = Path(run.output_dir) / event.snapshot if run and run.output_dir and event.snapshot else None
        snapshot = snapshot if snapshot is not None and snapshot.is_file() else None
        clip, note = None, "no clip (not a camera monitor's event)"
        if event.clip:
            recording = self.store.recording(event.clip)
            if recording is not None and recording.pruned_at:
                note = f"clip pruned by retention on {recording.pruned_at[:10]}"
            elif Path(event.clip).is_file():
                clip, note = Path(event.clip), ""
            else:
                note = f"clip {event.clip} is missing (on another machine, or deleted)"
        elif run is not None and run.monitor and run.status == "running":
            note = "clip still recording" if not event.closed else "clip being written"
        elif run is not None and run.status == "interrupted":
            note = "no clip: the monitor's process ended (killed or crashed) before the clip was finished"
        elif run is not None and run.monitor:
            note = "no clip recorded"
        return EventMedia(event, snapshot, clip, note)

    # history
    def history(self, start: str | None, end: str | None, source: str | None = None) -> list[RunRow]:
        """Runs started in [start, end) (dates as YYYY-MM-DD, days of this machine's clock), newest first,
        optionally from one source."""
        start, end = _dates(start, end)
        return self.store.runs(start=start, end=end, source=source.strip() if source else None)

    def run_counts(self, runs: list[RunRow]) -> dict[str, tuple[int, int, str]]:
        """Each run's `RUN_TALLIES` by run id: its detections, its violation events and its verdict's headline
        (`recorded_verdict`: judged again from its records and the policy it recorded, as the workbook words it)."""
        counts = self.store.run_counts([r.id for r in runs])
        return {run.id: run_tallies(run, *counts.get(run.id, ({}, 0))) for run in runs}

    def workbook(
        self, run_id: str | None = None, start: str | None = None, end: str | None = None, source: str | None = None,
        out: Path | None = None,
    ) -> Path:  # fmt: skip
        """One run's workbook, or that of the runs `history` lists for the same filters, written to `out` or in the
        exports' `workbooks/` named for all of them (`runs-all.xlsx`, `runs-2026-11-01-to-2026-12-01-cam_1.mp4.xlsx`),
        so a workbook of one source or range does not replace another."""
        bounds = _dates(start, end)
        source = source.strip() if source else None
        if out is None:  # named for the dates as typed
            of = f"-{re.sub(r'[^A-Za-z0-9._-]+', '_', Path(source).name)[:60]}" if source else ""
            start, end = ((d or "").strip() or None for d in (start, end))
            dates = (f"{start}-to-{end}" if start and end else f"from-{start}" if start
                     else f"until-{end}" if end else "all")  # fmt: skip
            out = self.exports_dir / "workbooks" / (f"run-{run_id}.xlsx" if run_id else f"runs-{dates}{of}.xlsx")
        try:
            return export_workbook(self.store, out, run_id, *bounds, source)
        except GloveSafetyError as e:
            raise ServiceError(str(e)) from e

    def engine(
        self, weights: str | Path | None, dedicated: bool = False, runtime: str | None = None
    ) -> DetectionEngine:
        """The cached engine for a model file in a runtime (None: the service's), or a fresh one, with load errors
        as `ServiceError`."""
        if not weights:
            raise ServiceError(NO_WEIGHTS_HELP)
        path = Path(weights)
        if not path.is_file() and not is_openvino_folder(path):
            raise ServiceError(f"model file not found: {path}")
        runtime = runtime or self.runtime
        key = (str(path.resolve()), path.stat().st_mtime_ns, runtime)
        with self._lock:
            if dedicated or key not in self._engines:
                try:
                    engine = DetectionEngine(path, runtime)
                except GloveSafetyError as e:
                    raise ServiceError(str(e)) from e
                if dedicated:
                    return engine
                self._engines[key] = engine
            return self._engines[key]


def _dates(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    """A From / Until pair as typed, checked, as the stored times they bound (`records.utc_bound`: days of this
    machine's clock, as History shows the runs' times). An empty range (From not before Until) is answered, not
    listed as no runs."""
    bounds = _bound(start, "From"), _bound(end, "Until")
    if bounds[0] and bounds[1] and bounds[0] >= bounds[1]:
        raise ServiceError(f"From ({start.strip()}) must be before Until ({end.strip()}): Until is the first day not "
                           "listed")  # fmt: skip
    return bounds


def _bound(text: str | None, what: str) -> str | None:
    """One of them; None for empty. A typed 30/11/2026 is answered, not ignored."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        datetime.fromisoformat(text)
    except ValueError:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", text):  # written right: 2026-11-31, or 25 o'clock
            raise ServiceError(f"{what}: no such date or time, {text!r}") from None
        raise ServiceError(f"{what}: write the date as YYYY-MM-DD (e.g. 2026-11-30), got {text!r}") from None
    try:
        return utc_bound(text)
    except ValueError as e:  # a date the clock cannot hold once moved to UTC
        raise ServiceError(f"{what}: {e}") from None
