"""Dataset YAMLs: resolve them the way Ultralytics does and check the data before any training starts.

Ultralytics drops a bad label file with a one-line warning deep in its log and trains on what is left; a
class id >= nc or a segment model on box-only data only shows up as poor metrics hours later. `check_dataset`
reads every label once (a few seconds for thousands of files) and reports such problems up front.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import yaml
from ultralytics.data.augment import Compose, LetterBox
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import IMG_FORMATS, get_split_fraction, img2label_paths
from ultralytics.utils import colorstr
from ultralytics.utils.patches import imread

from .errors import DatasetError
from .files import atomic_write, read_yaml_mapping
from .runtime import ROOT, RUNTIME_DIR

REQUIRED_SPLITS = ("train", "val")
OPTIONAL_SPLITS = ("test",)
MAX_EXAMPLES = 5  # offending lines quoted per kind of problem
# Roboflow names each exported copy of a photo `<photo>.rf.<hash>.<ext>`: copies share `<photo>`.
_ROBOFLOW_COPY = re.compile(r"^(?P<photo>.+)\.rf\.[0-9a-f]+$")


@dataclass
class DatasetSpec:
    """A dataset YAML with its paths resolved.

    Attributes:
        yaml_file: The YAML as given by the user.
        root: The dataset root that relative split paths hang from.
        names: Class names by id.
        splits: Image sources per split (`train`, `val`, optional `test`), each a folder or a `.txt` list.
        train_repeat: Times each train source's images are seen per epoch (the YAML's `train_repeat`, one whole
            number per train source; all 1 by default), so a small set is not drowned by a large one.
    """

    yaml_file: Path
    root: Path
    names: dict[int, str]
    splits: dict[str, list[Path]]
    train_repeat: list[int] = field(default_factory=list)

    @property
    def nc(self) -> int:
        return len(self.names)


@dataclass
class SplitStats:
    """What one split holds."""

    images: int = 0
    labelled: int = 0  # images with a non-empty label file
    unlabelled: int = 0  # images with no label file or an empty one (Ultralytics trains them as background)
    boxes: int = 0
    polygons: int = 0
    per_class: Counter = field(default_factory=Counter)


@dataclass
class DatasetReport:
    """The outcome of `check_dataset`: statistics per split, errors (training must not start) and warnings."""

    spec: DatasetSpec
    task: str
    stats: dict[str, SplitStats] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def label_format(self) -> str:
        """`boxes`, `polygons`, `mixed` or `none`, over all splits."""
        boxes = sum(s.boxes for s in self.stats.values())
        polygons = sum(s.polygons for s in self.stats.values())
        return {(True, True): "mixed", (True, False): "boxes", (False, True): "polygons"}.get(
            (boxes > 0, polygons > 0), "none"
        )

    def summary(self) -> str:
        """A human-readable report, one line per split, then errors and warnings."""
        names = ", ".join(self.spec.names.values())
        lines = [f"Dataset {self.spec.yaml_file} ({self.spec.nc} classes: {names}; root {self.spec.root})"]
        for split, s in self.stats.items():
            lines.append(
                f"  {split:<5} {s.images} images, {s.labelled} labelled, {s.unlabelled} without labels, "
                f"{s.boxes} boxes, {s.polygons} polygons"
            )
        lines += [f"  ERROR: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def load_dataset_yaml(yaml_file: str | Path) -> DatasetSpec:
    """Read a dataset YAML (Ultralytics or Roboflow export) and resolve its paths.

    Resolution follows Ultralytics: with no `path` key, splits are relative to the YAML's folder (how Roboflow
    exports are laid out); a relative `path` is taken from the project root; a split written `../train/images`
    that does not exist is tried as `train/images` (Roboflow's export quirk).

    Raises:
        DatasetError: On a missing file, bad YAML, missing keys or names that do not match `nc`.

    Example:
        >>> spec = load_dataset_yaml("datasets/gloves.yaml")
        >>> spec.names
        {0: 'gloved_hand', 1: 'bare_hand'}
    """
    yaml_file = Path(yaml_file)
    if not yaml_file.is_file():
        raise DatasetError(f"dataset YAML not found: {yaml_file}")
    data = read_yaml_mapping(yaml_file, DatasetError, str(yaml_file), "with train/val/names keys")

    names = _parse_names(yaml_file, data)
    root = _resolve_root(yaml_file, data.get("path"))
    missing = [k for k in REQUIRED_SPLITS if not data.get(k)]
    if missing:
        raise DatasetError(f"{yaml_file} has no {' / '.join(missing)} key: both train and val splits are required")
    splits = {}
    for split in (*REQUIRED_SPLITS, *OPTIONAL_SPLITS):
        value = data.get(split)
        if value:
            entries = value if isinstance(value, list) else [value]
            splits[split] = [_resolve_split(root, str(v)) for v in entries]
    repeat = _parse_train_repeat(yaml_file, data.get("train_repeat"), len(splits["train"]))
    return DatasetSpec(yaml_file=yaml_file, root=root, names=names, splits=splits, train_repeat=repeat)


def check_dataset(spec: DatasetSpec, task: str = "detect") -> DatasetReport:
    """Check every split's images and labels for the given task (`detect` or `segment`).

    Errors: a split folder that does not exist or holds no images, class ids outside `0..nc-1`, malformed label
    lines, coordinates outside 0..1, and a segment task on data without polygons. Warnings: images without
    labels (counted), a mix of box and polygon labels.

    Example:
        >>> report = check_dataset(load_dataset_yaml("datasets/gloves.yaml"), task="detect")
        >>> report.ok
        True
    """
    if task not in ("detect", "segment"):
        raise DatasetError(f"task must be 'detect' or 'segment', got {task!r}")
    report = DatasetReport(spec=spec, task=task)
    if not spec.root.is_dir():
        report.errors.append(
            f"dataset folder {spec.root} does not exist; put the data there (see the comments in {spec.yaml_file})"
        )
        return report
    problems: dict[str, list[str]] = {}  # kind of problem -> examples
    for split, sources in spec.splits.items():
        images = []
        for source in sources:
            if not source.exists():
                report.errors.append(f"{split}: {source} does not exist")
                continue
            images += list_images(source)
        if not all(s.exists() for s in sources):
            continue
        if not images:
            report.errors.append(f"{split}: no images in {', '.join(map(str, sources))}")
        report.stats[split] = _check_labels(images, spec.nc, problems)

    for kind, examples in problems.items():
        shown = "; ".join(examples[:MAX_EXAMPLES]) + (" ..." if len(examples) > MAX_EXAMPLES else "")
        report.errors.append(f"{len(examples)} {kind}: {shown}")
    unlabelled = {k: s.unlabelled for k, s in report.stats.items() if s.unlabelled}
    if unlabelled:
        counts = ", ".join(f"{k} {n}" for k, n in unlabelled.items())
        report.warnings.append(f"images without labels (trained as background): {counts}")
    fmt = report.label_format
    if fmt == "mixed":
        boxes = sum(s.boxes for s in report.stats.values())
        polygons = sum(s.polygons for s in report.stats.values())
        effect = "those boxes train without masks" if task == "segment" else "polygons are used as their boxes"
        report.warnings.append(f"labels mix {boxes} boxes and {polygons} polygons; {effect}")
    if task == "segment" and fmt in ("boxes", "none"):
        report.errors.append(
            "task mismatch: a segment model needs polygon labels, but this dataset has box labels only; "
            "train a detect model (e.g. models/yolo11n-bra.yaml) or use a segmentation export"
        )
    return report


def write_resolved_yaml(spec: DatasetSpec, out_dir: Path = RUNTIME_DIR / "data", dedupe_train: bool = False) -> Path:
    """Write the spec as a YAML with absolute paths for Ultralytics' trainer, and return its path.

    Only keys we understand are written: a `download` key in the user's YAML (which Ultralytics would
    execute as Python) never reaches the trainer. With `dedupe_train` (one image per source photo, see
    `unique_photos`) or a `train_repeat` other than 1, the train split becomes a list file; Ultralytics keeps
    repeated lines, so a source repeated twice is sampled twice as often.
    """
    data: dict[str, Any] = {"path": str(spec.root), "names": spec.names, "nc": spec.nc}
    for split, sources in spec.splits.items():
        data[split] = [str(s) for s in sources] if len(sources) > 1 else str(sources[0])
    stem = spec.yaml_file.stem + ("-unique" if dedupe_train else "")
    repeat = spec.train_repeat or [1] * len(spec.splits["train"])
    if dedupe_train or any(n != 1 for n in repeat):
        photos: list[Path] = []
        for source, times in zip(spec.splits["train"], repeat, strict=True):
            images = list_images(source)
            photos += (unique_photos(images) if dedupe_train else images) * times
        data["train"] = str(atomic_write(out_dir / f"{stem}-train.txt", "".join(f"{p}\n" for p in photos).encode()))
    return atomic_write(out_dir / f"{stem}.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())


class FrameDataset(YOLODataset):
    """Evaluation images letterboxed exactly as the engine's predictor letterboxes a frame of that shape.

    Ultralytics' validator resizes an image with its own rounding and letterboxes each batch onto one aspect-ratio
    canvas plus half a stride of border (a 640x640 photo at 672x672); the predictor scales a frame with
    `LetterBox(auto=True)` onto the smallest stride multiple around it. The border alone moves mAP50 on
    `gloves-scenes/valid` by about 0.01 and the confidence at the best F1 by 0.07; the rounding makes a 641x1280
    image 352 rows high rather than 320. Run one image a batch: each has its own canvas.
    """

    def load_image(self, i: int, rect_mode: bool = True, resize_short: bool = False) -> tuple:
        """The image scaled as the predictor's `LetterBox` scales it (its padding follows in the transforms)."""
        im = imread(self.im_files[i], flags=self.cv2_flag)
        if im is None:
            raise FileNotFoundError(f"Image Not Found {self.im_files[i]}")
        h0, w0 = im.shape[:2]
        size = self._letterbox().get_params({"img": im})["new_unpad"]
        if size != (w0, h0):
            im = cv2.resize(im, size, interpolation=cv2.INTER_LINEAR)
        return (im[..., None] if im.ndim == 2 else im), (h0, w0), im.shape[:2]

    def build_transforms(self, hyp: Any = None) -> Compose:
        transforms = super().build_transforms(hyp)
        transforms.transforms[0] = self._letterbox()  # in place of the validator's square, no-upscale one
        return transforms

    def _letterbox(self) -> LetterBox:
        return LetterBox((self.imgsz, self.imgsz), auto=True, stride=self.stride)


