"""Safety overlays drawn on top of Ultralytics' box / mask / label plot: the danger zone and a status banner."""

from __future__ import annotations

import cv2
import numpy as np

from .policy import FrameStatus, SafetyEvent

OK_COLOR = (60, 160, 60)  # BGR
VIOLATION_COLOR = (40, 40, 220)
NEUTRAL_COLOR = (128, 128, 128)  # no verdict: the policy had no hand to judge
ZONE_COLOR = (0, 200, 255)
BAR_OPACITY = 0.6  # the verdict bar's colour over the frame: its text reads, what lies under it shows


def draw_safety(
    image: np.ndarray,
    status: FrameStatus | None,
    zone: tuple[tuple[float, float], ...] | None,
    open_event: SafetyEvent | None = None,
) -> np.ndarray:
    """Draw the zone outline and the frame's verdict bar in place (`FrameStatus.label`: OK, VIOLATION, or a grey
    "No hand detected"); returns the image. A frame without a violation of its own still reads VIOLATION while the
    policy's event is open (`SafetyMonitor.open_event`), as the console's banner does: a hand missed for a frame
    does not flash OK, or nothing, in the middle of a violation.

    Example:
        >>> annotated = draw_safety(frame.annotated, monitor.process(frame), policy.zone)
    """
    h, w = image.shape[:2]
    if zone is not None:
        pts = np.round(np.array(zone) * [w - 1, h - 1]).astype(np.int32)
        overlay = image.copy()
        cv2.fillPoly(overlay, [pts], ZONE_COLOR)
        cv2.addWeighted(overlay, 0.15, image, 0.85, 0, dst=image)
        cv2.polylines(image, [pts], True, ZONE_COLOR, max(2, w // 400))
    if status is not None:
        _verdict_bar(image, status, open_event)
    return image


def _verdict_bar(image: np.ndarray, status: FrameStatus, open_event: SafetyEvent | None) -> None:
    """A full-width bar along the bottom edge (box labels sit at the top of boxes, Gradio's label at the top
    left), sized to the image, and see-through: a hand at the bottom edge stays visible under it (an opaque bar
    hid a ninth of every frame). A violation also gets a thick red frame, so it is seen at a glance."""
    h, w = image.shape[:2]
    reasons = status.reasons or ([f"{open_event.reason} (event open)"] if open_event is not None else [])
    ok = not reasons
    if ok:
        color, text = (OK_COLOR if status.judged else NEUTRAL_COLOR), status.label
    else:
        color, text = VIOLATION_COLOR, "VIOLATION: " + ", ".join(reasons)
    bar = max(24, h // (14 if ok else 9))
    if not ok:
        cv2.rectangle(image, (0, 0), (w - 1, h - 1), color, max(4, min(w, h) // 60))
    strip = image[h - bar :]
    cv2.addWeighted(np.full_like(strip, color), BAR_OPACITY, strip, 1 - BAR_OPACITY, 0, dst=strip)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = min((bar * 0.6) / th, (w * 0.94) / tw)  # as large as the bar allows, never wider than the image
    thickness = max(1, round(scale * 2))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    org = ((w - tw) // 2, h - (bar - th) // 2)
    # outlined: the frame shows through the bar, and white alone fades over a bright one
    cv2.putText(image, text, org, font, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, org, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
