"""Unit tests of app/schema.py: the row classes' columns and the one place values are rounded."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from app.policy import SafetyEvent
from app.results import Detection, FrameResult
from app.schema import DATETIME, FLAG, NUMBER, ROWS, SCORE, DetectionRow, EventRow, RunRow, flag_text, score_text

RUN_COLUMNS = ["id", "source", "kind", "model", "model_sha256", "task", "conf", "iou", "imgsz", "classes", "tracking",
               "policy", "policy_json", "output_dir", "started_at", "ended_at", "status", "frames", "host",
               "pid", "monitor", "runtime", "precision", "agnostic_nms", "augment", "last_frame_at"]  # fmt: skip
DETECTION_COLUMNS = ["run_id", "item", "frame_index", "video_time", "detected_at", "class_id", "class_name",
                     "confidence", "x1", "y1", "x2", "y2", "track_id", "mask_area", "polygon", "id"]  # fmt: skip
EVENT_COLUMNS = ["run_id", "item", "reason", "class_name", "start_frame", "end_frame", "start_time", "end_time",
                 "peak_confidence", "snapshot", "closed", "recorded_at", "id", "clip", "acknowledged_by",
                 "acknowledged_at", "last_seen_at"]  # fmt: skip


@pytest.mark.parametrize(
    ("row", "names"), [(RunRow, RUN_COLUMNS), (DetectionRow, DETECTION_COLUMNS), (EventRow, EVENT_COLUMNS)]
)
def test_columns_in_declaration_order(row: type, names: list[str]) -> None:
    """`columns()` lists every field once, in the order the class declares them."""
    assert [c.name for c in row.columns()] == names


def test_rows_in_creation_order() -> None:
    """Runs come first: detections and events refer to them."""
    assert [r.table for r in ROWS] == ["runs", "detections", "events", "monitors", "recordings", "gaps"]


def test_column_kinds() -> None:
    """Score, date-time and flag columns are marked so every view formats them alike."""
    kinds = {(r.table, c.name): c.kind for r in ROWS for c in r.columns()}
    flags = {("runs", "tracking"), ("runs", "agnostic_nms"), ("runs", "augment"), ("events", "closed"),
             ("monitors", "violation")}  # fmt: skip
    assert {k for k, v in kinds.items() if v == FLAG} == flags
    assert kinds["runs", "conf"] == kinds["runs", "iou"] == NUMBER  # thresholds as the sliders set them: 0.25
    assert {k for k, v in kinds.items() if v == SCORE} == {("detections", "confidence"), ("events", "peak_confidence")}
    assert {k for k, v in kinds.items() if v == DATETIME} == {
        ("runs", "started_at"), ("runs", "ended_at"), ("runs", "last_frame_at"), ("detections", "detected_at"),
        ("events", "recorded_at"),
        ("events", "acknowledged_at"), ("events", "last_seen_at"), ("monitors", "last_frame_at"),
        ("monitors", "started_at"), ("monitors", "updated_at"), ("recordings", "started_at"),
        ("recordings", "ended_at"), ("recordings", "pruned_at"), ("gaps", "started_at"), ("gaps", "ended_at"),
    }  # fmt: skip


def test_required_fields() -> None:
    """Fields declared with `default=...` must be given."""
    with pytest.raises(TypeError):
        DetectionRow(run_id="r", item="a.jpg")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RunRow(id="r")  # type: ignore[call-arg]


def test_console_and_file_columns() -> None:
    """The console hides ids, run ids and machine-only fields; the files carry everything but the database id (and
    what a monitor or an operator sets on an event after the run wrote it)."""
    assert [c.name for c in DetectionRow.file_columns()] == [n for n in DETECTION_COLUMNS if n != "id"]
    assert [c.name for c in EventRow.file_columns()] == [
        n for n in EVENT_COLUMNS if n not in ("id", *EventRow.MONITOR_FIELDS)
    ]
    assert [c.name for c in RunRow.file_columns()] == RUN_COLUMNS

    detection_console = [c.name for c in DetectionRow.console_columns()]
    assert detection_console == [n for n in DETECTION_COLUMNS
                                 if n not in ("run_id", "detected_at", "class_id", "polygon", "id")]  # fmt: skip
    event_console = [c.name for c in EventRow.console_columns()]  # the Monitors tab shows the monitors' fields
    hidden_events = ("run_id", "item", "start_frame", "end_frame", "snapshot", "recorded_at", "clip",
                     "acknowledged_by", "acknowledged_at", "last_seen_at")  # fmt: skip
    assert event_console == [n for n in EVENT_COLUMNS if n not in hidden_events]
    run_console = [c.name for c in RunRow.console_columns()]
    hidden = ("model_sha256", "classes", "policy_json", "output_dir", "host", "pid", "runtime", "precision",
              "agnostic_nms", "augment", "last_frame_at")  # fmt: skip
    assert "monitor" in run_console
    assert run_console == [n for n in RUN_COLUMNS if n not in hidden]


def _frame(**detection: object) -> tuple[FrameResult, Detection]:
    d = Detection(**{"class_id": 1, "class_name": "hand", "confidence": 0.87654321,
                     "xyxy": (10.04, 20.06, 30.149, 40.96), **detection})  # type: ignore[arg-type]  # fmt: skip
    return FrameResult(frame_index=7, timestamp=1.23456, width=64, height=48, detections=[d], source="cam/a.jpg"), d


def test_detection_row_rounds_once() -> None:
    """Confidence to 4 digits, box to 1, time to 3, polygon points to 1 (as JSON), mask area to 1."""
    frame, d = _frame(track_id=5, mask_area=123.456, polygon=((1.04, 2.06), (3.0, 4.0), (5.56, 6.44)))
    row = DetectionRow.of("run-1", frame, d, "2026-11-16T08:00:00.000+00:00")
    assert row.as_dict() == {
        "run_id": "run-1", "item": "cam/a.jpg", "frame_index": 7, "video_time": 1.235,
        "detected_at": "2026-11-16T08:00:00.000+00:00", "class_id": 1, "class_name": "hand", "confidence": 0.8765,
        "x1": 10.0, "y1": 20.1, "x2": 30.1, "y2": 41.0, "track_id": 5, "mask_area": 123.5,
        "polygon": "[[1.0, 2.1], [3.0, 4.0], [5.6, 6.4]]", "id": None,
    }  # fmt: skip
    assert json.loads(row.polygon) == [[1.0, 2.1], [3.0, 4.0], [5.6, 6.4]]
    shown = dict(zip([c.name for c in DetectionRow.console_columns()], row.console_values(), strict=True))
    assert f"hand {shown['confidence']}" == f"hand {d.confidence:.2f}"  # the box's label, as Ultralytics draws it
    assert [score_text(v) for v in (0.8, 1.0, 0.004)] == ["0.80", "1.00", "0.00"]  # as a label reads, zeros kept
    assert {k: v for k, v in shown.items() if k != "confidence"} == {
        k: getattr(row, k) for k in shown if k != "confidence"
    }


def test_detection_row_without_mask() -> None:
    """A box-only detection has no mask area, polygon or track."""
    frame, d = _frame()
    row = DetectionRow.of("run-1", frame, d, "t")
    assert (row.track_id, row.mask_area, row.polygon) == (None, None, None)


def test_event_row_of() -> None:
    """Times to 3 digits, peak to 4; the item is the event's source; the snapshot is the path given."""
    event = SafetyEvent(reason="no gloves", class_name="hand", start_frame=3, start_time=0.123456, end_frame=9,
                        end_time=0.98765, peak_confidence=0.912345, source="clip.mp4",
                        snapshot=np.zeros((2, 2, 3), np.uint8), closed=True, id=42)  # fmt: skip
    row = EventRow.of("run-1", event, "events/event_000003.jpg", "2026-11-16T08:00:01.000+00:00")
    assert row.as_dict() == {
        "run_id": "run-1", "item": "clip.mp4", "reason": "no gloves", "class_name": "hand", "start_frame": 3,
        "end_frame": 9, "start_time": 0.123, "end_time": 0.988, "peak_confidence": 0.9123,
        "snapshot": "events/event_000003.jpg", "closed": True, "recorded_at": "2026-11-16T08:00:01.000+00:00",
        "id": 42, "clip": None, "acknowledged_by": None, "acknowledged_at": None,
        "last_seen_at": "2026-11-16T08:00:01.000+00:00",  # seen last as it was recorded, until the run extends it
    }  # fmt: skip


