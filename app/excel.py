"""Excel workbooks for safety managers: one run or a date range, from the records store.

Sheets: Summary (counts and peak confidence per class, events, a native bar chart of counts), Runs (each run's
detections, violation events and verdict, then its model, thresholds and policy), Detections (every field) and
Events; the tables with a frozen header, an autofilter, fitted widths, confidence as a percentage and local
date-times.

Written with XlsxWriter in constant-memory mode: openpyxl, which the tests use to read the workbooks back,
needs about 18 s to write 100,000 detections on the 2-core CPU, XlsxWriter about half that (see
benchmarks/excel_export.py). Text is never turned into formulas (`strings_to_formulas=False`), and text that
looks like one also gets Excel's quote prefix, so editing the cell cannot turn it into a formula either.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, time
from pathlib import Path

import xlsxwriter
from xlsxwriter.exceptions import FileCreateError
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from .errors import RecordsError
from .files import atomic_path
from .outputs import FORMULA_PREFIXES
from .records import RecordStore, utc_bound
from .schema import (
    DATETIME,
    FLAG,
    RUN_TALLIES,
    SCORE,
    DetectionRow,
    EventRow,
    Row,
    RunRow,
    flag_text,
    local_zone,
    run_tallies,
    with_tallies,
)

DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss.000"
PERCENT_FORMAT = "0.0%"
WIDTH_SAMPLE = 2000  # rows read to fit column widths
EXCEL_CELL_CHARS = 32_767  # Excel's limit; XlsxWriter silently cuts longer strings


def export_workbook(
    store: RecordStore,
    path: str | Path,
    run_id: str | None = None,
    start: str | None = None,
    end: str | None = None,
    source: str | None = None,
) -> Path:
    """Write the workbook for one run (`run_id`) or for the runs started in [start, end) and return its path.
    `start` and `end` are ISO dates or date-times, on this machine's clock unless they name their zone
    (`records.utc_bound`), as History's.

    Example:
        >>> export_workbook(RecordStore(), "exports/week.xlsx", start="2026-11-16", end="2026-11-23")
    """
    start, end = (utc_bound(b) if b else None for b in (start, end))  # as the Selection line states them
    if run_id is not None:
        run = store.run(run_id)
        if run is None:
            raise RecordsError(f"no run {run_id!r} in {store.location}")
        runs = [run]
    else:
        runs = store.runs(start=start, end=end, source=source)
    if not runs:
        raise RecordsError("no runs in the selected range")
    detections = store.detections(run_id=run_id, start=start, end=end, source=source)
    events = store.events(run_id=run_id, start=start, end=end, source=source)

    path = Path(path)
    options = {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
    # The workbook is finished (its `with` closes first), then renamed: a reader never opens half a workbook.
    try:
        with atomic_path(path) as tmp, xlsxwriter.Workbook(str(tmp), options) as wb:
            fmt = _Formats(wb)
            dates = " ".join(([f"from {_moment_text(start)}"] if start else []) +
                             ([f"until {_moment_text(end)} (exclusive)"] if end else []))  # fmt: skip
            selection = (f"run {runs[0].id}" if run_id else f"{len(runs)} run(s) started {dates or 'any day'}") + (
                f", source {source}" if source and not run_id else "")  # fmt: skip
            _summary_sheet(wb, fmt, detections, events, selection)
            _runs_sheet(wb, fmt, runs, detections, events)
            _rows_sheet(wb, fmt, "Detections", detections, DetectionRow)
            _rows_sheet(wb, fmt, "Events", events, EventRow)
    except (OSError, FileCreateError) as e:  # a folder given, no right to write there, a full disk
        cause = e.args[0] if isinstance(e, FileCreateError) and e.args else e  # xlsxwriter wraps the OSError
        raise RecordsError(f"cannot write the workbook {path}: {getattr(cause, 'strerror', None) or cause}") from e
    return path


class _Formats:
    def __init__(self, wb: Workbook) -> None:
        self.header = wb.add_format({"bold": True, "bottom": 1})
        self.percent = wb.add_format({"num_format": PERCENT_FORMAT})
        self.datetime = wb.add_format({"num_format": DATETIME_FORMAT})
        self.quoted = wb.add_format({"quote_prefix": True})


def _summary_sheet(
    wb: Workbook,
    fmt: _Formats,
    detections: list[DetectionRow],
    events: list[EventRow],
    selection: str,
) -> None:
    ws = wb.add_worksheet("Summary")
    peak: dict[str, float] = {}
    count: dict[str, int] = {}
    for d in detections:
        count[d.class_name] = count.get(d.class_name, 0) + 1
        peak[d.class_name] = max(peak.get(d.class_name, 0.0), d.confidence)
    by_class: dict[str, int] = {}
    for e in events:
        by_class[e.class_name] = by_class.get(e.class_name, 0) + 1
    classes = sorted(count)

    # Tracking runs: the objects behind the detections, as the console's "Unique tracked" counts them (a track id is
    # one object within its run).
    tracks: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for d in detections:
        if d.track_id is not None:
            tracks[d.class_name].add((d.run_id, d.track_id))

    ws.set_column(0, 0, 28)
    ws.set_column(1, 14, 18)
    header = ["Class", "Detections", "Peak confidence", "Violation events"] + (["Tracked objects"] if tracks else [])
    ws.write_row(0, 0, header, fmt.header)
    for r, name in enumerate(classes, start=1):
        _text(ws, fmt, r, 0, name)
        ws.write_number(r, 1, count[name])
        ws.write_number(r, 2, peak[name], fmt.percent)
        ws.write_number(r, 3, by_class.get(name, 0))
        if tracks:
            ws.write_number(r, 4, len(tracks[name]))
    total = len(classes) + 1
    objects = len(set().union(*tracks.values()))  # a track that changed class is one object, counted in both rows
    totals = ["Total", len(detections), None, len(events)] + ([objects] if tracks else [])
    ws.write_row(total, 0, totals, fmt.header)
    if classes:  # a native Excel chart over the table above
        chart = wb.add_chart({"type": "column"})
        chart.add_series({
            "name": "Detections",
            "categories": ["Summary", 1, 0, len(classes), 0],
            "values": ["Summary", 1, 1, len(classes), 1],
        })  # fmt: skip
        chart.set_title({"name": "Detections per class"})
        chart.set_legend({"none": True})
        ws.insert_chart("F2", chart)

    r = max(total + 2, 17)  # below the chart
    ws.write(r, 0, "Selection", fmt.header)
    _text(ws, fmt, r, 1, selection)
    ws.write(r + 1, 0, "Violation events", fmt.header)
    ws.write_row(r + 1, 1, [len(events), "still open", sum(not e.closed for e in events)])
    ws.write(r + 2, 0, "Times", fmt.header)
    _text(ws, fmt, r + 2, 1, _times_note())
    ws.write(r + 3, 0, "Runs", fmt.header)
    _text(ws, fmt, r + 3, 1, "each run's detections, violation events, verdict and settings: the Runs sheet")


def _runs_sheet(
    wb: Workbook, fmt: _Formats, runs: list[RunRow], detections: list[DetectionRow], events: list[EventRow]
) -> None:
    """Each run as the console's History lists it: its `RUN_TALLIES` (the verdict's headline as the console's
    banner and the CLI's summary word it) after its run, source and kind, then every other setting."""
    columns = RunRow.columns()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for d in detections:
        counts[d.run_id][d.class_name] += 1
    violated = Counter(e.run_id for e in events)
    rows = [with_tallies(columns, _cells(run, columns), run_tallies(run, counts[run.id], violated[run.id]))
            for run in runs]  # fmt: skip
    formats = _column_formats(fmt, columns)
    shifted = with_tallies(columns, [formats.get(i) for i in range(len(columns))], [None] * len(RUN_TALLIES))
    header = with_tallies(columns, [c.title for c in columns], RUN_TALLIES)
    _table(wb.add_worksheet("Runs"), fmt, header, rows, {i: f for i, f in enumerate(shifted) if f is not None})


