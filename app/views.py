"""What the console shows, rendered from the service's results: verdict banners, tables, the counts chart, the
settings stamp of a result and the browser-side alarm. Pure functions of their inputs (no Gradio callbacks)."""

from __future__ import annotations

import functools
import html
import json
import math
import os
import re
import urllib.parse
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np
import pandas as pd

from .engine import settings_line
from .errors import GloveSafetyError
from .policy import NO_HAND, NO_VERDICT, OK, VIOLATION, FrameStatus, SafetyEvent, SafetyPolicy
from .results import FrameResult
from .schema import DATETIME, RUN_TALLIES, DetectionRow, EventRow, Row, RunRow, local_zone, score_text, with_tallies
from .service import LIVE_GAP_S
from .sources import redact

if TYPE_CHECKING:  # the service imports nothing from here; these are for type hints only
    from .pipeline import RunSummary
    from .service import DetectionService, EventMedia, LiveSession, MonitorView

NEUTRAL = "none"  # no verdict (no policy, a camera stopped); OK and VIOLATION are the pipeline's
# No live result for as long as the pause that ends a live run: the live banner stops showing a verdict (PAGE_JS).
# Nothing says why (the camera stopped with its own button, a dropped connection, a model still loading).
LIVE_STALE_S = LIVE_GAP_S
LIVE_STALE_TEXT = (
    "No live result",
    f"none for {LIVE_STALE_S:g} s: the last verdict no longer holds",
)  # headline, detail
CSS = """
.safety-banner {padding: 14px 20px; border-radius: 8px; font-size: 1.5em; font-weight: bold; color: white}
.safety-banner[data-state=ok] {background: #2e7d32}
.safety-banner[data-state=none] {background: #546e7a}
.safety-banner[data-state=violation] {background: #c62828; animation: glove-flash 0.8s step-start 0s 6}
@keyframes glove-flash {50% {background: #ff1744}}
.safety-banner small {display: block; font-size: 0.6em; font-weight: normal; color: white !important}
table th, table th span {white-space: nowrap !important; word-break: keep-all !important}
.glove-chart {font-family: sans-serif}
.glove-chart .bar-row {display: flex; align-items: center; gap: 8px; margin: 4px 0}
.glove-chart .bar-label {width: 9em; text-align: right}
.glove-chart .bar {background: #1565c0; height: 1.4em; min-width: 2px}
.safety-banner[data-state=offline] {background: #ef6c00}
.monitor-grid {display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px}
.monitor-card {border: 1px solid #9e9e9e55; border-radius: 8px; padding: 10px}
.monitor-card h3 {margin: 0 0 6px 0}
.monitor-card .safety-banner {font-size: 1.2em; padding: 8px 14px}
.monitor-frame {width: 100%; aspect-ratio: 16 / 9; object-fit: contain; background: #000; margin: 6px 0;
  border-radius: 4px}
/* a monitor not watching keeps its last frame, greyed: its burned-in verdict is history, not now */
.monitor-card:not([data-state=running]) .monitor-frame {filter: grayscale(1); opacity: 0.5}
.monitor-noframe {padding: 40px 10px; text-align: center; background: #00000022; margin: 6px 0; border-radius: 4px}
.monitor-facts {display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0}
.monitor-facts dt {font-weight: bold}
.monitor-facts dd {margin: 0; overflow-wrap: anywhere}
.monitor-message {margin-top: 6px; color: #ef6c00; overflow-wrap: anywhere}
.monitor-alarm {padding: 5px 12px; margin: 3px 0; border-radius: 6px; background: #c62828; color: white;
  font-weight: bold; animation: glove-flash 0.8s step-start 0s 6; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis}
.monitor-alarm[data-state=over] {background: transparent; color: inherit; border: 1px solid #ef6c00;
  font-weight: normal; animation: none}
#live-status[data-stale=true] .safety-banner {background: #546e7a !important; animation: none; font-size: 0}
#live-status[data-stale=true] .safety-banner small {display: none}
#live-status[data-stale=true] .safety-banner::before {content: __LIVE_STALE_HEADLINE__; display: block;
  font-size: 1.5rem}
#live-status[data-stale=true] .safety-banner::after {content: __LIVE_STALE_DETAIL__; display: block;
  font-size: 0.9rem; font-weight: normal}
#monitor-events .body-cell.cell-selected {box-shadow: none !important}
#monitor-events .virtual-row.loaded-event, #monitor-events .virtual-row.loaded-event .body-cell {
  background: var(--color-accent-soft) !important; font-weight: bold}
""".replace("__LIVE_STALE_HEADLINE__", json.dumps(LIVE_STALE_TEXT[0])).replace(
    "__LIVE_STALE_DETAIL__", json.dumps(LIVE_STALE_TEXT[1])
)  # JSON strings of ASCII text are CSS strings
PAGE_JS = """
<script>
// Enter in a number box commits it as leaving the box does: Gradio then puts a typed 1.5 back into the slider's
// range, instead of showing 1.5 beside a slider at 1.
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && e.target.matches && e.target.matches("input[type=number]")) e.target.blur();
}, true);
// An audible alarm when a violation banner appears (the browser's own sound: a WebAudio beep), unless muted.
(() => {
  let ctx = null;
  const beep = () => {
    ctx = ctx || new (window.AudioContext || window.webkitAudioContext)();
    if (ctx.state === "suspended") ctx.resume().catch(() => {});  // made before the first click: may play now
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = "square"; osc.frequency.value = 880; gain.gain.value = 0.2;
    osc.connect(gain).connect(ctx.destination); osc.start(); osc.stop(ctx.currentTime + 0.4);
  };
  const seen = new WeakSet();
  // A camera monitor's alarm is keyed on event ids: the alarm bar is redrawn every second with one line per
  // monitor, each listing in data-events the ids that alarm now (open, or opened a moment ago); every id alarms
  // once per page however often it is drawn, even one hidden behind another event's line.
  const seenEvents = new Set();
  const count = (key) => { document.body.dataset[key] = String(Number(document.body.dataset[key] || 0) + 1); };
  new MutationObserver(() => {
    document.querySelectorAll(".monitor-alarm[data-events]").forEach((el) => {
      el.dataset.events.split(" ").filter((id) => id && !seenEvents.has(id)).forEach((id) => {
        seenEvents.add(id);
        count("monitorAlarms");
        if (document.querySelector("#alarm-mute input")?.checked) return;
        count("alarms");
        try { beep(); } catch (e) { console.warn("alarm sound unavailable", e); }
      });
    });
    // the monitors' own banners are redrawn every second: their alarm is the one above
    document.querySelectorAll(".safety-banner[data-state=violation]:not(.monitor-banner)").forEach((el) => {
      if (seen.has(el)) return;
      seen.add(el);
      const muted = document.querySelector("#alarm-mute input")?.checked;
      document.body.dataset.alarms = String(Number(document.body.dataset.alarms || 0) + (muted ? 0 : 1));
      if (!muted) { try { beep(); } catch (e) { console.warn("alarm sound unavailable", e); } }
    });
  }).observe(document.documentElement, {childList: true, subtree: true});
})();
// The live banner holds a frame's verdict only while results come: if none came for LIVE_STALE_S (the camera was
// stopped with its own button, the connection dropped), it says so in grey instead of keeping the last one up.
// Each result rewrites the live info (its frame count), so a change there is a result.
(() => {
  let last = null, at = Date.now();
  setInterval(() => {
    const info = document.querySelector("#live-info")?.textContent ?? "";
    if (info !== last) { last = info; at = Date.now(); }
    const box = document.querySelector("#live-status"), banner = box?.querySelector(".safety-banner");
    if (!box) return;
    const verdict = !!banner && "frame" in banner.dataset;  // a frame's verdict, not "Camera stopped"
    box.dataset.stale = String(verdict && Date.now() - at > __LIVE_STALE_MS__);
  }, 500);
})();
// The Monitors tab's events table marks the event whose note, snapshot and clip are shown (the note names it), not
// a row position: Gradio's own selection stays on a position when new events push the rows down.
setInterval(() => {
  const loaded = document.querySelector("#monitor-event-note [data-event]")?.dataset.event || "";
  document.querySelectorAll("#monitor-events .virtual-row").forEach((row) => {
    const id = row.querySelector("[role=gridcell]")?.textContent.trim();
    row.classList.toggle("loaded-event", loaded !== "" && id === loaded);
  });
}, 250);
</script>
""".replace("__LIVE_STALE_MS__", f"{LIVE_STALE_S * 1000:.0f}")


