"""What the console says of a run: the verdict banner tells an OK with hands seen from no hand seen at all, and
a video's banner while it runs holds the verdict so far."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BANDSAW_NAMES
from helpers import make_video

from app import views
from app.engine import DetectionEngine, RunSettings
from app.pipeline import DetectionRun
from app.policy import FrameStatus, SafetyEvent, SafetyPolicy
from app.schema import RunRow
from app.sources import open_source

# Every class a glove, gloves forbidden everywhere: each box the test model draws is a violation
NO_GLOVES = SafetyPolicy(name="no-gloves", rule="gloves_forbidden", roles=dict.fromkeys(BANDSAW_NAMES, "glove"),
                         min_frames=1, cooldown_s=0.0)  # fmt: skip
LOW = RunSettings(conf=0.001, imgsz=96)  # the one-epoch test model only scores low


@pytest.fixture(scope="module")
def engine(trained_models: dict) -> DetectionEngine:
    return DetectionEngine(trained_models["detect"][0])


def _state_and_text(html: str) -> tuple[str, str]:
    return html.split('data-state="')[1].split('"')[0], html.split(">", 1)[1]


def test_no_hand_detected_is_no_verdict(engine: DetectionEngine, tmp_path: Path) -> None:
    """At a confidence nothing reaches, no green OK that would read as "all hands gloved": a grey banner says no
    hand was detected."""
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    blind = DetectionRun(engine, open_source(image), RunSettings(conf=1.0, imgsz=96), SafetyPolicy.load("bandsaw"),
                         exports_dir=tmp_path).run()  # fmt: skip
    assert blind.detections == 0 and not blind.events
    state, text = _state_and_text(views.run_banner(blind))
    assert state == "none" and text.startswith("No hand detected<small>nothing to judge: ")  # grey, no verdict
    assert "none this model sees at confidence 1 (policy bandsaw)" in text
    saved = cv2.imread(str(blind.images[0]))  # the saved picture's bar is grey too, not a green OK
    assert np.abs(saved[96 - 22, 8:88].astype(int).mean(0) - 128).max() < 15

    seeing = DetectionRun(engine, open_source(image), LOW, SafetyPolicy.load("bandsaw"), exports_dir=tmp_path).run()
    assert seeing.detections > 0
    assert "No hand detected" not in views.run_banner(seeing)
    # only classes the policy does not judge (the bandsaw's `head` is `other`): still nothing to judge
    heads = dataclasses.replace(blind, counts={"head": 2}, detections=2)
    assert _state_and_text(views.run_banner(heads))[1].startswith("No hand detected<small>")
    hand = dataclasses.replace(blind, counts={"head": 2, "hand": 1}, detections=3)
    assert _state_and_text(views.run_banner(hand))[1].startswith("OK: no violations<small>")
    shouted = dataclasses.replace(blind, counts={"HAND": 1}, detections=1)  # a model's names in another case
    assert _state_and_text(views.run_banner(shouted))[1].startswith("OK: no violations<small>")


def test_the_saved_live_line_says_the_runs_verdict(engine: DetectionEngine, tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    for policy, verdict in ((NO_GLOVES, "VIOLATION: 1 event(s)"), (None, "No safety policy selected")):
        summary = DetectionRun(engine, open_source(image), LOW, policy, exports_dir=tmp_path).run()
        assert summary.verdict()[1] == verdict
        assert views.saved_live(summary).startswith(f"Saved live run `{summary.run_id}`: 1 frames. {verdict}. Files in")


def test_a_video_in_progress_shows_the_verdict_so_far(engine: DetectionEngine, tmp_path: Path) -> None:
    """While a video runs, the banner is the run's verdict so far, not the latest frame's: frames that violate
    before an event opens (three in a row are needed) still read OK so far, and from the event on it is VIOLATION."""
    policy = dataclasses.replace(NO_GLOVES, min_frames=3)  # every frame violates: the event opens at the third
    run = DetectionRun(engine, open_source(make_video(tmp_path / "v.mp4", frames=6)), LOW, policy, exports_dir=tmp_path)
    shown = [(update.status.ok, bool(run.summary.events), views.run_banner(run.summary))
             for update in run]  # fmt: skip
    assert [ok for ok, _, _ in shown] == [False] * 6  # the latest frame always shows a violation ...
    assert [_state_and_text(b)[0] for _, _, b in shown] == ["ok", "ok"] + ["violation"] * 4  # ... the run's verdict
    assert all(" so far<small>" in b for _, _, b in shown)
    assert all(opened for _, opened, _ in shown[2:])


def test_the_zone_box_shows_the_chosen_policys_zone() -> None:
    assert views.zone_placeholder("gloves-forbidden") == "policy's own: 0.25,0.25 0.75,0.25 0.75,0.75 0.25,0.75"
    assert views.zone_placeholder("gloves") == "this policy has no zone: the whole frame counts"
    assert views.zone_placeholder(None) == "no policy: no zone"


def test_a_live_banner_stays_red_while_the_event_is_open() -> None:
    """The live camera's banner: a frame the model misses the hand in does not flash OK while the event is open."""
    event = SafetyEvent("no gloves", "bare_hand", 0, 0.0, 3, 0.3, 0.8)
    assert _state_and_text(views.banner(FrameStatus(), True, event))[1].startswith("VIOLATION: no gloves<small>")
    assert _state_and_text(views.banner(FrameStatus(judged=1), True, None)) == (
        "ok",
        "OK<small>no violation in this frame</small></div>",
    )
    assert _state_and_text(views.banner(FrameStatus(), True, None)) == (  # no hand to judge: no green OK
        "none",
        "No hand detected<small>nothing to judge in this frame: no hand in view, or none the model sees</small></div>",
    )
    assert _state_and_text(views.banner(FrameStatus(), False, event))[0] == "none"  # no policy: no verdict


