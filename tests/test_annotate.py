"""The safety overlay: the verdict bar is seen at a glance and hides nothing under it."""

from __future__ import annotations

import numpy as np
import pytest

from app.annotate import NEUTRAL_COLOR, OK_COLOR, VIOLATION_COLOR, draw_safety
from app.policy import FrameStatus, SafetyEvent
from app.results import Detection


@pytest.mark.parametrize("ok", [True, False])
def test_the_verdict_bar_lets_the_frame_show_through(ok: bool) -> None:
    """A hand at the bottom edge stays visible under the bar: black and white under it stay far apart."""
    image = np.zeros((360, 640, 3), np.uint8)
    image[:, 320:] = 255
    status = FrameStatus(judged=1) if ok else FrameStatus(violations=[Detection(4, "hand", 0.9, (0, 0, 1, 1))],
                                                          reasons=["bare hand"], judged=1)  # fmt: skip
    draw_safety(image, status, None)
    top = 360 - max(24, 360 // (14 if ok else 9)) + 2  # the bar's first rows, above its text
    row = image[top, 20:300].astype(int), image[top, 340:620].astype(int)  # left (black) and right (white)
    color = np.array(OK_COLOR if ok else VIOLATION_COLOR)
    assert np.abs(row[1].mean(0) - row[0].mean(0)).min() > 80  # white still shows brighter than black under it
    assert np.abs(row[0].mean(0) - 0.6 * color).max() < 30  # and the bar's colour is there to see


def test_a_frame_inside_an_open_event_reads_violation() -> None:
    """A hand the model misses for a frame while the event is open: the bar stays red, not a flash of OK."""
    event = SafetyEvent("no gloves", "bare_hand", 0, 0.0, 3, 0.3, 0.8)
    image = np.zeros((360, 640, 3), np.uint8)
    draw_safety(image, FrameStatus(), None, event)
    assert np.abs(image[0, 320].astype(int) - VIOLATION_COLOR).max() < 5  # the red frame around it
    bar = image[360 - 360 // 9 + 2, 20:100].astype(int).mean(0)
    assert np.abs(bar - 0.6 * np.array(VIOLATION_COLOR)).max() < 30
    closed = np.zeros((360, 640, 3), np.uint8)
    draw_safety(closed, FrameStatus(judged=1), None, None)
    assert np.abs(closed[360 - 360 // 14 + 2, 20:100].astype(int).mean(0) - 0.6 * np.array(OK_COLOR)).max() < 30


def test_a_frame_with_no_hand_to_judge_is_not_stamped_ok() -> None:
    """Nothing the policy judges was detected (no hand, or only a head): a grey bar, never a green OK."""
    image = np.zeros((360, 640, 3), np.uint8)
    draw_safety(image, FrameStatus(), None, None)
    bar = image[360 - 360 // 14 + 2 : 360, 0:640]
    assert np.abs(bar[0, 20:100].astype(int).mean(0) - 0.6 * np.array(NEUTRAL_COLOR)).max() < 30
    assert FrameStatus().label == "No hand detected" and (bar == 255).any()  # its words, in white on the bar
    assert np.abs(image[0, 320].astype(int)).max() == 0  # and no red frame around it
