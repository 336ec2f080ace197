"""Soak test: a console or a camera monitor left running for days, compressed into one process.

    .venv/bin/python benchmarks/soak.py [--weights W.pt] [--frames 20000] [--run-frames 1000] [--imgsz 160]
    .venv/bin/python benchmarks/soak.py --one-run [--frames 20000]   # ONE run of all the frames
    .venv/bin/python benchmarks/soak.py --monitor [--frames 50000]   # one camera monitor, one continuous run

With `--monitor`, the frames go through `python -m app monitor`'s own `MonitorSet` (a looping clip as the camera,
at 100 frames a second so the model, not the clip, sets the pace; 60-s segments; retention every 60 s with
`--max-gb`): besides memory, descriptors and threads, it checks that the footage stays within `max_gb` and that
every processed frame is recorded (in the run's records and in a segment, pruned or not).

Frames go through the console's own service (`DetectionService.live`: engine, safety policy, annotation,
SQLite records, H.264 recording, streamed run files), `--run-frames` per live run, as users start and stop
cameras; with `--one-run`, a single run of `--frames` (a camera watched all shift: memory must not grow with the
run's length). Every 1000 frames it samples resident memory (VmRSS), open file descriptors and threads. The
baseline is taken after the first run (model loaded, caches warm), or after the first 1000 frames of one run.
Targets: RSS growth < 50 MB, descriptors and threads flat. Exit status 1 when a target is missed.

Frames come from ../shared/data/videos/hand_desk.mp4 (looped, resized to --size) or, where that is absent,
a generated moving pattern. Without --weights the shipped default model (app.runtime.DEFAULT_WEIGHTS) is used.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import app  # noqa: F401  (first: it sets the offline environment that Ultralytics reads when imported)

# isort: split
import cv2
import numpy as np

from app.monitor import MonitorConfig, MonitorSet
from app.outputs import VideoWriter
from app.records import RecordStore
from app.runtime import DEFAULT_WEIGHTS, DESK_CLIP
from app.service import DetectionService, LiveSession, RunOptions

SAMPLE_EVERY = 1000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def frames(clip: Path, size: int) -> Iterator[np.ndarray]:
    """The clip's frames at size x size, forever (decoded once), or a moving pattern without the clip."""
    decoded = []
    cap = cv2.VideoCapture(str(clip)) if clip.is_file() else None
    while cap is not None:
        ok, image = cap.read()
        if not ok:
            break
        decoded.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    if cap is not None:
        cap.release()
    if not decoded:
        for i in range(60):
            image = np.full((size, size, 3), 50, np.uint8)
            cv2.circle(image, (i * size // 60, size // 2), size // 8, (60, 170, 230), -1)
            decoded.append(image)
    return itertools.cycle(decoded)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--source", type=Path, default=DESK_CLIP)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--run-frames", type=int, default=1000, help="frames per live run")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--size", type=int, default=320, help="camera frame side in pixels")
    parser.add_argument("--policy", default="gloves", help="a shipped policy name, or 'none'")
    parser.add_argument("--one-run", action="store_true", help="all frames in one live run")
    parser.add_argument("--monitor", action="store_true", help="one camera monitor (recordings, retention)")
    parser.add_argument("--max-gb", type=float, default=0.2, help="--monitor: footage limit")
    args = parser.parse_args()
    if args.monitor:
        return soak_monitor(args)

    with tempfile.TemporaryDirectory() as tmp:
        service = DetectionService(exports_dir=Path(tmp) / "exports", weights_dir=args.weights.parent)
        policy = None if args.policy == "none" else args.policy
        options = RunOptions(weights=str(args.weights), imgsz=args.imgsz, policy=policy)
        source = frames(args.source, args.size)
        baseline: tuple[float, int, int] | None = None
        done, start = 0, time.perf_counter()
        print(f"{'frames':>8} {'RSS MB':>8} {'fds':>5} {'threads':>8} {'fps':>6}")
        run_frames = args.frames if args.one_run else args.run_frames
        while done < args.frames:
            # Not a browser camera: frames may come slower than a person's pause (a busy machine), which must not
            # end the run; `--run-frames` decides where runs end.
            session = LiveSession(service, options, gap_s=math.inf, time_limit_s=math.inf)
            for _ in range(min(run_frames, args.frames - done)):
                session.process(next(source))
                done += 1
                if done % SAMPLE_EVERY == 0:
                    fps = done / (time.perf_counter() - start)
                    print(f"{done:>8} {rss_mb():>8.1f} {open_fds():>5} {threading.active_count():>8} {fps:>6.1f}")
                    if baseline is None and args.one_run:  # warm: model loaded, encoder and files open
                        baseline = (rss_mb(), open_fds(), threading.active_count())
            session.stop()
            if baseline is None:  # after the first whole run: model loaded, caches and encoder warm
                baseline = (rss_mb(), open_fds(), threading.active_count())
        end = (rss_mb(), open_fds(), threading.active_count())
        runs = service.history(None, None)

    growth, fd_delta, thread_delta = end[0] - baseline[0], end[1] - baseline[1], end[2] - baseline[2]
    baseline_at = "after the first 1000 frames" if args.one_run else "after the first run"
    print(f"\n{done} frames in {len(runs)} live runs ({sum(r.frames for r in runs)} recorded), "
          f"{time.perf_counter() - start:.0f} s, imgsz {args.imgsz}, weights {args.weights.name}")  # fmt: skip
    print(f"RSS {baseline_at} {baseline[0]:.1f} MB, at end {end[0]:.1f} MB: growth {growth:+.1f} MB (target < 50)")
    print(f"open fds {baseline[1]} -> {end[1]} ({fd_delta:+d}); threads {baseline[2]} -> {end[2]} ({thread_delta:+d})")
    # A run closed at the end lets go of its video encoder and files: in one-run mode the end has fewer.
    ok = growth < 50 and fd_delta <= 0 and thread_delta <= 0 and sum(r.frames for r in runs) == done
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def soak_monitor(args: argparse.Namespace) -> int:
    """One monitor, one run of `--frames` frames: RSS, descriptors and threads sampled about every 1000 frames."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "camera.mp4"
        with VideoWriter(clip, fps=100) as video:  # the clip's own rate: the monitor takes frames as fast as it can
            for image in itertools.islice(frames(args.source, args.size), 300):
                video.write(image)
        config_file = Path(tmp) / "monitors.yaml"
        config_file.write_text(
            f"records: {tmp}/records.sqlite\nexports: {tmp}/exports\n"
            f"recordings: {{folder: {tmp}/recordings, segment_s: 60, max_gb: {args.max_gb}}}\n"
            f"monitors:\n  - {{name: soak, source: {clip}, loop: true, fps: 100, imgsz: {args.imgsz}, "
            f"weights: {args.weights}" + ("" if args.policy == "none" else f", policy: {args.policy}") + "}\n"
        )
        monitors = MonitorSet(MonitorConfig.load(config_file))
        monitor = monitors.monitors[0]
        baseline: tuple[float, int, int] | None = None
        next_sample, start = SAMPLE_EVERY, time.perf_counter()
        print(f"{'frames':>8} {'RSS MB':>8} {'fds':>5} {'threads':>8} {'fps':>6} {'footage MB':>11}")
        footage = 0.0
        with monitors:
            while monitor.live.frames < args.frames and monitor.is_alive():
                time.sleep(0.2)
                done = monitor.live.frames
                if done >= next_sample:
                    next_sample += SAMPLE_EVERY
                    footage = sum(p.stat().st_size for p in Path(tmp, "recordings").rglob("*.mp4")) / 1e6
                    fps = done / (time.perf_counter() - start)
                    sample = (rss_mb(), open_fds(), threading.active_count())
                    print(f"{done:>8} {sample[0]:>8.1f} {sample[1]:>5} {sample[2]:>8} {fps:>6.1f} {footage:>11.1f}")
                    baseline = baseline or sample  # warm: model loaded, encoder and segment open
            end = (rss_mb(), open_fds(), threading.active_count())
        monitors.prune()
        store = RecordStore(Path(tmp) / "records.sqlite")
        run = store.run(monitor.live.run_id)
        recorded = sum(r.frames for r in store.recordings("soak") if r.kind == "segment")
        pruned = sum(1 for r in store.recordings("soak") if r.pruned_at)
        footage = sum(p.stat().st_size for p in Path(tmp, "recordings").rglob("*.mp4")) / 1e6
        processed = monitor.live.frames
        store.close()
    if baseline is None:
        print("FAIL: fewer than 1000 frames processed")
        return 1
    growth, fd_delta, thread_delta = end[0] - baseline[0], end[1] - baseline[1], end[2] - baseline[2]
    print(
        f"\n{processed} frames in one monitor run ({run.frames if run else 0} in the records, {recorded} in "
        f"segments), {time.perf_counter() - start:.0f} s, imgsz {args.imgsz}, weights {args.weights.name}"
    )
    print(
        f"RSS after the first 1000 frames {baseline[0]:.1f} MB, at end {end[0]:.1f} MB: growth {growth:+.1f} MB "
        f"(target < 50)"
    )
    print(f"open fds {baseline[1]} -> {end[1]} ({fd_delta:+d}); threads {baseline[2]} -> {end[2]} ({thread_delta:+d})")
    print(
        f"footage after retention {footage:.1f} MB (max_gb {args.max_gb:g}: {args.max_gb * 1000:.0f} MB); "
        f"{pruned} file(s) pruned"
    )
    ok = (growth < 50 and fd_delta <= 0 and thread_delta <= 0 and footage <= args.max_gb * 1000
          and run is not None and run.frames == processed == recorded)  # fmt: skip
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
