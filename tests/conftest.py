"""Shared fixtures: small generated datasets in the layouts users bring, and paths to the shared real data."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest
import yaml
from helpers import postgres_cluster

import app  # noqa: F401  (offline environment and BRA registration before Ultralytics is used)
from app import export
from app.runtime import ROOT, SHARED_DATA

BANDSAW_NAMES = ["Glove_Blue", "Glove_White", "glove_steel", "glove_steel_b", "hand", "head"]

sys.path.insert(0, str(Path(__file__).parent))  # tests import reference_bra


def make_polygon_dataset(root: Path, n_train: int = 8, n_val: int = 4, size: int = 96, seed: int = 0) -> Path:
    """Write a Roboflow-style YOLO segmentation export (6 bandsaw classes) and return its data.yaml.

    Each image holds 1-3 filled polygons on noise; every label row is `class x1 y1 ... xn yn`, normalised.
    The data.yaml has Roboflow's own quirks: `../train/images` split paths and a `names` list.
    """
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("valid", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            rows = []
            for _ in range(rng.integers(1, 4)):
                cls = int(rng.integers(0, len(BANDSAW_NAMES)))
                cx, cy = rng.uniform(0.25, 0.75, 2)
                r = rng.uniform(0.1, 0.22)
                angles = np.sort(rng.uniform(0, 2 * np.pi, 6))
                pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).clip(0, 1)
                color = [int(c) for c in rng.integers(120, 255, 3)]
                cv2.fillPoly(img, [np.round(pts * size).astype(np.int32)], color)
                rows.append(" ".join([str(cls), *(f"{v:.5f}" for v in pts.ravel())]))
            cv2.imwrite(str(root / split / "images" / f"{split}_{i}.jpg"), img)
            (root / split / "labels" / f"{split}_{i}.txt").write_text("\n".join(rows) + "\n")
    data = {
        "train": "../train/images",
        "val": "../valid/images",
        "nc": len(BANDSAW_NAMES),
        "names": BANDSAW_NAMES,
        "roboflow": {"workspace": "test", "project": "bandsaw", "version": 1},
    }
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


def to_box_labels(data_yaml: Path) -> None:
    """Rewrite every polygon label of a generated dataset as its bounding box (a detection-only export)."""
    for label in data_yaml.parent.rglob("labels/*.txt"):
        rows = []
        for line in label.read_text().splitlines():
            cls, *xy = line.split()
            x, y = np.array(xy[0::2], float), np.array(xy[1::2], float)
            box = ((x.min() + x.max()) / 2, (y.min() + y.max()) / 2, x.max() - x.min(), y.max() - y.min())
            rows.append(" ".join([cls, *(f"{v:.5f}" for v in box)]))
        label.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The exports the engine makes for its runtimes (`export.cached_export`) go to a folder of the session's, not
    the project's .runtime/: the test models change every session."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("export-cache")
        patch.setattr(export, "CACHE_ROOT", root)
        yield root


@pytest.fixture(scope="session")
def polygon_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 6-class polygon dataset shared by the tests that only read it."""
    return make_polygon_dataset(tmp_path_factory.mktemp("bandsaw"))


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """One-epoch BRA detect and segment models trained through train.py: task -> (exported .pt, data.yaml).

    Their detections are near-random; tests that need detections use a very low confidence threshold.
    """
    from train import main

    out = {}
    for task, model in (("detect", "models/yolo11n-bra.yaml"), ("segment", "models/yolo11n-seg-bra.yaml")):
        tmp = tmp_path_factory.mktemp(task)
        data = make_polygon_dataset(tmp / "data", n_train=8, n_val=4, size=96)
        exported = tmp / "weights" / f"{task}.pt"
        # no plots: half the time of these runs
        argv = ["--data", str(data), "--model", str(ROOT / model), "--epochs", "1", "--imgsz", "96", "--batch",
                "4", "--workers", "0", "--device", "cpu", "--project", str(tmp / "runs"), "--name", "t",
                "--export-to", str(exported), "--set", "plots=False"]  # fmt: skip
        assert main(argv) == 0
        out[task] = (exported, data)
    return out


@pytest.fixture
def shared_data() -> Path:
    """The real glove data beside the checkout; tests that need it skip (and say so) where it is absent."""
    if not (SHARED_DATA / "gloves" / "data.yaml").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (the ../shared folder beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own for the session (`helpers.postgres_cluster`, fsync off: a test cluster need
    not survive a power cut): its base URL. Where PostgreSQL is not installed, the tests using it fail, saying so."""
    try:
        with postgres_cluster(fsync=False) as url:
            yield url
    except FileNotFoundError as e:
        pytest.fail(str(e))


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards): its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"{postgres_server}/{name}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set this machine's clock to a time zone (`Europe/Berlin`) for one test; the process's own comes back after."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()
