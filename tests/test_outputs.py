"""Unit tests of app/outputs.py: the run's streamed detection files, events.json, atomic writes and safe text."""

from __future__ import annotations

import csv
import gc
import json
import tracemalloc
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from helpers import x264_options

from app.outputs import RunWriter, safe_text
from app.policy import SafetyEvent
from app.results import Detection, FrameResult
from app.schema import TEXT, DetectionRow, EventRow

FILE_COLUMNS = [c.name for c in DetectionRow.file_columns()]
TEXT_COLUMNS = {c.name for c in DetectionRow.file_columns() if c.kind == TEXT}


def frame_rows(index: int, item: str = "clip.mp4", n: int = 2, polygon: bool = False) -> tuple[FrameResult, list]:
    """A frame of `n` detections and their rows (the last one negative-x, to tell numbers from text)."""
    detections = [
        Detection(class_id=i % 2, class_name=("glove", "hand")[i % 2], confidence=0.5 + i / 10 + index / 1000,
                  xyxy=(-3.0 if i == n - 1 else 1.25 + i, 2.0, 30.0, 40.0 + index), track_id=i,
                  mask_area=10.0 * (i + 1) if polygon else None,
                  polygon=((1.04, 2.0), (3.0, -4.06), (5.0, 6.0)) if polygon else None)
        for i in range(n)
    ]  # fmt: skip
    frame = FrameResult(frame_index=index, timestamp=index / 30, width=64, height=48, detections=detections,
                        source=item)  # fmt: skip
    return frame, [DetectionRow.of("run-1", frame, d, "2026-11-16T08:00:00.000+00:00") for d in detections]


def csv_cell(name: str, value: Any) -> str:
    """What the CSV should hold for one value: empty for None, formula-like text quoted."""
    if value is None:
        return ""
    return safe_text(value) if name in TEXT_COLUMNS else str(value)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    assert path.read_bytes().endswith(b"\r\n"), "CSV file ends mid-line"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row, strict=True)) for row in reader]


def read_jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "JSON-lines file ends mid-line"
    return [json.loads(line) for line in text.splitlines()]


def test_files_are_valid_after_every_add(tmp_path: Path) -> None:
    """While the writer is open, both detection files parse and hold exactly the rows added so far."""
    writer = RunWriter(tmp_path / "run")
    added: list[DetectionRow] = []
    header, rows = read_csv(tmp_path / "run" / "detections.csv")
    assert (header, rows) == (FILE_COLUMNS, [])
    assert read_jsonl(tmp_path / "run" / "detections.jsonl") == []
    for i, n in enumerate([2, 0, 3, 1, 0, 2]):
        frame, new = frame_rows(i, n=n, polygon=i % 2 == 0)
        writer.add(frame, new, None)
        added += new
        header, rows = read_csv(tmp_path / "run" / "detections.csv")
        assert header == FILE_COLUMNS
        assert rows == [{k: csv_cell(k, v) for k, v in r.as_dict(DetectionRow.file_columns()).items()} for r in added]
        jsonl = read_jsonl(tmp_path / "run" / "detections.jsonl")
        assert [{**j, "polygon": j["polygon"] and json.dumps(j["polygon"])} for j in jsonl] == [
            r.as_dict(DetectionRow.file_columns()) for r in added
        ]
    assert writer.close() is None
    assert len(read_csv(tmp_path / "run" / "detections.csv")[1]) == len(added) == 8


def test_formula_text_is_quoted_in_csv_only(tmp_path: Path) -> None:
    """Text that a spreadsheet would run gets a ' prefix in the CSV; JSON keeps it as is; numbers are untouched."""
    writer = RunWriter(tmp_path)
    frame, rows = frame_rows(0, item="=HYPERLINK(1)", n=1)
    rows[0].class_name = "@SUM(A1)"
    writer.add(frame, rows, None)
    writer.close()
    [row] = read_csv(tmp_path / "detections.csv")[1]
    assert (row["item"], row["class_name"], row["x1"]) == ("'=HYPERLINK(1)", "'@SUM(A1)", "-3.0")
    [line] = read_jsonl(tmp_path / "detections.jsonl")
    assert (line["item"], line["class_name"], line["x1"]) == ("=HYPERLINK(1)", "@SUM(A1)", -3.0)


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@A1", "\tx", "\rx"])
def test_safe_text_quotes_formulas(text: str) -> None:
    assert safe_text(text) == "'" + text


