"""Unit tests of app/excel.py: workbooks written from a records store filled by hand, read back with openpyxl."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from app.errors import RecordsError
from app.excel import DATETIME_FORMAT, PERCENT_FORMAT, export_workbook
from app.policy import SafetyPolicy
from app.records import RecordStore
from app.schema import DetectionRow, EventRow, RunRow, local_zone

FORMULA = "=HYPERLINK(1)"


def local(iso: str) -> datetime:
    """A stored UTC time as the naive local time the workbook shows."""
    return datetime.fromisoformat(iso).astimezone().replace(tzinfo=None)


GLOVES = SafetyPolicy("gloves", "gloves_required", {"glove": "glove", "hand": "bare_hand"},
                      zone=((0.0, 0.0), (1.0, 0.0), (1.0, 0.5)))  # fmt: skip


def run_row(run_id: str, started_at: str, source: str = "cam-1", tracking: bool = True,
            policy: SafetyPolicy | None = GLOVES) -> RunRow:  # fmt: skip
    return RunRow(id=run_id, source=source, kind="video", model="gloves-bra-n.pt", model_sha256="ab" * 32,
                  task="detect", conf=0.25, iou=0.7, imgsz=640, classes=None, tracking=tracking,
                  policy=policy and policy.name, policy_json=policy and json.dumps(policy.__dict__),
                  output_dir=f"exports/{run_id}", started_at=started_at)  # fmt: skip


def detection(run_id: str, i: int, item: str, class_name: str, confidence: float) -> DetectionRow:
    return DetectionRow(run_id=run_id, item=item, frame_index=i, video_time=i / 10,
                        detected_at=f"2026-11-16T08:00:0{i}.250+00:00", class_id=0, class_name=class_name,
                        confidence=confidence, x1=1.0, y1=2.0, x2=3.5, y2=4.5, track_id=None, mask_area=None,
                        polygon=None)  # fmt: skip


def event(run_id: str, closed: bool, item: str = "clip.mp4") -> EventRow:
    return EventRow(run_id=run_id, item=item, reason="no gloves", class_name="hand", start_frame=0, end_frame=2,
                    start_time=0.0, end_time=0.2, peak_confidence=0.9123, snapshot=None, closed=closed,
                    recorded_at="2026-11-16T08:00:03.500+00:00")  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    """Run `a` (2026-11-16, three detections, one formula-like item, two events) and run `b` (a week later)."""
    s = RecordStore(tmp_path / "records.sqlite")
    s.start_run(run_row("a", "2026-11-16T08:00:00.000+00:00"))
    s.add_frame("a", [detection("a", 0, FORMULA, "hand", 0.8765), detection("a", 0, "clip.mp4", "glove", 0.5)])
    s.add_frame("a", [detection("a", 1, "clip.mp4", "hand", 0.912)])
    s.save_event(event("a", closed=True, item=FORMULA))
    s.save_event(event("a", closed=False))
    s.finish_run("a", "completed")
    s.start_run(run_row("b", "2026-11-23T08:00:00.000+00:00", source="cam-2", tracking=False))
    s.add_frame("b", [detection("b", 0, "other.mp4", "glove", 0.4)])
    yield s
    s.close()


def rows(ws: Worksheet) -> list[list]:
    return [list(r) for r in ws.iter_rows(values_only=True)]


def test_sheets_and_headers(store: RecordStore, tmp_path: Path) -> None:
    """Summary, Detections and Events; the row sheets are headed by the schema's titles, one row per record."""
    path = export_workbook(store, tmp_path / "out" / "a.xlsx", run_id="a")
    assert path == tmp_path / "out" / "a.xlsx"
    assert [p.name for p in path.parent.iterdir()] == ["a.xlsx"]  # no .part left
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Summary", "Runs", "Detections", "Events"]
    detections, events = rows(wb["Detections"]), rows(wb["Events"])
    assert detections[0] == [c.title for c in DetectionRow.columns()]
    assert events[0] == [c.title for c in EventRow.columns()]
    assert len(detections) == 1 + 3 and len(events) == 1 + 2
    assert wb["Detections"].freeze_panes == "A2"


def test_cells_are_typed(store: RecordStore, tmp_path: Path) -> None:
    """Confidence is a number shown as a percentage, times are real (local) date-times, flags read yes / no."""
    wb = openpyxl.load_workbook(export_workbook(store, tmp_path / "a.xlsx", run_id="a"))
    ws = wb["Detections"]
    col = {c.name: i + 1 for i, c in enumerate(DetectionRow.columns())}
    confidence = ws.cell(2, col["confidence"])
    assert (confidence.value, confidence.number_format) == (pytest.approx(0.8765), PERCENT_FORMAT)
    detected = ws.cell(2, col["detected_at"])
    assert isinstance(detected.value, datetime) and detected.number_format == DATETIME_FORMAT
    assert abs(detected.value - local("2026-11-16T08:00:00.250+00:00")) < timedelta(milliseconds=1)
    assert [ws.cell(r, col["x2"]).value for r in (2, 3, 4)] == [3.5, 3.5, 3.5]
    assert ws.cell(2, col["track_id"]).value is None

    ev = wb["Events"]
    ecol = {c.name: i + 1 for i, c in enumerate(EventRow.columns())}
    assert [ev.cell(r, ecol["closed"]).value for r in (2, 3)] == ["yes", "no"]
    assert ev.cell(2, ecol["peak_confidence"]).number_format == PERCENT_FORMAT
    recorded = ev.cell(2, ecol["recorded_at"]).value
    assert isinstance(recorded, datetime)
    assert abs(recorded - local("2026-11-16T08:00:03.500+00:00")) < timedelta(milliseconds=1)