def yolo_dataset(
    cfg: Any, img_path: str, batch: int | None, data: dict, stride: int, train: bool, cls: type[YOLODataset]
) -> YOLODataset:
    """Ultralytics' dataset for a trainer (`cls`, a subclass with more augmentation) or for evaluation on the
    engine's canvas (`FrameDataset`), made as Ultralytics' `build_yolo_dataset` makes a detect / segment one, but
    with that class and no half-stride border (which only aspect-ratio batches, `rect`, use). Not for depth,
    semantic or multi-modal data, and `fraction` applies even to a dataset Ultralytics marks `complete`."""
    return cls(
        img_path=img_path,
        imgsz=cfg.imgsz,
        batch_size=batch,
        augment=train,
        hyp=cfg,
        rect=cfg.rect and train,  # evaluation: each image on its own canvas (`FrameDataset`), one a batch
        cache=cfg.cache or None,
        single_cls=cfg.single_cls or False,
        stride=stride,
        pad=0.0,
        prefix=colorstr("train: " if train else "val: "),
        task=cfg.task,
        classes=cfg.classes,
        data=data,
        fraction=get_split_fraction(cfg.fraction, "train" if train else cfg.split or "val"),
    )


def unique_photos(images: list[Path]) -> list[Path]:
    """One image per source photo, the first by name: Roboflow exports each photo several times as
    `<photo>.rf.<hash>.jpg` (flip / brightness copies), which would otherwise count as separate samples."""
    first: dict[tuple[Path, str], Path] = {}
    for image in sorted(images):
        match = _ROBOFLOW_COPY.match(image.stem)
        first.setdefault((image.parent, match["photo"] if match else image.stem), image)
    return list(first.values())


