"""The console's Monitors tab: its rendering helpers, and in a real browser what an operator sees of the camera
monitors recorded in the console's records (status rows, latest frames, events, alarms, acknowledgements)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, make_video, running_console
from playwright.sync_api import Page, expect, sync_playwright

from app import views
from app.outputs import write_jpeg
from app.records import RecordStore, utc_now
from app.runtime import DESK_CLIP
from app.schema import EventRow, MonitorRow, RecordingRow, RunRow
from app.service import MonitorView

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=timezone.utc)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


def _row(**kw) -> MonitorRow:
    values = dict(name="bandsaw-1", source="rtsp://cam1/stream", status="running", violation=False, hands=1, fps=4.83,
                  frames=120, last_frame_at=_iso(NOW - timedelta(seconds=1)), policy="gloves",
                  started_at=_iso(NOW - timedelta(hours=1)), updated_at=_iso(NOW))  # fmt: skip
    return MonitorRow(**{**values, **kw})


def _event(event_id: int, **kw) -> EventRow:
    values = dict(run_id="r1", item="rtsp://cam1/stream", reason="no gloves", class_name="bare_hand", start_frame=1,
                  end_frame=5, start_time=0.2, end_time=1.0, peak_confidence=0.8734, recorded_at=_iso(NOW),
                  id=event_id)  # fmt: skip
    return EventRow(**{**values, **kw})


# the rendering helpers (pure functions)
def test_cards_show_name_state_fps_banner_and_the_served_latest_frame(tmp_path: Path) -> None:
    frame = write_jpeg(tmp_path / "recordings" / "bandsaw-1" / "latest.jpg", np.zeros((90, 160, 3), np.uint8))
    ok = MonitorView(_row(latest_frame=str(frame)), [], stale=False)
    bad = MonitorView(_row(name="<b>cam</b>", violation=True), [_event(3)], stale=False)
    html = views.monitor_cards([ok, bad], NOW, served=[tmp_path])
    assert 'data-monitor="bandsaw-1" data-state="running"' in html
    assert '<dd class="monitor-fps">4.8</dd>' in html and '<dd class="monitor-frames">120</dd>' in html
    assert f'src="gradio_api/file={frame}?v={frame.stat().st_mtime_ns}"' in html
    assert "&lt;b&gt;cam&lt;/b&gt;" in html and "<b>cam</b>" not in html  # names from the records are escaped
    assert html.count('class="safety-banner monitor-banner" data-state="ok"') == 1
    assert html.count('class="safety-banner monitor-banner" data-state="violation"') == 1
    local = NOW.astimezone().strftime("%H:%M:%S")
    assert f"no gloves (bare_hand): event 3 open since {local}" in html and "no frame yet" in html
    assert '<dd class="monitor-events">1</dd>' in html and '<dd class="monitor-unacknowledged">1</dd>' in html
    # a frame outside the served folders is not linked (Gradio would refuse it): the card says where it is
    elsewhere = views.monitor_cards([ok], NOW, served=[tmp_path / "exports"])
    assert "<img" not in elsewhere and "latest frame not readable here" in elsewhere


def test_a_monitor_with_no_hand_in_view_has_no_verdict() -> None:
    """As the Live tab and the frame's bar: a camera whose latest frame holds no glove or bare hand is not OK."""
    html = views.monitor_cards([MonitorView(_row(hands=0), [], stale=False)], NOW, served=[])
    assert 'data-state="none"' in html and 'data-state="ok"' not in html
    assert ">NO HAND DETECTED<small>policy gloves: nothing to judge in the latest frame</small>" in html
    # an open event stays red whatever the frame holds
    html = views.monitor_cards([MonitorView(_row(hands=0), [_event(7)], stale=False)], NOW, served=[])
    assert 'data-state="violation"' in html


