"""A detection run killed with SIGKILL mid-video: the database stays sound and holds every finished frame."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from helpers import make_video

from app.runtime import ROOT

pytestmark = pytest.mark.slow  # a 400-frame run in a process killed mid-way


def _frames_done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            row = con.execute("SELECT frames FROM runs").fetchone()
            return row[0] if row else 0
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def test_sigkill_mid_video_loses_nothing_finished(trained_models: dict, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "long.mp4", frames=400, noise=True)
    out, db = tmp_path / "out", tmp_path / "out" / "records.sqlite"
    cmd = [sys.executable, "-m", "app", "detect", "--weights", str(trained_models["detect"][0]), "--source",
           str(clip), "--save-dir", str(out), "--conf", "0.002", "--imgsz", "96",
           "--policy", str(_policy(tmp_path))]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while _frames_done(db) < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    seen = _frames_done(db)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and 20 <= seen < 400

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (frames,) = con.execute("SELECT frames FROM runs").fetchone()
        (status,) = con.execute("SELECT status FROM runs").fetchone()
        indices = [r[0] for r in con.execute("SELECT DISTINCT frame_index FROM detections ORDER BY frame_index")]
    assert frames >= seen and status == "running"  # killed: nobody could mark it finished
    assert indices == list(range(frames)) or indices == list(range(frames + 1))  # at most the frame in flight

    run_dir = next(out.glob("*/*"))
    assert not (run_dir / "annotated.mp4").exists()  # an MP4 is only whole once closed: kept as .part
    # The detection files are streamed and valid at every moment: whole lines, the frames recorded so far.
    with open(run_dir / "detections.csv", newline="") as f:
        csv_frames = {int(r["frame_index"]) for r in csv.DictReader(f)}
    lines = (run_dir / "detections.jsonl").read_text().splitlines()
    json_frames = {json.loads(line)["frame_index"] for line in lines}
    assert csv_frames == json_frames and set(range(frames)) <= csv_frames <= set(range(frames + 1))
    for snapshot in run_dir.glob("events/*.jpg"):  # files under their final names are whole
        assert cv2.imread(str(snapshot)) is not None


def _policy(tmp_path: Path) -> Path:
    names = ["Glove_Blue", "Glove_White", "glove_steel", "glove_steel_b", "hand", "head"]
    path = tmp_path / "all.yaml"
    path.write_text(f"name: all\nrule: gloves_forbidden\nroles: {{glove: {names}}}\nmin_frames: 1\ncooldown_s: 0\n")
    return path
