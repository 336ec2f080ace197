"""Unit tests of app/records.py: the records store on SQLite and on a real PostgreSQL server (every store test runs
on both), its queries, old databases, migrations and concurrent writers (threads and processes)."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest
from helpers import free_port, postgres_control

from app import cli, records
from app.errors import RecordsError
from app.records import HOST, RECORDS_ENV, RecordStore, open_store, utc_bound, utc_now
from app.schema import ROWS, SCHEMA_VERSION, DetectionRow, EventRow, GapRow, MonitorRow, RecordingRow, RunRow
from app.service import DetectionService

RUN_COLUMNS_V1 = ["id", "source", "kind", "model", "model_sha256", "task", "conf", "iou", "imgsz", "classes",
                  "tracking", "policy", "policy_json", "output_dir", "started_at", "ended_at", "status",
                  "frames"]  # fmt: skip

# The tables as the previous release created them (`git show HEAD~3:app/records.py`, SCHEMA): `id` first in
# detections and events, where the row classes now declare it last. Users' records.sqlite files look like this.
OLD_SCHEMA = """
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


def make_run(run_id: str, started_at: str, source: str = "cam-1", tracking: bool = False) -> RunRow:
    return RunRow(id=run_id, source=source, kind="video", model="gloves-bra-n.pt", model_sha256="ab" * 32,
                  task="detect", conf=0.25, iou=0.7, imgsz=640, classes="[0, 1]", tracking=tracking,
                  policy="gloves", policy_json='{"min_frames": 3}', output_dir=f"exports/{run_id}",
                  started_at=started_at)  # fmt: skip


def make_detection(run_id: str, frame_index: int, class_name: str = "hand", polygon: str | None = None) -> DetectionRow:
    return DetectionRow(run_id=run_id, item="clip.mp4", frame_index=frame_index, video_time=frame_index / 10,
                        detected_at=f"2026-11-16T08:00:{frame_index % 60:02d}.000+00:00", class_id=1,
                        class_name=class_name, confidence=0.8765, x1=1.5, y1=2.5, x2=30.1, y2=40.2,
                        track_id=frame_index, mask_area=12.5 if polygon else None, polygon=polygon)  # fmt: skip


def make_event(run_id: str, snapshot: str | None = "events/event_000001.jpg", closed: bool = False) -> EventRow:
    return EventRow(run_id=run_id, item="clip.mp4", reason="bare hand near blade", class_name="hand", start_frame=1,
                    end_frame=4, start_time=0.1, end_time=0.4, peak_confidence=0.9, snapshot=snapshot,
                    closed=closed, recorded_at="2026-11-16T08:00:01.000+00:00")  # fmt: skip


def stored(rows: list[DetectionRow]) -> list[DetectionRow]:
    """Rows as read back: everything but the database id."""
    return [dataclasses.replace(r, id=None) for r in rows]


BACKENDS = ["sqlite", "postgresql"]
TABLES = ", ".join(row.table for row in ROWS)  # SECURITY.md grants on every table


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's records go: a new SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return tmp_path / "sub" / "records.sqlite"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(location: str | Path) -> Iterator[RecordStore]:
    s = RecordStore(location)
    yield s
    s.close()


def sql(location: str | Path, statement: str, args: tuple = ()) -> list[tuple]:
    """Run one statement straight through the database's own driver (not the store), committed."""
    if isinstance(location, str):
        with psycopg.connect(location, autocommit=True) as pg:
            cur = pg.execute(statement.replace("?", "%s"), args)
            return cur.fetchall() if cur.description else []
    with sqlite3.connect(location) as db:
        found = db.execute(statement, args).fetchall()
    db.close()
    return found


def table_columns(location: str | Path, table: str) -> list[str]:
    """A table's column names in their order, as the database has them."""
    if isinstance(location, str):
        return [r[0] for r in sql(location, "SELECT column_name FROM information_schema.columns WHERE "
                                  "table_name = ? ORDER BY ordinal_position", (table,))]  # fmt: skip
    return [r[1] for r in sql(location, f"PRAGMA table_info({table})")]


def test_tables_follow_the_schema(store: RecordStore, location: str | Path) -> None:
    """A new database's tables have the row classes' columns, in declaration order."""
    for row in ROWS:
        assert table_columns(location, row.table) == [c.name for c in row.columns()]
    assert store.schema_version == SCHEMA_VERSION


def test_run_lifecycle(store: RecordStore) -> None:
    """start_run / add_frame (empty frames count too) / finish_run, read back field by field."""
    run = make_run("r1", "2026-11-16T08:00:00.000+00:00", tracking=True)
    assert store.start_run(run) == "r1"
    assert store.run("r1") == run
    frames = [[make_detection("r1", 0), make_detection("r1", 0, "glove", "[[1.0, 2.0], [3.0, 4.5], [0.0, 9.1]]")],
              [], [make_detection("r1", 2)]]  # fmt: skip
    for rows in frames:
        store.add_frame("r1", rows)
    before = utc_now()
    store.finish_run("r1", "completed")
    after = utc_now()

    got = store.run("r1")
    assert got is not None
    assert (got.frames, got.status, got.tracking) == (3, "completed", True)
    assert got.ended_at is not None and before <= got.ended_at <= after
    detections = store.detections(run_id="r1")
    assert stored(detections) == [r for rows in frames for r in rows]
    ids = [d.id for d in detections]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))
    assert store.run("nope") is None
    assert store.detections(run_id="nope") == []


