"""The rows a run leaves behind, defined once: a run, each detection, each violation event.

Each row is a dataclass whose fields carry their column: SQL type, a heading for people, how Excel formats it
and whether the console's table shows it. The SQLite and PostgreSQL tables (`records.py`), the CSV / JSON-lines files
(`outputs.py`), the console's tables and the workbook's sheets (`excel.py`) are all derived from these classes,
so a new field is one line here. Values are rounded once, when a row is made, so every place shows the same
number.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from .policy import SafetyEvent, recorded_verdict
from .results import Detection, FrameResult

TEXT, NUMBER, DATETIME, FLAG = "text", "number", "datetime", "flag"  # how a column is shown
SCORE = "score"  # a model's confidence: a percentage in workbooks, and in the console as the boxes' labels show it
SCORE_DECIMALS = 2  # the boxes' labels on an annotated image (Ultralytics draws `class 0.87`)


def score_text(value: float) -> str:
    """A confidence as the console shows it: as the boxes' labels read (`0.80`, not `0.8`)."""
    return f"{value:.{SCORE_DECIMALS}f}"


def local_zone(now: datetime | None = None) -> str:
    """This machine's time zone as people read it, with its summer time where it has one: `CET/CEST
    (UTC+01:00/+02:00)`, `JST (UTC+09:00)` or `UTC`. The console's and the workbook's date-times are in it (stored
    times are UTC), a July time in summer time though the label is read in December."""
    year = (now or datetime.now()).astimezone().year
    seasons = dict.fromkeys(  # January's, then July's where it differs
        (at.tzname(), at.strftime("%z")) for at in (datetime(year, month, 1).astimezone() for month in (1, 7))
    )
    if list(seasons) == [("UTC", "+0000")]:
        return "UTC"
    names, offsets = "/".join(n for n, _ in seasons), "/".join(f"{o[:3]}:{o[3:]}" for _, o in seasons)
    return f"{names} (UTC{offsets})"


def flag_text(value: object) -> str:
    """A flag as the console and the workbook show it: yes / no (not true / false, nor 1 / 0)."""
    return "yes" if value else "no"


def column(
    sql: str, title: str, *, kind: str = NUMBER, console: bool = True, files: bool = True, default: Any = None
) -> Any:
    """A dataclass field with its column description (see `Column`); `default=...` makes it required."""
    meta = {"sql": sql, "title": title, "kind": kind, "console": console, "files": files}
    if default is ...:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Column:
    """One column of a row class.

    Attributes:
        name: The field name: SQL column, CSV heading and JSON key.
        sql: SQL type and constraints, in SQLite's words (`records.postgres_sql` maps them for PostgreSQL).
        title: Heading for people (console table, workbook).
        kind: `text`, `number`, `score`, `datetime` or `flag` (a bool, stored as 0 / 1): how it is shown.
        console: Shown in the console's tables.
        files: Written to the run's CSV / JSON-lines files.
    """

    name: str
    sql: str
    title: str
    kind: str
    console: bool
    files: bool