@pytest.mark.parametrize("text", ["", "hand", "a=b", "'=1", "1-2"])
def test_safe_text_keeps_other_text(text: str) -> None:
    assert safe_text(text) == text


def test_polygons_nested_in_jsonl_text_in_csv(tmp_path: Path) -> None:
    """The JSON-lines file holds the polygon as [[x, y], ...]; the CSV as its JSON text; no polygon is null / empty."""
    writer = RunWriter(tmp_path)
    frame, rows = frame_rows(0, n=1, polygon=True)
    writer.add(frame, rows, None)
    frame, rows = frame_rows(1, n=1)
    writer.add(frame, rows, None)
    writer.close()
    with_polygon, without = read_jsonl(tmp_path / "detections.jsonl")
    assert with_polygon["polygon"] == [[1.0, 2.0], [3.0, -4.1], [5.0, 6.0]]
    assert without["polygon"] is None
    with_polygon, without = read_csv(tmp_path / "detections.csv")[1]
    assert json.loads(with_polygon["polygon"]) == [[1.0, 2.0], [3.0, -4.1], [5.0, 6.0]]
    assert with_polygon["polygon"].startswith("[[")
    assert without["polygon"] == ""


def event_row(end_frame: int, closed: bool) -> EventRow:
    return EventRow(run_id="run-1", item="=cmd", reason="no gloves", class_name="hand", start_frame=1,
                    end_frame=end_frame, start_time=0.1, end_time=end_frame / 10, peak_confidence=0.9,
                    snapshot="events/event_000001.jpg", closed=closed, recorded_at="2026-11-16T08:00:00.000+00:00",
                    id=7)  # fmt: skip


def test_write_events_replaces_the_file_atomically(tmp_path: Path) -> None:
    """events.json is replaced by a rename: a reader holding the old file still reads it whole; no .part is left."""
    writer = RunWriter(tmp_path)
    writer.write_events([event_row(4, False)])
    path = tmp_path / "events.json"
    expected = event_row(4, False).as_dict(EventRow.file_columns())  # no id, clip or acknowledgement: the run's own
    assert json.loads(path.read_text(encoding="utf-8")) == [expected]
    with open(path, encoding="utf-8") as old:
        writer.write_events([event_row(9, True), event_row(2, False)])
        assert json.loads(old.read()) == [expected]  # the old file was not rewritten in place
    events = json.loads(path.read_text(encoding="utf-8"))
    assert [(e["end_frame"], e["closed"], e["item"]) for e in events] == [(9, True, "=cmd"), (2, False, "=cmd")]
    assert list(events[0]) == [c.name for c in EventRow.file_columns()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detections.csv", "detections.jsonl", "events.json"]
    writer.close()


def test_close_without_video_returns_none(tmp_path: Path) -> None:
    """Without a video the run has no video path; the detection files are closed and complete."""
    writer = RunWriter(tmp_path)
    writer.add(*frame_rows(0), None)
    assert writer.close() is None
    with pytest.raises(ValueError):  # the detection files are closed
        writer.add(*frame_rows(1), None)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))


def test_close_with_video_returns_the_playable_file(tmp_path: Path) -> None:
    """With a video, close() moves the H.264 file from its temporary name into place and returns it."""
    writer = RunWriter(tmp_path, video_fps=10)
    for i in range(3):
        writer.add(*frame_rows(i), np.full((32, 48, 3), 40 * i, np.uint8))
    assert not (tmp_path / "annotated.mp4").exists()  # an MP4's index is only written at the end
    assert writer.close() == tmp_path / "annotated.mp4"
    video = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    video.release()
    assert writer.images == [] and not list(tmp_path.glob(".*"))