def test_save_event_insert_then_update(store: RecordStore) -> None:
    """An update with no snapshot keeps the stored one (COALESCE); a new snapshot replaces it; run_id and
    recorded_at are kept from the insert."""
    store.start_run(make_run("r1", "2026-11-16T08:00:00.000+00:00"))
    event = make_event("r1")
    event_id = store.save_event(event)
    assert event.id == event_id and isinstance(event_id, int)
    assert store.events(run_id="r1") == [event]

    update = dataclasses.replace(event, snapshot=None, end_frame=12, end_time=1.2, peak_confidence=0.95,
                                 closed=True, recorded_at="2026-11-16T09:00:00.000+00:00")  # fmt: skip
    assert store.save_event(update) == event_id
    [got] = store.events(run_id="r1")
    assert got == dataclasses.replace(update, snapshot=event.snapshot, recorded_at=event.recorded_at)
    assert got.closed is True

    store.save_event(dataclasses.replace(update, snapshot="events/event_000001_closed.jpg"))
    [got] = store.events(run_id="r1")
    assert got.snapshot == "events/event_000001_closed.jpg"

    second = make_event("r1", snapshot=None)
    assert store.save_event(second) != event_id
    assert [e.id for e in store.events(run_id="r1")] == [event_id, second.id]


def fill_range(store: RecordStore) -> None:
    """Four runs around the week of 2026-11-16, from two sources, each with one detection and one event."""
    runs = [
        ("before", "2026-11-15T23:59:59.999+00:00", "cam-1"),
        ("first", "2026-11-16T00:00:00.000+00:00", "cam-1"),
        ("mid", "2026-11-18T12:00:00.000+00:00", "cam-2"),
        ("end", "2026-11-23T00:00:00.000+00:00", "cam-1"),
    ]
    for run_id, started_at, source in runs:
        store.start_run(make_run(run_id, started_at, source))
        store.add_frame(run_id, [make_detection(run_id, 0)])
        store.save_event(make_event(run_id))


def test_runs_range_and_source(store: RecordStore) -> None:
    """runs() takes [start, end), filters by source and lists the newest first."""
    fill_range(store)
    assert [r.id for r in store.runs()] == ["end", "mid", "first", "before"]
    assert [r.id for r in store.runs(start="2026-11-16", end="2026-11-23")] == ["mid", "first"]
    assert [r.id for r in store.runs(start="2026-11-16")] == ["end", "mid", "first"]
    assert [r.id for r in store.runs(end="2026-11-16")] == ["before"]
    assert [r.id for r in store.runs(source="cam-1")] == ["end", "first", "before"]
    assert [r.id for r in store.runs(start="2026-11-16", end="2026-11-23", source="cam-1")] == ["first"]
    assert store.runs(start="2030-01-01", end="2030-02-01") == []


def test_detections_and_events_by_run_and_range(store: RecordStore) -> None:
    """detections() / events() of one run, or of the runs started in a range and from a source, in order."""
    fill_range(store)
    assert [d.run_id for d in store.detections(run_id="mid")] == ["mid"]
    assert [e.run_id for e in store.events(run_id="mid")] == ["mid"]
    week = {"start": "2026-11-16", "end": "2026-11-23"}
    assert [d.run_id for d in store.detections(**week)] == ["first", "mid"]
    assert [e.run_id for e in store.events(**week)] == ["first", "mid"]
    assert [d.run_id for d in store.detections(**week, source="cam-2")] == ["mid"]
    assert [e.run_id for e in store.events(source="cam-1")] == ["before", "first", "end"]
    assert [d.run_id for d in store.detections()] == ["before", "first", "mid", "end"]
    assert store.events(start="2030-01-01") == []


