"""Frames per second of the whole video pipeline against bare `model.predict` on the same frames.

    .venv/bin/python benchmarks/pipeline.py [--weights W.pt] [--source clip.mp4] [--imgsz 640] [--frames 90]

The pipeline is a `DetectionRun` as the CLI and console use it: decode, predict, policy, annotate (boxes, labels,
zone, banner), record every frame in SQLite, encode the H.264 video and write the run files. Bare is
`YOLO.predict` on frames decoded beforehand. Bare runs before and after the pipeline and their mean is used, so a
drift in machine speed does not favour either side. Target: ratio >= 0.9.

Without --weights, an untrained BRA-YOLO11n (built from its YAML, saved to a temporary checkpoint) stands in:
speed does not depend on training. Without --source, ../shared/data/videos/hand_desk.mp4 is used.
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
from ultralytics import YOLO

from app.engine import DetectionEngine, RunSettings
from app.pipeline import DetectionRun
from app.policy import SafetyPolicy
from app.records import RecordStore
from app.runtime import ROOT
from app.sources import open_source

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "videos" / "hand_desk.mp4"


def bare_fps(model: YOLO, frames: list, imgsz: int, conf: float) -> float:
    t = time.perf_counter()
    for f in frames:
        model.predict(f, imgsz=imgsz, conf=conf, verbose=False)
    return len(frames) / (time.perf_counter() - t)


def pipeline_fps(
    engine: DetectionEngine, settings: RunSettings, source: str, n: int, policy: SafetyPolicy | None, out: Path
) -> float:
    store = RecordStore(out / "records.sqlite")
    run = DetectionRun(engine, open_source(source), settings, policy, store, exports_dir=out)
    t = time.perf_counter()
    updates = iter(run)
    done = sum(1 for _ in itertools.islice(updates, n))
    updates.close()  # finishes the run: video, CSV / JSON files, database row
    return done / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--source", default=str(DEFAULT_CLIP))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--policy", default="gloves-forbidden", help="policy name, or 'none'")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = tmp / "untrained-bra-n.pt"
            YOLO(str(ROOT / "models" / "yolo11n-bra.yaml")).save(weights)
        engine = DetectionEngine(weights)
        settings = engine.settings(conf=args.conf, imgsz=args.imgsz)
        frames = [f.image for f in itertools.islice(open_source(args.source).frames(), args.frames)]
        policy = None
        if args.policy != "none":
            policy = SafetyPolicy.load(args.policy)
            policy = SafetyPolicy(**{**policy.__dict__, "roles": dict.fromkeys(engine.names.values(), "glove")})

        bare_fps(engine.model, frames[:5], args.imgsz, args.conf)  # warm-up: predictor set-up, first-call costs
        before = bare_fps(engine.model, frames, args.imgsz, args.conf)
        full = pipeline_fps(engine, settings, args.source, len(frames), policy, tmp / "exports")
        after = bare_fps(engine.model, frames, args.imgsz, args.conf)
    bare = statistics.mean([before, after])
    print(
        f"source {args.source}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, imgsz {args.imgsz}"
    )
    print(f"bare model.predict: {bare:.2f} fps (before {before:.2f}, after {after:.2f})")
    print(f"whole pipeline:     {full:.2f} fps (decode, predict, policy, annotate, record, encode)")
    verdict = "meets" if full / bare >= 0.9 else "MISSES"
    print(f"ratio pipeline / bare: {full / bare:.3f} -> {verdict} the 0.9 target")


if __name__ == "__main__":
    main()