def test_live_sources_encode_with_the_faster_preset(tmp_path: Path) -> None:
    """A camera's run (`live`) encodes with x264 `ultrafast`, leaving the CPU to inference; a file's with `veryfast`,
    for smaller files."""
    for live, preset in [(False, "cabac=1 "), (True, "cabac=0 ")]:  # CABAC: on in veryfast, off in ultrafast
        writer = RunWriter(tmp_path / str(live), video_fps=10, live=live)
        for i in range(3):
            writer.add(*frame_rows(i), np.full((32, 48, 3), 40 * i, np.uint8))
        options = x264_options(writer.close())
        assert options.startswith(preset) and (" subme=0 " in options) == live, options


def test_video_without_frames_is_none(tmp_path: Path) -> None:
    """A video run that produced no frame leaves no video file."""
    writer = RunWriter(tmp_path, video_fps=25)
    assert writer.close() is None
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))


def test_event_snapshot(tmp_path: Path) -> None:
    """An event's snapshot is saved as a JPEG under events/, named by its start frame; none without an image."""
    writer = RunWriter(tmp_path)
    event = SafetyEvent(reason="r", class_name="hand", start_frame=3, start_time=0.1, end_frame=3, end_time=0.1,
                        peak_confidence=0.9, snapshot=np.full((8, 8, 3), 200, np.uint8))  # fmt: skip
    assert writer.snapshot(event) == "events/event_000003.jpg"
    assert cv2.imread(str(tmp_path / "events" / "event_000003.jpg")).shape == (8, 8, 3)
    assert [p.name for p in (tmp_path / "events").iterdir()] == ["event_000003.jpg"]
    event.snapshot = None
    assert writer.snapshot(event) is None
    writer.close()


def test_still_images_get_one_jpeg_each(tmp_path: Path) -> None:
    """Without a video each annotated still image is saved as a JPEG named after its file, one per image."""
    writer = RunWriter(tmp_path)
    shades = {"a.png": 10, "a.jpg": 120, "b.png": 250}  # a folder may hold a.png and a.jpg side by side
    for i, (name, shade) in enumerate(shades.items()):
        frame, rows = frame_rows(i, item=name)
        writer.add(frame, rows, np.full((16, 16, 3), shade, np.uint8))
    writer.close()
    assert len(set(writer.images)) == len(shades), writer.images
    saved = sorted(int(cv2.imread(str(p))[8, 8, 0]) for p in writer.images)
    assert saved == pytest.approx(sorted(shades.values()), abs=3)


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_memory_does_not_grow_with_the_run(tmp_path: Path) -> None:
    """20,000 frames of 3 rows each: the writer keeps no rows (or text) in memory, only the files grow.

    No Python object survives a frame (gc-tracked object count, all 20,000 frames); tracemalloc, about six times
    slower, watches the last 4,000: their peak stays small and nothing they allocated is kept.
    """
    writer = RunWriter(tmp_path)
    detections = [Detection(class_id=i, class_name=f"class-{i}", confidence=0.5, xyxy=(1.0, 2.0, 3.0, 4.0))
                  for i in range(3)]  # fmt: skip
    frames, traced = 20_000, 4_000

    def add(index: int) -> None:
        frame = FrameResult(frame_index=index, timestamp=index / 30, width=64, height=48, detections=detections,
                            source="clip.mp4")  # fmt: skip
        writer.add(frame, [DetectionRow.of("run-1", frame, d, "2026-11-16T08:00:00.000+00:00") for d in detections],
                   None)  # fmt: skip

    for i in range(100):  # warm-up: caches and buffers reach their steady size
        add(i)
    sizes = {k: len(v) for k, v in vars(writer).items() if isinstance(v, (list, dict, set, tuple))}
    gc.collect()
    objects = len(gc.get_objects())
    for i in range(100, frames - traced):
        add(i)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(frames - traced, frames):
            add(i)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gc.collect()
    grown = len(gc.get_objects()) - objects
    writer.close()
    assert grown < 1000, f"{grown} more Python objects after {frames} frames"
    assert peak - baseline < 2_000_000, f"peak grew by {(peak - baseline) / 1e6:.1f} MB"
    assert current - baseline < 50_000, f"{current - baseline} bytes kept from {traced} frames"
    assert {k: len(getattr(writer, k)) for k in sizes} == sizes  # no collection grew
    with open(tmp_path / "detections.csv", newline="", encoding="utf-8") as f:
        assert sum(1 for _ in csv.reader(f)) == 1 + 3 * frames
