"""A "scene" check built from a labelled split: its photos shrunk and pasted into larger camera-sized frames.

Close-up datasets (a hand filling the photo) score high and say little about a camera at a machine, which sees
a whole work area with hands small in the frame. Each scene here is a 1280x720 frame whose background is
another photo of the split reduced to a 16x9 colour field (so no hand in it is recognisable) plus sensor-like
noise, with 1-4 photos of the split pasted in at 20-45 % of the frame height. Every photo is used once, so
the scene set has the split's objects, only smaller. Labels move with the pasted photos; the result is an
ordinary YOLO dataset with its own YAML.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from .data import DatasetSpec, label_boxes, list_images
from .errors import DatasetError
from .files import atomic_write
from .outputs import write_jpeg
from .sources import read_image


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are composed.

    Attributes:
        width, height: Frame size in pixels (a 720p camera by default).
        per_scene: Fewest and most photos pasted into one frame.
        size: Smallest and largest pasted photo side, as a fraction of the frame height.
        cells: Columns of the background's colour field (rows follow the frame's aspect).
        noise: Standard deviation of the background noise, in 8-bit levels.
        seed: Makes the set reproducible.
    """

    width: int = 1280
    height: int = 720
    per_scene: tuple[int, int] = (1, 4)
    size: tuple[float, float] = (0.20, 0.45)
    cells: int = 16
    noise: float = 6.0
    seed: int = 0


def build_scene_set(spec: DatasetSpec, out_dir: Path, split: str = "val", config: SceneConfig | None = None) -> Path:
    """Compose scenes from `spec`'s `split` into `out_dir/images|labels` and return the scene set's YAML."""
    config = config or SceneConfig()
    rng = random.Random(config.seed)
    photos = [img for source in spec.splits[split] for img in list_images(source)]
    if not photos:
        raise DatasetError(f"split {split!r} of {spec.yaml_file} holds no images")
    pool = list(photos)  # backgrounds may come from any photo of the split
    rng.shuffle(photos)
    images_dir, labels_dir = out_dir / "images", out_dir / "labels"
    for folder in (images_dir, labels_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():  # a rebuilt set must not keep scenes from an earlier, larger one
            old.unlink()

    index = 0
    while photos:
        count = min(rng.randint(*config.per_scene), len(photos))
        group, photos = photos[:count], photos[count:]
        frame, rows = _compose(read_image(rng.choice(pool)), group, config, rng)
        write_jpeg(images_dir / f"scene_{index:04d}.jpg", frame, quality=92)
        atomic_write(labels_dir / f"scene_{index:04d}.txt", "".join(f"{row}\n" for row in rows).encode())
        index += 1

    data = {"path": str(out_dir.resolve()), "train": "images", "val": "images", "names": spec.names}
    return atomic_write(out_dir / "scenes.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())


def _compose(
    background: np.ndarray, photos: list[Path], config: SceneConfig, rng: random.Random
) -> tuple[np.ndarray, list[str]]:
    """One frame: blurred background, photos pasted without overlap, and their YOLO label rows."""
    W, H = config.width, config.height
    field = cv2.resize(background, (config.cells, max(1, round(config.cells * H / W))), interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, config.noise, (H, W, 3))
    frame = np.clip(cv2.resize(field, (W, H), interpolation=cv2.INTER_CUBIC) + noise, 0, 255).astype(np.uint8)
    placed: list[tuple[int, int, int, int]] = []
    rows: list[str] = []
    for photo in photos:
        image = read_image(photo)
        h, w = image.shape[:2]
        scale = rng.uniform(*config.size) * H / max(h, w)
        while (spot := _free_spot(round(w * scale), round(h * scale), W, H, placed, rng)) is None:
            scale *= 0.8  # a crowded frame: shrink the photo until it fits beside the others
        pw, ph, (x0, y0) = round(w * scale), round(h * scale), spot
        frame[y0 : y0 + ph, x0 : x0 + pw] = cv2.resize(image, (pw, ph), interpolation=cv2.INTER_AREA)
        placed.append((x0, y0, x0 + pw, y0 + ph))
        for cls, cx, cy, bw, bh in label_boxes(photo):
            rows.append(f"{cls} {(x0 + cx * pw) / W:.6f} {(y0 + cy * ph) / H:.6f} {bw * pw / W:.6f} {bh * ph / H:.6f}")
    return frame, rows


def _free_spot(
    pw: int, ph: int, W: int, H: int, placed: list[tuple[int, int, int, int]], rng: random.Random
) -> tuple[int, int] | None:
    """A top-left corner where a pw x ph photo overlaps none already placed, or None after 200 tries."""
    for _ in range(200):
        x0, y0 = rng.randint(0, W - pw), rng.randint(0, H - ph)
        if all(x0 >= bx1 or x0 + pw <= bx0 or y0 >= by1 or y0 + ph <= by0 for bx0, by0, bx1, by1 in placed):
            return x0, y0
    return None