# Stop and save stops the page's webcam stream as its own button would (Gradio's webcam shows "stop recording" while
# it streams); a camera already stopped is left alone.
STOP_CAMERA_JS = "() => { document.querySelector('#cam [title=\"stop recording\"]')?.closest('button')?.click(); }"


def rgb(image: np.ndarray | None) -> np.ndarray | None:
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def clamp(value: object, low: float, high: float) -> float:
    """A typed threshold inside the slider's range (a typed 1.5 is 1.0, -1 is the minimum, text is the minimum)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return low
    return low if math.isnan(number) else min(max(number, low), high)


def banner(status: FrameStatus | None, has_policy: bool, open_event: SafetyEvent | None = None) -> str:
    """The verdict of a camera's latest frame: neutral without a policy (there is no verdict), VIOLATION while the
    frame breaks the rule or the policy's event is still open (a hand the model misses for a frame or two does not
    flash OK in the middle of a violation), OK when hands were judged, else neutral: no hand to judge."""
    if not has_policy:
        return _banner(NEUTRAL, *NO_VERDICT, frame=True)
    if status is not None and not status.ok:
        return _banner(VIOLATION, "VIOLATION: " + ", ".join(status.reasons), "act now: stop the machine", frame=True)
    if open_event is not None:
        return _banner(VIOLATION, f"VIOLATION: {open_event.reason}",
                       "event still open: not seen in this frame, it closes after the policy's cooldown",
                       frame=True)  # fmt: skip
    if status is not None and not status.judged:
        return _banner(NEUTRAL, NO_HAND, "nothing to judge in this frame: no hand in view, or none the model sees",
                       frame=True)  # fmt: skip
    return _banner(OK, "OK", "no violation in this frame", frame=True)


def run_banner(summary: RunSummary) -> str:
    """The verdict of a whole run (`RunSummary.verdict`), or of its frames so far while it runs."""
    state, headline, detail = summary.verdict()
    return _banner(state or NEUTRAL, headline, detail)


def _banner(state: str, text: str, detail: str, frame: bool = False) -> str:
    """`frame`: the verdict of one camera frame (`banner`), which the page marks stale when results stop coming."""
    return (f'<div class="safety-banner" data-state="{state}"{" data-frame" if frame else ""} role="status">'
            f"{html.escape(text)}<small>{html.escape(detail)}</small></div>")  # fmt: skip


def table(rows: list[Row], row_type: type[Row]) -> pd.DataFrame:
    """Rows under their console columns' titles (what the workbook has, same values)."""
    return pd.DataFrame([r.console_values() for r in rows], columns=[c.title for c in row_type.console_columns()])