def test_summary(store: RecordStore, tmp_path: Path) -> None:
    """Counts and peak confidence per class, the events, the selection and the times' zone."""
    ws = openpyxl.load_workbook(export_workbook(store, tmp_path / "a.xlsx", run_id="a"))["Summary"]
    table = rows(ws)
    assert table[0][:4] == ["Class", "Detections", "Peak confidence", "Violation events"]
    assert table[1][:4] == ["glove", 1, 0.5, 0]
    assert table[2][:4] == ["hand", 2, pytest.approx(0.912), 2]
    assert ws.cell(3, 3).number_format == PERCENT_FORMAT
    times = next(r[1] for r in table if r[0] == "Times")  # Excel has no time zones: the sheet names the one used
    assert times.startswith(f"local time of the machine that wrote this workbook, {local_zone()} on ")
    assert times.endswith("the records and the run files are in UTC")


def test_summary_counts_tracked_objects(tmp_path: Path) -> None:
    """Tracking runs: the Summary counts the objects behind the detections per class, as the console's "Unique
    tracked" does (a track id is one object within its run: the same id in two runs is two objects); a hand that
    put a glove on keeps its track, so it counts in both classes and once in the total."""
    s = RecordStore(tmp_path / "records.sqlite")
    for run_id in ("a", "b"):
        s.start_run(run_row(run_id, "2026-11-16T08:00:00.000+00:00"))
        for i, (track, name) in enumerate(((1, "hand"), (1, "hand"), (2, "hand"), (3, "glove"), (2, "glove"))):
            s.add_frame(run_id, [replace(detection(run_id, i, "clip.mp4", name, 0.5), track_id=track)])
    table = rows(openpyxl.load_workbook(export_workbook(s, tmp_path / "a.xlsx", start="2026-11-01"))["Summary"])
    assert [r[:5] for r in table[:4]] == [["Class", "Detections", "Peak confidence", "Violation events",
                                           "Tracked objects"], ["glove", 4, 0.5, 0, 4], ["hand", 6, 0.5, 0, 4],
                                          ["Total", 10, None, 0, 6]]  # fmt: skip
    s.close()


def test_runs_sheet(store: RecordStore, tmp_path: Path) -> None:
    """Each run as History lists it: run, source, kind, its detections, violation events and verdict, then the
    rest of its settings (flags as yes / no, real date-times), in columns wide enough to read."""
    ws = openpyxl.load_workbook(export_workbook(store, tmp_path / "a.xlsx", run_id="a"))["Runs"]
    table = rows(ws)
    titles = [c.title for c in RunRow.columns()]
    assert table[0] == [*titles[:3], "Detections", "Violation events", "Verdict", *titles[3:]]
    run = dict(zip(table[0], table[1], strict=True))
    assert (run["Run"], run["Tracking"], run["Status"], run["Frames"]) == ("a", "yes", "completed", 2)
    assert [run["Detections"], run["Violation events"]] == [len(store.detections("a")), len(store.events("a"))]
    assert run["Verdict"] == "VIOLATION: 2 event(s)"  # as the console's banner says it
    assert (run["Confidence"], run["IoU"]) == (0.25, 0.7)  # thresholds as the console sets them, not percentages
    assert ws.cell(2, table[0].index("IoU") + 1).number_format == "General"
    assert isinstance(run["Started"], datetime) and isinstance(run["Ended"], datetime)
    assert run["Started"] == local("2026-11-16T08:00:00.000+00:00")
    started = get_column_letter(table[0].index("Started") + 1)
    assert ws[f"{started}2"].number_format == DATETIME_FORMAT
    assert ws.column_dimensions[started].width >= len("2026-11-16 08:00:00.000")  # not "#####"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref


def test_range_export(store: RecordStore, tmp_path: Path) -> None:
    """A date range [start, end) takes the runs started in it, and only their rows."""
    wb = openpyxl.load_workbook(export_workbook(store, tmp_path / "w.xlsx", start="2026-11-20", end="2026-11-30"))
    detections = rows(wb["Detections"])
    assert [r[0] for r in detections[1:]] == ["b"]
    assert rows(wb["Events"])[1:] == []
    runs = rows(wb["Runs"])
    assert len(runs) == 2 and runs[1][0] == "b" and runs[1][runs[0].index("Tracking")] == "no"
    selection = next(r[1] for r in rows(wb["Summary"]) if r[0] == "Selection")
    assert selection == "1 run(s) started from 2026-11-20 until 2026-11-30 (exclusive)"  # UTC bounds, local text


