"""Server-side cost of one live-camera frame against bare inference on the same frames, per size.

    .venv/bin/python benchmarks/live_latency.py [--weights W.pt] [--sizes 640 320] [--frames 40] [--runtime auto]

A live frame is what the console does with each camera frame (`LiveSession.process`): the run's policy, drawing,
recording in SQLite and the run's video, on top of the model. Bare is `DetectionEngine.predict` without drawing.
Frames are cut 640x640 from ../shared/data/videos/hand_desk.mp4, as the browser test's fake camera sends them; the
two are timed in alternation, frame by frame, and medians are reported with what they allow: 1000 / latency
results per second for one camera, when the browser runs on another machine (the browser test,
tests/test_console.py::test_live_camera_rate_and_latency_with_the_shipped_model, measures the page with Chromium
on the same CPU). Target (issue 17): >= 12 results/s with a median latency < 100 ms at 640.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import numpy as np

from app.engine import RUNTIMES
from app.runtime import DEFAULT_WEIGHTS, DESK_CLIP
from app.service import DetectionService, RunOptions
from app.sources import open_source

SIDE = 640


def camera_frames(count: int) -> list[np.ndarray]:
    """`count` frames of the desk clip, 640x640 from its middle (the clip is 720x720)."""
    frames = []
    for frame in itertools.islice(open_source(DESK_CLIP).frames(), count):
        top, left = (frame.image.shape[0] - SIDE) // 2, (frame.image.shape[1] - SIDE) // 2
        frames.append(np.ascontiguousarray(frame.image[top : top + SIDE, left : left + SIDE]))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto")
    parser.add_argument("--policy", default="gloves", help="policy name, or 'none'")
    args = parser.parse_args()
    frames = camera_frames(args.frames)
    policy = None if args.policy == "none" else args.policy
    with tempfile.TemporaryDirectory() as tmp:
        service = DetectionService(exports_dir=Path(tmp), runtime=args.runtime)
        engine = service.engine(args.weights)
        print(f"{args.weights.name}, runtime {args.runtime}")
        print("| imgsz | runtime | bare ms | live frame ms | live / bare | results/s it allows | 640 target, server |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | --- |")
        for size in args.sizes:
            settings = engine.settings(imgsz=size)
            label = engine.backend(settings).label
            options = RunOptions(weights=args.weights, imgsz=size, policy=policy)
            session = service.live()
            for frame in frames[:3]:  # warm-up: the export for this size, the run's files
                engine.predict(frame, settings, annotate=False)
                session.process(frame, options)
            bare, live = [], []
            for frame in frames[3:]:
                start = time.perf_counter()
                engine.predict(frame, settings, annotate=False)
                bare.append(time.perf_counter() - start)
                start = time.perf_counter()
                session.process(frame, options)
                live.append(time.perf_counter() - start)
            session.stop()
            b, lv = 1000 * statistics.median(bare), 1000 * statistics.median(live)
            met = ("met" if lv < 100 and 1000 / lv >= 12 else "not met") if size == 640 else "-"
            print(f"| {size} | {label} | {b:.1f} | {lv:.1f} | {lv / b:.2f} | {1000 / lv:.1f} | {met} |")


if __name__ == "__main__":
    main()
