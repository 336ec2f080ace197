"""CPU time and file size of a run's annotated video per x264 preset: files' `veryfast` against live runs' `ultrafast`.

    .venv/bin/python benchmarks/video_presets.py [--source clip.mp4] [--frames 40]

The clip's frames are decoded first, then encoded with `app.outputs.VideoWriter` (its background thread, as a run
writes) once per preset; the process's CPU time (all threads) per frame and the file's size are printed, with
ratios to the first preset. Without --source, ../shared/data/videos/hand_desk.mp4 is used.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import app  # noqa: F401  (first: it sets the offline environment)

# isort: split
from app.outputs import FILE_PRESET, LIVE_PRESET, VideoWriter
from app.runtime import DESK_CLIP
from app.sources import open_source


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default=str(DESK_CLIP))
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    source = open_source(args.source)
    frames = [f.image for f in itertools.islice(source.frames(), args.frames)]
    print(f"source {args.source}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}")
    print("| preset | CPU ms / frame | file kB | CPU x first | size x first |")
    print("| --- | ---: | ---: | ---: | ---: |")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for preset in (FILE_PRESET, LIVE_PRESET):
            cpu = time.process_time()
            with VideoWriter(Path(tmp) / f"{preset}.mp4", source.fps, preset=preset) as video:
                for frame in frames:
                    video.write(frame)
            ms = 1000 * (time.process_time() - cpu) / len(frames)
            kb = (Path(tmp) / f"{preset}.mp4").stat().st_size / 1024
            first = first or (ms, kb)
            print(f"| {preset} | {ms:.1f} | {kb:.0f} | {ms / first[0]:.2f}x | {kb / first[1]:.2f}x |")


if __name__ == "__main__":
    main()
