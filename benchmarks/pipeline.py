"""Frames per second of the whole video pipeline against bare `model.predict` on the same frames, per runtime.

    .venv/bin/python benchmarks/pipeline.py [--weights W.pt] [--source clip.mp4] [--sizes 640 320] [--frames 90] \
        [--runtime torch auto]

The pipeline is a `DetectionRun` as the CLI and console use it: decode, predict, policy, annotate (boxes, labels,
zone, banner), record every frame in SQLite, encode the H.264 video and write the run files. Bare is
`YOLO.predict` on frames decoded beforehand, with the model the engine runs them through in that runtime
(`DetectionEngine.model_for`: PyTorch, or the export made for the clip's input canvas). For each size, every
runtime's bare rate is measured before and after all the pipelines and their mean is used, runtimes in
alternation, so a drift in machine speed favours none. Target: pipeline / bare >= 0.9 in every runtime.

Each rate comes with the process's CPU time per frame (all threads; spin-waiting runtime workers count too, so
it is an estimate), and the pipeline with the CPU its work beside inference takes per frame (decoding, drawing,
records, H.264 encoding: pipeline minus bare) and the ratio that work leaves at best where inference already keeps
every core busy: bare frame time / (bare frame time + that work spread over the cores). Where that estimate sits
below 0.9, the work beside a fast model does not fit beside it on these cores, however it is overlapped.

Without --weights, an untrained BRA-YOLO11n (built from its YAML, saved to a temporary checkpoint) stands in:
speed does not depend on training. Without --source, ../shared/data/videos/hand_desk.mp4 is used. Exports the
runtimes need are made (or found in .runtime/) before anything is timed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import numpy as np
import torch
from ultralytics import YOLO

from app.engine import RUNTIMES, DetectionEngine, RunSettings
from app.export import openvino_cpu
from app.pipeline import DetectionRun
from app.policy import SafetyPolicy
from app.records import RecordStore
from app.runtime import DESK_CLIP, ROOT
from app.sources import open_source


class Rate(NamedTuple):
    fps: float
    cpu_ms: float  # the process's CPU time (user + system, all threads) per frame


def timed(count: int, work: Callable[[], object]) -> Rate:
    """`work`, which handles `count` frames: its frames per second and CPU milliseconds per frame."""
    t, cpu = time.perf_counter(), time.process_time()
    work()
    return Rate(count / (time.perf_counter() - t), 1000 * (time.process_time() - cpu) / count)


def bare_rate(engine: DetectionEngine, settings: RunSettings, frames: list[np.ndarray]) -> Rate:
    model = engine.model_for(frames[0], settings)  # a clip's frames share one canvas

    def predict_all() -> None:
        for f in frames:
            model.predict(f, imgsz=settings.imgsz, conf=settings.conf, verbose=False)

    return timed(len(frames), predict_all)


def pipeline_rate(
    engine: DetectionEngine, settings: RunSettings, source: str, n: int, policy: SafetyPolicy | None, out: Path
) -> Rate:
    store = RecordStore(out / "records.sqlite")
    run = DetectionRun(engine, open_source(source), settings, policy, store, exports_dir=out)

    def run_n() -> None:
        updates = iter(run)
        done = sum(1 for _ in itertools.islice(updates, n))
        updates.close()  # finishes the run: video, CSV / JSON files, database row
        if done != n:
            raise RuntimeError(f"the pipeline processed {done} frames of the {n} asked for")

    return timed(n, run_n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--source", default=str(DESK_CLIP))
    parser.add_argument("--sizes", "--imgsz", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--runtime", nargs="+", choices=RUNTIMES, default=["torch", "auto"])
    parser.add_argument("--policy", default="gloves-forbidden", help="policy name, or 'none'")
    args = parser.parse_args()

    cpu, cores = openvino_cpu(), len(os.sched_getaffinity(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {cores} cores; CPU {cpu.device}: INT8 / "
          f"BF16 / FP16 instructions: {', '.join(cpu.features) or 'none'}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = tmp / "untrained-bra-n.pt"
            YOLO(str(ROOT / "models" / "yolo11n-bra.yaml")).save(weights)
        frames = [f.image for f in itertools.islice(open_source(args.source).frames(), args.frames)]
        print(f"source {args.source}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}")
        print(
            "| imgsz | runtime | precision | bare fps | pipeline fps | pipeline / bare | pipeline x first | "
            "CPU ms / frame, bare | CPU ms / frame, pipeline | beside inference | best ratio, cores full |"
        )
        print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for imgsz in args.sizes:
            engines = {r: DetectionEngine(weights, r) for r in args.runtime}
            settings = {r: e.settings(conf=args.conf, imgsz=imgsz) for r, e in engines.items()}
            policy = None
            if args.policy != "none":
                names = next(iter(engines.values())).names
                policy = SafetyPolicy.load(args.policy)
                policy = SafetyPolicy(**{**policy.__dict__, "roles": dict.fromkeys(names.values(), "glove")})
            for r, e in engines.items():  # exports made, models compiled, predictors set up: nothing timed yet
                bare_rate(e, settings[r], frames[:5])
            before = {r: bare_rate(e, settings[r], frames) for r, e in engines.items()}
            full = {
                r: pipeline_rate(e, settings[r], args.source, len(frames), policy, tmp / f"exports-{r}-{imgsz}")
                for r, e in engines.items()
            }
            after = {r: bare_rate(e, settings[r], frames) for r, e in reversed(engines.items())}
            first = full[args.runtime[0]].fps
            for r, e in engines.items():
                backend, pipe = e.backend(settings[r]), full[r]
                bare = Rate(*(statistics.mean(pair) for pair in zip(before[r], after[r], strict=True)))
                beside = pipe.cpu_ms - bare.cpu_ms
                best = (1000 / bare.fps) / (1000 / bare.fps + beside / cores)
                print(f"| {imgsz} | {r} ({backend.label}) | {backend.precision} | {bare.fps:.2f} | {pipe.fps:.2f} | "
                      f"{pipe.fps / bare.fps:.3f} | {pipe.fps / first:.2f}x | {bare.cpu_ms:.1f} | {pipe.cpu_ms:.1f} | "
                      f"{beside:.1f} | {best:.2f} |")  # fmt: skip
    print(
        "bare: the mean of the rates (and CPU times) before and after the pipelines; target pipeline / bare >= 0.9; "
        f"best ratio, cores full: 1000 / bare fps over itself plus the CPU ms beside inference / {cores} cores"
    )


if __name__ == "__main__":
    main()
