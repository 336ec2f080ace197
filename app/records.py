"""The records store: runs, detections and violation events in SQLite, written as results arrive.

WAL mode with a commit per frame: a process killed mid-run loses at most the frame in flight, and readers
(the console's history tab, an Excel export) never block the writer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .policy import SafetyEvent
from .results import FrameResult
from .runtime import EXPORTS_DIR

DEFAULT_DB = EXPORTS_DIR / "records.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    task TEXT NOT NULL,
    conf REAL NOT NULL,
    iou REAL NOT NULL,
    imgsz INTEGER NOT NULL,
    classes TEXT,
    tracking INTEGER NOT NULL,
    policy TEXT,
    policy_json TEXT,
    output_dir TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS detections (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    item TEXT NOT NULL,
    frame_index INTEGER NOT NULL,
    video_time REAL NOT NULL,
    detected_at TEXT NOT NULL,
    class_id INTEGER NOT NULL,
    class_name TEXT NOT NULL,
    confidence REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    track_id INTEGER,
    mask_area REAL,
    polygon TEXT
);
CREATE INDEX IF NOT EXISTS detections_run ON detections(run_id, frame_index);
CREATE INDEX IF NOT EXISTS detections_time ON detections(detected_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    item TEXT NOT NULL,
    reason TEXT NOT NULL,
    class_name TEXT NOT NULL,
    start_frame INTEGER NOT NULL,
    end_frame INTEGER NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL NOT NULL,
    peak_confidence REAL NOT NULL,
    snapshot TEXT,
    closed INTEGER NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
"""


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class RunRecord:
    """One run: a source processed with one model and one set of settings."""

    id: str
    source: str
    kind: str
    model: str
    model_sha256: str
    task: str
    conf: float
    iou: float
    imgsz: int
    classes: str | None
    tracking: bool
    policy: str | None
    policy_json: str | None
    output_dir: str | None
    started_at: str
    ended_at: str | None = None
    status: str = "running"
    frames: int = 0


@dataclass
class DetectionRecord:
    """One detection as stored (and exported)."""

    id: int
    run_id: str
    item: str
    frame_index: int
    video_time: float
    detected_at: str
    class_id: int
    class_name: str
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float
    track_id: int | None
    mask_area: float | None
    polygon: str | None


@dataclass
class EventRecord:
    """One violation event as stored."""

    id: int
    run_id: str
    item: str
    reason: str
    class_name: str
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    peak_confidence: float
    snapshot: str | None
    closed: bool
    recorded_at: str


class RecordStore:
    """SQLite records, safe to share between threads (one connection, one lock).

    Example:
        >>> store = RecordStore("exports/records.sqlite")
        >>> [r.source for r in store.runs(start="2026-11-01")]
    """

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def start_run(self, run: RunRecord) -> str:
        with self._tx() as db:
            db.execute(f"INSERT INTO runs VALUES ({','.join('?' * 18)})", tuple(run.__dict__.values()))
        return run.id

    @staticmethod
    def new_run_id() -> str:
        return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def add_frame(self, run_id: str, frame: FrameResult) -> None:
        """Store one frame's detections and count the frame, in one transaction."""
        now = utc_now()
        rows = [
            (
                run_id,
                frame.source,
                frame.frame_index,
                frame.timestamp,
                now,
                d.class_id,
                d.class_name,
                d.confidence,
                *d.xyxy,
                d.track_id,
                d.mask_area,
                json.dumps([[round(x, 1), round(y, 1)] for x, y in d.polygon]) if d.polygon else None,
            )
            for d in frame.detections
        ]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO detections (run_id, item, frame_index, video_time, detected_at, class_id, class_name,"
                " confidence, x1, y1, x2, y2, track_id, mask_area, polygon) VALUES"
                f" ({','.join('?' * 15)})",
                rows,
            )
            db.execute("UPDATE runs SET frames = frames + 1 WHERE id = ?", (run_id,))

    def save_event(self, run_id: str, event: SafetyEvent, snapshot: str | None = None) -> int:
        """Insert or update an event; returns its id (also set on the event)."""
        values = (
            event.reason, event.class_name, event.start_frame, event.end_frame, event.start_time, event.end_time,
            event.peak_confidence, snapshot, int(event.closed),
        )  # fmt: skip
        with self._tx() as db:
            if event.id is None:
                cur = db.execute(
                    "INSERT INTO events (run_id, item, reason, class_name, start_frame, end_frame, start_time,"
                    " end_time, peak_confidence, snapshot, closed, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (run_id, event.source, *values, utc_now()),
                )
                event.id = cur.lastrowid
            else:
                db.execute(
                    "UPDATE events SET reason=?, class_name=?, start_frame=?, end_frame=?, start_time=?, end_time=?,"
                    " peak_confidence=?, snapshot=COALESCE(?, snapshot), closed=? WHERE id=?",
                    (*values, event.id),
                )
        return event.id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET ended_at=?, status=? WHERE id=?", (utc_now(), status, run_id))

    def runs(self, start: str | None = None, end: str | None = None, source: str | None = None) -> list[RunRecord]:
        """Runs started in [start, end) (ISO dates or date-times, UTC), newest first, optionally by source."""
        where, args = _range("started_at", start, end, source)
        return self._select(RunRecord, f"SELECT * FROM runs {where} ORDER BY started_at DESC", args)

    def run(self, run_id: str) -> RunRecord | None:
        found = self._select(RunRecord, "SELECT * FROM runs WHERE id=?", (run_id,))
        return found[0] if found else None

    def detections(
        self, run_id: str | None = None, start: str | None = None, end: str | None = None, source: str | None = None
    ) -> list[DetectionRecord]:
        """Detections of one run, or of all runs started in a date range / from a source, in order."""
        return self._rows_of_runs("detections", DetectionRecord, run_id, start, end, source)

    def events(
        self, run_id: str | None = None, start: str | None = None, end: str | None = None, source: str | None = None
    ) -> list[EventRecord]:
        """Events of one run, or of all runs started in a date range / from a source, in order."""
        return self._rows_of_runs("events", EventRecord, run_id, start, end, source)

    def _rows_of_runs(
        self, table: str, cls: type, run_id: str | None, start: str | None, end: str | None, source: str | None
    ) -> list:
        if run_id is not None:
            return self._select(cls, f"SELECT * FROM {table} WHERE run_id=? ORDER BY id", (run_id,))
        where, args = _range("r.started_at", start, end, source, prefix="r.")
        return self._select(
            cls, f"SELECT t.* FROM {table} t JOIN runs r ON r.id = t.run_id {where} ORDER BY t.id", args
        )

    def _select(self, cls: type, sql: str, args: tuple) -> list:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [cls(*row) for row in rows]


def _range(column: str, start: str | None, end: str | None, source: str | None, prefix: str = "") -> tuple[str, tuple]:
    clauses, args = [], []
    if start:
        clauses.append(f"{column} >= ?")
        args.append(start)
    if end:
        clauses.append(f"{column} < ?")
        args.append(end)
    if source:
        clauses.append(f"{prefix}source = ?")
        args.append(source)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)