def test_run_counts_are_each_runs_detections_by_class_and_events(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The History's columns and verdict: per run, as detections() and events() list them, however many runs
    (queries per `COUNTS_PER_QUERY` of them: 2 here, so 5 runs take three rounds)."""
    monkeypatch.setattr(records, "COUNTS_PER_QUERY", 2)
    fill_range(store)
    store.start_run(make_run("busy", "2026-11-18T10:00:00+00:00"))
    store.add_frame("busy", [make_detection("busy", i) for i in range(3)] + [make_detection("busy", 3, "glove")])
    for _ in range(2):
        store.save_event(make_event("busy"))
    ids = [r.id for r in store.runs()]
    assert store.run_counts(ids) == {
        i: (dict(Counter(d.class_name for d in store.detections(run_id=i))), len(store.events(run_id=i))) for i in ids
    }
    assert store.run_counts(["busy", "no-such-run"]) == {"busy": ({"hand": 3, "glove": 1}, 2)}
    assert store.run_counts([]) == {}


def test_source_is_the_stored_source_or_its_file_name(store: RecordStore) -> None:
    """A source filter matches the source as stored, or a file name alone, on either database alike: _ and % in it
    are not wildcards, and case counts, as in the file names."""
    sources = {"a": "/videos/cam_1.mp4", "b": "/videos/camX1.mp4", "c": "cam_1.mp4", "d": "/v/100%.mp4",
               "e": "/v/1000.mp4", "f": "/videos/old/cam_1.mp4", "g": "/videos/CAM_1.mp4"}  # fmt: skip
    for i, (run_id, source) in enumerate(sources.items()):
        store.start_run(make_run(run_id, f"2026-11-16T08:00:0{i}.000+00:00", source))
        store.add_frame(run_id, [make_detection(run_id, 0)])
    assert [r.id for r in store.runs(source="cam_1.mp4")] == ["f", "c", "a"]
    assert [r.id for r in store.runs(source="/videos/cam_1.mp4")] == ["a"]
    assert [r.id for r in store.runs(source="100%.mp4")] == ["d"]
    assert [d.run_id for d in store.detections(source="cam_1.mp4")] == ["a", "c", "f"]
    assert store.runs(source="1.mp4") == []  # a file name is matched whole
    assert [r.id for r in store.runs(source="CAM_1.mp4")] == ["g"]


def test_close_interrupted(store: RecordStore) -> None:
    """Runs this machine left `running` from a process that is gone (or that is ending) become `interrupted`, ended
    with their last frame, their open events closed; runs of live processes, of other machines and finished runs
    are left alone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid now belongs to no process
    runs = {"dead": (HOST, child.pid), "unknown": (HOST, None), "alive": (HOST, os.getpid()),
            "other-host": ("elsewhere", child.pid), "done": (HOST, child.pid)}  # fmt: skip
    for i, (run_id, (host, pid)) in enumerate(runs.items()):
        store.start_run(dataclasses.replace(make_run(run_id, f"2026-11-16T08:00:0{i}.000+00:00"), host=host, pid=pid))
        store.add_frame(run_id, [make_detection(run_id, 0)])
    store.finish_run("done", "completed")
    store.add_frame("dead", [make_detection("dead", 25)], "2026-11-16T08:00:25.000+00:00")
    store.add_frame("dead", [], "2026-11-16T08:07:00.000+00:00")  # its last frame: no detection in it
    dead_event, alive_event = store.save_event(make_event("dead")), store.save_event(make_event("alive"))
    # a run of no frame ends as it started; "unknown" has frames with no time (as before schema 6): when found
    store.start_run(dataclasses.replace(make_run("no-frame", "2026-11-16T09:00:00.000+00:00"), host=HOST, pid=None))
    found_at = utc_now()

    assert sorted(store.close_interrupted()) == ["dead", "no-frame", "unknown"]
    status = {r.id: r.status for r in store.runs()}
    assert status == {"dead": "interrupted", "unknown": "interrupted", "alive": "running", "other-host": "running",
                      "done": "completed", "no-frame": "interrupted"}  # fmt: skip
    ended = {r.id: r.ended_at for r in store.runs() if r.status == "interrupted"}
    assert ended["dead"] == "2026-11-16T08:07:00.000+00:00" and store.run("dead").frames == 3
    assert ended["no-frame"] == "2026-11-16T09:00:00.000+00:00" and ended["unknown"] >= found_at
    assert len(store.detections(run_id="dead")) == 2  # what it recorded stays
    closed = {e.id: e.closed for e in store.events(run_id="dead") + store.events(run_id="alive")}
    assert closed == {dead_event: True, alive_event: False}  # no alarm stays up for a process that is gone
    assert store.close_interrupted() == []
    assert store.close_interrupted(ending_pid=os.getpid()) == ["alive"]


def test_opening_waits_for_a_writer_on_a_new_file(tmp_path: Path) -> None:
    """Opening a file another connection is writing waits (up to the store's timeout) instead of failing: the
    switch to WAL mode must wait too. (Two stores first opening one new file at once race this way.)"""
    path = tmp_path / "records.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other (a)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO other VALUES (1)")
    release = threading.Timer(0.3, other.execute, ("COMMIT",))
    release.start()
    try:
        store = RecordStore(path)
    finally:
        release.join()
        other.close()
    try:
        assert store.runs() == []
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    finally:
        store.close()


def set_schema_version(location: str | Path, version: int) -> None:
    if isinstance(location, str):
        sql(location, "UPDATE schema_version SET version = ?", (version,))
    else:
        sql(location, f"PRAGMA user_version = {version}")


def test_newer_schema_version_is_kept(location: str | Path) -> None:
    """Opening a database that a newer release wrote does not lower its recorded schema version."""
    RecordStore(location).close()
    set_schema_version(location, SCHEMA_VERSION + 1)
    store = RecordStore(location)
    try:
        assert store.schema_version == SCHEMA_VERSION + 1
    finally:
        store.close()


def test_a_version_4_database_gains_the_monitors_hands_column(location: str | Path) -> None:
    """Version 5 added monitors.hands (hands judged in the latest frame): a monitor saved before keeps its row and
    reads 0 hands until it writes again."""
    first = RecordStore(location)
    first.save_monitor(MonitorRow(name="bench", source="0", status="running", violation=True, updated_at=utc_now()))
    first.close()
    sql(location, "ALTER TABLE monitors DROP COLUMN hands")
    set_schema_version(location, 4)
    store = RecordStore(location)
    try:
        assert store.schema_version == SCHEMA_VERSION
        assert table_columns(location, "monitors") == [c.name for c in MonitorRow.columns()]
        (bench,) = store.monitors()
        assert (bench.name, bench.violation, bench.hands) == ("bench", True, 0)
    finally:
        store.close()


