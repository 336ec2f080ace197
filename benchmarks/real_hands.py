"""What the shipped models see in real single-hand photos and in a clip from a camera nobody trained on.

    .venv/bin/python benchmarks/real_hands.py [--weights W.pt ...] [--imgsz N ...] [--conf C ...] [--runtime R]

Single hands: the first 8 photos (by name) of each valid split (`gloves-scenes`, `gloves`) labelled with exactly
one hand, per class; a hand counts as found when a box of its class overlaps its label at IoU >= 0.5; counted in
one pass (as video frames run) and with test-time augmentation (as photos run by default), with the time a
photo takes (read, predict, match), timed on a second round so that no warm-up counts.
Desk clip: ../shared/data/videos/hand_desk.mp4 (one bare hand throughout, no glove), 12 frames sampled evenly (the
issue's measure) and every frame (what an operator watching it sees): in how many frames the bare hand is found, and
in how many `gloved_hand` boxes appear (false: there is no glove), with the highest confidence among them.
Hand sizes: every labelled hand of `gloves-scenes/valid`, found or not, by its share of the image area. Each model
at its calibrated defaults unless sizes / confidences are given. The model card's numbers and
tests/test_shipped_weights.py's thresholds come from this script.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import cv2
import numpy as np
from ultralytics.utils.ops import xywhn2xyxy

from app.data import label_boxes, list_images
from app.engine import RUNTIMES, DetectionEngine
from app.runtime import DESK_CLIP, SHARED_DATA, WEIGHTS_DIR

PHOTOS_PER_CLASS = 8
CLASSES = {"gloved_hand": 0, "bare_hand": 1}
SETS = ("gloves-scenes", "gloves")
SIZES = {"<1%": 0.01, "1-5%": 0.05, "5-20%": 0.2, ">20%": float("inf")}  # a hand's share of the image area


def single_hand_photos(split: Path, class_id: int, count: int = PHOTOS_PER_CLASS) -> list[tuple[Path, np.ndarray]]:
    """The first `count` photos (by name) labelled with exactly one hand, of `class_id`, and its box in pixels."""
    chosen = []
    for image in list_images(split / "images"):
        boxes = label_boxes(image)
        if len(boxes) == 1 and boxes[0][0] == class_id:
            h, w = cv2.imread(str(image)).shape[:2]
            chosen.append((image, xywhn2xyxy(np.array(boxes[0][1:]), w, h)))
        if len(chosen) == count:
            break
    return chosen


def hands_found(engine: DetectionEngine, photos: list[tuple[Path, np.ndarray]], class_name: str, imgsz: int,
                conf: float, augment: bool = False) -> int:  # fmt: skip
    """Photos whose labelled hand gets a box of its class at IoU >= 0.5 (`augment`: with test-time augmentation,
    as the console and the CLI run photos by default)."""
    settings = engine.settings(imgsz=imgsz, conf=conf, augment=augment)
    found = 0
    for image, box in photos:
        detections = engine.predict(cv2.imread(str(image)), settings, annotate=False).detections
        found += any(d.class_name == class_name and _iou(np.array(d.xyxy), box) >= 0.5 for d in detections)
    return found


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


def found_by_size(engine: DetectionEngine, split: Path, imgsz: int, conf: float) -> dict[tuple[str, str], list[int]]:
    """Every labelled hand of a split (boxes, or polygons taken by their bounds), by class and by its share of the
    image area (`SIZES`): [labelled, found with its class at IoU >= 0.5, found with any class]; one pass, as video
    frames run. A box may count for two overlapping hands."""
    settings = engine.settings(imgsz=imgsz, conf=conf)
    names = {i: c for c, i in CLASSES.items()}
    counts = {(size, name): [0, 0, 0] for size in SIZES for name in CLASSES}
    for image in list_images(split / "images"):
        frame = cv2.imread(str(image))
        h, w = frame.shape[:2]
        detections = engine.predict(frame, settings, annotate=False).detections
        for cls, *xywh in (b for b in label_boxes(image) if b[0] in names):
            box = xywhn2xyxy(np.array(xywh), w, h)
            hits = [d for d in detections if _iou(np.array(d.xyxy), box) >= 0.5]
            size = next(name for name, upper in SIZES.items() if xywh[2] * xywh[3] < upper)
            count = counts[size, names[cls]]
            count[0] += 1
            count[1] += any(d.class_id == cls for d in hits)
            count[2] += bool(hits)
    return counts


def desk_frames(clip: Path = DESK_CLIP, count: int | None = 12) -> list[np.ndarray]:
    """`count` frames spread evenly over the clip (every frame, read in order, for None)."""
    cap = cv2.VideoCapture(str(clip))
    if count is None:
        frames = []
        while (read := cap.read())[0]:
            frames.append(read[1])
        cap.release()
        return frames
    frames, total = [], int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    for index in np.linspace(0, total - 1, count).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"cannot read frame {index} of {clip}")
        frames.append(frame)
    cap.release()
    return frames


def desk_counts(
    engine: DetectionEngine, frames: list[np.ndarray], imgsz: int, conf: float
) -> tuple[int, int, int, float]:
    """Frames with a bare hand; false gloved_hand boxes; frames with one; their highest confidence."""
    settings = engine.settings(imgsz=imgsz, conf=conf)
    found = [engine.predict(f, settings, annotate=False).detections for f in frames]
    bare = sum(any(d.class_name == "bare_hand" for d in ds) for ds in found)
    gloved = [[d.confidence for d in ds if d.class_name == "gloved_hand"] for ds in found]
    peak = max((c for cs in gloved for c in cs), default=0.0)
    return bare, sum(map(len, gloved)), sum(map(bool, gloved)), peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, nargs="+", default=[WEIGHTS_DIR / "gloves-bra-n.pt",
                                                                    WEIGHTS_DIR / "gloves-n.pt"])  # fmt: skip
    parser.add_argument("--imgsz", type=int, nargs="*", default=[], help="sizes (default: each model's own)")
    parser.add_argument("--conf", type=float, nargs="*", default=[], help="confidences (default: the model's)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help="as the engine takes it (default auto)")
    args = parser.parse_args()
    clips = {"12 desk frames": desk_frames(), "every desk frame": desk_frames(count=None)}
    photos = {(s, c): single_hand_photos(SHARED_DATA / s / "valid", i) for s in SETS for c, i in CLASSES.items()}
    for weights in args.weights:
        engine = DetectionEngine(weights, runtime=args.runtime)
        d = engine.defaults
        print(f"{weights.name}: defaults {d.as_dict()} ({'calibrated' if d.calibrated else 'not calibrated'})")
        for imgsz in args.imgsz or [d.imgsz]:
            for conf in args.conf or [d.conf]:
                for augment in (False, True):  # photos run with test-time augmentation by default
                    for _ in range(2):  # the second time is timed: the first compiles a runtime per photo shape
                        start = time.perf_counter()
                        found = ", ".join(f"{s} {c} {hands_found(engine, p, c, imgsz, conf, augment)}/{len(p)}"
                                          for (s, c), p in photos.items())  # fmt: skip
                        each = (time.perf_counter() - start) / sum(map(len, photos.values()))  # read, predict, match
                    print(f"  single hands at {imgsz}, confidence {conf:.2f}{', TTA' if augment else ''}: {found} "
                          f"({each * 1000:.0f} ms a photo)")  # fmt: skip
                backend = engine.backend(engine.settings(imgsz=imgsz, conf=conf))
                for name, frames in clips.items():
                    bare, gloved, frames_gloved, peak = desk_counts(engine, frames, imgsz, conf)
                    print(f"  {name} ({len(frames)}) at {imgsz}, confidence {conf:.2f}, {backend.runtime} "
                          f"{backend.precision}: bare_hand in {bare}; {gloved} gloved_hand boxes in {frames_gloved} "
                          f"frames, max {peak:.2f}")  # fmt: skip
                by_size = found_by_size(engine, SHARED_DATA / "gloves-scenes" / "valid", imgsz, conf)
                print(f"  gloves-scenes valid at {imgsz}, confidence {conf:.2f}, found with the right class (with "
                      "any class) / labelled, by the "
                      "hand's share of the image: " + "; ".join(f"{size} {name} {f} ({a}) / {n}" for (size, name),
                      (n, f, a) in by_size.items() if n))  # fmt: skip


if __name__ == "__main__":
    main()
