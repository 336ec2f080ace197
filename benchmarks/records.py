"""The records store on SQLite and on PostgreSQL, side by side: detections written per second (one transaction
per frame, as a monitor writes them) and the Excel export of a 100,000-detection date range.

    .venv/bin/python benchmarks/records.py [--detections 100000] [--postgres postgresql://user@host:port/db]

Without `--postgres` a temporary PostgreSQL cluster (Debian's binaries, fsync on, as a real server) is started on
a loopback port for the run and removed afterwards. Both stores get the same synthetic runs: one a day for a
week, 10 detections per frame, two classes, one event per 500 frames; the export is the five middle days, which
hold `--detections` (the two days around them keep the range honest).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

import app  # noqa: F401
from app.excel import export_workbook
from app.records import RecordStore, utc_now
from app.runtime import ROOT
from app.schema import DetectionRow, EventRow, RunRow

sys.path.insert(0, str(ROOT / "tests"))
from helpers import postgres_cluster  # the tests' own throw-away cluster

RUNS, IN_RANGE = 7, 5  # one run a day, 2026-11-16 .. 22; the export takes 17 .. 21


def fill(store: RecordStore, frames: int, per_frame: int) -> float:
    """Write the runs; returns the seconds spent."""
    t = time.perf_counter()
    for day in range(RUNS):
        run_id = f"bench-{day}"
        store.start_run(RunRow(id=run_id, source="bench.mp4", kind="video", model="bench.pt", model_sha256="0" * 64,
                               task="detect", conf=0.25, iou=0.7, imgsz=640,
                               started_at=f"2026-11-{16 + day}T08:00:00.000+00:00"))  # fmt: skip
        for f in range(frames):
            now = utc_now()
            store.add_frame(run_id, [
                DetectionRow(run_id=run_id, item="bench.mp4", frame_index=f, video_time=f / 30, detected_at=now,
                             class_id=i % 2, class_name=("gloved_hand", "bare_hand")[i % 2], confidence=0.5 + i / 40,
                             x1=10.0 * i, y1=20.0, x2=10.0 * i + 50, y2=90.0, track_id=i)
                for i in range(per_frame)
            ])  # fmt: skip
            if f % 500 == 0:
                store.save_event(EventRow(run_id=run_id, item="bench.mp4", reason="bare hand", class_name="bare_hand",
                                          start_frame=f, end_frame=f + 5, start_time=f / 30, end_time=(f + 5) / 30,
                                          peak_confidence=0.9, closed=True, recorded_at=now))  # fmt: skip
        store.finish_run(run_id, "completed")
    return time.perf_counter() - t


def measure(name: str, location: str | Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    store = RecordStore(location)
    try:
        frames = args.detections // args.per_frame // IN_RANGE
        written = fill(store, frames, args.per_frame)
        week = {"start": "2026-11-17", "end": "2026-11-22"}
        t = time.perf_counter()
        selected = len(store.detections(**week))
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        export_workbook(store, out / f"{name}.xlsx", **week)
        export_s = time.perf_counter() - t
    finally:
        store.close()
    written_per_s = frames * args.per_frame * RUNS / written
    return {"written/s": written_per_s, "selected": selected, "read s": read_s, "export s": export_s}


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with postgres_cluster() as server:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        yield f"{server}/bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detections", type=int, default=100_000, help="in the exported range (7/5 as many written)")
    parser.add_argument("--per-frame", type=int, default=10)
    parser.add_argument("--postgres", default=None, help="an empty database to use (default: a temporary cluster)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, postgres(args.postgres) as url:
        results = {
            "SQLite": measure("sqlite", Path(tmp) / "records.sqlite", args, Path(tmp)),
            "PostgreSQL": measure("postgresql", url, args, Path(tmp)),
        }
    print(f"{args.detections * RUNS // IN_RANGE:,} detections written, {args.per_frame} per frame, one transaction "
          f"per frame; the range: 5 of 7 days")  # fmt: skip
    print(f"| store | detections written/s | range read ({results['SQLite']['selected']:,} rows) | its workbook |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['written/s']:,.0f} | {r['read s']:.2f} s | {r['export s']:.2f} s |")


if __name__ == "__main__":
    main()
