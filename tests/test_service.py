"""The service without a browser: models, uploads, no-weights help, live sessions and their life cycle, history."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest
from helpers import make_video, x264_options
from test_records import make_event, make_run

from app.errors import ServiceError
from app.export import export_onnx
from app.records import HOST, RecordStore, utc_now
from app.schema import EventRow, MonitorRow
from app.service import LIVE_GAP_S, NO_WEIGHTS_HELP, DetectionService, LiveSession, RunOptions


@pytest.fixture
def service(tmp_path: Path) -> DetectionService:
    (tmp_path / "weights").mkdir()
    return DetectionService(exports_dir=tmp_path / "exports", weights_dir=tmp_path / "weights")


def test_without_weights_the_console_says_how_to_get_them(service: DetectionService) -> None:
    assert service.available_models() == [] and service.default_model() is None
    with pytest.raises(ServiceError, match="No trained weights") as e:
        service.live(RunOptions(weights=None))
    assert str(e.value) == NO_WEIGHTS_HELP and "train.py" in NO_WEIGHTS_HELP


def test_uploaded_checkpoint_is_checked_kept_and_listed(service: DetectionService, trained_models: dict) -> None:
    info = service.add_upload(trained_models["segment"][0])
    assert info.task == "segment" and info.path.parent == service.uploads_dir
    assert info.path.name == f"segment-{info.sha256[:8]}.pt"
    assert service.available_models() == [info.path] and service.default_model() == info.path


def test_bad_uploads_are_refused(service: DetectionService, tmp_path: Path) -> None:
    (tmp_path / "model.zip").write_bytes(b"x")
    with pytest.raises(ServiceError, match=r"upload a \.pt checkpoint"):
        service.add_upload(tmp_path / "model.zip")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ServiceError, match="not an ONNX model"):
        service.add_upload(tmp_path / "model.onnx")
    (tmp_path / "best.pt").write_bytes(b"garbage")
    with pytest.raises(ServiceError, match="not a YOLO checkpoint"):
        service.add_upload(tmp_path / "best.pt")
    assert service.available_models() == []


@pytest.fixture
def weights(service: DetectionService, trained_models: dict) -> str:
    shutil.copy(trained_models["detect"][0], service.weights_dir / "d.pt")
    return str(service.weights_dir / "d.pt")


class Clock:
    """A clock the test moves by hand (the live session's pauses and time limit)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


FRAMES = [np.full((96, 96, 3), v, np.uint8) for v in (30, 90, 150)]


def test_live_session_records_every_pushed_frame(service: DetectionService, weights: str) -> None:
    live = service.live(RunOptions(weights=weights, conf=0.002, imgsz=96, policy=None))
    updates = [live.process(f) for f in FRAMES]
    assert [u.frame.frame_index for u in updates] == [0, 1, 2]
    summary = live.stop()
    assert live.stop() is None  # a second Stop is harmless: nothing left to save
    record = service.store.run(summary.run_id)
    assert (record.kind, record.frames, record.status) == ("stream", 3, "stopped")
    assert service.history("2000-01-01", None)[0].id == summary.run_id
    assert service.workbook(run_id=summary.run_id).is_file()
    assert x264_options(summary.video).startswith("cabac=0 ")  # a camera's run: x264 `ultrafast`, CPU to inference


def test_stop_while_streaming_saves_once_and_starts_nothing(service: DetectionService, weights: str) -> None:
    clock = Clock()
    live = LiveSession(service, RunOptions(weights=weights, conf=0.002, imgsz=96), clock=clock)
    live.process(FRAMES[0])
    saved = live.stop()
    for _ in range(5):  # the browser keeps sending frames for a moment
        clock.now += 0.2
        assert live.process(FRAMES[1]) is None
    assert [r.id for r in service.history(None, None)] == [saved.run_id]
    clock.now += LIVE_GAP_S + 1  # the user stopped the camera, then starts it again
    again = live.process(FRAMES[2])
    assert again.frame.frame_index == 0 and live.run.summary.run_id != saved.run_id
    live.stop()
    assert [r.status for r in service.history(None, None)] == ["stopped", "stopped"]


def test_a_camera_that_stops_sending_has_its_run_saved_without_another_frame(
    service: DetectionService, weights: str
) -> None:
    """The camera stopped with its own button (or the tab closed) sends nothing more: the run must not stay
    `running` in History until a next frame or a restart, and it ends with its last frame."""
    live = service.live(RunOptions(weights=weights, conf=0.002, imgsz=96))
    live.gap_s = 0.5
    live.process(FRAMES[0])
    last = live.process(FRAMES[1])
    run_id = last.rows[0].run_id
    deadline = time.monotonic() + 10
    while service.store.run(run_id).status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    record = service.store.run(run_id)
    assert (record.status, record.frames) == ("stopped", 2) and live.run is None
    assert record.ended_at == max(r.detected_at for r in last.rows)  # the last frame's time, not the pause's end
    again = live.process(FRAMES[2])  # the camera started again: a new run
    assert again.frame.frame_index == 0 and live.run.summary.run_id != run_id
    live.stop()


def test_a_first_frame_slower_than_the_gap_is_no_pause(
    service: DetectionService, weights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's first result can come later than the gap after its frame (an export compiled as the run opens):
    that is no pause, and the next frame goes on in the same run."""
    clock = Clock()
    opened = service.open_run

    def slow_open(*args, **kwargs):
        clock.now += LIVE_GAP_S + 1
        return opened(*args, **kwargs)

    monkeypatch.setattr(service, "open_run", slow_open)
    live = LiveSession(service, RunOptions(weights=weights, conf=0.002, imgsz=96), clock=clock)
    live.process(FRAMES[0])
    run_id = live.run.summary.run_id
    assert live.process(FRAMES[1]).frame.frame_index == 1 and live.run.summary.run_id == run_id  # the same run


def test_a_refused_live_run_is_said_once_not_once_a_frame(service: DetectionService, weights: str) -> None:
    """A camera streams many frames a second: options that cannot open a run (a class filter that blinds the
    policy) are refused at the first, the next frames are let go, and changed options are tried again."""
    blind = RunOptions(weights=weights, conf=0.002, imgsz=96, policy="bandsaw", classes=("hand",))
    live = LiveSession(service, blind)
    with pytest.raises(ServiceError, match="which the class filter leaves out"):
        live.process(FRAMES[0])
    assert [live.process(f) for f in FRAMES] == [None] * len(FRAMES) and live.run is None
    seeing = dataclasses.replace(blind, classes=("hand", "Glove_Blue", "Glove_White", "glove_steel", "glove_steel_b"))
    assert live.process(FRAMES[0], seeing).frame.frame_index == 0


def test_pause_time_limit_and_new_options_start_new_runs(service: DetectionService, weights: str) -> None:
    clock = Clock()
    options = RunOptions(weights=weights, conf=0.002, imgsz=96)
    live = LiveSession(service, options, time_limit_s=60, clock=clock)
    live.process(FRAMES[0])
    clock.now += 1
    live.process(FRAMES[1])  # same run
    clock.now += LIVE_GAP_S + 1
    live.process(FRAMES[2])  # after a pause: a new run
    clock.now += 61
    live.process(FRAMES[0])  # past the time limit: a new run
    clock.now += 1
    live.process(FRAMES[0], RunOptions(weights=weights, conf=0.5, imgsz=96))  # new settings: a new run
    clock.now += 1
    live.process(FRAMES[1], RunOptions(weights=weights, conf=0.5, imgsz=96, augment_photos=False))  # photos only
    live.stop()
    runs = sorted(service.history(None, None), key=lambda r: r.started_at)
    assert [(r.frames, r.conf) for r in runs] == [(2, 0.002), (1, 0.002), (1, 0.002), (2, 0.5)]
    assert not any(r.augment for r in runs)  # a camera never runs it
    assert [s.run_id for s in live.saved] == [r.id for r in runs]


def test_runs_keep_their_own_settings_on_a_shared_model(service: DetectionService, weights: str) -> None:
    strict = service.live(RunOptions(weights=weights, conf=0.9, imgsz=96))
    loose = service.live(RunOptions(weights=weights, conf=0.002, imgsz=96))
    image = np.full((96, 96, 3), 100, np.uint8)
    assert loose.process(image).frame.detections and not strict.process(image).frame.detections
    assert service.store.run(strict.stop().run_id).conf == 0.9
    loose.stop()
    with pytest.raises(ServiceError, match="unknown class 'mitten'"):
        service.live(RunOptions(weights=weights, classes=("mitten",))).process(image)
    with pytest.raises(ServiceError, match="classes the model does not have"):
        service.live(RunOptions(weights=weights, policy="gloves")).process(image)


def test_model_info_and_fitting_policies(service: DetectionService, weights: str) -> None:
    info = service.model_info(weights)
    assert info.defaults.imgsz == 96
    assert info.short_name == "d.pt (detect: " + ", ".join(info.names.values()) + "; 96 px)"
    assert service.policies(weights) == ["bandsaw"]  # the test model has the bandsaw classes only
    assert set(service.policies()) == {"bandsaw", "gloves", "gloves-forbidden"}


def test_a_run_records_the_settings_inference_used(service: DetectionService, weights: str, tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 90, np.uint8))
    summary = service.detect_file(image, RunOptions(weights=weights)).run()  # the model's own defaults
    record = service.store.run(summary.run_id)
    assert (record.imgsz, record.conf, record.iou) == (96, 0.25, 0.7)
    with pytest.raises(ServiceError, match="danger zone"):
        service.detect_file(image, RunOptions(weights=weights, policy="bandsaw", zone="0,0 2,0 1,1"))


def test_history_workbook_holds_the_runs_the_history_shows(
    service: DetectionService, weights: str, tmp_path: Path
) -> None:
    """Export Excel with a source filter: the runs listed for it, not every run of the dates."""
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((64, 64, 3), 90, np.uint8))
        service.detect_file(tmp_path / name, RunOptions(weights=weights, augment_photos=False)).run()
    shown = service.history("2000-01-01", None, "b.jpg")
    book = openpyxl.load_workbook(service.workbook(None, "2000-01-01", None, " b.jpg "), read_only=True)
    runs = [row[0] for row in book["Runs"].iter_rows(values_only=True)][1:]
    assert len(shown) == 1 and runs == [shown[0].id]
    summary = [row for row in book["Summary"].iter_rows(values_only=True) if any(row)]
    assert ("Selection", "1 run(s) started from 2000-01-01, source b.jpg") in [row[:2] for row in summary]
    # each filter its own file: the workbook of one source does not replace that of all
    everything = service.workbook(None, "2000-01-01", None, None)
    assert (everything.name, service.workbook(None, "2000-01-01", None, "b.jpg").name) == (
        "runs-from-2000-01-01.xlsx", "runs-from-2000-01-01-b.jpg.xlsx")  # fmt: skip
    assert everything.is_file()
    assert [service.workbook(None, *dates).name for dates in ((None, None), (None, "2100-01-01"),
                                                              ("2000-01-01", "2100-01-01"))] == [
        "runs-all.xlsx", "runs-until-2100-01-01.xlsx", "runs-2000-01-01-to-2100-01-01.xlsx"]  # fmt: skip
    with pytest.raises(ServiceError, match=r"From \(2026-12-01\) must be before Until \(2026-11-01\)"):
        service.history("2026-12-01", "2026-11-01")  # an empty range is said, not listed as "no runs"


@pytest.mark.slow  # exports / several runs: outside the fast subset
def test_photos_get_test_time_augmentation_and_videos_never(
    service: DetectionService, weights: str, tmp_path: Path
) -> None:
    """A photo (or a folder of them) runs with test-time augmentation by default, in PyTorch where Ultralytics has
    it; a video never; an export cannot; each run records what it used."""
    (photos := tmp_path / "photos").mkdir()
    image = photos / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 90, np.uint8))
    video = make_video(tmp_path / "v.mp4", frames=3)

    def used(source: Path, **options) -> tuple[bool, str | None]:
        record = service.store.run(service.detect_file(source, RunOptions(weights=weights, **options)).run().run_id)
        return record.augment, record.runtime

    assert used(image) == (True, "torch") and used(photos) == (True, "torch")
    assert used(image, augment_photos=False)[0] is False
    assert used(video)[0] is False
    onnx_file = export_onnx(weights, imgsz=96, out=tmp_path / "m.onnx")
    assert service.store.run(service.detect_file(image, RunOptions(weights=onnx_file)).run().run_id).augment is False


def test_runs_left_running_by_a_dead_process_are_closed_as_interrupted(tmp_path: Path, weights: str) -> None:
    exports = tmp_path / "exports"
    first = DetectionService(exports_dir=exports, weights_dir=Path(weights).parent)
    live = first.live(RunOptions(weights=weights, conf=0.002, imgsz=96))
    live.process(FRAMES[0])
    run_id = live.run.summary.run_id
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with sqlite3.connect(exports / "records.sqlite") as db:  # as if a process that has since died ran it
        db.execute("UPDATE runs SET pid = ? WHERE id = ?", (int(dead.stdout), run_id))
    reader = DetectionService(exports_dir=exports, reader=True)  # `python -m app history`: it only reads
    assert reader.interrupted == [] and reader.store.run(run_id).status == "running"
    other = DetectionService(exports_dir=exports, weights_dir=Path(weights).parent)  # the next start
    assert other.interrupted == [run_id]
    record = other.store.run(run_id)
    assert (record.status, record.frames) == ("interrupted", 1) and record.ended_at
    assert other.store.detections(run_id) == first.store.detections(run_id)  # what was recorded stays


def test_shutdown_saves_live_runs_and_closes_the_rest(service: DetectionService, weights: str, tmp_path: Path):
    live = service.live(RunOptions(weights=weights, conf=0.002, imgsz=96))
    live.process(FRAMES[0])
    cv2.imwrite(str(tmp_path / "a.jpg"), FRAMES[0])
    open_run = service.detect_file(tmp_path / "a.jpg", RunOptions(weights=weights, imgsz=96))
    service.store.start_run(open_run.summary.record)  # a run this process started and never closed
    service.shutdown()
    statuses = {r.id: r.status for r in service.history(None, None)}
    assert statuses == {live.saved[0].run_id: "stopped", open_run.summary.run_id: "interrupted"}


def test_live_session_reports_the_rate_it_achieves(service: DetectionService, weights: str) -> None:
    clock = Clock()
    live = LiveSession(service, RunOptions(weights=weights, conf=0.002, imgsz=96), clock=clock)
    for _ in range(3):
        live.process(FRAMES[0])
        clock.now += 0.5
    assert live.results_per_s() == pytest.approx(2.0)  # 3 results over the 1 s between the first and the last
    assert 0 < live.latency_ms() < 60_000  # measured on the real clock: the median time a frame took to a result


def test_history_dates_are_days_of_this_machines_clock(
    service: DetectionService, time_zone: Callable[[str], None]
) -> None:
    """From / Until are the days History shows its times in, not UTC days: in Berlin a run started at 00:30 on
    1 December (23:30 UTC on 30 November) is a run of 1 December, in the list and in its workbook."""
    time_zone("Europe/Berlin")
    for run_id, at in (("late", "2026-11-30T22:30:00.000+00:00"), ("night", "2026-11-30T23:30:00.000+00:00"),
                       ("next", "2026-12-01T23:30:00.000+00:00")):  # fmt: skip
        service.store.start_run(make_run(run_id, at))
    assert [r.id for r in service.history("2026-12-01", "2026-12-02")] == ["night"]
    assert [r.id for r in service.history("2026-11-30", "2026-12-01")] == ["late"]
    assert [r.id for r in service.history("2026-12-01T00:45", None)] == ["next"]  # a typed time is local too
    book = openpyxl.load_workbook(service.workbook(None, "2026-12-01", "2026-12-02"), read_only=True)
    assert [row[0] for row in book["Runs"].iter_rows(values_only=True)][1:] == ["night"]
    selection = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True) if any(row)}["Selection"]
    assert selection == "1 run(s) started from 2026-12-01 until 2026-12-02 (exclusive)"
    assert service.workbook(None, "2026-12-01", "2026-12-02").name == "runs-2026-12-01-to-2026-12-02.xlsx"
    time_zone("America/Los_Angeles")
    with pytest.raises(ServiceError, match=r"^Until: 9999-12-31T23:59 is out of range$"):  # past year 9999 in UTC
        service.history(None, "9999-12-31T23:59")


def _monitor_event(store: RecordStore, run_id: str, monitor: str | None, recorded_at: datetime) -> int:
    """An event of a new run of `monitor` (None: a run of no monitor), recorded at a time; its id."""
    at = recorded_at.isoformat(timespec="milliseconds")
    store.start_run(dataclasses.replace(make_run(run_id, at), kind="stream", monitor=monitor))
    return store.save_event(dataclasses.replace(make_event(run_id), recorded_at=at))


def test_an_event_left_open_by_a_dead_monitor_closes_with_its_run(service: DetectionService) -> None:
    """A monitor killed with an event open: the next start closes both, and the event says why it has no clip."""
    store, at = service.store, utc_now()
    store.start_run(dataclasses.replace(make_run("killed", at), kind="stream", monitor="bandsaw-1", host=HOST))
    event = store.save_event(dataclasses.replace(make_event("killed"), recorded_at=at))
    assert service.event_media(event).note == "clip still recording"
    assert store.close_interrupted() == ["killed"]  # as the next process finds it: no process id, none alive
    media = service.event_media(event)
    assert media.event.closed and media.clip is None
    assert media.note == "no clip: the monitor's process ended (killed or crashed) before the clip was finished"


def test_monitors_show_todays_events_read_in_one_query(service: DetectionService) -> None:
    """Each monitor's events of today, newest first, exactly as the per-monitor queries gave them (other days'
    events, other monitors' and runs of no monitor left out), read in one query however many monitors there are."""
    store, now = service.store, datetime.now(timezone.utc)
    statements: list[str] = []
    store._backend.db.set_trace_callback(statements.append)  # every SQL statement the store sends to SQLite

    def refresh() -> dict[str, list[EventRow]]:
        statements.clear()
        views = service.monitors(now)
        assert not any(v.stale for v in views)
        return {v.row.name: v.events for v in views}

    def add(names: list[str]) -> None:
        for name in names:
            store.save_monitor(MonitorRow(name=name, source="0", status="running", started_at=now.isoformat(),
                                          updated_at=now.isoformat()))  # fmt: skip
            today[name] = []
        for i in range(2):  # ids interleaved between the monitors, and a run of no monitor between them
            for name in names:
                today[name].append(_monitor_event(store, f"{name}-{i}", name, now - timedelta(seconds=10 - i)))
                _monitor_event(store, f"{name}-old-{i}", name, now - timedelta(days=2))
                _monitor_event(store, f"{name}-other-{i}", None, now)

    today: dict[str, list[int]] = {"quiet": []}
    store.save_monitor(MonitorRow(name="quiet", source="1", status="stopped", started_at=now.isoformat()))
    add(["bandsaw-1", "bench"])
    expected = {name: [store.event(i) for i in reversed(ids)] for name, ids in today.items()}
    assert refresh() == expected and [len(v) for v in expected.values()] == [0, 2, 2]
    selects = len([s for s in statements if s.lstrip().upper().startswith("SELECT")])
    add(["lathe", "press", "drill"])
    expected = {name: [store.event(i) for i in reversed(ids)] for name, ids in today.items()}
    assert refresh() == expected
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == selects == 2