def test_cards_say_why_a_monitor_is_not_watching() -> None:
    stale = MonitorView(_row(violation=True, updated_at=_iso(NOW - timedelta(minutes=5))), [], stale=True)
    dropped = MonitorView(_row(status="reconnecting", message="camera rtsp://admin:pw@cam1/s: timeout"), [], False)
    html = views.monitor_cards([stale, dropped], NOW, served=[])
    assert 'data-state="not responding"' in html and "NOT RESPONDING" in html and "(5 min ago)" in html
    assert 'data-state="reconnecting"' in html and 'data-state="violation"' not in html  # a dead monitor: no verdict
    assert html.count('data-state="offline"') == 2 and "rtsp://***@cam1/s: timeout" in html and "pw@" not in html
    assert views.monitor_cards([], NOW, served=[]) == views.MONITOR_HELP
    assert "python -m app monitor --config monitors.yaml" in views.MONITOR_HELP
    assert "python webui.py --monitors monitors.yaml" in views.MONITOR_HELP


def test_a_violation_before_its_event_opens_says_so_and_names_the_rule() -> None:
    """The monitor's frame breaks the rule, but no event has opened yet (the policy's min_frames): not "act now"."""
    over = _event(4, closed=True)
    html = views.monitor_cards([MonitorView(_row(violation=True), [over], stale=False)], NOW, served=[])
    assert 'data-state="violation"' in html and "VIOLATION IN VIEW" in html
    assert "policy gloves (Gloves required - no bare hands): no event yet" in html
    assert "act now" not in html and "event 4" not in html  # a closed event is not what is in view now
    # two open events: both named, with when the first opened
    opened = [_event(6, recorded_at=_iso(NOW + timedelta(seconds=3))), _event(5, reason="in zone", class_name="hand")]
    html = views.monitor_cards([MonitorView(_row(violation=True), opened, stale=False)], NOW, served=[])
    assert ">VIOLATION<small>in zone (hand), no gloves (bare_hand): events 5, 6 open since " in html
    assert views.policy_description("no-such-policy") == ""


def test_fps_shows_only_while_a_monitor_runs() -> None:
    running = MonitorView(_row(fps=4.83), [], stale=False)
    stopped = MonitorView(_row(name="b", status="stopped", fps=4.83), [], stale=False)
    stale = MonitorView(_row(name="c", fps=3.0, updated_at=_iso(NOW - timedelta(minutes=5))), [], stale=True)
    never = MonitorView(_row(name="d", status="starting", fps=0.0), [], stale=False)
    assert [views.monitor_fps(v) for v in (running, stopped, stale, never)] == [
        "4.8", "not running (last 4.8)", "not running (last 3.0)", "not running"]  # fmt: skip
    html = views.monitor_cards([running, stopped], NOW, served=[])
    assert '<dd class="monitor-fps">4.8</dd>' in html and '<dd class="monitor-fps">not running (last 4.8)</dd>' in html


def _alarm_lines(html: str) -> list[dict]:
    """Each `.monitor-alarm` line: its attributes and its text."""
    found = re.findall(r'<div class="monitor-alarm"([^>]*)>(.*?)</div>', html)
    return [{**dict(re.findall(r'([a-z-]+)="([^"]*)"', attrs)), "text": text} for attrs, text in found]


def test_the_alarm_bar_has_a_line_per_monitor_loud_only_for_open_events() -> None:
    old = _iso(NOW - timedelta(minutes=10))
    at = NOW.astimezone().strftime("%H:%M:%S")
    # newest first, as the records give them: 5 open (long ago), 4 closed just now, 3 acknowledged, 2 closed long
    # ago, 1 open now
    events = [_event(5, recorded_at=old), _event(4, closed=True), _event(3, acknowledged_by="Ada"),
              _event(2, closed=True, recorded_at=old), _event(1)]  # fmt: skip
    [line] = _alarm_lines(views.monitor_alarms([MonitorView(_row(), events, stale=False)], NOW))
    # the newest open event is named; every id still open or opened a moment ago sounds (once, in the page)
    assert line["data-state"] == "open" and line["role"] == "alert" and line["data-monitor"] == "bandsaw-1"
    assert line["data-event"] == "1" and line["data-events"] == "4 1 5"
    assert line["text"] == (f"ALARM bandsaw-1: no gloves (bare_hand) since {at}, event 1 open, not acknowledged; "
                            "3 more not acknowledged (Monitors tab)")  # fmt: skip
    # all closed: one quiet line, not an alarm
    closed = [replace(e, closed=True) for e in events]
    [line] = _alarm_lines(views.monitor_alarms([MonitorView(_row(), closed, stale=False)], NOW))
    assert line["data-state"] == "over" and "role" not in line and line["data-event"] == "4"
    assert line["text"] == (f"bandsaw-1: 4 events not acknowledged, the latest event 4, no gloves (bare_hand) at "
                            f"{at}, over (Monitors tab)")  # fmt: skip
    assert line["data-events"] == "4 1"  # opened a moment ago: they sound (a short event is not missed)
    [line] = _alarm_lines(views.monitor_alarms([MonitorView(_row(), closed[1:2], stale=False)], NOW))
    assert line["text"] == f"bandsaw-1: event 4, no gloves (bare_hand) at {at}, over, not acknowledged (Monitors tab)"
    assert views.monitor_alarms([MonitorView(_row(), [], stale=False)], NOW) == ""
    assert views.monitor_alarms([MonitorView(_row(), events[2:3], stale=False)], NOW) == ""  # all acknowledged


