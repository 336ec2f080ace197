"""A bare hand over a desk, from a camera nobody trained on: what the shipped models see in it.

    .venv/bin/python benchmarks/desk_clip.py [--weights W.pt ...] [--imgsz N ...] [--conf C ...]

12 frames sampled evenly from ../shared/data/videos/hand_desk.mp4 (one bare hand throughout, no glove). For each
model, at its calibrated defaults unless sizes / confidences are given: in how many frames the bare hand is found,
and how many `gloved_hand` boxes (false: there is no glove) appear, with the highest confidence among them. The
model card's desk-clip numbers and tests/test_shipped_weights.py's thresholds come from this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import cv2
import numpy as np

from app.engine import DetectionEngine
from app.runtime import ROOT, WEIGHTS_DIR

CLIP = ROOT.parent / "shared" / "data" / "videos" / "hand_desk.mp4"


def desk_frames(clip: Path = CLIP, count: int = 12) -> list[np.ndarray]:
    """`count` frames spread evenly over the clip."""
    cap = cv2.VideoCapture(str(clip))
    frames = []
    for index in np.linspace(0, cap.get(cv2.CAP_PROP_FRAME_COUNT) - 1, count).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"cannot read frame {index} of {clip}")
        frames.append(frame)
    cap.release()
    return frames


def desk_counts(engine: DetectionEngine, frames: list[np.ndarray], imgsz: int, conf: float) -> tuple[int, int, float]:
    """Frames with a bare hand; false gloved_hand boxes; their highest confidence."""
    settings = engine.settings(imgsz=imgsz, conf=conf)
    found = [engine.predict(f, settings, annotate=False).detections for f in frames]
    bare = sum(any(d.class_name == "bare_hand" for d in ds) for ds in found)
    gloved = [d.confidence for ds in found for d in ds if d.class_name == "gloved_hand"]
    return bare, len(gloved), max(gloved, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, nargs="+", default=[WEIGHTS_DIR / "gloves-bra-n.pt",
                                                                    WEIGHTS_DIR / "gloves-n.pt"])  # fmt: skip
    parser.add_argument("--imgsz", type=int, nargs="*", default=[], help="sizes (default: each model's own)")
    parser.add_argument("--conf", type=float, nargs="*", default=[], help="confidences (default: the model's)")
    args = parser.parse_args()
    frames = desk_frames()
    for weights in args.weights:
        engine = DetectionEngine(weights)
        d = engine.defaults
        print(f"{weights.name}: defaults {d.as_dict()} ({'calibrated' if d.calibrated else 'not calibrated'})")
        for imgsz in args.imgsz or [d.imgsz]:
            for conf in args.conf or [d.conf]:
                bare, gloved, peak = desk_counts(engine, frames, imgsz, conf)
                print(f"  12 desk frames at {imgsz}, confidence {conf:.2f}: bare_hand in {bare}; "
                      f"{gloved} gloved_hand boxes, max {peak:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
