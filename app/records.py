"""The records store: runs, detections and violation events, written as results arrive, in SQLite or PostgreSQL.

The records location is a file path (SQLite, the default `exports/records.sqlite`: nothing to set up) or a URL
`postgresql://user@host:port/db` (one history shared by the monitors and consoles of several machines). Both hold
the same tables, derived from `app/schema.py`, and every SQL statement of the project is in this module.

SQLite: WAL mode with a commit per frame: a process killed mid-run loses at most the frame in flight, and readers
(the console's history tab, an Excel export) never block the writer. PostgreSQL: a commit per frame as well; a
connection lost between two writes (a server restart) is reopened and the write retried, so a monitor outlives it.
The password comes from `PGPASSWORD` or `~/.pgpass` (libpq reads both), never from the URL.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import RecordsError
from .runtime import EXPORTS_DIR
from .schema import FLAG, ROWS, SCHEMA_VERSION, DetectionRow, EventRow, GapRow, MonitorRow, RecordingRow, Row, RunRow

DEFAULT_DB = EXPORTS_DIR / "records.sqlite"
RECORDS_ENV = "GLOVE_RECORDS"
"""Environment variable naming the records location when none is given (`--db` wins)."""
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
HOST = socket.gethostname()
"""This machine, recorded with each run (with the process id) so that a run left open by a crash is found."""
INDEXES = (
    "CREATE INDEX IF NOT EXISTS detections_run ON detections(run_id, frame_index)",
    "CREATE INDEX IF NOT EXISTS detections_time ON detections(detected_at)",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id)",
    "CREATE INDEX IF NOT EXISTS recordings_path ON recordings(path)",
)
OPEN_TIMEOUT_S = 30.0
"""How long opening waits for a busy SQLite file, and a lost PostgreSQL connection is tried again (a restart)."""
COUNTS_PER_QUERY = 500  # run ids bound in one `run_counts` query (SQLite allows 32,766 parameters)
MIGRATION_LOCK = 0x676C6F7665
"""PostgreSQL advisory lock held while a store creates or migrates the tables: processes opening a new database
together would otherwise race on `CREATE TABLE IF NOT EXISTS`."""

T = TypeVar("T")


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def utc_bound(moment: str) -> str:
    """A date or date-time that bounds a selection, as the records store times (`utc_now`'s form, compared as text);
    one without a zone is on this machine's clock, as History shows times and people type days.

    Raises:
        ValueError: Not an ISO date or date-time, or out of range once moved to UTC.
    """
    at = datetime.fromisoformat(moment.strip())
    try:
        if at.tzinfo is None:
            local = at.astimezone()
            if local.replace(tzinfo=None) != at:  # skipped when clocks went forward (midnight, in some zones): the
                local = at.replace(fold=1).astimezone()  # day starts when the clock does
            at = local
        return at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    except OverflowError:  # 9999-12-31T23:00 west of UTC, 0001-01-01 east of it
        raise ValueError(f"{moment.strip()} is out of range") from None


def create_table_sql(row: type[Row], column_sql: Callable[[str], str] = str) -> str:
    """`CREATE TABLE` for a row class, its columns in declaration order (types mapped by `column_sql`)."""
    columns = ", ".join(f"{c.name} {column_sql(c.sql)}" for c in row.columns())
    return f"CREATE TABLE IF NOT EXISTS {row.table} ({columns})"


def postgres_sql(sql: str) -> str:
    """A schema column type in PostgreSQL's words: 64-bit integers and floats (SQLite's INTEGER / REAL), an
    identity for the row id, and byte-order text so that ISO times and ids compare as in SQLite."""
    sql = sql.replace("INTEGER PRIMARY KEY", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
    sql = re.sub(r"\bINTEGER\b", "BIGINT", re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql))
    return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def records_location(location: str | Path | None = None, default: str | Path = DEFAULT_DB) -> str | Path:
    """The location given, else `$GLOVE_RECORDS`, else `default`."""
    return location or os.environ.get(RECORDS_ENV) or default


def open_store(location: str | Path | None = None, default: str | Path = DEFAULT_DB) -> RecordStore:
    """The store at a path or `postgresql://` URL (else `$GLOVE_RECORDS`, else `default`), created or migrated."""
    return RecordStore(records_location(location, default))


class _SQLite:
    """One SQLite connection; the store's lock serialises its use."""

    def __init__(self, path: Path) -> None:
        self.path, self.location = path, str(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=OPEN_TIMEOUT_S)
            self._wal(OPEN_TIMEOUT_S)
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self.db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as e:
            raise RecordsError(f"cannot open the records file {path}: {e}") from None

    def _wal(self, timeout: float) -> None:
        """Switch the file to WAL. SQLite answers "locked" at once, without waiting, while another connection
        writes a file not yet in WAL mode (two processes opening a new records file together): retry."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self.db.execute(sql, tuple(args))

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self.db.executemany(sql, rows)

    def run(self, work: Callable[[_SQLite], T]) -> T:
        """`work` in one transaction."""
        try:
            with self.db:
                return work(self)
        except sqlite3.OperationalError as e:  # locked past the timeout, disk full, file gone
            raise RecordsError(f"records file {self.path}: {e}") from None

    def migrate(self) -> None:
        """Create missing tables, add columns a newer schema has (files of earlier versions keep their data),
        and record the schema version (`PRAGMA user_version`)."""
        for row in ROWS:
            self.db.execute(create_table_sql(row))
            present = {r[1] for r in self.db.execute(f"PRAGMA table_info({row.table})")}
            for c in row.columns():
                if c.name not in present:  # ALTER TABLE cannot add a PRIMARY KEY: new columns never are
                    try:
                        self.db.execute(f"ALTER TABLE {row.table} ADD COLUMN {c.name} {c.sql}")
                    except sqlite3.OperationalError as e:  # another process opening the file added it first
                        if "duplicate column" not in str(e):
                            raise
        for index in INDEXES:
            self.db.execute(index)
        # A file written by a newer release keeps its (higher) version.
        self.db.execute(f"PRAGMA user_version = {max(self.schema_version(), SCHEMA_VERSION)}")

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.db.close()


class _Postgres:
    """One PostgreSQL connection, reopened when lost; the store's lock serialises its use."""

    def __init__(self, url: str) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as e:
            raise RecordsError(f"not a usable PostgreSQL URL: {_first_line(e)}") from None
        if "password" in params:  # a URL ends up in shell history, process lists and logs
            raise RecordsError(
                "the records URL must not hold a password: set PGPASSWORD or use ~/.pgpass (see SECURITY.md)"
            )
        self.url = self.location = url
        self.path = None
        self.db = self._connect()

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, connect_timeout=10, application_name="glove-safety")
        except psycopg.Error as e:
            raise RecordsError(f"cannot reach the records database {self.url}: {_first_line(e)}") from None

    def _reconnect(self) -> None:
        """Open a new connection, trying for a while: a server restart takes a few seconds."""
        self.db.close()
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        while True:
            try:
                self.db = self._connect()
                return
            except RecordsError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Any:
        # The module's statements are written with `?` placeholders and hold no literal `?` or `%`.
        return self.db.execute(sql.replace("?", "%s"), tuple(args))

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        with self.db.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def run(self, work: Callable[[_Postgres], T]) -> T:
        """`work` in one transaction. A connection found lost before the commit (the server restarted since the
        last write) is reopened and `work` run again: nothing of it was committed. Reads commit too, so that no
        transaction stays open between calls."""
        if self.db.broken or self.db.closed:
            self._reconnect()
        for attempt in range(2):
            try:
                result = work(self)
                break
            except (psycopg.OperationalError, psycopg.errors.InsufficientPrivilege) as e:
                if attempt == 0 and self.db.broken:
                    self._reconnect()
                    continue
                self._rollback()  # a role without a right (a reader writing) is the user's to fix: one line too
                raise RecordsError(f"records database {self.url}: {_first_line(e)}") from None
            except BaseException:
                self._rollback()
                raise
        try:
            self.db.commit()
        except psycopg.OperationalError as e:  # whether it was committed is unknown: say so, do not retry
            raise RecordsError(f"records database {self.url}: commit failed: {_first_line(e)}") from None
        return result

    def _rollback(self) -> None:
        if not self.db.broken:
            self.db.rollback()

    def migrate(self) -> None:
        """Create missing tables, add columns a newer schema has, and record the schema version (table
        `schema_version`). A database already at this version is left alone, so roles without the right to
        create tables (a console's reader) open it too."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        if self.schema_version() >= SCHEMA_VERSION:
            return
        for row in ROWS:
            self.execute(create_table_sql(row, postgres_sql))
            present = {r[0] for r in self.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = ?", (row.table,))}  # fmt: skip
            for c in row.columns():
                if c.name not in present:
                    self.execute(f"ALTER TABLE {row.table} ADD COLUMN {c.name} {postgres_sql(c.sql)}")
        for index in INDEXES:
            self.execute(index)
        self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        self.execute("DELETE FROM schema_version")
        self.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The recorded version; 0 for a new (or pre-versioning) database."""
        if self.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            return 0
        return self.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0

    def close(self) -> None:
        self.db.close()