def detections_table(rows: list[DetectionRow]) -> pd.DataFrame:
    return table(rows, DetectionRow)


def counts_table(frame: FrameResult | None) -> pd.DataFrame:
    return pd.DataFrame(sorted(frame.counts().items()) if frame else [], columns=["class", "count"])


def chart(counts: dict[str, int]) -> str:
    """Detections per class as HTML bars, drawn from the same counts as the table (no client-side state)."""
    if not counts:
        return '<div class="glove-chart" data-counts="{}">No detections.</div>'
    top = max(counts.values())
    bars = "".join(
        f'<div class="bar-row" data-class="{html.escape(k)}" data-count="{v}"><span class="bar-label">'
        f'{html.escape(k)}</span><span class="bar" style="width:{max(1, round(60 * v / top))}%"></span>'
        f"<span>{v}</span></div>"
        for k, v in sorted(counts.items())
    )
    return f'<div class="glove-chart"><b>Detections per class</b>{bars}</div>'


def stamp(record: RunRow) -> str:
    """The settings that produced a result, in one line (`engine.settings_line`, the model, policy and runtime bold)."""
    line = settings_line(record, lambda text: f"**{text}**")
    return line[0].upper() + line[1:]


def result_values(service: DetectionService, summary: RunSummary) -> list:
    """Banner, detections table, chart, events table, notes (settings stamp, where saved) and workbook of a run."""
    rows = service.store.detections(summary.run_id)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.class_name] = counts.get(r.class_name, 0) + 1
    notes = [stamp(summary.record),
             f"{len(rows)} detection(s) in {summary.frames} frame(s). Saved to `{summary.output_dir}` "
             f"(run `{summary.run_id}`)"]  # fmt: skip
    notes += [f"Skipped {b.name}: {b.reason}" for b in summary.skipped] + [f"Warning: {w}" for w in summary.warnings]
    notes += [f"Note: {n}" for n in summary.notes]
    if summary.tracks:
        notes.append("Unique tracked: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.tracks.items())))
    workbook = str(service.workbook(run_id=summary.run_id))
    return [run_banner(summary), detections_table(rows), chart(counts), table(summary.events, EventRow),
            "\n\n".join(notes), workbook]  # fmt: skip


def no_result() -> list:
    """The result widgets (`result_values`' order) with no run in them: empty tables keep their headers."""
    return ["", detections_table([]), "", table([], EventRow), "", None]


def runs_table(runs: list[RunRow], tallies: dict[str, tuple[int, int, str]] | None = None) -> pd.DataFrame:
    """History: short sources and model names, so status, frames and policy stay in view; each run's
    `RUN_TALLIES` (`DetectionService.run_counts`) show the runs that violated, and those with no hand to judge,
    without opening each one."""
    columns = RunRow.console_columns()
    tallies = tallies or {}
    values = []
    for r in runs:
        row = [Path(v).name if c.name in ("source", "model") and v else local_datetime(v) if c.kind == DATETIME
               else v for c, v in zip(columns, r.console_values(), strict=True)]  # fmt: skip
        values.append(with_tallies(columns, row, tallies.get(r.id, (0, 0, ""))))
    return pd.DataFrame(values, columns=with_tallies(columns, [c.title for c in columns], RUN_TALLIES))


NOT_LISTED = "Runs: not listed (the filters typed were refused: see the message)"
"""The History table's label where the filters were refused: the runs of earlier filters are not shown under them."""


def runs_label(runs: list[RunRow], dated: bool, source: str | None) -> str:
    """The History table's label: how many runs are listed, and why there may be none (`dated`: a From or an Until
    was given)."""
    if runs:
        return f"Runs: {len(runs)}, newest first; times in {local_zone()}"
    within = " in these dates" if dated else ""
    if source and source.strip():
        return (f"Runs: none from source {source.strip()!r}{within} (a source matches as stored, or by its file name "
                "with its extension)")  # fmt: skip
    return f"Runs: none{within or ' recorded yet'}"


def model_choices(service: DetectionService) -> list[tuple[str, str]]:
    """The model list: short names shown, full paths as values."""
    return [(p.name, str(p)) for p in service.available_models()]


def live_info(session: LiveSession) -> str:
    s = session.run.summary
    _, verdict, _ = s.verdict()
    return (f"Live run `{s.run_id}`: {s.frames} frames. {verdict}. {session.results_per_s():.1f} results/s, "
            f"{session.latency_ms():.0f} ms from frame to result. "
            f"{stamp(s.record)}")  # fmt: skip


def camera_stopped() -> str:
    """The live banner once the camera's run is saved: no verdict stays up for a camera that is not watching."""
    return _banner(NEUTRAL, "Camera stopped", "no verdict: nothing is being watched; start the camera for a new run")


def saved_live(summary: RunSummary | None) -> str:
    if summary is None:
        return "No live run to save."
    _, verdict, _ = summary.verdict()
    return (f"Saved live run `{summary.run_id}`: {summary.frames} frames. {verdict}. Files in "
            f"`{summary.output_dir}`. The camera is stopped; starting it again begins a new run.")  # fmt: skip


# camera monitors (the Monitors tab)
MONITOR_HELP = (
    '<div class="monitor-help"><b>No camera monitor has run on these records yet.</b> Start one beside the console, '
    "on the same records:<pre>python -m app monitor --config monitors.yaml</pre>or with the console itself: "
    "<code>python webui.py --monitors monitors.yaml</code>. The config lists the cameras (name, source, policy, fps); "
    'see the README, "Monitoring cameras". Each monitor then shows here with its latest frame, its verdict and '
    "today's events.</div>"
)
ALARM_RECENT_S = 60.0
"""An unacknowledged event sounds while it is open and for this long after it opened (a short one is not missed)."""
ALARM_LINES = 3
"""The alarm bar shows at most this many monitors (one line each), then one line for the rest."""
MONITOR_EVENT_COLUMNS = ["Event", "Time", "Monitor", "Reason", "Class", "Peak", "State", "Acknowledged by",
                         "Acknowledged at"]  # fmt: skip
FILE_ROUTE = "gradio_api/file="  # relative to the page, so a console behind a path prefix works too


def file_url(path: str | Path | None, served: Sequence[str | Path]) -> str | None:
    """The console's URL of a file under one of the `served` folders (`launch(allowed_paths=...)`), with its
    modification time as a cache-buster; None where it is not there or not served."""
    if not path:
        return None
    path = Path(os.path.abspath(path))
    if not any(path.is_relative_to(os.path.abspath(root)) for root in served):
        return None
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        return None
    return f"{FILE_ROUTE}{urllib.parse.quote(str(path))}?v={version}"


def markdown_text(text: str) -> str:
    """Text for a Gradio Markdown that shows as itself: names and counts read from a model's file make no link,
    image, HTML or emphasis."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~&])", r"\\\1", text)


def local_datetime(iso: str | None) -> str:
    """A stored UTC time as this machine's local date and clock time, `2026-12-01 19:10:48`, as the Monitors tab
    and the workbook show times."""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S") if iso else ""


def local_time(iso: str | None, now: datetime) -> str:
    """A stored UTC time as this machine's local clock time: `14:03:07` today, else with its date."""
    if not iso:
        return ""
    at = datetime.fromisoformat(iso).astimezone()
    return at.strftime("%H:%M:%S" if at.date() == now.astimezone().date() else "%Y-%m-%d %H:%M:%S")


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    seconds = max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    age = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.0f} h"  # fmt: skip
    return f"{local_time(iso, now)} ({age} ago)"