def test_the_alarm_bar_stays_short_with_many_busy_monitors() -> None:
    views_ = [MonitorView(_row(name=f"cam-{i}"), [_event(10 * i + 2, recorded_at=_iso(NOW + timedelta(seconds=i))),
                                                  _event(10 * i + 1, closed=True)], stale=False)
              for i in range(6)]  # fmt: skip
    views_.append(MonitorView(_row(name="quiet"), [_event(99, closed=True)], stale=False))
    lines = _alarm_lines(views.monitor_alarms(views_, NOW))
    assert len(lines) == views.ALARM_LINES + 1
    assert [line.get("data-monitor") for line in lines] == ["cam-5", "cam-4", "cam-3", None]  # newest open first
    assert lines[-1]["data-more"] == "4" and lines[-1]["data-state"] == "open"
    assert (
        lines[-1]["text"]
        == "+4 more monitors with 7 event(s) not acknowledged: cam-2, cam-1, cam-0, quiet (Monitors tab)"
    )
    # the hidden monitors' events sound all the same
    sounded = {int(i) for line in lines for i in line["data-events"].split()}
    assert sounded == {e.id for v in views_ for e in v.events}
    # four monitors: four lines, no "more" line
    assert len(_alarm_lines(views.monitor_alarms(views_[:4], NOW))) == 4


def test_the_event_note_names_the_event_shown_and_what_was_done() -> None:
    from app.service import EventMedia

    at = NOW.astimezone().strftime("%H:%M:%S")
    acked = _event(7, closed=True, acknowledged_by="Ada L", acknowledged_at=_iso(NOW + timedelta(seconds=30)))
    note = views.event_media_note(EventMedia(acked, None, None, "clip being written"), NOW, "bandsaw-1")
    assert note.startswith('<div class="monitor-event-note" data-event="7">')
    later = (NOW + timedelta(seconds=30)).astimezone().strftime("%H:%M:%S")
    assert (f"Event 7 of bandsaw-1 at {at}: no gloves (bare_hand), peak 0.87, closed. Acknowledged by Ada L at "
            f"{later}. No snapshot. Clip being written.") in note  # fmt: skip
    # acknowledging it again under another name: the first acknowledgement stands, and the operator is told
    said = views.acknowledged_already(acked, " Bo ", NOW)
    assert said == f"Event 7 was already acknowledged by Ada L at {later}; Bo is not recorded."
    assert views.acknowledged_already(acked, "", NOW) == f"Event 7 was already acknowledged by Ada L at {later}."
    assert (
        views.acknowledged_already(acked, "Ada L", NOW) == "" and views.acknowledged_already(_event(8), "Bo", NOW) == ""
    )
    note = views.event_media_note(EventMedia(acked, None, None, ""), NOW, "bandsaw-1", said)
    assert '<p class="monitor-ack-feedback"><b>Event 7 was already acknowledged by Ada L' in note
    fresh = views.event_media_note(EventMedia(_event(8), Path("s.jpg"), None, ""), NOW, None)
    assert f"Event 8 at {at}: no gloves (bare_hand), peak 0.87, open. Not acknowledged." in fresh