def _parse_names(yaml_file: Path, data: dict) -> dict[int, str]:
    names, nc = data.get("names"), data.get("nc")
    if names is None:
        raise DatasetError(f"{yaml_file} has no 'names' key: list the class names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"{yaml_file}: 'names' must be a non-empty list or an id -> name mapping")
    try:
        names = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{yaml_file}: class ids in 'names' must be integers") from e
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{yaml_file}: class ids in 'names' must be 0..{len(names) - 1}, got {sorted(names)}")
    if nc is not None and nc != len(names):
        raise DatasetError(f"{yaml_file}: nc is {nc} but 'names' lists {len(names)} classes")
    return names


def _parse_train_repeat(yaml_file: Path, value: Any, n_sources: int) -> list[int]:
    if value is None:
        return [1] * n_sources
    values = value if isinstance(value, list) else [value]
    if len(values) != n_sources or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise DatasetError(
            f"{yaml_file}: train_repeat must list one whole number >= 1 per train source ({n_sources}), got {value!r}"
        )
    return values


def _resolve_root(yaml_file: Path, path: Any) -> Path:
    if not path:
        return yaml_file.resolve().parent
    path = Path(str(path)).expanduser()
    return (path if path.is_absolute() else ROOT / path).resolve()


def _resolve_split(root: Path, value: str) -> Path:
    path = (root / value).resolve()
    if not path.exists() and value.startswith("../"):
        path = (root / value[3:]).resolve()
    return path


def label_boxes(image: Path) -> list[tuple[int, float, float, float, float]]:
    """An image's labels as (class, cx, cy, w, h) boxes normalised to the image, polygons reduced to their bounds;
    none where it has no label file (a background image)."""
    label = Path(img2label_paths([str(image)])[0])
    boxes = []
    for line in label.read_text(encoding="utf-8").splitlines() if label.is_file() else []:
        parts = line.split()
        if len(parts) < 5:
            continue
        cls, values = int(parts[0]), [float(v) for v in parts[1:]]
        if len(values) == 4:
            boxes.append((cls, *values))
        else:
            xs, ys = values[0::2], values[1::2]
            boxes.append((cls, (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)))
    return boxes


def list_images(source: Path) -> list[Path]:
    """The images of a split source (a folder, searched recursively, or a `.txt` list), sorted."""
    if source.is_dir():
        files = source.rglob("*")
    else:  # a .txt list of image paths, relative to the list's folder when they start with ./
        lines = source.read_text(encoding="utf-8").splitlines()
        files = (source.parent / line[2:] if line.startswith("./") else Path(line) for line in map(str.strip, lines))
    return sorted(f for f in files if f.suffix[1:].lower() in IMG_FORMATS and f.is_file())


def _check_labels(images: list[Path], nc: int, problems: dict[str, list[str]]) -> SplitStats:
    stats = SplitStats(images=len(images))
    for label_file in map(Path, img2label_paths(images)):
        rows = label_file.read_text(encoding="utf-8", errors="replace").splitlines() if label_file.is_file() else []
        rows = [(n, r.split()) for n, r in enumerate(rows, 1) if r.strip()]
        if not rows:
            stats.unlabelled += 1
            continue
        stats.labelled += 1
        for line_no, parts in rows:
            where = f"{label_file}:{line_no}"
            kind = _classify_row(parts, nc)
            if kind in ("box", "polygon"):
                stats.per_class[int(float(parts[0]))] += 1
                if kind == "box":
                    stats.boxes += 1
                else:
                    stats.polygons += 1
            else:
                problems.setdefault(kind, []).append(where)
    return stats


def _classify_row(parts: list[str], nc: int) -> str:
    """Name a label row: `box`, `polygon`, or the problem with it."""
    n = len(parts)
    if n != 5 and (n < 7 or n % 2 == 0):
        return "malformed label lines (want 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...')"
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return "malformed label lines (non-numeric values)"
    if not all(math.isfinite(v) for v in values):
        return "malformed label lines (non-numeric values)"
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < nc:
        return f"label lines with class ids outside 0..{nc - 1}"
    if not all(-1e-3 <= v <= 1 + 1e-3 for v in values[1:]):
        return "label lines with coordinates outside 0..1 (labels must be normalised)"
    return "box" if n == 5 else "polygon"