def monitor_banner(view: MonitorView, now: datetime) -> str:
    """A monitor's verdict in the banner's look: VIOLATION / OK while it runs, else what keeps it from watching."""
    row, state = view.row, view.state
    if state != "running":
        look = NEUTRAL if state in ("starting", "stopped") else "offline"
        detail = redact(row.message) or {
            "not responding": f"no status since {_ago(row.updated_at, now)}: is its "
                              "process running?",
            "stopped": "not watching",
            "starting": "opening the camera",
        }.get(state, "")  # fmt: skip
        return _monitor_banner(look, state.upper(), detail)
    if not row.policy:
        return _monitor_banner(NEUTRAL, "No safety policy", "detections only: give the monitor a policy")
    opened = sorted((e for e in view.events if not e.closed and e.id is not None), key=lambda e: e.id)
    if view.violation or opened:  # an open event stays red through a frame or two the model misses, as the Live tab
        if not opened:  # the frame breaks the rule; an event opens only if it lasts (the policy's min_frames)
            rule = policy_description(row.policy)
            return _monitor_banner(VIOLATION, "VIOLATION IN VIEW",
                                   f"policy {row.policy}{f' ({rule})' if rule else ''}: no event yet")  # fmt: skip
        reasons = ", ".join(sorted({f"{e.reason} ({e.class_name})" for e in opened}))
        since = local_time(opened[0].recorded_at, now)
        which = f"event {opened[0].id}" if len(opened) == 1 else "events " + ", ".join(str(e.id) for e in opened)
        return _monitor_banner(VIOLATION, "VIOLATION", f"{reasons}: {which} open since {since}")
    if not row.hands:  # as the Live tab and the frame's bar: no hand to judge is no verdict
        return _monitor_banner(NEUTRAL, NO_HAND.upper(), f"policy {row.policy}: nothing to judge in the latest frame")
    return _monitor_banner(OK, "OK", f"policy {row.policy}")


