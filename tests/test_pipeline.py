"""Whole runs: the database, the run files and the workbook hold the same detections and events."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import BANDSAW_NAMES
from helpers import CHROMIUM, CHROMIUM_ARGS, make_video, x264_options
from openpyxl import load_workbook
from playwright.sync_api import sync_playwright

from app.engine import DetectionEngine, RunSettings
from app.errors import PolicyError, RecordsError
from app.excel import export_workbook
from app.pipeline import DetectionRun
from app.policy import SafetyPolicy
from app.records import RecordStore
from app.sources import open_source

LOW = RunSettings(conf=0.002, imgsz=96)  # the one-epoch test model only scores low
# Every class is a glove at this machine, so the near-random detections of the test model raise events.
ALL_GLOVES = SafetyPolicy(
    name="test-all-gloves",
    rule="gloves_forbidden",
    roles=dict.fromkeys(BANDSAW_NAMES, "glove"),
    min_frames=2,
    cooldown_s=0.0,
)


@pytest.fixture
def engine(trained_models: dict) -> DetectionEngine:
    return DetectionEngine(trained_models["detect"][0])


@pytest.fixture
def video_run(engine: DetectionEngine, tmp_path: Path) -> tuple[DetectionRun, RecordStore, list]:
    store = RecordStore(tmp_path / "records.sqlite")
    run = DetectionRun(engine, open_source(make_video(tmp_path / "clip.mp4", frames=16)), LOW, ALL_GLOVES, store,
                       exports_dir=tmp_path / "exports")  # fmt: skip
    updates = list(run)
    return run, store, updates


def test_database_files_and_workbook_agree(video_run: tuple, tmp_path: Path) -> None:
    run, store, updates = video_run
    s = run.summary
    returned = [
        (u.frame.frame_index, d.class_name, round(d.confidence, 4)) for u in updates for d in u.frame.detections
    ]
    assert s.status == "completed" and s.frames == len(updates) == 16 and len(returned) == s.detections > 0

    stored = store.detections(s.run_id)
    assert [(d.frame_index, d.class_name, round(d.confidence, 4)) for d in stored] == returned
    assert store.run(s.run_id).frames == 16 and store.run(s.run_id).status == "completed"

    with open(s.output_dir / "detections.csv", newline="") as f:
        assert [(int(r["frame_index"]), r["class_name"], float(r["confidence"])) for r in csv.DictReader(f)] == returned
    rows = [json.loads(line) for line in (s.output_dir / "detections.jsonl").read_text().splitlines()]
    assert [(r["frame_index"], r["class_name"], r["confidence"]) for r in rows] == returned

    book = export_workbook(store, tmp_path / "run.xlsx", run_id=s.run_id)
    ws = load_workbook(book)["Detections"]
    sheet = [(r[2], r[6], round(r[7], 4)) for r in ws.iter_rows(min_row=2, values_only=True)]
    assert sheet == returned


def test_events_follow_the_policy_and_are_saved_everywhere(video_run: tuple, tmp_path: Path) -> None:
    run, store, updates = video_run
    s = run.summary
    violating = [u.frame.frame_index for u in updates if not u.status.ok]
    assert violating and s.events  # every frame with a detection violates
    streaks, current = [], []  # runs of consecutive violating frames
    for i in range(16):
        if i in violating:
            current.append(i)
        elif current:
            streaks.append(current)
            current = []
    streaks += [current] if current else []
    # min_frames=2, cooldown 0: one event per streak of two or more frames, spanning it exactly
    assert [(e.start_frame, e.end_frame) for e in s.events] == [(st[0], st[-1]) for st in streaks if len(st) >= 2]
    assert all(e.closed for e in s.events)
    stored = store.events(s.run_id)
    assert [(e.start_frame, e.end_frame, e.closed) for e in stored] == [
        (e.start_frame, e.end_frame, True) for e in s.events
    ]
    for e in stored:
        assert e.snapshot and cv2.imread(str(s.output_dir / e.snapshot)) is not None
        # last seen with its last violating frame's detections, not when it closed (the next frame)
        seen = {d.detected_at for d in store.detections(s.run_id) if d.frame_index == e.end_frame}
        assert seen == {e.last_seen_at} and e.recorded_at <= e.last_seen_at
    record = store.run(s.run_id)  # its last frame's time, where a killed run would end
    assert max(d.detected_at for d in store.detections(s.run_id)) <= record.last_frame_at <= record.ended_at
    saved = json.loads((s.output_dir / "events.json").read_text())
    assert [(e["start_frame"], e["end_frame"]) for e in saved] == [(e.start_frame, e.end_frame) for e in s.events]
    ws = load_workbook(export_workbook(store, tmp_path / "run.xlsx", run_id=s.run_id))["Events"]
    assert [(r[4], r[5]) for r in ws.iter_rows(min_row=2, values_only=True)] == [
        (e.start_frame, e.end_frame) for e in s.events
    ]


def test_output_video_is_h264_with_every_frame(video_run: tuple) -> None:
    run, _, _ = video_run
    with av.open(str(run.summary.video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == 16
    assert x264_options(run.summary.video).startswith("cabac=1 ")  # a file's run: x264 `veryfast`, smaller files
    assert not list(run.summary.output_dir.glob(".*part*"))  # no temporary files left behind


def test_a_strided_video_plays_as_long_as_its_source(engine: DetectionEngine, tmp_path: Path) -> None:
    """Every 4th frame of a 16-frame clip at 10 fps: 4 frames at 2.5 fps, 1.6 s, not a 0.4 s fast-forward."""
    clip = make_video(tmp_path / "clip.mp4", frames=16, fps=10.0)
    summary = DetectionRun(engine, open_source(clip, stride=4), LOW, None, exports_dir=tmp_path).run()
    with av.open(str(summary.video)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (frames, float(stream.average_rate)) == (4, 2.5)
        assert float(stream.duration * stream.time_base) == pytest.approx(1.6, abs=0.01)


@pytest.mark.browser
def test_output_video_plays_in_chromium(video_run: tuple) -> None:
    folder = video_run[0].summary.output_dir
    (folder / "play.html").write_text('<video id="v" src="annotated.mp4" muted autoplay playsinline></video>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/play.html")
            page.wait_for_function("document.getElementById('v').readyState === 4", timeout=15000)
            width, error = page.evaluate(
                "[document.getElementById('v').videoWidth, document.getElementById('v').error]"
            )
            browser.close()
    finally:
        server.shutdown()
    assert width == 128 and error is None


def test_workbook_is_formatted_for_people(video_run: tuple, tmp_path: Path) -> None:
    run, store, _ = video_run
    path = export_workbook(store, tmp_path / "run.xlsx", run_id=run.summary.run_id)
    wb = load_workbook(path)
    assert wb.sheetnames == ["Summary", "Runs", "Detections", "Events"]
    ws = wb["Detections"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:P{run.summary.detections + 1}"
    assert ws["H2"].number_format == "0.0%" and ws["E2"].number_format.startswith("yyyy-mm-dd")
    assert ws["E2"].is_date and ws.column_dimensions["G"].width >= len("Class")
    summary = {r[0]: r for r in wb["Summary"].iter_rows(values_only=True) if r and r[0]}
    for name, count in run.summary.counts.items():
        assert summary[name][1] == count
    assert summary["Total"][1] == run.summary.detections and summary["Total"][3] == len(run.summary.events)
    with zipfile.ZipFile(path) as z:
        assert any(n.startswith("xl/charts/chart") for n in z.namelist())  # native bar chart


def test_formula_like_text_is_never_evaluated(engine: DetectionEngine, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    name = "=HYPERLINK(1+1)"
    cv2.imwrite(str(folder / "plain.jpg"), np.full((64, 64, 3), 120, np.uint8))
    (folder / f"{name}.jpg").write_bytes((folder / "plain.jpg").read_bytes())
    store = RecordStore(tmp_path / "r.sqlite")
    run = DetectionRun(engine, open_source(folder), LOW, None, store, exports_dir=tmp_path / "exports")
    s = run.run()
    assert s.detections > 0 and len(s.images) == 2
    path = export_workbook(store, tmp_path / "x.xlsx", run_id=s.run_id)
    with zipfile.ZipFile(path) as z:
        assert "<f>" not in z.read("xl/worksheets/sheet2.xml").decode()
    ws = load_workbook(path)["Detections"]
    cells = [r[1] for r in ws.iter_rows(min_row=2) if str(r[1].value).startswith("=")]
    assert cells and all(c.data_type == "s" and c.quotePrefix for c in cells)
    assert cells[0].value == f"{name}.jpg"
    with open(s.output_dir / "detections.csv", newline="") as f:
        items = {r["item"] for r in csv.DictReader(f)}
    assert f"'{name}.jpg" in items and "plain.jpg" in items


def test_date_range_and_source_queries(engine: DetectionEngine, tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "r.sqlite")
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 90, np.uint8))
    first = DetectionRun(engine, open_source(image), LOW, None, store, exports_dir=tmp_path / "e").run()
    second = DetectionRun(engine, open_source(tmp_path), LOW, None, store, exports_dir=tmp_path / "e").run()
    runs = store.runs()
    assert [r.id for r in runs] == [second.run_id, first.run_id]
    cut = store.run(second.run_id).started_at
    assert [r.id for r in store.runs(start=cut)] == [second.run_id]
    assert [r.id for r in store.runs(end=cut)] == [first.run_id]
    assert [r.id for r in store.runs(source=str(image))] == [first.run_id]
    assert len(store.detections(start="2000-01-01")) == first.detections + second.detections
    ws = load_workbook(export_workbook(store, tmp_path / "all.xlsx", start="2000-01-01"))["Detections"]
    assert ws.max_row - 1 == first.detections + second.detections
    with pytest.raises(RecordsError, match="no runs"):
        export_workbook(store, tmp_path / "none.xlsx", start="2999-01-01")


def test_a_run_stopped_early_is_closed_cleanly(engine: DetectionEngine, tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "r.sqlite")
    run = DetectionRun(engine, open_source(make_video(tmp_path / "c.mp4", frames=20)), LOW, ALL_GLOVES, store,
                       exports_dir=tmp_path / "e")  # fmt: skip
    for update in run:
        if update.done == 5:
            break
    assert run.summary.status == "stopped"
    record = store.run(run.summary.run_id)
    assert (record.status, record.frames) == ("stopped", 5)
    with av.open(str(run.summary.video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
    assert all(e.closed for e in store.events(run.summary.run_id))


def test_policy_must_fit_the_model(engine: DetectionEngine, tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(PolicyError, match="classes the model does not have"):
        DetectionRun(engine, open_source(tmp_path / "a.jpg"), LOW, SafetyPolicy.load("gloves"), None)


def test_class_filter_that_hides_what_the_policy_judges_is_refused(engine: DetectionEngine, tmp_path: Path) -> None:
    """Such a run would answer OK without having looked; a filter that keeps them runs, and says so in its stamp."""
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    bandsaw = SafetyPolicy.load("bandsaw")  # gloves forbidden: judged by the four glove classes
    hiding = replace(LOW, classes=engine.class_ids(["Glove_Blue", "hand", "head"]))
    with pytest.raises(PolicyError, match="judges by Glove_White, glove_steel, glove_steel_b, which the class filter"):
        DetectionRun(engine, open_source(tmp_path / "a.jpg"), hiding, bandsaw, None)
    keeping = replace(LOW, classes=engine.class_ids(["Glove_Blue", "Glove_White", "glove_steel_b", "glove_steel"]))
    summary = DetectionRun(engine, open_source(tmp_path / "a.jpg"), keeping, bandsaw, None, exports_dir=tmp_path).run()
    assert "confidence 0.002, IoU 0.7, only Glove_Blue, Glove_White, glove_steel, glove_steel_b, policy bandsaw" in (
        summary.text()
    )