def test_a_version_5_database_gains_the_last_seen_and_last_frame_columns(location: str | Path) -> None:
    """Version 6 added events.last_seen_at and runs.last_frame_at (the clock times of an event's latest violating
    frame and of a run's latest frame): rows saved before keep their data, with no time, and updates set one."""
    first = RecordStore(location)
    first.start_run(make_run("r", "2026-11-16T08:00:00.000+00:00"))
    event_id = first.save_event(make_event("r"))
    first.close()
    sql(location, "ALTER TABLE events DROP COLUMN last_seen_at")
    sql(location, "ALTER TABLE runs DROP COLUMN last_frame_at")
    set_schema_version(location, 5)
    store = RecordStore(location)
    try:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert table_columns(location, "events") == [c.name for c in EventRow.columns()]
        assert table_columns(location, "runs") == [c.name for c in RunRow.columns()]
        store.add_frame("r", [], "2026-11-16T08:00:09.000+00:00")
        assert store.run("r").last_frame_at == "2026-11-16T08:00:09.000+00:00"
        before = store.event(event_id)
        assert before is not None and before.reason == "bare hand near blade" and before.last_seen_at is None
        store.save_event(dataclasses.replace(before, end_frame=9, last_seen_at="2026-11-16T08:00:09.000+00:00"))
        assert store.event(event_id).last_seen_at == "2026-11-16T08:00:09.000+00:00"
    finally:
        store.close()


def test_a_version_3_database_gains_the_test_time_augmentation_column(location: str | Path) -> None:
    """Version 4 added runs.augment (and, for a PostgreSQL database made at 3 before it, runs.agnostic_nms): such a
    database is migrated when opened and keeps its runs."""
    first = RecordStore(location)
    first.start_run(make_run("old", "2026-11-20T07:00:00.000+00:00"))
    first.close()
    for column in ("augment", "agnostic_nms", "last_frame_at"):  # and version 6's
        sql(location, f"ALTER TABLE runs DROP COLUMN {column}")
    set_schema_version(location, 3)
    store = RecordStore(location)
    try:
        assert store.schema_version == SCHEMA_VERSION
        assert table_columns(location, "runs") == [c.name for c in RunRow.columns()]
        assert store.run("old").augment is False
        store.start_run(dataclasses.replace(make_run("new", "2026-12-01T07:00:00.000+00:00"), augment=True,
                                            agnostic_nms=True))  # fmt: skip
        assert (store.run("new").augment, store.run("new").agnostic_nms) == (True, True)
    finally:
        store.close()


def test_migration_adds_the_columns_of_a_later_version(location: str | Path) -> None:
    """A database of schema version 1 (runs without host, pid, monitor, runtime, precision, agnostic NMS and
    test-time augmentation; events without clip, acknowledgement and last seen time; no monitor tables) gains them
    when opened, keeps its rows and records the new version: a later column or table is added the same way, on both
    backends."""
    first = RecordStore(location)
    first.start_run(make_run("old", "2026-10-01T07:00:00.000+00:00"))
    first.add_frame("old", [make_detection("old", 0)])
    first.close()
    for table, column in [
        *(("runs", c.name) for c in RunRow.columns() if c.name not in RUN_COLUMNS_V1),
        *(("events", c) for c in (*EventRow.MONITOR_FIELDS, "last_seen_at")),
    ]:
        sql(location, f"ALTER TABLE {table} DROP COLUMN {column}")
    for table in ("monitors", "recordings", "gaps"):
        sql(location, f"DROP TABLE {table}")
    set_schema_version(location, 1)
    assert "host" not in table_columns(location, "runs")

    store = RecordStore(location)
    try:
        assert store.schema_version == SCHEMA_VERSION
        for row in ROWS:
            assert table_columns(location, row.table) == [c.name for c in row.columns()]
        assert store.run("old") == dataclasses.replace(make_run("old", "2026-10-01T07:00:00.000+00:00"), frames=1)
        assert len(store.detections(run_id="old")) == 1
        store.start_run(dataclasses.replace(make_run("new", "2026-11-16T08:00:00.000+00:00"), host=HOST, pid=7,
                                            runtime="openvino", precision="f32"))  # fmt: skip
        got = store.run("new")
        assert got is not None and (got.host, got.pid, got.runtime, got.precision) == (HOST, 7, "openvino", "f32")
    finally:
        store.close()


def test_flags_come_back_as_bool(store: RecordStore) -> None:
    """FLAG columns, stored as 0 / 1, are read back as bool."""
    store.start_run(make_run("on", "2026-11-16T08:00:00.000+00:00", tracking=True))
    store.start_run(make_run("off", "2026-11-16T09:00:00.000+00:00", tracking=False))
    store.save_event(make_event("on", closed=True))
    store.save_event(make_event("off", closed=False))
    assert [(r.id, r.tracking) for r in store.runs()] == [("off", False), ("on", True)]
    assert all(type(r.tracking) is bool for r in store.runs())
    assert [e.closed for e in store.events()] == [True, False]
    assert all(type(e.closed) is bool for e in store.events())


