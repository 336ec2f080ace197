"""A detection run, start to finish: source -> engine -> policy -> records / files, one frame at a time.

The CLI iterates a `DetectionRun` with a progress bar; the console iterates the same object to show partial
results. Either way every frame is in the database as soon as it is processed, and the run's files are
complete when the iteration ends (also when it is stopped early or fails); detections are appended to the run's
files as they come, so a run of a whole shift holds no more in memory than a short one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .annotate import draw_safety
from .engine import DetectionEngine, RunSettings, settings_line
from .outputs import RunWriter
from .policy import FrameStatus, SafetyEvent, SafetyMonitor, SafetyPolicy, run_verdict
from .records import HOST, RecordStore, utc_now
from .results import FrameResult
from .runtime import EXPORTS_DIR
from .schema import DetectionRow, EventRow, RunRow
from .sources import BadItem, Source, prefetched


@dataclass
class RunUpdate:
    """Progress after one item: a processed frame (with its rows and safety status) or a skipped file."""

    done: int
    total: int | None
    frame: FrameResult | None = None
    status: FrameStatus | None = None
    rows: list[DetectionRow] = field(default_factory=list)
    skipped: BadItem | None = None
    events: list[EventRow] = field(default_factory=list)  # events opened, extended or closed by this frame
    open_event: SafetyEvent | None = None  # the policy's event still open after this frame (its cooldown included)


@dataclass
class RunSummary:
    """What a run produced and where it is (updated as it goes; final when the iteration ends)."""

    record: RunRow
    output_dir: Path
    detections: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    tracks: dict[str, int] = field(default_factory=dict)  # unique track ids per class (tracking runs)
    events: list[EventRow] = field(default_factory=list)
    skipped: list[BadItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, nothing wrong with the input (a runtime fallback)
    video: Path | None = None
    images: list[Path] = field(default_factory=list)
    policy: SafetyPolicy | None = None  # the run's policy (the record holds its name and JSON)

    @property
    def run_id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def frames(self) -> int:
        return self.record.frames

    @property
    def violations(self) -> int:
        return len(self.events)

    def verdict(self) -> tuple[str | None, str, str]:
        """The run's verdict (`run_verdict`), of the frames processed yet while it runs."""
        r = self.record
        return run_verdict(self.policy, self.counts, len(self.events), (e.reason for e in self.events), r.conf,
                           r.status)  # fmt: skip

    def text(self) -> str:
        """A few lines for a terminal or a log."""
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing"
        r = self.record
        lines = [
            f"Run {r.id} ({r.status}): {r.frames} frame(s) of {r.source}",
            f"  {settings_line(r)}",
            f"  detections: {counts}",
        ]
        if self.tracks:
            lines.append("  unique tracked: " + ", ".join(f"{k} {v}" for k, v in sorted(self.tracks.items())))
        _, headline, detail = self.verdict()
        lines.append(f"  verdict: {headline}; {detail}")
        lines += [f"  skipped {b.name}: {b.reason}" for b in self.skipped]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  saved to {self.output_dir}")
        return "\n".join(lines)


