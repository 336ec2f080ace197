"""The records store: runs, detections and violation events in SQLite, written as results arrive.

WAL mode with a commit per frame: a process killed mid-run loses at most the frame in flight, and readers
(the console's history tab, an Excel export) never block the writer.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .runtime import EXPORTS_DIR
from .schema import FLAG, ROWS, SCHEMA_VERSION, DetectionRow, EventRow, Row, RunRow

DEFAULT_DB = EXPORTS_DIR / "records.sqlite"
HOST = socket.gethostname()
"""This machine, recorded with each run (with the process id) so that a run left open by a crash is found."""
INDEXES = (
    "CREATE INDEX IF NOT EXISTS detections_run ON detections(run_id, frame_index)",
    "CREATE INDEX IF NOT EXISTS detections_time ON detections(detected_at)",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id)",
)


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def create_table_sql(row: type[Row]) -> str:
    """`CREATE TABLE` for a row class, its columns in declaration order."""
    return f"CREATE TABLE IF NOT EXISTS {row.table} ({', '.join(f'{c.name} {c.sql}' for c in row.columns())})"


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
        self._wal(timeout=30)
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock, self._db:
            self._migrate()

    def _wal(self, timeout: float) -> None:
        """Switch the file to WAL. SQLite answers "locked" at once, without waiting, while another connection
        writes a file not yet in WAL mode (two processes opening a new records file together): retry."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        """Create missing tables, add columns a newer schema has (files of earlier versions keep their data),
        and record the schema version."""
        for row in ROWS:
            self._db.execute(create_table_sql(row))
            present = {r[1] for r in self._db.execute(f"PRAGMA table_info({row.table})")}
            for c in row.columns():
                if c.name not in present:  # ALTER TABLE cannot add a PRIMARY KEY: new columns never are
                    try:
                        self._db.execute(f"ALTER TABLE {row.table} ADD COLUMN {c.name} {c.sql}")
                    except sqlite3.OperationalError as e:  # another process opening the file added it first
                        if "duplicate column" not in str(e):
                            raise
        for index in INDEXES:
            self._db.execute(index)
        # A file written by a newer release keeps its (higher) version.
        stored = self._db.execute("PRAGMA user_version").fetchone()[0]
        self._db.execute(f"PRAGMA user_version = {max(stored, SCHEMA_VERSION)}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close_interrupted(self, host: str = HOST, ending_pid: int | None = None) -> list[str]:
        """Close as `interrupted` the runs this machine left `running` from processes that no longer exist (or
        from `ending_pid`, a process shutting down); what they recorded stays. Returns their ids."""
        with self._tx() as db:
            found = db.execute("SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", (host,)).fetchall()
            dead = [run_id for run_id, pid in found if pid is None or pid == ending_pid or not _alive(pid)]
            db.executemany(
                "UPDATE runs SET status = 'interrupted', ended_at = ? WHERE id = ?", [(utc_now(), i) for i in dead]
            )
        return dead

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def start_run(self, run: RunRow) -> str:
        with self._tx() as db:
            _insert(db, run)
        return run.id

    @staticmethod
    def new_run_id() -> str:
        return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def add_frame(self, run_id: str, rows: list[DetectionRow]) -> None:
        """Store one frame's detections and count the frame, in one transaction."""
        with self._tx() as db:
            if rows:
                names = [c.name for c in DetectionRow.columns() if c.name != "id"]
                db.executemany(
                    f"INSERT INTO detections ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [tuple(getattr(r, n) for n in names) for r in rows],
                )
            db.execute("UPDATE runs SET frames = frames + 1 WHERE id = ?", (run_id,))

    def save_event(self, event: EventRow) -> int:
        """Insert an event, or update it (keeping its snapshot unless a new one is given); returns its id."""
        with self._tx() as db:
            if event.id is None:
                event.id = _insert(db, event)
            else:
                names = [c.name for c in EventRow.columns() if c.name not in ("id", "run_id", "recorded_at")]
                sets = ", ".join(f"{n} = COALESCE(?, {n})" if n == "snapshot" else f"{n} = ?" for n in names)
                db.execute(
                    f"UPDATE events SET {sets} WHERE id = ?", (*(getattr(event, n) for n in names), event.id)
                )
        return event.id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET ended_at=?, status=? WHERE id=?", (utc_now(), status, run_id))

    def runs(self, start: str | None = None, end: str | None = None, source: str | None = None) -> list[RunRow]:
        """Runs started in [start, end) (ISO dates or date-times, UTC), newest first, optionally by source (as
        stored, or a file name)."""
        where, args = _range("t.started_at", start, end, source, prefix="t.")
        return self._select(RunRow, f"FROM runs t {where} ORDER BY t.started_at DESC", args)

    def run(self, run_id: str) -> RunRow | None:
        found = self._select(RunRow, "FROM runs t WHERE t.id = ?", (run_id,))
        return found[0] if found else None

    def detections(
        self, run_id: str | None = None, start: str | None = None, end: str | None = None, source: str | None = None
    ) -> list[DetectionRow]:
        """Detections of one run, or of all runs started in a date range / from a source, in order."""
        return self._rows_of_runs(DetectionRow, run_id, start, end, source)

    def events(
        self, run_id: str | None = None, start: str | None = None, end: str | None = None, source: str | None = None
    ) -> list[EventRow]:
        """Events of one run, or of all runs started in a date range / from a source, in order."""
        return self._rows_of_runs(EventRow, run_id, start, end, source)

    def _rows_of_runs(
        self, row: type[Row], run_id: str | None, start: str | None, end: str | None, source: str | None
    ) -> list:
        if run_id is not None:
            return self._select(row, f"FROM {row.table} t WHERE t.run_id = ? ORDER BY t.id", (run_id,))
        where, args = _range("r.started_at", start, end, source, prefix="r.")
        return self._select(row, f"FROM {row.table} t JOIN runs r ON r.id = t.run_id {where} ORDER BY t.id", args)

    def _select(self, row: type[Row], sql: str, args: tuple) -> list:
        """`SELECT` a row class's named columns (of the table aliased `t`) and build the rows."""
        columns = row.columns()
        names = [c.name for c in columns]
        flags = [c.name for c in columns if c.kind == FLAG]  # stored as 0 / 1
        with self._lock:
            found = self._db.execute(f"SELECT {', '.join('t.' + n for n in names)} {sql}", args).fetchall()
        rows = [dict(zip(names, values, strict=True)) for values in found]
        return [row(**{**r, **{f: bool(r[f]) for f in flags}}) for r in rows]


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a reused id counts as alive: never close too much)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _insert(db: sqlite3.Connection, row: Row) -> int:
    """Insert a row by its named columns (an `id` of None is left to the database); returns the row id."""
    values = {k: v for k, v in row.as_dict().items() if not (k == "id" and v is None)}
    cur = db.execute(
        f"INSERT INTO {row.table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})", tuple(values.values())
    )
    return cur.lastrowid


def _range(column: str, start: str | None, end: str | None, source: str | None, prefix: str = "") -> tuple[str, tuple]:
    clauses, args = [], []
    if start:
        clauses.append(f"{column} >= ?")
        args.append(start)
    if end:
        clauses.append(f"{column} < ?")
        args.append(end)
    if source:  # the source as stored (a path, a URL), or a file's name alone
        clauses.append(f"({prefix}source = ? OR {prefix}source LIKE ? ESCAPE '\\')")
        escaped = source.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [source, f"%/{escaped}"]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)