def test_reads_and_writes_a_database_of_the_previous_schema(tmp_path: Path) -> None:
    """A records.sqlite created by the previous release (id first, rows inserted positionally) is read back by
    name, and new rows written into it land in the right columns."""
    path = tmp_path / "records.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   ("old", "cam-1", "video", "m.pt", "cd" * 32, "segment", 0.3, 0.6, 480, None, 1, "gloves", "{}",
                    "exports/old", "2026-10-01T07:00:00.000+00:00", "2026-10-01T07:05:00.000+00:00", "completed",
                    2))  # fmt: skip
        db.execute("INSERT INTO detections VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (5, "old", "clip.mp4", 1, 0.1, "2026-10-01T07:00:01.000+00:00", 2, "glove", 0.75, 1.0, 2.0, 3.0,
                    4.0, 9, 6.5, "[[1.0, 2.0]]"))  # fmt: skip
        db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (3, "old", "clip.mp4", "no gloves", "hand", 1, 2, 0.1, 0.2, 0.66, "events/e.jpg", 1,
                    "2026-10-01T07:00:02.000+00:00"))  # fmt: skip
    db.close()

    store = RecordStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION
        with sqlite3.connect(path) as db:  # columns of later versions were added, after the old ones
            names = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
        db.close()
        assert names[:18] == RUN_COLUMNS_V1 and sorted(names) == sorted(c.name for c in RunRow.columns())
        assert store.runs() == [RunRow(
            id="old", source="cam-1", kind="video", model="m.pt", model_sha256="cd" * 32, task="segment", conf=0.3,
            iou=0.6, imgsz=480, classes=None, tracking=True, policy="gloves", policy_json="{}",
            output_dir="exports/old", started_at="2026-10-01T07:00:00.000+00:00",
            ended_at="2026-10-01T07:05:00.000+00:00", status="completed", frames=2,
        )]  # fmt: skip
        assert store.detections(run_id="old") == [DetectionRow(
            run_id="old", item="clip.mp4", frame_index=1, video_time=0.1, detected_at="2026-10-01T07:00:01.000+00:00",
            class_id=2, class_name="glove", confidence=0.75, x1=1.0, y1=2.0, x2=3.0, y2=4.0, track_id=9,
            mask_area=6.5, polygon="[[1.0, 2.0]]", id=5,
        )]  # fmt: skip
        assert store.events(start="2026-10-01") == [EventRow(
            run_id="old", item="clip.mp4", reason="no gloves", class_name="hand", start_frame=1, end_frame=2,
            start_time=0.1, end_time=0.2, peak_confidence=0.66, snapshot="events/e.jpg", closed=True,
            recorded_at="2026-10-01T07:00:02.000+00:00", id=3,
        )]  # fmt: skip

        # New writes into the old layout: by name, so every value lands in its own column.
        store.start_run(make_run("new", "2026-11-16T08:00:00.000+00:00"))
        detection = make_detection("new", 4)
        store.add_frame("new", [detection])
        event = make_event("new")
        store.save_event(event)
        store.save_event(dataclasses.replace(event, snapshot=None, closed=True))
        store.finish_run("new", "completed")
        assert stored(store.detections(run_id="new")) == [detection]
        assert store.events(run_id="new") == [dataclasses.replace(event, closed=True)]
        got = store.run("new")
        assert got is not None and (got.frames, got.status) == (1, "completed")
    finally:
        store.close()
    with sqlite3.connect(path) as db:  # the table still has its old layout, and the new row fits it
        first = db.execute("SELECT * FROM detections WHERE run_id = 'new'").fetchone()
        assert first[:3] == (6, "new", "clip.mp4")
    db.close()


@pytest.mark.parametrize("shared", [False, True], ids=["two-stores", "one-store"])
def test_concurrent_writers_lose_nothing(location: str | Path, shared: bool) -> None:
    """Two threads writing runs, frames and events at once (two RecordStores on one database, or one shared)."""
    path = location
    stores = [RecordStore(path)] * 2 if shared else [RecordStore(path), RecordStore(path)]
    frames, errors = 150, []
    barrier = threading.Barrier(2)

    def work(store: RecordStore, run_id: str) -> Callable[[], None]:
        def target() -> None:
            try:
                barrier.wait()
                store.start_run(make_run(run_id, "2026-11-16T08:00:00.000+00:00"))
                for i in range(frames):
                    store.add_frame(run_id, [make_detection(run_id, i), make_detection(run_id, i, "glove")])
                    if i % 10 == 0:
                        event = make_event(run_id)
                        store.save_event(event)
                        store.save_event(dataclasses.replace(event, snapshot=None, closed=True))
                store.finish_run(run_id, "completed")
            except BaseException as e:  # surfaced in the main thread
                errors.append(e)

        return target

    threads = [threading.Thread(target=work(s, f"run-{i}")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in set(stores):
        s.close()
    assert not errors, errors

    check = RecordStore(path)
    try:
        for run_id in ("run-0", "run-1"):
            run = check.run(run_id)
            assert run is not None and (run.frames, run.status) == (frames, "completed")
            detections = check.detections(run_id=run_id)
            assert len(detections) == 2 * frames
            assert [d.frame_index for d in detections[::2]] == list(range(frames))
            events = check.events(run_id=run_id)
            assert len(events) == frames // 10 and all(e.closed and e.snapshot for e in events)
    finally:
        check.close()


WRITER = """
import sys
from test_records import make_detection, make_event, make_run
from app.records import RecordStore

location, run_id, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = RecordStore(location)
store.start_run(make_run(run_id, "2026-11-16T08:00:00.000+00:00"))
for i in range(frames):
    store.add_frame(run_id, [make_detection(run_id, i), make_detection(run_id, i, "glove")])
    if i % 10 == 0:
        store.save_event(make_event(run_id))
store.finish_run(run_id, "completed")
store.close()
"""


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_writer_processes_lose_nothing(location: str | Path) -> None:
    """Four processes opening one new database at once (each creating the tables) and writing runs, frames and
    events side by side: every row arrives."""
    frames, ids = 60, [f"proc-{i}" for i in range(4)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(location), run_id, str(frames)], env=env,
                              stderr=subprocess.PIPE, text=True) for run_id in ids]  # fmt: skip
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    store = RecordStore(location)
    try:
        assert sorted(r.id for r in store.runs()) == ids
        for run_id in ids:
            run = store.run(run_id)
            assert run is not None and (run.frames, run.status) == (frames, "completed")
            assert [d.frame_index for d in store.detections(run_id=run_id)[::2]] == list(range(frames))
            assert len(store.events(run_id=run_id)) == frames // 10
        assert store.schema_version == SCHEMA_VERSION
    finally:
        store.close()