def policy_choices(none: str, names: list[str]) -> list[tuple[str, str]]:
    """The policy list: each name with its rule in its own words (`gloves (Gloves required - no bare hands)`), so
    "gloves" is not taken for "gloves forbidden"; the names are the values."""
    return [(f"{none} (detections only, no verdict)", none)] + [
        (f"{n} ({d})" if (d := policy_description(n)) else n, n) for n in names
    ]


@functools.lru_cache(maxsize=64)
def policy_description(name: str | None) -> str:
    """A policy's own words for its rule (`Gloves required - no bare hands`), or "" where this console cannot read
    it (a policy file of the monitor's machine)."""
    if not name:
        return ""
    try:
        return SafetyPolicy.load(name).description
    except (GloveSafetyError, OSError):
        return ""


def zone_placeholder(policy: str | None) -> str:
    """What the danger-zone box shows while empty: the zone the chosen policy applies, as the box takes one."""
    try:
        zone = SafetyPolicy.load(policy).zone if policy else None
    except (GloveSafetyError, OSError):
        zone = None
    if zone is None:
        return "this policy has no zone: the whole frame counts" if policy else "no policy: no zone"
    return "policy's own: " + " ".join(f"{x:g},{y:g}" for x, y in zone)


def _monitor_banner(state: str, text: str, detail: str) -> str:
    return _banner(state, text, detail).replace('class="safety-banner"', 'class="safety-banner monitor-banner"', 1)