def test_each_run_has_its_verdict(store: RecordStore, tmp_path: Path) -> None:
    """Each run's verdict, worded as the console's banner and the CLI's summary word it (`RunSummary.verdict`,
    judged again from the records and the policy the run recorded): one still running, or one that failed, says
    "so far": it did not judge every frame it was to see."""
    heads = SafetyPolicy("heads", "gloves_required", {"hand": "bare_hand", "face": "other"})
    runs = (("c", None, "hand", "completed"), ("d", heads, "face", "completed"), ("e", heads, "hand", "completed"),
            ("g", heads, "hand", "failed"))  # fmt: skip
    for run_id, policy, found, status in runs:
        store.start_run(run_row(run_id, "2026-11-17T08:00:00.000+00:00", source="cam-3", policy=policy))
        store.add_frame(run_id, [detection(run_id, 0, "x.mp4", found, 0.7)])
        store.finish_run(run_id, status)
    unreadable = run_row("f", "2026-11-17T09:00:00.000+00:00", source="cam-3")
    unreadable.policy_json = '{"name": "gloves"}'  # edited by hand: no rule, no roles
    store.start_run(unreadable)
    table = rows(openpyxl.load_workbook(export_workbook(store, tmp_path / "w.xlsx"))["Runs"])
    verdicts = {r[0]: r[table[0].index("Verdict")] for r in table[1:]}
    assert verdicts.pop("f") == "unknown: recorded policy settings lack rule, roles"
    assert verdicts == {"a": "VIOLATION: 2 event(s)", "b": "OK: no violations so far", "c": "No safety policy selected",
                        "d": "No hand detected", "e": "OK: no violations", "g": "OK: no violations so far"}  # fmt: skip


def test_a_recorded_policy_reads_back_as_it_was_run() -> None:
    assert SafetyPolicy.from_json(json.dumps(GLOVES.__dict__)) == GLOVES  # the zone's pairs back as tuples


def test_unknown_run_and_empty_range(store: RecordStore, tmp_path: Path) -> None:
    """Nothing to export is a RecordsError, and leaves no file behind."""
    with pytest.raises(RecordsError, match="no run"):
        export_workbook(store, tmp_path / "x.xlsx", run_id="nope")
    with pytest.raises(RecordsError, match="no runs"):
        export_workbook(store, tmp_path / "x.xlsx", start="2030-01-01", end="2030-02-01")
    with pytest.raises(RecordsError):
        export_workbook(store, tmp_path / "x.xlsx", source="cam-9")
    assert not list(tmp_path.glob("*x.xlsx*"))


def test_formula_text_never_becomes_a_formula(store: RecordStore, tmp_path: Path) -> None:
    """No cell holds a formula; text that looks like one is stored as text with Excel's quote prefix."""
    path = export_workbook(store, tmp_path / "a.xlsx", run_id="a")
    with zipfile.ZipFile(path) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/sheet")]
        assert len(sheets) == 4
        for name in sheets:
            assert b"<f>" not in z.read(name) and b"<f " not in z.read(name), name
    wb = openpyxl.load_workbook(path)
    item = DetectionRow.columns().index(next(c for c in DetectionRow.columns() if c.name == "item")) + 1
    ws = wb["Detections"]
    assert (ws.cell(2, item).value, ws.cell(2, item).data_type) == (FORMULA, "s")
    assert ws.cell(2, item).quotePrefix is True
    assert not ws.cell(3, item).quotePrefix  # ordinary text keeps no prefix
    ev = wb["Events"]
    ev_item = [c.name for c in EventRow.columns()].index("item") + 1
    assert (ev.cell(2, ev_item).value, ev.cell(2, ev_item).quotePrefix) == (FORMULA, True)


def test_long_polygon_is_not_truncated(tmp_path: Path) -> None:
    """A cell holds at most 32,767 characters: a longer polygon (a large, ragged mask: ~2,200+ points) must not be
    cut into invalid JSON; the Polygon cell holds the whole polygon or none."""
    store = RecordStore(tmp_path / "records.sqlite")
    store.start_run(run_row("a", "2026-11-16T08:00:00.000+00:00"))
    polygon = [[round(1000 + i / 10, 1), round(500.5 + i % 7, 1)] for i in range(3000)]
    row = detection("a", 0, "clip.mp4", "hand", 0.5)
    row.polygon = json.dumps(polygon)
    assert len(row.polygon) > 32_767
    store.add_frame("a", [row])
    ws = openpyxl.load_workbook(export_workbook(store, tmp_path / "a.xlsx", run_id="a"))["Detections"]
    store.close()
    cell = ws.cell(2, [c.name for c in DetectionRow.columns()].index("polygon") + 1).value
    assert cell is None or cell == row.polygon, f"polygon of {len(row.polygon)} characters cut to {len(cell)}"