def test_events_table_and_its_redraw_key() -> None:
    acked = _event(2, acknowledged_by="Ada", acknowledged_at=_iso(NOW), recorded_at=_iso(NOW + timedelta(seconds=5)))
    monitors = [MonitorView(_row(), [acked, _event(1)], False), MonitorView(_row(name="bench"), [_event(7)], False)]
    table = views.monitor_events_table(monitors, NOW)
    assert list(table.columns) == views.MONITOR_EVENT_COLUMNS
    local = NOW.astimezone().strftime("%H:%M:%S")
    at = (NOW + timedelta(seconds=5)).astimezone().strftime("%H:%M:%S")
    assert table.values.tolist()[0] == [2, at, "bandsaw-1", "no gloves", "bare_hand", "0.87", "open", "Ada", local]
    assert sorted(table["Monitor"]) == ["bandsaw-1", "bandsaw-1", "bench"]
    key = views.monitor_events_key(monitors)
    assert views.monitor_events_key(monitors) == key
    monitors[0].events[1].acknowledged_by = "Bo"
    assert views.monitor_events_key(monitors) != key


# in the browser
class FakeMonitor(threading.Thread):
    """Writes a monitor's status row every 0.5 s, as a monitor process does, from `row` (changed by the test)."""

    def __init__(self, store: RecordStore, row: MonitorRow) -> None:
        super().__init__(daemon=True)
        self.store, self.row, self.stopped = store, row, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            self.store.save_monitor(replace(self.row, updated_at=utc_now(), last_frame_at=utc_now()))