def monitor_cards(views: list[MonitorView], now: datetime, served: Sequence[str | Path]) -> str:
    """One card per monitor: name, banner, latest frame (served as a file, never re-encoded), state, fps, last
    frame and why it is not running; the help text when no monitor has run on these records."""
    if not views:
        return MONITOR_HELP
    cards = []
    for view in views:
        row, name = view.row, html.escape(view.row.name)
        url = file_url(row.latest_frame, served)
        if url:
            frame = f'<img class="monitor-frame" src="{html.escape(url)}" alt="latest frame of {name}">'
        else:
            why = "no frame yet"
            if row.latest_frame:  # on another machine (shared records), or outside the folders this console serves
                why = f"latest frame not readable here: {row.latest_frame} on {row.host or 'an unknown host'}"
            frame = f'<div class="monitor-noframe">{html.escape(why)}</div>'
        waiting = sum(map(unacknowledged, view.events))
        facts = [("State", "monitor-state", view.state), ("fps", "monitor-fps", monitor_fps(view)),
                 ("Last frame", "monitor-last", _ago(row.last_frame_at, now)),
                 ("Frames", "monitor-frames", str(row.frames)), ("Policy", "monitor-policy", row.policy or "none"),
                 ("Source", "monitor-source", redact(row.source)),
                 ("Events today", "monitor-events", str(len(view.events))),
                 ("Not acknowledged", "monitor-unacknowledged", str(waiting))]  # fmt: skip
        dl = "".join(f'<dt>{t}</dt><dd class="{c}">{html.escape(v)}</dd>' for t, c, v in facts)
        message = f'<div class="monitor-message">{html.escape(redact(row.message))}</div>' if row.message else ""
        cards.append(
            f'<div class="monitor-card" data-monitor="{name}" data-state="{html.escape(view.state)}">'
            f'<h3>{name}</h3>{monitor_banner(view, now)}{frame}<dl class="monitor-facts">{dl}</dl>{message}</div>'
        )
    return f'<div class="monitor-grid">{"".join(cards)}</div>'


