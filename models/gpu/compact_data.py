"""A compact copy of the glove training data for a lent GPU machine, which is sent at most 64 MiB in all.

    .venv/bin/python models/gpu/compact_data.py [--out .gpu]

Writes `<out>/data/` (the close-ups' train split de-duplicated, the scenes' train and valid splits) as WebP
quality 55, close-ups at most 480 px and scene images at most 800 px on their long side (640-px training sees the
1280-px CCTV frames at 640 either way), labels unchanged (normalised), and `<out>/gloves-all.yaml`,
`datasets/gloves-all.yaml` on that copy; then counts what a device call sends with it (exit 1 over the limit).
About 32 MB: with the tracked files, the wheels and the two models' resume checkpoints of a schedule spanning
several leases (models/gpu/stage.sh) it stays under the limit. Numbers are never taken on the copy: evaluate the
returned checkpoints here, on ../shared/data (models/README.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import yaml

from app.data import list_images, load_dataset_yaml, unique_photos
from app.runtime import ROOT

SPLITS = (  # (folder under ../shared/data, longest side, one image per source photo)
    ("gloves/train", 480, True),
    ("gloves-scenes/train", 800, False),
    ("gloves-scenes/valid", 800, False),
)
# The JPEG originals are about quality 75; 55 saves a fifth, and training compresses frames as hard anyway (the
# camera-look augmentation, app/augment.py)
QUALITY = 55
TRAVEL_LIMIT = 64 * 2**20  # bytes of the working tree a device call sends


def convert(image: Path, out: Path, max_side: int) -> None:
    """One image, shrunk to `max_side` if larger, as WebP."""
    im = cv2.imread(str(image))
    h, w = im.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1:
        im = cv2.resize(im, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), im, [cv2.IMWRITE_WEBP_QUALITY, QUALITY])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu")
    args = parser.parse_args()
    args.out = args.out.resolve()
    source = load_dataset_yaml(ROOT / "datasets" / "gloves-all.yaml")
    jobs = []
    for split, max_side, dedupe in SPLITS:
        images = list_images(source.root / split / "images")
        for image in unique_photos(images) if dedupe else images:
            jobs.append((image, args.out / "data" / split / "images" / f"{image.stem}.webp", max_side))
            label = image.parent.parent / "labels" / f"{image.stem}.txt"
            (args.out / "data" / split / "labels").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(label, args.out / "data" / split / "labels" / label.name)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda job: convert(*job), jobs))
    spec = {
        # a relative `path` is read from the project root: the copy travels inside the working tree
        "path": str((args.out / "data").relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out / "data"),
        "train": ["gloves/train/images", "gloves-scenes/train/images"],
        "train_repeat": source.train_repeat,
        "val": "gloves-scenes/valid/images",
        "names": source.names,
    }
    (args.out / "gloves-all.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())  # the wheels in <out>/whl too
    print(f"{len(jobs)} images, {size / 1e6:.1f} MB in {args.out}; YAML {args.out / 'gloves-all.yaml'}")
    # the working tree travels as git sees it: tracked files (resume checkpoints once committed) and untracked ones
    # not ignored, then the carried copy
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout  # fmt: skip
    tree = sum((ROOT / f).stat().st_size for f in set(listed.decode().split("\0")) if f and (ROOT / f).is_file())
    total = tree + size
    print(f"a device call sends {total / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f} (working tree "
          f"{tree / 2**20:.1f}, this copy {size / 2**20:.1f})")  # fmt: skip
    if total > TRAVEL_LIMIT:
        raise SystemExit("over the limit: the call would be refused; send less (a lower QUALITY, smaller sides)")


if __name__ == "__main__":
    main()
