"""More than 100 generated hostile files (tests/hostile_media.py) through the engine, the CLI and the console's
service: each gives a clear error or a correct result, nothing crashes, and memory stays bounded."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile_media import Case, make_cases

from app.cli import main as cli_main
from app.engine import DetectionEngine, RunSettings
from app.errors import ServiceError, SourceError
from app.service import DetectionService, RunOptions
from app.sources import BadItem, open_source

FRAMES = 3  # frames checked per video


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    cases = make_cases(tmp_path_factory.mktemp("hostile"))
    assert len(cases) >= 100
    assert {c.expect for c in cases} == {"ok", "error", "either"}
    return cases


@pytest.fixture(scope="module")
def weights(trained_models: dict) -> Path:
    return trained_models["detect"][0]


def check_frame(case: Case, image: np.ndarray) -> str | None:
    """What is wrong with a decoded frame for this case, or None."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        return f"decoded to {image.dtype} {image.shape}, not 8-bit BGR"
    if case.shape and image.shape[:2] != case.shape:
        return f"decoded to {image.shape[:2]}, expected {case.shape}"
    if case.colour:
        h, w = image.shape[:2]
        left, right = image[h // 2, w // 4].astype(int), image[h // 2, 3 * w // 4].astype(int)
        if not (left[2] > left[0] + 50 and right[0] > right[2] + 50):
            return f"colours wrong: left {left}, right {right} (BGR), expected red then blue"
    return None


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_engine_answers_every_case(cases: list[Case], weights: Path) -> None:
    engine = DetectionEngine(weights)
    settings = RunSettings(conf=0.01, imgsz=96)
    problems = []
    for case in cases:
        try:
            frames = list(itertools.islice(open_source(case.path).frames(), FRAMES))
        except SourceError as e:
            if case.expect == "ok" or case.message not in str(e) or not str(e).strip():
                problems.append(f"{case.name}: refused ({e}), expected {case.expect} {case.message!r}")
            continue
        if case.expect == "error":
            problems.append(f"{case.name}: decoded, expected an error containing {case.message!r}")
            continue
        if not frames or any(isinstance(f, BadItem) for f in frames):
            problems.append(f"{case.name}: no usable frame ({frames})")
            continue
        for frame in frames:
            if problem := check_frame(case, frame.image):
                problems.append(f"{case.name}: {problem}")
            result = engine.predict(frame, settings)
            assert (result.width, result.height) == (frame.image.shape[1], frame.image.shape[0])
            assert result.annotated.shape == frame.image.shape
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_cli_exit_codes_for_every_case(cases: list[Case], weights: Path, tmp_path: Path, capsys) -> None:
    allowed = {"ok": {0, 3}, "error": {2}, "either": {0, 2, 3}}  # 3: a video readable only up to a cut
    problems = []
    for case in cases:
        argv = ["detect", "--weights", str(weights), "--source", str(case.path), "--imgsz", "96", "--stride", "4",
                "--save-dir", str(tmp_path / "exports")]  # fmt: skip
        code = cli_main(argv)
        err = capsys.readouterr().err
        if code not in allowed[case.expect]:
            problems.append(f"{case.name}: exit {code}, expected {sorted(allowed[case.expect])}: {err.strip()[-200:]}")
        elif code == 2 and (len(err.strip().splitlines()) != 1 or case.message not in err):
            problems.append(f"{case.name}: exit 2 without a one-line reason containing {case.message!r}: {err!r}")
    assert not problems, "\n".join(problems)


def test_console_service_answers_every_case(cases: list[Case], weights: Path, tmp_path: Path) -> None:
    service = DetectionService(exports_dir=tmp_path / "exports", weights_dir=weights.parent)
    options = RunOptions(weights=str(weights), imgsz=96)
    problems, saved = [], 0
    for case in cases:
        try:
            run = service.detect_file(case.path, options, stride=4)
        except ServiceError as e:
            if case.expect == "ok" or case.message not in str(e):
                problems.append(f"{case.name}: refused ({e}), expected {case.expect}")
            continue
        if case.expect == "error":
            problems.append(f"{case.name}: accepted, expected an error containing {case.message!r}")
            continue
        updates = list(run)
        frames = [u.frame for u in updates if u.frame is not None]
        if not frames:
            problems.append(f"{case.name}: the run processed no frame")
        saved += len(frames)
    assert not problems, "\n".join(problems)
    assert sum(r.frames for r in service.history(None, None)) == saved  # every processed frame is recorded


@pytest.mark.slow
def test_memory_stays_bounded_over_all_cases(cases: list[Case], weights: Path) -> None:
    """Peak RSS of a fresh process running every case through the engine: bombs are refused, not decoded
    (one 100000 x 100000 image alone would need 30 GB)."""
    script = f"""
import itertools, json, resource, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import app
from pathlib import Path
from hostile_media import make_cases
from app.engine import DetectionEngine
from app.errors import SourceError
from app.sources import open_source
engine = DetectionEngine({str(weights)!r})
engine.predict(__import__("numpy").zeros((48, 64, 3), "uint8"))
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = 0
for case in make_cases(Path({str(cases[0].path.parent)!r}) / "again"):
    try:
        for frame in itertools.islice(open_source(case.path).frames(), 3):
            if hasattr(frame, "image"):
                engine.predict(frame)
        n += 1
    except SourceError:
        n += 1
print(json.dumps({{"cases": n, "start_mb": start / 1024,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["cases"] == len(cases)
    assert report["peak_mb"] - report["start_mb"] < 300, report
