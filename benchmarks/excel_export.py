"""Time the Excel export of 100,000 detections (target: under 10 s on the 2-core CPU).

    .venv/bin/python benchmarks/excel_export.py [--detections 100000]

Fills a fresh SQLite records file with synthetic detections (10 per frame, two classes, one event per 500
frames), then times `export_workbook` for the run and prints the time and the workbook size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import app  # noqa: F401
from app.excel import export_workbook
from app.policy import SafetyEvent
from app.records import RecordStore, RunRecord, utc_now
from app.results import Detection, FrameResult


def fill(store: RecordStore, n_detections: int, per_frame: int = 10) -> str:
    run_id = store.new_run_id()
    store.start_run(RunRecord(run_id, "bench.mp4", "video", "bench.pt", "0" * 64, "detect", 0.25, 0.7, 640, None,
                              False, "bench", None, None, utc_now()))  # fmt: skip
    for f in range(n_detections // per_frame):
        dets = [
            Detection(i % 2, ("gloved_hand", "bare_hand")[i % 2], 0.5 + i / 40, (10.0 * i, 20.0, 10.0 * i + 50, 90.0))
            for i in range(per_frame)
        ]
        store.add_frame(run_id, FrameResult(f, f / 30, 1280, 720, dets, source="bench.mp4"))
        if f % 500 == 0:
            store.save_event(run_id, SafetyEvent("bare hand", "bare_hand", f, f / 30, f + 5, (f + 5) / 30, 0.9,
                                                 "bench.mp4", closed=True))  # fmt: skip
    store.finish_run(run_id, "completed")
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="exports timed; the median is judged")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = RecordStore(Path(tmp) / "records.sqlite")
        t = time.perf_counter()
        run_id = fill(store, args.detections)
        fill_s = time.perf_counter() - t
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            path = export_workbook(store, Path(tmp) / "bench.xlsx", run_id=run_id)
            times.append(time.perf_counter() - t)
        size = path.stat().st_size / 1e6
    export_s = statistics.median(times)
    verdict = "meets" if export_s < 10 else "MISSES"
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"records: {args.detections:,} detections written in {fill_s:.1f} s (one transaction per frame)")
    print(f"excel export: {args.detections:,} detections in {export_s:.2f} s (median of {runs} s), {size:.1f} MB "
          f"-> {verdict} the 10 s target")  # fmt: skip


if __name__ == "__main__":
    main()