def test_event_row_of_new_event() -> None:
    """An event not yet stored has no id and, without a snapshot image, no snapshot path."""
    event = SafetyEvent(reason="r", class_name="hand", start_frame=0, start_time=0.0, end_frame=0, end_time=0.0,
                        peak_confidence=0.5)  # fmt: skip
    row = EventRow.of("run-1", event, None, "t")
    assert (row.id, row.snapshot, row.closed, row.item) == (None, None, False, "")


def test_as_dict_of_chosen_columns() -> None:
    """`as_dict(columns)` keeps exactly those columns, in their order."""
    frame, d = _frame()
    row = DetectionRow.of("run-1", frame, d, "t")
    assert list(row.as_dict(DetectionRow.file_columns())) == [n for n in DETECTION_COLUMNS if n != "id"]


def test_flags_read_yes_or_no_in_the_console_as_in_the_workbook() -> None:
    """History's Tracking column reads as the workbook's Runs sheet does, not `true` / `false`."""
    run = RunRow(id="r", source="s", kind="video", model="m.pt", model_sha256="ab", task="detect", conf=0.25, iou=0.7,
                 imgsz=640, tracking=True)  # fmt: skip
    names = [c.name for c in RunRow.console_columns()]
    runs = (run, replace(run, tracking=False))
    tracked = [dict(zip(names, r.console_values(), strict=True))["tracking"] for r in runs]
    assert tracked == ["yes", "no"] == [flag_text(True), flag_text(False)]
