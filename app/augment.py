"""Training augmentation for camera footage, on top of Ultralytics' own pipeline (mosaic, zoom, HSV, flips).

Workshop cameras are CCTV: grey night modes, soft focus, motion blur and heavy JPEG compression. Ultralytics
only offers such effects through Albumentations, which pulls in OpenCV's headless build (it breaks `cv2` beside
`opencv-python`), so `CameraLook` does them with OpenCV directly and the trainers below add it to the train
transforms through Ultralytics' extension points (a trainer subclass building a dataset subclass).
"""

from __future__ import annotations

import csv
import random
from typing import Any

import cv2
import numpy as np
from ultralytics.data.dataset import YOLODataset
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.models.yolo.segment import SegmentationTrainer
from ultralytics.utils.torch_utils import unwrap_model

from .data import yolo_dataset


class CameraLook:
    """Make a training image look like a camera frame: grey, blurred or JPEG-compressed, each with probability p.

    Labels are untouched: none of these moves a pixel.
    """

    def __init__(self, p: float = 0.15) -> None:
        self.p = p

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        img = labels["img"]
        if random.random() < self.p:  # night / monochrome camera modes
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        if random.random() < self.p:  # soft focus or motion: a Gaussian or a line kernel
            img = _gaussian_blur(img) if random.random() < 0.5 else _motion_blur(img)
        if random.random() < self.p:  # stream compression
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, random.randint(15, 60)])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        labels["img"] = np.ascontiguousarray(img)
        return labels


def _gaussian_blur(img: np.ndarray) -> np.ndarray:
    k = random.choice((3, 5, 7))
    return cv2.GaussianBlur(img, (k, k), 0)


def _motion_blur(img: np.ndarray) -> np.ndarray:
    k = random.choice((5, 7, 9))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), random.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))


class CameraLookDataset(YOLODataset):
    """Ultralytics' dataset with `CameraLook` before the final formatting step of the train transforms.

    Rebuilt transforms (Ultralytics rebuilds them when it closes mosaic) keep it, because they come from here.
    """

    camera_look_p = 0.15

    def build_transforms(self, hyp: Any = None) -> Any:
        transforms = super().build_transforms(hyp)
        if self.augment and self.camera_look_p > 0:
            transforms.insert(-1, CameraLook(self.camera_look_p))  # the last transform is Ultralytics' Format
        return transforms


class _CameraLookTrainerMixin:
    """Builds the train split as a `CameraLookDataset`; validation stays Ultralytics' own."""

    def read_results_csv(self) -> dict[str, list[float]]:
        """results.csv as column -> values, the history Ultralytics stores in each checkpoint.

        Ultralytics reads it with polars; the standard library does the same, so a training run needs no polars
        (its 54 MB wheel is more than a GPU machine's image can be sent).
        """
        try:
            with open(self.csv, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            return {}
        return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None) -> Any:
        if mode != "train":
            return super().build_dataset(img_path, mode, batch)
        stride = max(int(unwrap_model(self.model).stride.max()), 32)
        return yolo_dataset(self.args, img_path, batch, self.data, stride, train=True, cls=CameraLookDataset)


class CameraLookDetectionTrainer(_CameraLookTrainerMixin, DetectionTrainer):
    """Ultralytics' detection trainer with `CameraLook` in the train transforms."""


class CameraLookSegmentationTrainer(_CameraLookTrainerMixin, SegmentationTrainer):
    """Ultralytics' segmentation trainer with `CameraLook` in the train transforms."""


TRAINERS = {"detect": CameraLookDetectionTrainer, "segment": CameraLookSegmentationTrainer}
"""The trainer `train.py` uses per task."""