def monitor_fps(view: MonitorView) -> str:
    """The frame rate of a running monitor; of one that is not running, the last rate it had, said as such."""
    if view.state == "running":
        return f"{view.row.fps:.1f}"
    return f"not running (last {view.row.fps:.1f})" if view.row.fps else "not running"


def unacknowledged(event: EventRow) -> bool:
    """Whether a recorded event still waits for someone to acknowledge it."""
    return event.id is not None and not event.acknowledged_by


def sounding(event: EventRow, now: datetime) -> bool:
    """Whether an event's alarm sounds: unacknowledged, and open or opened in the last `ALARM_RECENT_S` (a short
    event is not missed)."""
    if not unacknowledged(event):
        return False
    return not event.closed or (now - datetime.fromisoformat(event.recorded_at)).total_seconds() < ALARM_RECENT_S


class AlarmLine(NamedTuple):
    """A monitor's line in the alarm bar."""

    monitor: str
    event: EventRow  # its newest unacknowledged open event, else its newest unacknowledged one
    unacknowledged: int  # today's events of the monitor not acknowledged
    sounding: list[int]  # the ids that sound now (`sounding`)

    @property
    def loud(self) -> bool:
        return not self.event.closed


def alarm_lines(views: list[MonitorView], now: datetime) -> list[AlarmLine]:
    """One line per monitor with unacknowledged events today: monitors with an open one first, newest first."""
    lines = []
    for v in views:
        unacked = sorted(filter(unacknowledged, v.events),
                         key=lambda e: (e.recorded_at, e.id), reverse=True)  # fmt: skip
        if unacked:
            shown = next((e for e in unacked if not e.closed), unacked[0])
            lines.append(AlarmLine(v.row.name, shown, len(unacked), [e.id for e in unacked if sounding(e, now)]))
    return sorted(lines, key=lambda line: (line.loud, line.event.recorded_at), reverse=True)


def monitor_alarms(views: list[MonitorView], now: datetime) -> str:
    """The alarm bar shown on every tab, compact: a line per monitor (`alarm_lines`), at most `ALARM_LINES`, then
    one for the rest. A line names the monitor's newest open unacknowledged event loudly (`data-state="open"`), else
    quietly (`"over"`) its newest unacknowledged one, and how many are not acknowledged. `data-events` lists the ids
    that sound now: the page's script sounds each id once however often the bar is redrawn, also one that no line
    names; `data-event` is the event a line names."""
    lines = alarm_lines(views, now)
    shown, rest = (lines, []) if len(lines) <= ALARM_LINES + 1 else (lines[:ALARM_LINES], lines[ALARM_LINES:])
    out = [_alarm_line(line, now) for line in shown]
    if rest:
        names = html.escape(", ".join(line.monitor for line in rest))
        ids = " ".join(str(i) for line in rest for i in line.sounding)
        state = "open" if rest[0].loud else "over"
        out.append(f'<div class="monitor-alarm" data-state="{state}" data-events="{ids}" data-more="{len(rest)}">'
                   f"+{len(rest)} more monitors with {sum(line.unacknowledged for line in rest)} event(s) not "
                   f"acknowledged: {names} (Monitors tab)</div>")  # fmt: skip
    return "".join(out)