class DetectionRun:
    """Process one source with an engine, settings, an optional safety policy, a records store and run files.

    This is the one way a run is put together: the CLI, the console's service and the benchmarks all make one.
    `settings` are fixed for the run and recorded as they are (the values inference used), with the runtime and
    precision the engine runs them in (`DetectionEngine.backend`: chosen, and a model exported if need be, when the
    run is made). A camera monitor's run
    (`monitor` names it) keeps no annotated video of its own: the monitor records its frames in segments.

    Example:
        >>> engine = DetectionEngine("models/weights/gloves-bra-n.pt")
        >>> run = DetectionRun(engine, open_source("clip.mp4"), engine.settings(), SafetyPolicy.load("gloves"))
        >>> for update in run:
        ...     print(update.done, update.total, update.status.label)
        >>> print(run.summary.text())
    """

    def __init__(
        self,
        engine: DetectionEngine,
        source: Source,
        settings: RunSettings | None = None,
        policy: SafetyPolicy | None = None,
        store: RecordStore | None = None,
        exports_dir: Path = EXPORTS_DIR,
        monitor: str | None = None,
    ) -> None:
        self.settings = (settings or engine.settings()).check(engine.names)
        if policy is not None:
            policy.check(engine.names)
            policy.check_classes(engine.names, self.settings.classes)
        self.engine, self.source, self.policy, self.store = engine, source, policy, store
        self.monitor = SafetyMonitor(policy, still_images=source.still) if policy else None
        self.camera_monitor = monitor
        self.backend = engine.backend(self.settings)
        run_id = RecordStore.new_run_id()
        output_dir = Path(exports_dir) / datetime.now().strftime("%Y-%m-%d") / run_id
        self.summary = RunSummary(record=self._record(run_id, output_dir), output_dir=output_dir, policy=policy)
        if self.backend.note:
            self.summary.notes.append(self.backend.note)
        self._stopping = False
        self._track_ids: dict[str, set[int]] = {}
        self._event_index: dict[int, int] = {}  # event id -> its place in summary.events

    def __iter__(self) -> Iterator[RunUpdate]:
        s, engine, record = self.summary, self.engine, self.summary.record
        video = not self.source.still and self.camera_monitor is None
        # the annotated video plays in the source's time: every n-th frame kept, at 1/n of its rate
        video_fps = self.source.fps / self.source.stride if video else None
        writer = RunWriter(s.output_dir, video_fps=video_fps, live=self.source.live)
        if self.store is not None:
            self.store.start_run(record)
        engine.reset()
        done, last_at = 0, None
        # A file's next frame decodes while this one is processed; live sources hand over frames as they come.
        items = self.source.frames() if self.source.live else prefetched(self.source.frames())
        try:
            for item in items:
                done += 1
                if isinstance(item, BadItem):
                    s.skipped.append(item)
                    yield RunUpdate(done, self.source.total, skipped=item)
                    continue
                frame = engine.predict(item, self.settings)
                status = self.monitor.process(frame) if self.monitor else None
                open_event = self.monitor.open_event if self.monitor else None
                if frame.annotated is not None:
                    draw_safety(frame.annotated, status, self.policy.zone if self.policy else None, open_event)
                now = last_at = utc_now()
                rows = [DetectionRow.of(record.id, frame, d, now) for d in frame.detections]
                self._count(frame)
                writer.add(frame, rows, frame.annotated if self.camera_monitor is None else None)
                if self.store is not None:
                    self.store.add_frame(record.id, rows, now)
                events = self._save_events(writer, now)
                yield RunUpdate(done, self.source.total, frame=frame, status=status, rows=rows, events=events,
                                open_event=open_event)  # fmt: skip
            record.status = "stopped" if self._stopping else "completed"
        except GeneratorExit:
            record.status = "stopped"
            raise
        except BaseException:
            record.status = "failed"
            raise
        finally:
            items.close()  # the decoder (and its thread) let go now, also when the run is stopped early
            if self.monitor is not None:
                self.monitor.finish()
                self._save_events(writer, utc_now())
            s.video = writer.close()
            s.images = writer.images
            s.warnings += self.source.warnings
            # a camera's run ends with its last frame, not when its pause was noticed; a file's when it is done
            record.ended_at = last_at if self.source.live and last_at else utc_now()
            if self.store is not None:
                self.store.finish_run(record.id, record.status, record.ended_at)
            s.tracks = {k: len(v) for k, v in self._track_ids.items()}

    def stop(self) -> None:
        """End the run after the frame in flight, from another thread (a camera monitor shutting down); it is
        saved as usual and recorded as `stopped`."""
        self._stopping = True
        self.source.stop()

    def run(self) -> RunSummary:
        """Process the whole source and return the summary."""
        for _ in self:
            pass
        return self.summary

    def _count(self, frame: FrameResult) -> None:
        s = self.summary
        s.record.frames += 1
        s.detections += len(frame.detections)
        for d in frame.detections:
            s.counts[d.class_name] = s.counts.get(d.class_name, 0) + 1
            if d.track_id is not None:
                self._track_ids.setdefault(d.class_name, set()).add(d.track_id)

    def _save_events(self, writer: RunWriter, now: str) -> list[EventRow]:
        """Save the events changed since the last frame (processed `now`, as its detections); returns their rows."""
        if self.monitor is None:
            return []
        changed = self.monitor.take_changes()
        events, saved = self.summary.events, []
        for event in changed:
            # The snapshot is written when the event opens (so a crash still leaves one) and again when it
            # closes, when its peak-confidence frame is final; then the image is let go (a shift has many events).
            index = self._event_index.get(event.id) if event.id is not None else None
            snapshot = writer.snapshot(event) if index is None or event.closed else None
            row = EventRow.of(self.summary.run_id, event, snapshot, now)
            if index is not None:
                old = events[index]
                row.id, row.recorded_at, row.snapshot = old.id, old.recorded_at, snapshot or old.snapshot
                if row.end_frame == old.end_frame:  # closed after its cooldown, or a new peak: not seen again now
                    row.last_seen_at = old.last_seen_at
            if self.store is not None:
                self.store.save_event(row)
            elif index is None:
                row.id = len(events) + 1
            event.id = row.id
            if index is None:
                self._event_index[row.id] = len(events)
                events.append(row)
            else:
                events[index] = row
            if event.closed:
                event.snapshot = None
            saved.append(row)
        if changed:
            writer.write_events(events)
        return saved

    def _record(self, run_id: str, output_dir: Path) -> RunRow:
        e, s, p = self.engine, self.settings, self.policy
        return RunRow(
            id=run_id,
            source=self.source.description,
            kind=self.source.kind,
            model=str(e.weights),
            model_sha256=e.sha256,
            task=e.task,
            conf=s.conf,
            iou=s.iou,
            imgsz=s.imgsz,
            classes=json.dumps([e.names[i] for i in sorted(s.classes)]) if s.classes is not None else None,
            tracking=s.track,
            policy=p.name if p else None,
            policy_json=json.dumps(p.__dict__) if p else None,
            output_dir=str(output_dir),
            started_at=utc_now(),
            host=HOST,
            pid=os.getpid(),
            monitor=self.camera_monitor,
            runtime=self.backend.runtime,
            precision=self.backend.precision,
            agnostic_nms=s.agnostic,
            augment=s.augment,
        )
