"""Dataset YAML resolution and the pre-training data check, on generated exports and the real glove data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import BANDSAW_NAMES, make_polygon_dataset, to_box_labels

from app.data import (
    check_dataset,
    list_images,
    load_dataset_yaml,
    unique_photos,
    write_resolved_yaml,
)
from app.errors import DatasetError
from app.runtime import ROOT


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A fresh generated Roboflow export that a test may damage."""
    return make_polygon_dataset(tmp_path / "export", n_train=6, n_val=3, size=64)


def _label(data_yaml: Path, split: str = "train", i: int = 0) -> Path:
    return data_yaml.parent / split / "labels" / f"{split}_{i}.txt"


def test_roboflow_export_is_read_unchanged(export: Path) -> None:
    spec = load_dataset_yaml(export)
    assert spec.names == dict(enumerate(BANDSAW_NAMES))
    assert spec.splits["train"] == [export.parent / "train" / "images"]  # "../train/images" quirk resolved
    report = check_dataset(spec, task="segment")
    assert report.ok, report.summary()
    assert report.label_format == "polygons"
    assert (report.stats["train"].images, report.stats["val"].images) == (6, 3)
    rows = sum(len(p.read_text().splitlines()) for p in export.parent.rglob("labels/*.txt"))
    assert sum(s.polygons for s in report.stats.values()) == rows
    assert check_dataset(spec, task="detect").ok  # polygons train detectors as their boxes


def test_real_glove_data_passes(shared_data: Path) -> None:
    report = check_dataset(load_dataset_yaml(ROOT / "datasets/gloves.yaml"), task="detect")
    assert report.ok, report.summary()
    assert report.spec.root == (shared_data / "gloves").resolve()
    assert (report.stats["train"].images, report.stats["val"].images, report.stats["test"].images) == (4368, 138, 108)
    assert report.label_format == "boxes"
    assert set(report.stats["val"].per_class) == {0, 1}


def test_bandsaw_yaml_names_the_six_classes_and_says_where_the_data_goes() -> None:
    spec = load_dataset_yaml(ROOT / "datasets/bandsaw.yaml")
    assert list(spec.names.values()) == BANDSAW_NAMES
    if not spec.root.exists():  # the user has not unpacked the export: the error says where it goes
        (error,) = check_dataset(spec, task="segment").errors
        assert "datasets/bandsaw does not exist" in error and "bandsaw.yaml" in error


def test_missing_split_folder(export: Path) -> None:
    shutil.rmtree(export.parent / "valid" / "images")
    report = check_dataset(load_dataset_yaml(export))
    assert any(e.startswith("val:") and "does not exist" in e for e in report.errors)


def test_class_id_out_of_range_names_file_and_line(export: Path) -> None:
    label = _label(export)
    label.write_text(label.read_text() + "6 0.5 0.5 0.2 0.2\n")
    report = check_dataset(load_dataset_yaml(export))
    (error,) = report.errors
    assert "class ids outside 0..5" in error and f"{label}:" in error


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("0 0.5 0.5 0.2", "malformed"),
        ("0 0.1 0.1 0.2 0.2 0.3", "malformed"),
        ("zero 0.5 0.5 0.2 0.2", "non-numeric"),
        ("0 0.5 nan 0.2 0.2", "non-numeric"),
        ("1.5 0.5 0.5 0.2 0.2", "class ids"),
        ("0 50 60 20 20", "outside 0..1"),
    ],
)
def test_bad_label_lines_are_errors(export: Path, row: str, problem: str) -> None:
    _label(export, "valid", 1).write_text(row + "\n")
    report = check_dataset(load_dataset_yaml(export))
    assert not report.ok and problem in report.errors[0]


def test_images_without_labels_are_counted(export: Path) -> None:
    _label(export, "train", 0).unlink()
    _label(export, "train", 1).write_text("")
    report = check_dataset(load_dataset_yaml(export))
    assert report.ok
    assert report.stats["train"].unlabelled == 2
    assert report.warnings == ["images without labels (trained as background): train 2"]


def test_box_and_polygon_mix_is_reported(export: Path) -> None:
    _label(export).write_text("2 0.5 0.5 0.2 0.2\n")
    for task in ("detect", "segment"):
        report = check_dataset(load_dataset_yaml(export), task=task)
        assert report.ok and report.label_format == "mixed"
        assert any("mix 1 boxes" in w for w in report.warnings)


def test_segment_task_on_box_only_data_is_a_mismatch(export: Path) -> None:
    to_box_labels(export)
    assert check_dataset(load_dataset_yaml(export), task="detect").ok
    report = check_dataset(load_dataset_yaml(export), task="segment")
    assert any("task mismatch" in e for e in report.errors)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("train: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping with train/val/names keys"),
        ("train: a\nval: b\n", "no 'names' key"),
        ("train: a\nval: b\nnc: 3\nnames: [x, y]\n", "nc is 3 but 'names' lists 2"),
        ("train: a\nnames: [x]\n", "no val key"),
        ("train: a\nval: b\nnames: {0: x, 2: y}\n", "must be 0..1"),
    ],
)
def test_wrong_dataset_yaml(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "data.yaml").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset_yaml(tmp_path / "data.yaml")


def test_missing_yaml(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset YAML not found"):
        load_dataset_yaml(tmp_path / "nope.yaml")


def test_resolved_yaml_has_absolute_paths_and_drops_download_scripts(export: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(export.read_text())
    data["download"] = "open('pwned', 'w')"  # Ultralytics would exec() this if a split were missing
    export.write_text(yaml.safe_dump(data))
    out = yaml.safe_load(write_resolved_yaml(load_dataset_yaml(export), tmp_path / "resolved").read_text())
    assert "download" not in out
    assert Path(out["train"]).is_absolute() and Path(out["train"]).is_dir()
    assert out["names"] == dict(enumerate(BANDSAW_NAMES))


def test_dedupe_keeps_one_image_per_roboflow_photo(export: Path, tmp_path: Path) -> None:
    images = export.parent / "train" / "images"
    for i, image in enumerate(sorted(images.glob("*.jpg"))):  # 6 images: photos p0, p1 three copies each
        stem = f"p{i % 2}_jpg.rf.{i:032x}"
        image.rename(images / f"{stem}.jpg")
        label = export.parent / "train" / "labels" / f"{image.stem}.txt"
        label.rename(label.with_name(f"{stem}.txt"))
    spec = load_dataset_yaml(export)
    out = yaml.safe_load(write_resolved_yaml(spec, tmp_path / "resolved", dedupe_train=True).read_text())
    kept = [Path(line) for line in Path(out["train"]).read_text().splitlines()]
    assert sorted(p.name.split(".rf.")[0] for p in kept) == ["p0_jpg", "p1_jpg"]
    assert all(p.is_absolute() and p.is_file() for p in kept)
    assert Path(out["val"]) == export.parent / "valid" / "images"  # only train is de-duplicated
    assert unique_photos(sorted(images.glob("*.jpg"))) == kept


def test_real_train_split_dedupes_to_its_986_photos(shared_data: Path) -> None:
    spec = load_dataset_yaml(ROOT / "datasets/gloves.yaml")
    assert len(unique_photos(list_images(spec.splits["train"][0]))) == 986
