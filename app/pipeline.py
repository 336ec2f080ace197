"""A detection run, start to finish: source -> engine -> policy -> records / files, one frame at a time.

The CLI iterates a `DetectionRun` with a progress bar; the console iterates the same object to show partial
results. Either way every frame is in the database as soon as it is processed, and the run's files are
complete when the iteration ends (also when it is stopped early or fails).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .annotate import draw_safety
from .engine import DetectionEngine
from .outputs import RunWriter
from .policy import FrameStatus, SafetyEvent, SafetyMonitor, SafetyPolicy
from .records import RecordStore, RunRecord, utc_now
from .results import FrameResult
from .runtime import EXPORTS_DIR
from .sources import BadItem, Source, VideoSource


@dataclass
class RunUpdate:
    """Progress after one item: a processed frame (with its safety status) or a skipped file."""

    done: int
    total: int | None
    frame: FrameResult | None = None
    status: FrameStatus | None = None
    skipped: BadItem | None = None


@dataclass
class RunSummary:
    """What a finished run produced and where it is."""

    run_id: str
    source: str
    kind: str
    output_dir: Path
    status: str = "running"
    frames: int = 0
    detections: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    tracks: dict[str, int] = field(default_factory=dict)  # unique track ids per class (tracking runs)
    events: list[SafetyEvent] = field(default_factory=list)
    skipped: list[BadItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    video: Path | None = None
    images: list[Path] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return len(self.events)

    def text(self) -> str:
        """A few lines for a terminal or a log."""
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing"
        lines = [
            f"Run {self.run_id} ({self.status}): {self.frames} frame(s) of {self.source}",
            f"  detections: {counts}",
        ]
        if self.tracks:
            lines.append("  unique tracked: " + ", ".join(f"{k} {v}" for k, v in sorted(self.tracks.items())))
        lines.append(f"  violation events: {self.violations}")
        lines += [f"  skipped {b.name}: {b.reason}" for b in self.skipped]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines.append(f"  saved to {self.output_dir}")
        return "\n".join(lines)


class DetectionRun:
    """Process one source with an engine, an optional safety policy, a records store and run files.

    Example:
        >>> run = DetectionRun(engine, open_source("clip.mp4"), SafetyPolicy.load("gloves"), RecordStore())
        >>> for update in run:
        ...     print(update.done, update.total, update.status.label)
        >>> print(run.summary.text())
    """

    def __init__(
        self,
        engine: DetectionEngine,
        source: Source,
        policy: SafetyPolicy | None = None,
        store: RecordStore | None = None,
        exports_dir: Path = EXPORTS_DIR,
    ) -> None:
        if policy is not None:
            policy.check(engine.names)
        self.engine, self.source, self.policy, self.store = engine, source, policy, store
        self.monitor = SafetyMonitor(policy, still_images=source.kind in ("image", "folder")) if policy else None
        run_id = RecordStore.new_run_id()
        output_dir = Path(exports_dir) / datetime.now().strftime("%Y-%m-%d") / run_id
        self.summary = RunSummary(run_id=run_id, source=source.description, kind=source.kind, output_dir=output_dir)
        self._track_ids: dict[str, set[int]] = {}

    def __iter__(self) -> Iterator[RunUpdate]:
        s, engine = self.summary, self.engine
        writer = RunWriter(s.output_dir, video_fps=self.source.fps if self.source.kind in ("video", "stream") else None)
        if self.store is not None:
            self.store.start_run(self._record())
        engine.reset()
        done = 0
        try:
            for item in self.source.frames():
                done += 1
                if isinstance(item, BadItem):
                    s.skipped.append(item)
                    yield RunUpdate(done, self.source.total, skipped=item)
                    continue
                frame = engine.predict(item)
                status = self.monitor.process(frame) if self.monitor else None
                if frame.annotated is not None:
                    draw_safety(frame.annotated, status, self.policy.zone if self.policy else None)
                self._count(frame)
                writer.add(frame, frame.annotated)
                if self.store is not None:
                    self.store.add_frame(s.run_id, frame)
                self._save_events(writer)
                yield RunUpdate(done, self.source.total, frame=frame, status=status)
            s.status = "completed"
        except GeneratorExit:
            s.status = "stopped"
            raise
        except BaseException:
            s.status = "failed"
            raise
        finally:
            if self.monitor is not None:
                self.monitor.finish()
                self._save_events(writer)
                s.events = self.monitor.events
            s.video = writer.close(s.events)
            s.images = writer.images
            if isinstance(self.source, VideoSource) and self.source.truncated:
                s.warnings.append(
                    f"video ended after {self.source.frames_read} of {self.source.frame_count} frames (truncated file?)"
                )
            if self.store is not None:
                self.store.finish_run(s.run_id, s.status)
            s.tracks = {k: len(v) for k, v in self._track_ids.items()}

    def run(self) -> RunSummary:
        """Process the whole source and return the summary."""
        for _ in self:
            pass
        return self.summary

    def _count(self, frame: FrameResult) -> None:
        s = self.summary
        s.frames += 1
        s.detections += len(frame.detections)
        for d in frame.detections:
            s.counts[d.class_name] = s.counts.get(d.class_name, 0) + 1
            if d.track_id is not None:
                self._track_ids.setdefault(d.class_name, set()).add(d.track_id)

    def _save_events(self, writer: RunWriter) -> None:
        if self.monitor is None:
            return
        for event in self.monitor.take_changes():
            # The snapshot is written when the event opens (so a crash still leaves one) and again when it
            # closes, when its peak-confidence frame is final.
            snapshot = writer.snapshot(event) if event.id is None or event.closed else None
            if self.store is not None:
                self.store.save_event(self.summary.run_id, event, snapshot)
            else:
                event.id = event.id or len(self.monitor.events)

    def _record(self) -> RunRecord:
        e, s, p = self.engine, self.engine.settings, self.policy
        return RunRecord(
            id=self.summary.run_id,
            source=self.source.description,
            kind=self.source.kind,
            model=str(e.weights),
            model_sha256=e.sha256,
            task=e.task,
            conf=s.conf,
            iou=s.iou,
            imgsz=s.imgsz,
            classes=json.dumps(s.classes) if s.classes is not None else None,
            tracking=s.track,
            policy=p.name if p else None,
            policy_json=json.dumps(p.__dict__) if p else None,
            output_dir=str(self.summary.output_dir),
            started_at=utc_now(),
        )