def test_history_shows_local_times_and_names_their_zone(time_zone: Callable[[str], None]) -> None:
    """History's times are this machine's clock, as on the Monitors tab and in the workbook, not stored UTC."""
    time_zone("Europe/Berlin")
    run = RunRow(id="r", source="/v/cam.mp4", kind="video", model="/w/m.pt", model_sha256="ab", task="detect",
                 conf=0.25, iou=0.7, imgsz=640, started_at="2026-12-01T18:10:48.191+00:00",
                 ended_at="2026-12-01T23:30:00.000+00:00")  # fmt: skip
    shown = views.runs_table([run]).iloc[0]
    assert (shown["Started"], shown["Ended"]) == ("2026-12-01 19:10:48", "2026-12-02 00:30:00")
    assert views.runs_label([run], False, None) == "Runs: 1, newest first; times in CET/CEST (UTC+01:00/+02:00)"
    summer = dataclasses.replace(run, started_at="2026-07-01T21:33:20.000+00:00")
    assert views.runs_table([summer]).iloc[0]["Started"] == "2026-07-01 23:33:20"  # CEST, as the label says
    time_zone("Asia/Tokyo")
    assert views.runs_label([run], False, None) == "Runs: 1, newest first; times in JST (UTC+09:00)"
    time_zone("UTC")
    assert views.runs_label([run], False, None) == "Runs: 1, newest first; times in UTC"


def test_text_from_a_model_file_shows_as_itself_in_markdown() -> None:
    """A model's file names its classes and data: in the console's Markdown they make no link, image, HTML or
    emphasis, and read as written (rendered by CommonMark, as Gradio's Markdown renders)."""
    from markdown_it import MarkdownIt

    text = "gloved_hand [x](http://e) ![i](http://e/a.png) <b>b</b> *e* # h `c` a & b ~~s~~ 1. x \\ y"
    rendered = MarkdownIt("commonmark").enable("strikethrough").render(views.markdown_text(text))
    assert rendered == f"<p>{html.escape(text, quote=False)}</p>\n"