def _rows_sheet(wb: Workbook, fmt: _Formats, name: str, rows: Sequence[Row], row_type: type[Row]) -> None:
    """A sheet of stored rows, every column of the row class, headed by its titles."""
    columns = row_type.columns()
    _table(wb.add_worksheet(name), fmt, [c.title for c in columns], [_cells(r, columns) for r in rows],
           _column_formats(fmt, columns))  # fmt: skip


def _cells(row: Row, columns: list) -> list:
    """A row's values as cells: times as local date-times, yes / no for flags."""
    cells = []
    for c in columns:
        value = getattr(row, c.name)
        if c.kind == DATETIME:
            value = _local(value)
        elif c.kind == FLAG:
            value = flag_text(value)
        cells.append(value)
    return cells


def _column_formats(fmt: _Formats, columns: list) -> dict:
    return {i: {SCORE: fmt.percent, DATETIME: fmt.datetime}[c.kind] for i, c in enumerate(columns)
            if c.kind in (SCORE, DATETIME)}  # fmt: skip


def _table(ws: Worksheet, fmt: _Formats, header: list[str], rows: list[Sequence], formats: dict) -> None:
    """Stream a table with a bold frozen header, an autofilter and column widths fitted to a sample of rows."""
    widths = [len(h) for h in header]
    for row in rows[:WIDTH_SAMPLE]:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], _display_width(v, i in formats))
    for i, w in enumerate(widths):
        ws.set_column(i, i, min(w + 2, 60))
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(len(rows), 1), len(header) - 1)
    ws.write_row(0, 0, header, fmt.header)
    # One writer per column, picked from its first value: at 100,000 rows the generic `write` dispatch costs
    # more than the cells themselves. Columns hold one type each (numbers, text or date-times).
    writers = [
        _cell_writer(ws, fmt, next((row[i] for row in rows if row[i] is not None), None), formats.get(i))
        for i in range(len(header))
    ]
    for r, row in enumerate(rows, start=1):  # constant-memory mode: rows must be written in order
        for c, v in enumerate(row):
            if v is not None:
                writers[c](r, c, v)