def _frame(path: Path, width: int, height: int) -> Path:
    image = np.full((height, width, 3), 60, np.uint8)
    cv2.putText(image, "cam", (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
    return write_jpeg(path, image)


def _alarms(page: Page) -> tuple[int, int]:
    """(alarms sounded, monitor alarms shown) as the page's script counted them."""
    counts = page.evaluate("[document.body.dataset.alarms, document.body.dataset.monitorAlarms]")
    return int(counts[0] or 0), int(counts[1] or 0)


def _card(page: Page, name: str):
    return page.locator(f'#monitor-cards .monitor-card[data-monitor="{name}"]')


def _add_event(store: RecordStore, run_id: str, snapshot: str | None, clip: str | None = None) -> EventRow:
    event = EventRow(run_id=run_id, item="rtsp://cam1/stream", reason="no gloves", class_name="bare_hand",
                     start_frame=3, end_frame=9, start_time=0.6, end_time=1.8, peak_confidence=0.91,
                     snapshot=snapshot, closed=clip is not None, recorded_at=utc_now())  # fmt: skip
    store.save_event(event)
    if clip is not None:
        store.add_recording(RecordingRow(monitor="bandsaw-1", kind="clip", path=clip, started_at=utc_now(),
                                         ended_at=utc_now(), bytes=Path(clip).stat().st_size, run_id=run_id,
                                         event_id=event.id))  # fmt: skip
        store.set_event_clip(event.id, clip)
        event.clip = clip
    return event


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[dict]:
    """A console (no model needed) on records that camera monitors write to, written here directly."""
    exports, weights = tmp_path / "exports", tmp_path / "weights"
    weights.mkdir()
    store = RecordStore(exports / "records.sqlite")
    with running_console("--exports", str(exports), "--weights-dir", str(weights), log=tmp_path / "webui.log") as url:
        yield {"url": url, "exports": exports, "store": store}
    store.close()


@pytest.mark.browser
def test_monitors_tab_shows_what_the_monitors_recorded(monitored: dict) -> None:
    exports, store = monitored["exports"], monitored["store"]
    folder = exports / "recordings" / "bandsaw-1"
    run_dir = exports / "2026-11-30" / "run-1"
    run = RunRow(id="run-1", source="rtsp://cam1/stream", kind="stream", model="gloves-n.pt", model_sha256="0",
                 task="detect", conf=0.25, iou=0.7, imgsz=416, policy="gloves", output_dir=str(run_dir),
                 started_at=utc_now(), host="camera-pc", pid=1, monitor="bandsaw-1")  # fmt: skip
    store.start_run(run)
    write_jpeg(run_dir / "snapshots" / "event-1.jpg", np.full((120, 200, 3), 200, np.uint8))
    clip = make_video(folder / "clip-1.mp4", frames=10)
    row = MonitorRow(name="bandsaw-1", source="rtsp://cam1/stream", status="running", violation=True, fps=4.8,
                     frames=300, run_id="run-1", policy="gloves", started_at=utc_now(),
                     latest_frame=str(_frame(folder / "latest.jpg", 320, 180)), host="camera-pc")  # fmt: skip
    long_ago = _iso(datetime.now(timezone.utc) - timedelta(minutes=10))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
        page.goto(monitored["url"])
        page.get_by_role("tab", name="Monitors").click()
        # no monitor has run on these records: how to start one; no event chosen (an empty box, not 0)
        expect(page.locator("#monitor-cards")).to_contain_text("python -m app monitor --config monitors.yaml")
        box = page.locator("#monitor-event input, #monitor-event textarea").first
        expect(box).to_have_value("")

        # monitors start writing their status (one of them long dead): shown without a reload
        store.save_monitor(replace(row, name="old-cam", violation=False, updated_at=long_ago, latest_frame=None))
        monitor = FakeMonitor(store, row)
        monitor.start()
        try:
            card = _card(page, "bandsaw-1")
            expect(card).to_have_attribute("data-state", "running", timeout=15000)
            expect(card.locator(".monitor-fps")).to_have_text("4.8")
            # the frame breaks the rule, no event has opened yet
            expect(card.locator(".monitor-banner")).to_have_attribute("data-state", "violation")
            expect(card.locator(".monitor-banner")).to_have_text(
                "VIOLATION IN VIEWpolicy gloves (Gloves required - no bare hands): no event yet"
            )
            expect(card.locator(".monitor-policy")).to_have_text("gloves")
            page.wait_for_function("document.querySelector('.monitor-card .monitor-frame')?.naturalWidth === 320")
            expect(card.locator(".monitor-frame")).to_have_css("filter", "none")  # a watching camera's frame
            expect(_card(page, "old-cam")).to_have_attribute("data-state", "not responding")
            expect(_card(page, "old-cam").locator(".monitor-state")).to_have_text("not responding")
            expect(_card(page, "old-cam").locator(".monitor-fps")).to_have_text("not running (last 4.8)")
            assert _alarms(page) == (0, 0)

            # a short event (over before the next refresh): one alarm sound, however often the tab redraws, and a
            # quiet line naming it as it was recorded
            first = _add_event(store, "run-1", "snapshots/event-1.jpg", str(clip))
            bar = page.locator("#monitor-alarms .monitor-alarm")
            expect(bar).to_have_text(
                f"bandsaw-1: event {first.id}, no gloves (bare_hand) at {_clock(first)}, over, not acknowledged "
                "(Monitors tab)", timeout=10000,
            )  # fmt: skip
            expect(bar).to_have_attribute("data-state", "over")
            time.sleep(2.5)  # refreshes
            assert _alarms(page) == (1, 1)
            rows = _table_rows(page)
            assert rows[0][0] == str(first.id) and rows[0][2:8] == ["bandsaw-1", "no gloves", "bare_hand", "0.91",
                                                                    "closed", ""]  # fmt: skip

            # muted: the next event is shown, not sounded; still one line for the monitor, now loud
            page.locator("#alarm-mute input").check()
            second = _add_event(store, "run-1", None)
            expect(bar).to_have_attribute("data-event", str(second.id), timeout=10000)
            expect(bar).to_have_count(1)
            expect(bar).to_have_attribute("data-state", "open")
            expect(bar).to_have_text(
                f"ALARM bandsaw-1: no gloves (bare_hand) since {_clock(second)}, event {second.id} open, not "
                "acknowledged; 1 more not acknowledged (Monitors tab)"
            )
            expect(card.locator(".monitor-banner")).to_have_text(
                f"VIOLATIONno gloves (bare_hand): event {second.id} open since {_clock(second)}"
            )
            time.sleep(1.5)
            assert _alarms(page) == (1, 2)

            page.click("#monitor-ack")  # no event chosen yet
            _toast(page, "Select an event")
            # the operator types the first event's number and presses Enter: its note, snapshot and clip
            box.fill(str(first.id))
            box.press("Enter")
            note = page.locator("#monitor-event-note")
            expect(note).to_contain_text(f"Event {first.id} of bandsaw-1 at {_clock(first)}: no gloves", timeout=10000)
            page.wait_for_function("document.querySelector('#monitor-snapshot img')?.naturalWidth === 200")
            # a number not in the records is said, and the box goes back to the event still shown
            box.fill("99999")
            box.press("Enter")
            _toast(page, "no event 99999 in the records")
            expect(box).to_have_value(str(first.id))
            expect(note).to_contain_text(f"Event {first.id} of bandsaw-1")
            page.wait_for_function(
                "(v => v && (v.readyState > 0 || v.duration > 0))(document.querySelector('#monitor-clip video'))"
            )
            # the table marks the event shown, also once a new event pushes the rows down
            loaded_row = page.locator("#monitor-events .virtual-row.loaded-event")
            expect(loaded_row.locator("[role=gridcell]").first).to_have_text(str(first.id))
            page.locator("#monitor-events .virtual-row", has_text="closed").locator("[role=gridcell]").nth(2).click()
            third = _add_event(store, "run-1", None)
            _wait_rows(page, 3)
            expect(loaded_row).to_have_count(1)
            expect(loaded_row.locator("[role=gridcell]").first).to_have_text(str(first.id))
            expect(box).to_have_value(str(first.id))

            # acknowledging: without a name it is refused
            page.click("#monitor-ack")
            _toast(page, "say who acknowledges")
            # a number typed but not shown (no Enter) is shown, not acknowledged
            page.locator("#monitor-ack-name textarea, #monitor-ack-name input").first.fill("Ada L")
            box.fill(str(second.id))
            page.evaluate("document.querySelector('#monitor-ack').click()")  # the box keeps the focus: no blur
            _toast(page, f"Event {second.id} is shown now, not acknowledged")
            expect(note).to_contain_text(f"Event {second.id} of bandsaw-1")
            expect(note).to_contain_text("Clip still recording")  # the open event has no clip yet: the note says why
            assert store.event(second.id).acknowledged_by is None and store.event(first.id).acknowledged_by is None
            # the event shown is acknowledged: the table and the note say who and when
            page.locator("#monitor-events .virtual-row", has_text="closed").locator("[role=gridcell]").nth(2).click()
            expect(note).to_contain_text(f"Event {first.id} of bandsaw-1")
            page.click("#monitor-ack")
            expect(page.locator("#monitor-events .virtual-row", has_text="closed")).to_contain_text("Ada L")
            expect(note).to_contain_text("Acknowledged by Ada L at")
            acked = store.event(first.id)
            assert acked.acknowledged_by == "Ada L" and store.event(second.id).acknowledged_by is None
            expect(bar).to_have_text(re.compile(rf"event {third.id} open, not acknowledged; 1 more not acknowledged"))
            # again, under another name: the first acknowledgement stands, and the operator is told so
            page.locator("#monitor-ack-name textarea, #monitor-ack-name input").first.fill("Bo")
            page.click("#monitor-ack")
            said = f"Event {first.id} was already acknowledged by Ada L at {_clock(acked, acknowledged=True)}"
            _toast(page, said)
            expect(note.locator(".monitor-ack-feedback")).to_have_text(f"{said}; Bo is not recorded.")
            assert store.event(first.id).acknowledged_by == "Ada L"
            # leaving the box shows the event typed in it, as Enter does
            box.fill(str(third.id))
            box.press("Tab")
            expect(note).to_contain_text(f"Event {third.id} of bandsaw-1 at {_clock(third)}")

            # the camera drops: the monitor's new status and frame show within seconds, without a reload
            monitor.row = replace(row, status="reconnecting", violation=False, message="camera: no frame for 10 s",
                                  latest_frame=str(_frame(folder / "latest.jpg", 240, 136)))  # fmt: skip
            expect(card).to_have_attribute("data-state", "reconnecting", timeout=5000)
            expect(card.locator(".monitor-message")).to_have_text("camera: no frame for 10 s")
            expect(card.locator(".monitor-banner")).to_have_attribute("data-state", "offline")
            expect(card.locator(".monitor-fps")).to_have_text("not running (last 4.8)")
            page.wait_for_function(
                "document.querySelector('.monitor-card .monitor-frame')?.naturalWidth === 240", timeout=5000
            )
            # its last frame is greyed: the verdict burned into it is not the camera's now
            expect(card.locator(".monitor-frame")).to_have_css("filter", "grayscale(1)")
            assert _alarms(page) == (1, 3)
        finally:
            monitor.stopped.set()
            monitor.join()
            browser.close()


def _clock(event: EventRow, acknowledged: bool = False) -> str:
    """A recorded time as the console shows it (this machine's clock, today)."""
    return views.local_time(event.acknowledged_at if acknowledged else event.recorded_at, datetime.now(timezone.utc))


def _toast(page: Page, text: str) -> None:
    """A warning toast with this text shows; it is closed."""
    toast = page.locator(".toast-body").filter(has_text=text)
    expect(toast).to_be_visible(timeout=10000)
    toast.locator(".toast-close").first.click()


def _wait_rows(page: Page, count: int) -> None:
    expect(page.locator("#monitor-events .virtual-row")).to_have_count(count, timeout=10000)


def _table_rows(page: Page) -> list[list[str]]:
    expect(page.locator("#monitor-events .virtual-row [role=gridcell]").first).not_to_have_text("", timeout=10000)
    return page.evaluate(
        "Array.from(document.querySelectorAll('#monitor-events .virtual-row')).map(row => "
        "Array.from(row.querySelectorAll('[role=gridcell]')).map(cell => cell.textContent.trim()))"
    )


@pytest.mark.browser
def test_monitors_tab_shows_a_real_monitor_started_by_the_console(tmp_path: Path, shared_data: Path) -> None:
    """`webui.py --monitors`: a looping video watched with the shipped model, shown as the monitor records it."""
    exports = tmp_path / "exports"
    config = tmp_path / "monitors.yaml"
    config.write_text(
        f"recordings: {{folder: {exports / 'recordings'}}}\n"
        "monitors:\n"
        f"  - {{name: desk, source: {DESK_CLIP}, loop: true, imgsz: 160, fps: 4, "
        "policy: gloves}\n"
    )
    args = ["--exports", str(exports), "--monitors", str(config)]
    with running_console(*args, log=tmp_path / "webui.log") as url, sync_playwright() as p:
        store = RecordStore(exports / "records.sqlite")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
            page.goto(url)
            page.get_by_role("tab", name="Monitors").click()
            card = _card(page, "desk")
            expect(card).to_have_attribute("data-state", "running", timeout=60000)
            page.wait_for_function(  # the monitor's own annotated frame, at the video's size
                "document.querySelector('.monitor-card[data-monitor=desk] .monitor-frame')?.naturalWidth === 720",
                timeout=30000,
            )
            expect(card.locator(".monitor-policy")).to_have_text("gloves")
            # a running monitor's verdict: none where its latest frame holds no hand the model sees (at 160 px)
            expect(card.locator(".monitor-banner")).to_have_attribute("data-state", re.compile("^(ok|violation|none)$"))
            shown = int(card.locator(".monitor-frames").inner_text())
            expect(card.locator(".monitor-frames")).not_to_have_text(str(shown), timeout=10000)  # it keeps going
            row = store.monitors()[0]
            assert row.name == "desk" and row.status == "running" and row.fps > 0
            assert 0 < float(card.locator(".monitor-fps").inner_text()) <= 4.5
            events = store.monitor_events(["desk"])["desk"]
            expect(card.locator(".monitor-events")).to_have_text(re.compile(rf"^{len(events)}$|^{len(events) + 1}$"))
        finally:
            browser.close()
    assert store.monitors()[0].status == "stopped"  # the console stopped its monitor as it ended
    store.close()