class RecordStore:
    """Records in SQLite (a path) or PostgreSQL (a `postgresql://` URL), safe to share between threads (one
    connection, one lock). Created or migrated when opened.

    Example:
        >>> store = RecordStore("exports/records.sqlite")  # or "postgresql://monitor@db.workshop:5432/gloves"
        >>> [r.source for r in store.runs(start="2026-11-01")]
    """

    def __init__(self, location: str | Path = DEFAULT_DB) -> None:
        if is_url(location):
            self._backend: _SQLite | _Postgres = _Postgres(str(location))
        elif "://" in str(location):
            raise RecordsError(f"records location {location!r}: give a file path or a postgresql:// URL")
        else:
            self._backend = _SQLite(Path(location))
        self.path: Path | None = self._backend.path
        """The SQLite file; None on PostgreSQL."""
        self.location = self._backend.location
        """Where the records are, for messages (a path or the URL, which never holds a password)."""
        self._lock = threading.Lock()
        self._tx(lambda db: db.migrate())

    def _tx(self, work: Callable[[Any], T]) -> T:
        with self._lock:
            return self._backend.run(work)

    @property
    def schema_version(self) -> int:
        return self._tx(lambda db: db.schema_version())

    def close_interrupted(self, host: str = HOST, ending_pid: int | None = None) -> list[str]:
        """Close as `interrupted` the runs this machine left `running` from processes that no longer exist (or
        from `ending_pid`, a process shutting down); what they recorded stays. Returns their ids.

        A run ends with its latest frame (`last_frame_at`), not when it is found; one without a frame as it started
        (one from before schema 6 that has frames: when found). The events it left open close with it: no alarm
        stays up for a process that is gone."""

        def close(db: Any) -> list[str]:
            found = db.execute(
                "SELECT id, pid, started_at, frames, last_frame_at FROM runs WHERE status = 'running' AND host = ?",
                (host,),
            ).fetchall()
            dead = [row for row in found if row[1] is None or row[1] == ending_pid or not _alive(row[1])]
            for run_id, _, started, frames, last_frame in dead:
                ended = last_frame or (started if not frames and started else utc_now())
                db.execute("UPDATE runs SET status = 'interrupted', ended_at = ? WHERE id = ?", (ended, run_id))
                db.execute("UPDATE events SET closed = 1 WHERE run_id = ? AND closed = 0", (run_id,))
            return [row[0] for row in dead]

        return self._tx(close)

    def close(self) -> None:
        with self._lock:
            self._backend.close()

    def start_run(self, run: RunRow) -> str:
        self._tx(lambda db: _insert(db, run))
        return run.id

    @staticmethod
    def new_run_id() -> str:
        return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def add_frame(self, run_id: str, rows: list[DetectionRow], at: str | None = None) -> None:
        """Store one frame's detections and count the frame (processed `at`, a UTC ISO time), in one transaction."""
        names = [c.name for c in DetectionRow.columns() if c.name != "id"]

        def write(db: Any) -> None:
            if rows:
                db.executemany(
                    f"INSERT INTO detections ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [tuple(_value(getattr(r, n)) for n in names) for r in rows],
                )
            db.execute("UPDATE runs SET frames = frames + 1, last_frame_at = COALESCE(?, last_frame_at) WHERE id = ?",
                       (at, run_id))  # fmt: skip

        self._tx(write)

    def save_event(self, event: EventRow) -> int:
        """Insert an event, or update it (keeping its snapshot unless a new one is given, and what a monitor set:
        its clip and acknowledgement); returns its id."""
        if event.id is None:
            event.id = self._tx(lambda db: _insert(db, event))
            return event.id
        kept = ("id", "run_id", "recorded_at", *EventRow.MONITOR_FIELDS)
        names = [c.name for c in EventRow.columns() if c.name not in kept]
        sets = ", ".join(f"{n} = COALESCE(?, {n})" if n == "snapshot" else f"{n} = ?" for n in names)
        args = (*(_value(getattr(event, n)) for n in names), event.id)
        self._tx(lambda db: db.execute(f"UPDATE events SET {sets} WHERE id = ?", args))
        return event.id

    def event(self, event_id: int) -> EventRow | None:
        found = self._select(EventRow, "FROM events t WHERE t.id = ?", (event_id,))
        return found[0] if found else None

    def set_event_clip(self, event_id: int, clip: str) -> None:
        self._tx(lambda db: db.execute("UPDATE events SET clip = ? WHERE id = ?", (clip, event_id)))

    def acknowledge(self, event_id: int, by: str) -> EventRow:
        """Record who acknowledged an event's alarm, and when, and return the event. The first acknowledgement
        stands: an event already acknowledged is returned as it is (whoever asks, named or not)."""
        event = self.event(event_id)
        if event is None:
            raise RecordsError(f"no event {event_id} in the records")
        if event.acknowledged_by:
            return event
        if not by.strip():
            raise RecordsError("say who acknowledges the event (a name or initials)")
        self._tx(lambda db: db.execute(  # `IS NULL`: of two acknowledging at once, the first to write stands
            "UPDATE events SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ? AND acknowledged_by IS NULL",
            (by.strip(), utc_now(), event_id)))  # fmt: skip
        event = self.event(event_id)
        if event is None:  # deleted in between (retention)
            raise RecordsError(f"no event {event_id} in the records")
        return event

    def finish_run(self, run_id: str, status: str, ended_at: str | None = None) -> None:
        """Close a run as `status`, ended at `ended_at` (default: now)."""
        ended_at = ended_at or utc_now()
        self._tx(lambda db: db.execute("UPDATE runs SET ended_at=?, status=? WHERE id=?", (ended_at, status, run_id)))

    # camera monitors
    def save_monitor(self, monitor: MonitorRow) -> None:
        """Insert or replace a monitor's row (one per name)."""
        values = {k: _value(v) for k, v in monitor.as_dict().items()}
        sets = ", ".join(f"{n} = EXCLUDED.{n}" for n in values if n != "name")
        sql = (f"INSERT INTO monitors ({', '.join(values)}) VALUES ({', '.join('?' * len(values))}) "
               f"ON CONFLICT (name) DO UPDATE SET {sets}")  # fmt: skip
        self._tx(lambda db: db.execute(sql, tuple(values.values())))

    def monitors(self) -> list[MonitorRow]:
        return self._select(MonitorRow, "FROM monitors t ORDER BY t.name", ())

    def monitor_events(self, monitors: Iterable[str], since: str | None = None) -> dict[str, list[EventRow]]:
        """Events of the named monitors' runs recorded since a time (ISO, UTC), newest first, by monitor (each name
        given is a key). One query however many monitors: the console asks for all of them at every refresh."""
        found: dict[str, list[EventRow]] = {m: [] for m in monitors}
        if not found:
            return found
        where, args = f"WHERE r.monitor IN ({', '.join('?' * len(found))})", tuple(found)
        if since:
            where, args = where + " AND t.recorded_at >= ?", (*args, since)
        sql = f"FROM events t JOIN runs r ON r.id = t.run_id {where} ORDER BY t.id DESC"
        for monitor, event in self._select(EventRow, sql, args, key="r.monitor"):
            found[monitor].append(event)
        return found

    def add_recording(self, recording: RecordingRow) -> int:
        recording.id = self._tx(lambda db: _insert(db, recording))
        return recording.id

    def recordings(self, monitor: str | None = None) -> list[RecordingRow]:
        if monitor is None:
            return self._select(RecordingRow, "FROM recordings t ORDER BY t.id", ())
        return self._select(RecordingRow, "FROM recordings t WHERE t.monitor = ? ORDER BY t.id", (monitor,))

    def recording(self, path: str) -> RecordingRow | None:
        found = self._select(RecordingRow, "FROM recordings t WHERE t.path = ? ORDER BY t.id DESC", (path,))
        return found[0] if found else None

    def mark_pruned(self, paths: Iterable[str]) -> None:
        """Say that these recording files were deleted by retention (their rows stay)."""
        rows = [(utc_now(), p) for p in paths]
        if rows:
            self._tx(lambda db: db.executemany(
                "UPDATE recordings SET pruned_at = ? WHERE path = ? AND pruned_at IS NULL", rows))  # fmt: skip

    def save_gap(self, gap: GapRow) -> int:
        """Insert a gap, or update its end (a gap is saved when it starts and again when frames return)."""
        if gap.id is None:
            gap.id = self._tx(lambda db: _insert(db, gap))
        else:
            self._tx(lambda db: db.execute("UPDATE gaps SET ended_at = ?, reason = ? WHERE id = ?",
                                           (gap.ended_at, gap.reason, gap.id)))  # fmt: skip
        return gap.id

    def gaps(self, monitor: str | None = None) -> list[GapRow]:
        if monitor is None:
            return self._select(GapRow, "FROM gaps t ORDER BY t.id", ())
        return self._select(GapRow, "FROM gaps t WHERE t.monitor = ? ORDER BY t.id", (monitor,))

    # history
    def runs(self, start: str | None = None, end: str | None = None, source: str | None = None) -> list[RunRow]:
        """Runs started in [start, end) (ISO dates or date-times: `utc_bound`), newest first, optionally by source
        (as stored, or a file name)."""
        where, args = _range("t.started_at", start, end, source, prefix="t.")
        return self._select(RunRow, f"FROM runs t {where} ORDER BY t.started_at DESC", args)

    def run_counts(self, run_ids: list[str]) -> dict[str, tuple[dict[str, int], int]]:
        """Each run's detections per class and its violation events (the History's columns and verdict), two
        queries per 500 runs."""
        counts: dict[str, tuple[dict[str, int], int]] = {}
        for i in range(0, len(run_ids), COUNTS_PER_QUERY):  # bound parameters are capped (SQLite 32,766)
            chunk = tuple(run_ids[i : i + COUNTS_PER_QUERY])
            marks = ", ".join("?" * len(chunk))
            events_sql = (f"SELECT r.id, (SELECT COUNT(*) FROM events e WHERE e.run_id = r.id) FROM runs r "
                          f"WHERE r.id IN ({marks})")  # fmt: skip
            classes_sql = (f"SELECT run_id, class_name, COUNT(*) FROM detections WHERE run_id IN ({marks}) "
                           "GROUP BY run_id, class_name")  # fmt: skip
            runs, classes = self._tx(  # one transaction: the two counts of one moment
                lambda db, chunk=chunk, a=events_sql, b=classes_sql: (
                    db.execute(a, chunk).fetchall(),
                    db.execute(b, chunk).fetchall(),
                )
            )
            counts.update({run_id: ({}, int(events)) for run_id, events in runs})
            for run_id, class_name, n in classes:
                counts[run_id][0][class_name] = int(n)
        return counts

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

    def _select(self, row: type[Row], sql: str, args: tuple, key: str | None = None) -> list:
        """`SELECT` a row class's named columns (of the table aliased `t`) and build the rows; with `key` (an SQL
        expression), (key value, row) pairs."""
        columns = row.columns()
        names = [c.name for c in columns]
        flags = [c.name for c in columns if c.kind == FLAG]  # stored as 0 / 1
        select = f"SELECT {', '.join(['t.' + n for n in names] + ([key] if key else []))} {sql}"
        found = self._tx(lambda db: db.execute(select, args).fetchall())

        def build(values: tuple) -> Row:
            r = dict(zip(names, values[: len(names)], strict=True))
            return row(**{**r, **{f: bool(r[f]) for f in flags}})

        return [(values[-1], build(values)) for values in found] if key else [build(values) for values in found]


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a reused id counts as alive: never close too much)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _value(value: Any) -> Any:
    """A value as stored: flags as 0 / 1 (PostgreSQL will not put a boolean in an integer column)."""
    return int(value) if isinstance(value, bool) else value


def _insert(db: _SQLite | _Postgres, row: Row) -> Any:
    """Insert a row by its named columns; an `id` of None is left to the database and returned."""
    values = {k: _value(v) for k, v in row.as_dict().items() if not (k == "id" and v is None)}
    sql = f"INSERT INTO {row.table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"
    if "id" in values:
        db.execute(sql, values.values())
        return values["id"]
    return db.execute(sql + " RETURNING id", values.values()).fetchall()[0][0]


def _range(column: str, start: str | None, end: str | None, source: str | None, prefix: str = "") -> tuple[str, tuple]:
    clauses, args = [], []
    if start:
        clauses.append(f"{column} >= ?")
        args.append(utc_bound(start))
    if end:
        clauses.append(f"{column} < ?")
        args.append(utc_bound(end))
    if source:  # the source as stored (a path, a URL), or a file's name alone; case counts, as in file names (LIKE
        # ignores it in SQLite, not in PostgreSQL)
        clauses.append(f"({prefix}source = ? OR substr({prefix}source, length({prefix}source) - ? + 1) = ?)")
        args += [source, len(source) + 1, f"/{source}"]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)