class Row:
    """Base of the row classes: their columns, in declaration order, and a row as a dict."""

    table: ClassVar[str]

    @classmethod
    def columns(cls) -> list[Column]:
        return [Column(f.name, **f.metadata) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def console_columns(cls) -> list[Column]:
        return [c for c in cls.columns() if c.console]

    @classmethod
    def file_columns(cls) -> list[Column]:
        return [c for c in cls.columns() if c.files]

    def as_dict(self, columns: list[Column] | None = None) -> dict[str, Any]:
        return {c.name: getattr(self, c.name) for c in (self.columns() if columns is None else columns)}

    def console_values(self) -> list[Any]:
        """The console's cells: a score written as the annotated image's labels write it (from the stored four
        decimals, so a score within 0.00005 of a rounding edge may read 0.01 apart from its label), a flag as yes /
        no, as the workbook writes it."""
        return [
            score_text(v) if c.kind == SCORE and v is not None else flag_text(v) if c.kind == FLAG else v
            for c in self.console_columns()
            for v in (getattr(self, c.name),)
        ]


@dataclass
class RunRow(Row):
    """One run: a source processed with one model and one set of settings (what inference actually used)."""

    table: ClassVar[str] = "runs"

    id: str = column("TEXT PRIMARY KEY", "Run", kind=TEXT, default=...)
    source: str = column("TEXT NOT NULL", "Source", kind=TEXT, default=...)
    kind: str = column("TEXT NOT NULL", "Kind", kind=TEXT, default=...)
    model: str = column("TEXT NOT NULL", "Model", kind=TEXT, default=...)
    model_sha256: str = column("TEXT NOT NULL", "Model SHA-256", kind=TEXT, console=False, default=...)
    task: str = column("TEXT NOT NULL", "Task", kind=TEXT, default=...)
    # thresholds as the console's sliders and the settings line state them (0.25), in the workbook too
    conf: float = column("REAL NOT NULL", "Confidence", default=...)
    iou: float = column("REAL NOT NULL", "IoU", default=...)
    imgsz: int = column("INTEGER NOT NULL", "Image size", default=...)
    # JSON list of the class names kept (runs recorded before 2026-12-01: their ids); None = all
    classes: str | None = column("TEXT", "Classes", kind=TEXT, console=False)
    tracking: bool = column("INTEGER NOT NULL", "Tracking", kind=FLAG, default=False)
    policy: str | None = column("TEXT", "Policy", kind=TEXT)
    policy_json: str | None = column("TEXT", "Policy settings", kind=TEXT, console=False)
    output_dir: str | None = column("TEXT", "Saved in", kind=TEXT, console=False)
    started_at: str = column("TEXT NOT NULL", "Started", kind=DATETIME, default="")
    ended_at: str | None = column("TEXT", "Ended", kind=DATETIME)
    status: str = column("TEXT NOT NULL", "Status", kind=TEXT, default="running")
    frames: int = column("INTEGER NOT NULL DEFAULT 0", "Frames", default=0)
    host: str | None = column("TEXT", "Host", kind=TEXT, console=False)  # the machine and process running it:
    pid: int | None = column("INTEGER", "Process", console=False)  # a run left `running` by a dead one is closed
    monitor: str | None = column("TEXT", "Monitor", kind=TEXT)  # the camera monitor that made it (schema 3)
    # What computed the detections (schema 3): torch, onnxruntime or openvino, and the precision its layers computed
    # in: f32, fp16 (FP16 weights, f32 arithmetic) or int8 (INT8 layers, the rest f32). None: an earlier run.
    runtime: str | None = column("TEXT", "Runtime", kind=TEXT, console=False)
    precision: str | None = column("TEXT", "Precision", kind=TEXT, console=False)
    agnostic_nms: bool = column("INTEGER NOT NULL DEFAULT 0", "NMS across classes", kind=FLAG, console=False,
                                default=False)  # fmt: skip
    augment: bool = column(
        "INTEGER NOT NULL DEFAULT 0", "Test-time augmentation", kind=FLAG, console=False, default=False
    )  # fmt: skip  (schema 4)
    # When its latest frame was processed (schema 6), counted with it: a run its process left `running` (killed,
    # crashed) ends there, not when the next start finds it.
    last_frame_at: str | None = column("TEXT", "Last frame", kind=DATETIME, console=False)


RUN_TALLIES = ("Detections", "Violation events", "Verdict")  # counted from a run's records, not stored with it


def run_tallies(run: RunRow, classes: Mapping[str, int], events: int) -> tuple[int, int, str]:
    """A run's `RUN_TALLIES` from its detections per class and its number of events: the verdict's headline judged
    again from them and the policy the run recorded (`recorded_verdict`)."""
    verdict = recorded_verdict(run.policy_json, classes, events, run.conf, run.status)
    return sum(classes.values()), events, verdict


def with_tallies(columns: list[Column], cells: Sequence[Any], tallies: Sequence[Any]) -> list[Any]:
    """A run's cells (or its columns' titles) with its `RUN_TALLIES` after its run, source and kind, where they are
    in view without scrolling: History and the workbook's Runs sheet list runs alike."""
    at = [c.name for c in columns].index("kind") + 1
    return [*cells[:at], *tallies, *cells[at:]]


@dataclass
class DetectionRow(Row):
    """One detection as stored, written to the run's files, shown and exported."""

    table: ClassVar[str] = "detections"

    run_id: str = column("TEXT NOT NULL REFERENCES runs(id)", "Run", kind=TEXT, console=False, default=...)
    item: str = column("TEXT NOT NULL", "Item", kind=TEXT, default=...)
    frame_index: int = column("INTEGER NOT NULL", "Frame", default=...)
    video_time: float = column("REAL NOT NULL", "Time (s)", default=...)
    detected_at: str = column("TEXT NOT NULL", "Detected at", kind=DATETIME, console=False, default=...)
    class_id: int = column("INTEGER NOT NULL", "Class ID", console=False, default=...)
    class_name: str = column("TEXT NOT NULL", "Class", kind=TEXT, default=...)
    confidence: float = column("REAL NOT NULL", "Confidence", kind=SCORE, default=...)
    x1: float = column("REAL NOT NULL", "x1", default=...)
    y1: float = column("REAL NOT NULL", "y1", default=...)
    x2: float = column("REAL NOT NULL", "x2", default=...)
    y2: float = column("REAL NOT NULL", "y2", default=...)
    track_id: int | None = column("INTEGER", "Track")
    mask_area: float | None = column("REAL", "Mask (px)")
    polygon: str | None = column("TEXT", "Polygon", kind=TEXT, console=False)  # JSON [[x, y], ...] in pixels
    id: int | None = column("INTEGER PRIMARY KEY", "ID", console=False, files=False)

    @classmethod
    def of(cls, run_id: str, frame: FrameResult, d: Detection, detected_at: str) -> DetectionRow:
        """The row of one detection: the only place a `Detection` becomes columns (and is rounded)."""
        x1, y1, x2, y2 = (round(v, 1) for v in d.xyxy)
        return cls(
            run_id=run_id, item=frame.source, frame_index=frame.frame_index, video_time=round(frame.timestamp, 3),
            detected_at=detected_at, class_id=d.class_id, class_name=d.class_name,
            confidence=round(d.confidence, 4), x1=x1, y1=y1, x2=x2, y2=y2, track_id=d.track_id,
            mask_area=None if d.mask_area is None else round(d.mask_area, 1),
            polygon=None if d.polygon is None else json.dumps([[round(x, 1), round(y, 1)] for x, y in d.polygon]),
        )  # fmt: skip


@dataclass
class EventRow(Row):
    """One violation event as stored, written to the run's `events.json`, shown and exported."""

    table: ClassVar[str] = "events"

    run_id: str = column("TEXT NOT NULL REFERENCES runs(id)", "Run", kind=TEXT, console=False, default=...)
    item: str = column("TEXT NOT NULL", "Item", kind=TEXT, console=False, default=...)
    reason: str = column("TEXT NOT NULL", "Reason", kind=TEXT, default=...)
    class_name: str = column("TEXT NOT NULL", "Class", kind=TEXT, default=...)
    # Frames are in the files and the workbook; the console shows times, so the table fits without scrolling.
    start_frame: int = column("INTEGER NOT NULL", "Start frame", console=False, default=...)
    end_frame: int = column("INTEGER NOT NULL", "End frame", console=False, default=...)
    start_time: float = column("REAL NOT NULL", "Start (s)", default=...)
    end_time: float = column("REAL NOT NULL", "End (s)", default=...)
    peak_confidence: float = column("REAL NOT NULL", "Peak", kind=SCORE, default=...)
    snapshot: str | None = column("TEXT", "Snapshot", kind=TEXT, console=False)  # path relative to the run folder
    closed: bool = column("INTEGER NOT NULL", "Closed", kind=FLAG, default=False)
    recorded_at: str = column("TEXT NOT NULL", "Recorded at", kind=DATETIME, console=False, default="")
    id: int | None = column("INTEGER PRIMARY KEY", "Event", files=False)
    # Set by a camera monitor, never by the run itself (schema 3), so in the records and workbooks but not in the
    # run's own events.json: the event's video clip (a path, kept when the file is pruned: `RecordingRow.pruned_at`
    # says so), and who acknowledged the alarm in the console, when.
    clip: str | None = column("TEXT", "Clip", kind=TEXT, console=False, files=False)
    acknowledged_by: str | None = column("TEXT", "Acknowledged by", kind=TEXT, console=False, files=False)
    acknowledged_at: str | None = column("TEXT", "Acknowledged at", kind=DATETIME, console=False, files=False)
    # The clock time of the event's latest violating frame (schema 6; its end once closed): Start / End (s) are
    # seconds into the source, which for a camera monitor count from when its process started.
    last_seen_at: str | None = column("TEXT", "Last seen at", kind=DATETIME, console=False)

    MONITOR_FIELDS: ClassVar[tuple[str, ...]] = ("clip", "acknowledged_by", "acknowledged_at")
    """Columns a run's own updates of the event leave as they are."""

    @classmethod
    def of(cls, run_id: str, e: SafetyEvent, snapshot: str | None, recorded_at: str) -> EventRow:
        """The row of one event: the only place a `SafetyEvent` becomes columns (and is rounded); recorded (and
        last seen) now."""
        return cls(
            run_id=run_id, item=e.source, reason=e.reason, class_name=e.class_name, start_frame=e.start_frame,
            end_frame=e.end_frame, start_time=round(e.start_time, 3), end_time=round(e.end_time, 3),
            peak_confidence=round(e.peak_confidence, 4), snapshot=snapshot, closed=e.closed,
            recorded_at=recorded_at, id=e.id, last_seen_at=recorded_at,
        )  # fmt: skip


@dataclass
class MonitorRow(Row):
    """A camera monitor as it stands, one row per monitor name, updated by its process every second or so: what the
    console's Monitors tab shows for monitors of any process on the same records."""

    table: ClassVar[str] = "monitors"

    name: str = column("TEXT PRIMARY KEY", "Monitor", kind=TEXT, default=...)
    source: str = column("TEXT NOT NULL", "Source", kind=TEXT, default=...)
    status: str = column("TEXT NOT NULL", "Status", kind=TEXT, default="starting")  # see MONITOR_STATUSES
    violation: bool = column("INTEGER NOT NULL", "Violation", kind=FLAG, default=False)
    fps: float = column("REAL NOT NULL", "Frames/s", default=0.0)
    frames: int = column("INTEGER NOT NULL", "Frames", default=0)
    last_frame_at: str | None = column("TEXT", "Last frame", kind=DATETIME)
    run_id: str | None = column("TEXT", "Run", kind=TEXT, console=False)
    policy: str | None = column("TEXT", "Policy", kind=TEXT)
    latest_frame: str | None = column("TEXT", "Latest frame", kind=TEXT, console=False)  # JPEG path on its host
    message: str | None = column("TEXT", "Message", kind=TEXT)  # why it is reconnecting or failed
    host: str | None = column("TEXT", "Host", kind=TEXT, console=False)
    pid: int | None = column("INTEGER", "Process", console=False)
    started_at: str = column("TEXT NOT NULL", "Started", kind=DATETIME, console=False, default="")
    updated_at: str = column("TEXT NOT NULL", "Updated", kind=DATETIME, console=False, default="")
    # Gloves and bare hands its policy judged in the latest frame (schema 5; last, as an older database adds it):
    # none is no verdict, not a green OK
    hands: int = column("INTEGER NOT NULL DEFAULT 0", "Hands in view", default=0)


@dataclass
class RecordingRow(Row):
    """A finished video file of a monitor: a continuous segment or an event clip. Retention deletes files and
    sets `pruned_at`; the row stays, so records never point at a file without saying it is gone."""

    table: ClassVar[str] = "recordings"

    monitor: str = column("TEXT NOT NULL", "Monitor", kind=TEXT, default=...)
    kind: str = column("TEXT NOT NULL", "Kind", kind=TEXT, default=...)  # segment / clip
    path: str = column("TEXT NOT NULL", "File", kind=TEXT, default=...)
    started_at: str = column("TEXT NOT NULL", "From", kind=DATETIME, default=...)
    ended_at: str = column("TEXT NOT NULL", "Until", kind=DATETIME, default=...)
    bytes: int = column("INTEGER NOT NULL", "Bytes", default=0)
    frames: int = column("INTEGER NOT NULL", "Frames", default=0)
    run_id: str | None = column("TEXT", "Run", kind=TEXT, console=False)
    event_id: int | None = column("INTEGER", "Event", console=False)
    pruned_at: str | None = column("TEXT", "Pruned", kind=DATETIME)
    id: int | None = column("INTEGER PRIMARY KEY", "ID", console=False, files=False)


@dataclass
class GapRow(Row):
    """A time a monitor saw no frames (a camera that dropped, records that could not be written) and why."""

    table: ClassVar[str] = "gaps"

    monitor: str = column("TEXT NOT NULL", "Monitor", kind=TEXT, default=...)
    started_at: str = column("TEXT NOT NULL", "From", kind=DATETIME, default=...)
    ended_at: str | None = column("TEXT", "Until", kind=DATETIME)
    reason: str = column("TEXT NOT NULL", "Reason", kind=TEXT, default="")
    run_id: str | None = column("TEXT", "Run", kind=TEXT, console=False)
    id: int | None = column("INTEGER PRIMARY KEY", "ID", console=False, files=False)


ROWS: tuple[type[Row], ...] = (RunRow, DetectionRow, EventRow, MonitorRow, RecordingRow, GapRow)
"""Every table, in creation order (detections and events refer to runs)."""
SCHEMA_VERSION = 6
"""Version 1: the first tables; 2: runs.host and runs.pid; 3: camera monitors (tables monitors, recordings, gaps;
events.clip and the acknowledgement) and each run's runtime and precision; 4: runs.augment (test-time augmentation;
and runs.agnostic_nms for a PostgreSQL database made at 3 before it); 5: monitors.hands (hands judged in the latest
frame); 6: events.last_seen_at and runs.last_frame_at (the clock times of an event's latest violating frame and of
a run's latest frame). A store adds missing tables and columns when it opens a database."""
MONITOR_STATUSES = ("starting", "running", "reconnecting", "failed", "stopped")
"""`reconnecting`: its camera dropped and is tried again with back-off; `failed`: it stopped on an error it
cannot recover from (its message says which); a `running` row not updated for a while belongs to a dead process."""
RUN_STATUSES = ("running", "completed", "stopped", "failed", "interrupted")
"""`interrupted`: the process running it ended without closing it (a crash, a kill, a power cut)."""
