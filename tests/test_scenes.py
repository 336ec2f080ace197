"""The scene check: a split's photos shrunk into larger frames, with labels that follow the pasted content."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import make_polygon_dataset, to_box_labels

from app.data import check_dataset, load_dataset_yaml
from app.runtime import ROOT
from app.scenes import SceneConfig, build_scene_set

SMALL = SceneConfig(width=320, height=180, size=(0.3, 0.5), seed=1)


def _rows(folder: Path) -> list[tuple[str, list[float]]]:
    files = sorted(folder.glob("*.txt"))
    return [(f.stem, [float(v) for v in line.split()]) for f in files for line in f.read_text().splitlines()]


@pytest.fixture
def boxes_yaml(tmp_path: Path) -> Path:
    data = make_polygon_dataset(tmp_path / "src", n_train=2, n_val=10, size=96)
    to_box_labels(data)
    return data


def test_scenes_keep_every_object_at_its_pasted_place(boxes_yaml: Path, tmp_path: Path) -> None:
    spec = load_dataset_yaml(boxes_yaml)
    scenes_yaml = build_scene_set(spec, tmp_path / "scenes", config=SMALL)
    source_rows = sum(len(f.read_text().splitlines()) for f in (boxes_yaml.parent / "valid" / "labels").glob("*.txt"))
    rows = _rows(tmp_path / "scenes" / "labels")
    assert len(rows) == source_rows  # every photo used once, every object kept

    scenes = load_dataset_yaml(scenes_yaml)
    report = check_dataset(scenes, task="detect")
    assert report.ok, report.summary()
    assert 10 / 4 <= report.stats["val"].images <= 10  # 1-4 photos per frame
    for stem, (_cls, cx, cy, w, h) in rows:
        frame = cv2.imread(str(tmp_path / "scenes" / "images" / f"{stem}.jpg"))
        assert frame.shape == (180, 320, 3)
        x0, y0 = round((cx - w / 2) * 320), round((cy - h / 2) * 180)
        x1, y1 = round((cx + w / 2) * 320), round((cy + h / 2) * 180)
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 180
        # The generated shapes are bright (>= 120) on dark noise (< 60): a label that did not move with its
        # photo would frame only dark background.
        assert frame[y0:y1, x0:x1].max() >= 120


def test_background_has_no_recognisable_content_and_set_is_reproducible(boxes_yaml: Path, tmp_path: Path) -> None:
    spec = load_dataset_yaml(boxes_yaml)
    build_scene_set(spec, tmp_path / "a", config=SMALL)
    build_scene_set(spec, tmp_path / "b", config=SMALL)
    assert _rows(tmp_path / "a" / "labels") == _rows(tmp_path / "b" / "labels")
    frame = cv2.imread(str(next((tmp_path / "a" / "images").glob("*.jpg"))))
    # Far from any pasted photo the background is a smooth field: its local detail is only the added noise.
    corner = frame[:20, :20].astype(np.float32)
    assert np.abs(cv2.Laplacian(corner, cv2.CV_32F)).mean() < 40


def test_rebuilding_removes_old_scenes(boxes_yaml: Path, tmp_path: Path) -> None:
    spec = load_dataset_yaml(boxes_yaml)
    (tmp_path / "scenes" / "images").mkdir(parents=True)
    (tmp_path / "scenes" / "images" / "scene_9999.jpg").write_bytes(b"old")
    data = yaml.safe_load(build_scene_set(spec, tmp_path / "scenes", config=SMALL).read_text())
    assert not (tmp_path / "scenes" / "images" / "scene_9999.jpg").exists()
    assert Path(data["path"]).is_absolute() and data["names"] == spec.names


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_real_valid_split_scenes_hold_all_140_hands(shared_data: Path, tmp_path: Path) -> None:
    spec = load_dataset_yaml(ROOT / "datasets/gloves.yaml")
    build_scene_set(spec, tmp_path / "scenes")
    rows = _rows(tmp_path / "scenes" / "labels")
    assert len(rows) == 140
    heights = np.array([r[4] for _, r in rows])
    assert np.median(heights) < 0.25  # hands that filled close-ups are now small in a 720p frame
