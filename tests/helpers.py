"""Helpers shared by the tests: generated media and the browser set-up (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from app.outputs import VideoWriter

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_video(
    path: Path, frames: int = 12, size: tuple[int, int] = (128, 96), fps: float = 10.0, noise: bool = False
) -> Path:
    """A small H.264 clip of a bright square moving right, written with the project's own writer.

    With `noise`, every frame is fresh noise, so each one takes a similar share of the file.
    """
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps) as video:
        for i in range(frames):
            img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) if noise else None
            img = np.full((size[1], size[0], 3), 40, np.uint8) if img is None else img
            cv2.rectangle(img, (5 + 6 * i, 30), (35 + 6 * i, 60), (60, 200, 240), -1)
            video.write(img)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header claims width x height (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path