def test_open_store_takes_the_location_from_the_environment(
    location: str | Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_store: the location given, else $GLOVE_RECORDS, else the default."""
    monkeypatch.setenv(RECORDS_ENV, str(location))
    with_env = open_store(default=tmp_path / "unused.sqlite")
    with_env.start_run(make_run("r1", "2026-11-16T08:00:00.000+00:00"))
    with_env.close()
    assert not (tmp_path / "unused.sqlite").exists()
    given = open_store(location)
    try:
        assert [r.id for r in given.runs()] == ["r1"]
    finally:
        given.close()
    monkeypatch.delenv(RECORDS_ENV)
    default = open_store(default=tmp_path / "default.sqlite")
    default.close()
    assert default.location == str(tmp_path / "default.sqlite")


@pytest.mark.parametrize("url", ["postgresql://monitor:s3cret@127.0.0.1:5432/gloves",
                                 "postgresql://monitor@127.0.0.1:5432/gloves?password=s3cret"])  # fmt: skip
def test_a_password_in_the_url_is_refused(url: str) -> None:
    """The password comes from PGPASSWORD or ~/.pgpass, never from the URL (shell history, process lists)."""
    with pytest.raises(RecordsError, match="must not hold a password") as refused:
        RecordStore(url)
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


def test_unusable_locations_are_one_line_errors(tmp_path: Path) -> None:
    """An unreachable server, another scheme and an unwritable file are answered in one line, not a traceback."""
    port = free_port()  # nothing listens there
    with pytest.raises(RecordsError, match=f"cannot reach the records database postgresql://u@127.0.0.1:{port}/db"):
        RecordStore(f"postgresql://u@127.0.0.1:{port}/db")
    with pytest.raises(RecordsError, match="file path or a postgresql:// URL"):
        RecordStore("mysql://u@127.0.0.1/db")
    (tmp_path / "file").write_text("")
    with pytest.raises(RecordsError, match="cannot open the records file"):
        RecordStore(tmp_path / "file" / "records.sqlite")


def test_a_postgresql_restart_is_survived(postgres_server: str, postgres_url: str) -> None:
    """A monitor writing while the server restarts: the lost connection is reopened and the next frame stored."""
    store = RecordStore(postgres_url)
    try:
        store.start_run(make_run("r1", "2026-11-16T08:00:00.000+00:00"))
        store.add_frame("r1", [make_detection("r1", 0)])
        admin = f"{postgres_server}/postgres"
        started = sql(admin, "SELECT pg_postmaster_start_time()")
        postgres_control(postgres_server)("restart")
        assert sql(admin, "SELECT pg_postmaster_start_time()") != started
        store.add_frame("r1", [make_detection("r1", 1)])
        store.finish_run("r1", "completed")
        run = store.run("r1")
        assert run is not None and (run.frames, run.status) == (2, "completed")
        assert [d.frame_index for d in store.detections(run_id="r1")] == [0, 1]
    finally:
        store.close()


def test_least_privilege_roles(postgres_server: str, postgres_url: str, tmp_path: Path, capsys) -> None:
    """SECURITY.md's roles: once the owner has created the tables, a writer records (no CREATE needed) and a
    reader reads, `python -m app history` and its workbook included; a reader's write is refused in one line."""
    RecordStore(postgres_url).close()  # the owner creates the tables
    db = postgres_url.rsplit("/", 1)[1]
    writer, reader = f"writer_{db}", f"reader_{db}"
    for statement in (f"CREATE ROLE {writer} LOGIN", f"CREATE ROLE {reader} LOGIN",
                      f"GRANT CONNECT ON DATABASE {db} TO {writer}, {reader}",
                      f"GRANT USAGE ON SCHEMA public TO {writer}, {reader}",
                      f"GRANT SELECT, INSERT, UPDATE ON {TABLES} TO {writer}",
                      f"GRANT SELECT ON {TABLES}, schema_version TO {writer}, {reader}"):  # fmt: skip
        sql(postgres_url, statement)
    try:
        as_writer = RecordStore(postgres_url.replace("postgres@", f"{writer}@"))
        as_writer.start_run(make_run("r1", "2026-11-16T08:00:00.000+00:00"))
        as_writer.add_frame("r1", [make_detection("r1", 0)])
        as_writer.save_event(event := make_event("r1"))
        as_writer.save_event(pending := make_event("r1"))  # left for the reader to try to acknowledge
        as_writer.save_monitor(MonitorRow(name="bench", source="0", updated_at=utc_now()))
        as_writer.add_recording(
            RecordingRow(monitor="bench", kind="segment", path="s.mp4", started_at="a", ended_at="b")
        )
        as_writer.save_gap(GapRow(monitor="bench", started_at=utc_now(), reason="camera"))
        as_writer.mark_pruned(["s.mp4"])
        as_writer.acknowledge(event.id, "Ana")
        as_writer.finish_run("r1", "completed")
        assert as_writer.close_interrupted() == []
        # a run a killed process left open on this machine: a report reads it, the next console or monitor closes it
        as_writer.start_run(dataclasses.replace(make_run("left", "2026-11-16T09:00:00.000+00:00"), host=HOST))
        as_writer.close()
        reader_url = postgres_url.replace("postgres@", f"{reader}@")
        book = tmp_path / "report.xlsx"
        capsys.readouterr()
        assert cli.main(["history", "--db", reader_url, "--save-dir", str(tmp_path), "--excel", str(book)]) == 0
        assert capsys.readouterr().out.startswith("Runs: 2, newest first") and book.is_file()
        as_reader = RecordStore(reader_url)
        try:
            assert as_reader.run("left").status == "running"
            assert [d.run_id for d in as_reader.detections(start="2026-11-16")] == ["r1"]
            assert len(as_reader.events(run_id="r1")) == 2
            with pytest.raises(RecordsError, match="permission denied"):
                as_reader.start_run(make_run("r2", "2026-11-16T09:00:00.000+00:00"))
            with pytest.raises(RecordsError, match="permission denied"):
                as_reader.acknowledge(pending.id, "Ben")
            assert [m.name for m in as_reader.monitors()] == ["bench"] and as_reader.recordings()[0].pruned_at
            assert [r.id for r in as_reader.runs()] == ["left", "r1"]  # the store goes on after the refusal
        finally:
            as_reader.close()
    finally:
        sql(postgres_url, f"DROP OWNED BY {writer}, {reader}")
        sql(postgres_url, f"DROP ROLE {writer}, {reader}")


@pytest.mark.slow  # four model-loading processes: about a minute on the 2-core CPU
def test_detect_processes_share_one_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """Four `python -m app detect --db URL` processes at once (the shipped model, small generated images), each
    with its own run folder and no SQLite file: every run and every frame lands in the one database."""
    folders = []
    for p in range(4):
        folder = tmp_path / f"cam-{p}"
        folder.mkdir()
        for i in range(3):
            cv2.imwrite(str(folder / f"f{i}.jpg"), np.full((64, 64, 3), 40 + 50 * p + 10 * i, np.uint8))
        folders.append(folder)
    procs = [subprocess.Popen([sys.executable, "-m", "app", "detect", "--source", str(folder), "--imgsz", "64",
                               "--device", "cpu", "--save-dir", str(tmp_path / "out"), "--db", postgres_url],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for folder in folders]  # fmt: skip
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert not (tmp_path / "out" / "records.sqlite").exists()
    store = RecordStore(postgres_url)
    try:
        runs = store.runs()
        assert sorted(r.source for r in runs) == sorted(str(f) for f in folders)
        assert all((r.frames, r.status, r.host) == (3, "completed", HOST) for r in runs)
    finally:
        store.close()


def test_the_service_records_where_it_is_told(
    location: str | Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DetectionService (the console's and the CLI's): `db` (`--db`) first, then $GLOVE_RECORDS, then the exports
    folder's records.sqlite."""
    given = DetectionService(exports_dir=tmp_path / "a", weights_dir=tmp_path, db=str(location))
    given.store.start_run(make_run("r1", "2026-11-16T08:00:00.000+00:00"))
    given.shutdown()
    monkeypatch.setenv(RECORDS_ENV, str(location))
    from_env = DetectionService(exports_dir=tmp_path / "b", weights_dir=tmp_path)
    assert [r.id for r in from_env.history(None, None)] == ["r1"]
    monkeypatch.delenv(RECORDS_ENV)
    default = DetectionService(exports_dir=tmp_path / "c", weights_dir=tmp_path)
    assert default.history(None, None) == [] and default.store.path == tmp_path / "c" / "records.sqlite"
    for service in (given, from_env, default):
        service.store.close()
    assert not (tmp_path / "a" / "records.sqlite").exists()  # the default was not opened beside the given one


def test_monitor_rows_are_upserted_and_listed(store: RecordStore) -> None:
    """One status row per monitor name: saving again replaces it; flags come back as bool."""
    row = MonitorRow(name="bandsaw-1", source="rtsp://cam1/stream", status="running", violation=True, fps=4.5,
                     frames=10, started_at="2026-11-30T07:00:00.000+00:00", updated_at=utc_now())  # fmt: skip
    store.save_monitor(row)
    store.save_monitor(dataclasses.replace(row, status="reconnecting", violation=False, frames=12, message="dropped"))
    store.save_monitor(dataclasses.replace(row, name="bench", source="0"))
    got = store.monitors()
    assert [m.name for m in got] == ["bandsaw-1", "bench"]
    assert (got[0].status, got[0].violation, got[0].frames, got[0].message) == ("reconnecting", False, 12, "dropped")
    assert got[1].violation is True


def test_monitor_events_clips_and_acknowledgements(store: RecordStore) -> None:
    """A monitor's events are found through its runs; the run's own updates keep the clip and the acknowledgement
    a monitor and an operator set; the first acknowledgement stands."""
    store.start_run(dataclasses.replace(make_run("m1", "2026-11-30T07:00:00.000+00:00"), monitor="bandsaw-1"))
    store.start_run(make_run("other", "2026-11-30T07:00:00.000+00:00"))
    event = make_event("m1")
    store.save_event(event)
    store.save_event(make_event("other"))
    store.set_event_clip(event.id, "exports/recordings/bandsaw-1/events/1.mp4")
    acknowledged = store.acknowledge(event.id, " Ana ")
    assert acknowledged.acknowledged_by == "Ana" and acknowledged.acknowledged_at
    assert store.acknowledge(event.id, "Ben").acknowledged_by == "Ana"
    event.closed, event.end_frame = True, 9
    store.save_event(event)  # the run closes it later: clip and acknowledgement stay
    got = store.monitor_events(["bandsaw-1"])["bandsaw-1"]
    assert [e.id for e in got] == [event.id]
    assert (got[0].closed, got[0].end_frame, got[0].clip, got[0].acknowledged_by) == (
        True, 9, "exports/recordings/bandsaw-1/events/1.mp4", "Ana")  # fmt: skip
    assert store.monitor_events(["bandsaw-1"], since="2999-01-01") == {"bandsaw-1": []}
    assert store.acknowledge(event.id, "  ").acknowledged_by == "Ana"  # acknowledged already: no name needed
    pending = make_event("other")
    store.save_event(pending)
    with pytest.raises(RecordsError, match="who acknowledges"):
        store.acknowledge(pending.id, "  ")
    assert store.event(pending.id).acknowledged_by is None
    with pytest.raises(RecordsError, match="no event"):
        store.acknowledge(10_000, "Ana")


def test_monitor_events_of_several_monitors(store: RecordStore) -> None:
    """The events of a set of monitors, by monitor, newest first, recorded since a time: each monitor gets exactly
    its own runs' events (ids interleaved between monitors and runs), a monitor without events an empty list."""
    for run_id, monitor in (("a1", "bandsaw-1"), ("b1", "bench"), ("a2", "bandsaw-1"), ("x", None)):
        store.start_run(dataclasses.replace(make_run(run_id, "2026-11-30T07:00:00.000+00:00"), monitor=monitor))
    yesterday, today = "2026-11-29T23:59:59.999+00:00", "2026-11-30T08:00:00.000+00:00"
    ids: dict[str, list[int]] = {}
    for run_id, recorded_at in (("a1", yesterday), ("a1", today), ("b1", today), ("x", today), ("a2", today),
                                ("b1", today)):  # fmt: skip
        event = dataclasses.replace(make_event(run_id), recorded_at=recorded_at)
        ids.setdefault(run_id, []).append(store.save_event(event))
    got = store.monitor_events(["bandsaw-1", "bench", "lathe"], since="2026-11-30T00:00:00.000+00:00")
    assert {m: [e.id for e in events] for m, events in got.items()} == {
        "bandsaw-1": [ids["a2"][0], ids["a1"][1]], "bench": ids["b1"][::-1], "lathe": []}  # fmt: skip
    assert got["bench"][0] == store.event(ids["b1"][1]), "whole rows, as read one by one"
    assert [e.id for e in store.monitor_events(["bandsaw-1"])["bandsaw-1"]] == sorted(ids["a1"] + ids["a2"])[::-1]
    assert store.monitor_events([]) == {}


def test_recordings_say_when_pruned_and_gaps_close(store: RecordStore) -> None:
    """Recording rows stay when retention deletes the file, and say when; a gap is saved open, then closed."""
    for i in range(3):
        store.add_recording(RecordingRow(monitor="bench", kind="segment", path=f"seg{i}.mp4",
                                         started_at=f"2026-11-30T07:0{i}:00.000+00:00",
                                         ended_at=f"2026-11-30T07:0{i + 1}:00.000+00:00", bytes=1000))  # fmt: skip
    store.mark_pruned(["seg0.mp4", "seg1.mp4"])
    got = store.recordings("bench")
    assert [r.path for r in got] == ["seg0.mp4", "seg1.mp4", "seg2.mp4"]
    assert [bool(r.pruned_at) for r in got] == [True, True, False]
    assert store.recording("seg2.mp4") == got[2] and store.recording("none.mp4") is None
    gap = GapRow(monitor="bench", started_at=utc_now(), reason="camera: the stream stopped sending frames")
    store.save_gap(gap)
    assert store.gaps("bench")[0].ended_at is None
    gap.ended_at = utc_now()
    store.save_gap(gap)
    assert store.gaps("bench") == [gap] and store.gaps("other") == []


@pytest.mark.parametrize(
    ("zone", "typed", "bound"),
    [("Europe/Berlin", "2026-12-01", "2026-11-30T23:00:00.000+00:00"),
     ("America/Santiago", "2026-09-06", "2026-09-06T04:00:00.000+00:00"),  # clocks go from 00:00 to 01:00 that day
     ("Europe/Berlin", "2026-12-01T10:00+05:00", "2026-12-01T05:00:00.000+00:00")],
)  # fmt: skip
def test_selection_bounds_are_days_of_this_machines_clock(
    time_zone: Callable[[str], None], zone: str, typed: str, bound: str
) -> None:
    """A typed day starts at this machine's midnight, or when its clock starts where it skips midnight; a time that
    names its zone keeps it. Bounds are in the stored times' form, so text comparison orders them."""
    time_zone(zone)
    assert utc_bound(typed) == bound
    assert len(bound) == len(utc_now())
