"""What the console shows, rendered from the service's results: verdict banners, tables, the counts chart, the
settings stamp of a result and the browser-side alarm. Pure functions of their inputs (no Gradio callbacks)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from .policy import FrameStatus
from .results import FrameResult
from .schema import DetectionRow, EventRow, Row, RunRow

if TYPE_CHECKING:  # the service imports nothing from here; these are for type hints only
    from .pipeline import RunSummary
    from .service import DetectionService, LiveSession

NEUTRAL, OK, VIOLATION = "none", "ok", "violation"
CSS = """
.safety-banner {padding: 14px 20px; border-radius: 8px; font-size: 1.5em; font-weight: bold; color: white}
.safety-banner[data-state=ok] {background: #2e7d32}
.safety-banner[data-state=none] {background: #546e7a}
.safety-banner[data-state=violation] {background: #c62828; animation: glove-flash 0.8s step-start 0s 6}
@keyframes glove-flash {50% {background: #ff1744}}
.safety-banner small {display: block; font-size: 0.6em; font-weight: normal; opacity: 0.9}
table th, table th span {white-space: nowrap !important; word-break: keep-all !important}
.glove-chart {font-family: sans-serif}
.glove-chart .bar-row {display: flex; align-items: center; gap: 8px; margin: 4px 0}
.glove-chart .bar-label {width: 9em; text-align: right}
.glove-chart .bar {background: #1565c0; height: 1.4em; min-width: 2px}
"""
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
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = "square"; osc.frequency.value = 880; gain.gain.value = 0.2;
    osc.connect(gain).connect(ctx.destination); osc.start(); osc.stop(ctx.currentTime + 0.4);
  };
  const seen = new WeakSet();
  new MutationObserver(() => {
    document.querySelectorAll(".safety-banner[data-state=violation]").forEach((el) => {
      if (seen.has(el)) return;
      seen.add(el);
      const muted = document.querySelector("#alarm-mute input")?.checked;
      document.body.dataset.alarms = String(Number(document.body.dataset.alarms || 0) + (muted ? 0 : 1));
      if (!muted) { try { beep(); } catch (e) { console.warn("alarm sound unavailable", e); } }
    });
  }).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>
"""


def rgb(image: np.ndarray | None) -> np.ndarray | None:
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def clamp(value: object, low: float, high: float) -> float:
    """A typed threshold inside the slider's range (a typed 1.5 is 1.0, -1 is the minimum, text is the minimum)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return low
    return low if math.isnan(number) else min(max(number, low), high)


def banner(status: FrameStatus | None, has_policy: bool, detail: str = "") -> str:
    """The verdict of a frame: neutral without a policy (there is no verdict), else OK or VIOLATION."""
    if not has_policy:
        return _banner(NEUTRAL, "No safety policy selected", "detections only: choose a policy for a verdict")
    if status is None or status.ok:
        return _banner(OK, "OK", detail or "no violation in this frame")
    return _banner(VIOLATION, "VIOLATION: " + ", ".join(status.reasons), detail or "act now: stop the machine")


def run_banner(summary: RunSummary) -> str:
    """The verdict of a whole run."""
    if summary.record.policy is None:
        return _banner(NEUTRAL, "No safety policy selected", "detections only: choose a policy for a verdict")
    if not summary.events:
        return _banner(OK, "OK: no violations", f"policy {summary.record.policy}")
    reasons = ", ".join(sorted({e.reason for e in summary.events}))
    detail = f"{reasons} (policy {summary.record.policy})"
    return _banner(VIOLATION, f"VIOLATION: {len(summary.events)} event(s)", detail)


def _banner(state: str, text: str, detail: str) -> str:
    return (f'<div class="safety-banner" data-state="{state}" role="status">{html.escape(text)}'
            f"<small>{html.escape(detail)}</small></div>")  # fmt: skip


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
    """The settings that produced a result, in one line."""
    return (f"Model **{Path(record.model).name}** at {record.imgsz} px, confidence {record.conf:g}, "
            f"IoU {record.iou:g}, policy **{record.policy or 'none'}**")  # fmt: skip


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
    if summary.tracks:
        notes.append("Unique tracked: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.tracks.items())))
    workbook = str(service.workbook(run_id=summary.run_id))
    return [run_banner(summary), detections_table(rows), chart(counts), table(summary.events, EventRow),
            "\n\n".join(notes), workbook]  # fmt: skip


def runs_table(runs: list[RunRow]) -> pd.DataFrame:
    """History: short sources and model names, so status, frames and policy stay in view."""
    columns = RunRow.console_columns()
    values = [
        [Path(v).name if c.name in ("source", "model") and v else v for c, v in zip(columns, r.console_values(),
                                                                                      strict=True)]
        for r in runs
    ]
    return pd.DataFrame(values, columns=[c.title for c in columns])


def model_choices(service: DetectionService) -> list[tuple[str, str]]:
    """The model list: short names shown, full paths as values."""
    return [(p.name, str(p)) for p in service.available_models()]


def live_info(session: LiveSession) -> str:
    run = session.run
    s = run.summary
    verdict = f"{s.violations} violation event(s)" if run.policy is not None else "no policy, no verdict"
    return (f"Live run `{s.run_id}`: {s.frames} frames, {verdict}; {session.results_per_s():.1f} results/s. "
            f"{stamp(s.record)}")  # fmt: skip


def saved_live(summary: RunSummary | None) -> str:
    if summary is None:
        return "No live run to save."
    return (f"Saved live run `{summary.run_id}`: {summary.frames} frames, {len(summary.events)} event(s), in "
            f"`{summary.output_dir}`. Stop the camera; starting it again begins a new run.")  # fmt: skip
