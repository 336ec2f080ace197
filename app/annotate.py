"""Safety overlays drawn on top of Ultralytics' box / mask / label plot: the danger zone and a status banner."""

from __future__ import annotations

import cv2
import numpy as np

from .policy import FrameStatus

OK_COLOR = (60, 160, 60)  # BGR
VIOLATION_COLOR = (40, 40, 220)
ZONE_COLOR = (0, 200, 255)


def draw_safety(
    image: np.ndarray, status: FrameStatus | None, zone: tuple[tuple[float, float], ...] | None
) -> np.ndarray:
    """Draw the zone outline and an OK / VIOLATION banner in place; returns the image.

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
        text = status.label if status.ok else f"VIOLATION: {', '.join(status.reasons)}"
        scale = max(0.5, w / 1400)
        thickness = max(1, int(scale * 2))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(image, (0, 0), (min(w, tw + 20), th + base + 16), OK_COLOR if status.ok else VIOLATION_COLOR, -1)
        cv2.putText(image, text, (10, th + 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image