def _alarm_line(line: AlarmLine, now: datetime) -> str:
    e, m, at = line.event, html.escape(line.monitor), local_time(line.event.recorded_at, now)
    what = f"{html.escape(e.reason)} ({html.escape(e.class_name)})"
    if line.loud:
        more = f"; {line.unacknowledged - 1} more not acknowledged" if line.unacknowledged > 1 else ""
        text = f"ALARM {m}: {what} since {at}, event {e.id} open, not acknowledged{more} (Monitors tab)"
    elif line.unacknowledged > 1:
        text = (f"{m}: {line.unacknowledged} events not acknowledged, the latest event {e.id}, {what} at {at}, "
                "over (Monitors tab)")  # fmt: skip
    else:
        text = f"{m}: event {e.id}, {what} at {at}, over, not acknowledged (Monitors tab)"
    look = 'role="alert" data-state="open"' if line.loud else 'data-state="over"'
    ids = " ".join(map(str, line.sounding))
    return f'<div class="monitor-alarm" {look} data-monitor="{m}" data-event="{e.id}" data-events="{ids}">{text}</div>'


def monitor_events_table(views: list[MonitorView], now: datetime) -> pd.DataFrame:
    """Today's events of every monitor, newest first, with who acknowledged each and when."""
    rows = sorted(((v.row.name, e) for v in views for e in v.events), key=lambda r: r[1].recorded_at, reverse=True)
    return pd.DataFrame(
        [[e.id, local_time(e.recorded_at, now), m, e.reason, e.class_name, score_text(e.peak_confidence),
          "closed" if e.closed else "open", e.acknowledged_by or "", local_time(e.acknowledged_at, now)]
         for m, e in rows],
        columns=MONITOR_EVENT_COLUMNS,
    )  # fmt: skip


def monitor_events_key(views: list[MonitorView]) -> tuple:
    """What the events table shows, to redraw it only when that changed (a redraw loses the reader's place)."""
    return tuple((e.id, e.closed, e.peak_confidence, e.acknowledged_by) for v in views for e in v.events)


def event_media_note(media: EventMedia, now: datetime, monitor: str | None = None, feedback: str = "") -> str:
    """What the operator reads beside an event's snapshot and clip: which event it is (id, monitor, time: the one
    Acknowledge acts on), why a file is missing, and `feedback` on what they just did. `data-event` names the event
    for the page's script (the events table marks its row)."""
    e = media.event
    which = f"Event {e.id}" + (f" of {monitor}" if monitor else "") + f" at {local_time(e.recorded_at, now)}"
    state = "closed" if e.closed else "open"
    lines = [f"{which}: {e.reason} ({e.class_name}), peak {score_text(e.peak_confidence)}, {state}."]
    if e.acknowledged_by:
        lines.append(f"Acknowledged by {e.acknowledged_by} at {local_time(e.acknowledged_at, now)}.")
    else:
        lines.append("Not acknowledged.")
    if media.snapshot is None:
        lines.append("No snapshot.")
    if media.note:
        lines.append(media.note[:1].upper() + media.note[1:] + ".")
    said = f'<p class="monitor-ack-feedback"><b>{html.escape(feedback)}</b></p>' if feedback else ""
    return f'<div class="monitor-event-note" data-event="{e.id}">{said}{html.escape(" ".join(lines))}</div>'


def acknowledged_already(event: EventRow, name: str, now: datetime) -> str:
    """What an operator who acknowledged an event is told when someone else had (the first acknowledgement stands),
    or "" where the event is acknowledged under their name."""
    if not event.acknowledged_by or event.acknowledged_by == name.strip():
        return ""
    at = local_time(event.acknowledged_at, now)
    said = f"Event {event.id} was already acknowledged by {event.acknowledged_by} at {at}"
    return f"{said}; {name.strip()} is not recorded." if name.strip() else f"{said}."