def _cell_writer(ws: Worksheet, fmt: _Formats, sample: object, cell_format: object) -> Callable[..., object]:
    if isinstance(sample, str):
        return functools.partial(_text, ws, fmt)
    if isinstance(sample, datetime):
        return lambda r, c, v: ws.write_datetime(r, c, v, cell_format)
    return lambda r, c, v: ws.write_number(r, c, v, cell_format)


def _text(ws: Worksheet, fmt: _Formats, r: int, c: int, value: str) -> None:
    """Text as typed; one that looks like a formula also gets Excel's quote prefix. Text longer than a cell holds
    (a polygon of thousands of points) is left out rather than cut into invalid JSON: the run's files have it."""
    if len(value) > EXCEL_CELL_CHARS:
        return
    ws.write_string(r, c, value, fmt.quoted if value.startswith(FORMULA_PREFIXES) else None)


def _times_note() -> str:
    """What the date-time cells are: Excel keeps no time zone, so the sheet says which one they are in."""
    now = datetime.now().astimezone()
    return (
        f"local time of the machine that wrote this workbook, {local_zone(now)} on {now:%Y-%m-%d}; the records "
        "and the run files are in UTC"
    )


def _moment_text(iso: str) -> str:
    """A bound of the selection on the sheet's clock: the day alone at midnight, as it was typed."""
    at = _local(iso)
    return f"{at:%Y-%m-%d}" if at.time() == time() else f"{at:%Y-%m-%d %H:%M:%S}"


@functools.lru_cache(maxsize=4096)  # detections of one frame share their time stamp
def _local(iso: str | None) -> datetime | None:
    """Stored UTC ISO time -> naive local time, as Excel has no time zones."""
    if not iso:
        return None
    return datetime.fromisoformat(iso).astimezone().replace(tzinfo=None)


def _display_width(value: object, formatted: bool) -> int:
    if value is None:
        return 0
    if formatted:  # percentages and date-times: their formatted width
        return 23 if isinstance(value, datetime) else 6
    if isinstance(value, float):
        return len(f"{value:.2f}")
    return len(str(value))
