"""Typed detection results: what one frame of one source produced, independent of Ultralytics' objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ultralytics.engine.results import Results


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        class_id: Index into the model's class names.
        class_name: The model's name for `class_id`.
        confidence: Score in 0..1.
        xyxy: Box corners in pixels of the original frame (x1, y1, x2, y2).
        track_id: Identity across frames when tracking is on, else None.
        mask_area: Mask area in pixels of the original frame (segment models), else None.
        polygon: Mask outline as (x, y) pixel pairs (segment models), else None.
    """

    class_id: int
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    track_id: int | None = None
    mask_area: float | None = None
    polygon: tuple[tuple[float, float], ...] | None = None

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.xyxy
        return (x1 + x2) / 2, (y1 + y2) / 2


@dataclass
class FrameResult:
    """Everything detected in one image or video frame.

    Attributes:
        frame_index: Position in the source (0 for a single image; the file's index in a folder run).
        timestamp: Seconds from the start of a video or stream (0 for images).
        width, height: Size of the original frame in pixels.
        detections: What the model found, after the confidence / IoU / class filters.
        source: The file (or stream) the frame came from.
        image: The original frame (BGR) when kept for annotation, else None.
        annotated: The frame with boxes, masks and labels drawn (BGR), when asked for.
    """

    frame_index: int
    timestamp: float
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)
    source: str = ""
    image: np.ndarray | None = field(default=None, repr=False)
    annotated: np.ndarray | None = field(default=None, repr=False)

    def counts(self) -> dict[str, int]:
        """Detections per class name."""
        out: dict[str, int] = {}
        for d in self.detections:
            out[d.class_name] = out.get(d.class_name, 0) + 1
        return out


def from_ultralytics(result: Results, frame_index: int = 0, timestamp: float = 0.0, source: str = "") -> FrameResult:
    """Convert one Ultralytics `Results` (detect or segment, with or without tracking) to a `FrameResult`.

    Example:
        >>> frame = from_ultralytics(model.predict(image)[0])
        >>> [(d.class_name, round(d.confidence, 2)) for d in frame.detections]
    """
    height, width = result.orig_shape
    detections = []
    boxes = result.boxes
    if boxes is not None and len(boxes):
        xyxy = boxes.xyxy.cpu().numpy().astype(float)
        conf = boxes.conf.cpu().numpy().astype(float)
        cls = boxes.cls.cpu().numpy().astype(int)
        ids = boxes.id.cpu().numpy().astype(int) if boxes.is_track and boxes.id is not None else None
        polygons = result.masks.xy if result.masks is not None else None
        for i in range(len(cls)):
            polygon = area = None
            if polygons is not None:
                pts = np.asarray(polygons[i], dtype=float)
                polygon = tuple((float(x), float(y)) for x, y in pts)
                area = _polygon_area(pts)
            detections.append(
                Detection(
                    class_id=int(cls[i]),
                    class_name=result.names[int(cls[i])],
                    confidence=float(conf[i]),
                    xyxy=tuple(float(v) for v in xyxy[i]),
                    track_id=int(ids[i]) if ids is not None else None,
                    mask_area=area,
                    polygon=polygon,
                )
            )
    return FrameResult(
        frame_index=frame_index,
        timestamp=timestamp,
        width=int(width),
        height=int(height),
        detections=detections,
        source=source,
        image=result.orig_img,
    )


def _polygon_area(pts: np.ndarray) -> float:
    """Shoelace area of an (N, 2) polygon in pixels; 0 for fewer than three points."""
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
