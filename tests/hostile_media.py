"""Generated hostile media: damaged, odd, mislabelled and oversized images and videos, each with what must happen.

`make_cases(folder)` writes every case and returns it with its expectation:
- "ok": a correct result: frames decode to 8-bit BGR of the stated size;
- "error": refused with a `SourceError` whose message contains `message`;
- "either": damaged input that may decode partly or be refused, but never anything else (no crash, no other
  exception type).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

IMAGE_FORMATS = {"jpg": "JPEG", "png": "PNG", "bmp": "BMP", "webp": "WEBP", "tif": "TIFF"}
W, H = 64, 48  # the base picture: distinct, so a wrong channel order or size would show


@dataclass(frozen=True)
class Case:
    """One file and what reading it must give."""

    name: str
    path: Path
    expect: str  # "ok", "error" or "either"
    message: str = ""  # part of the error message ("error" cases)
    shape: tuple[int, int] | None = None  # (height, width) of the decoded frames ("ok" cases)
    colour: bool = False  # "ok" cases that keep the base picture's colours: red left half, blue right half


def base_picture() -> np.ndarray:
    """RGB: a red left half, a blue right half, a green bar at the top."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 2] = (220, 30, 30)
    rgb[:, W // 2 :] = (30, 30, 220)
    rgb[:6] = (30, 220, 30)
    return rgb


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


class CaseList(list[Case]):
    """Cases being written into one folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def add(self, name: str, data: bytes, expect: str, message: str = "", shape: tuple[int, int] | None = None,
            colour: bool | None = None) -> None:  # fmt: skip
        """Write `data` as `name`; `colour` defaults to True for full-size "ok" cases (colour images)."""
        (self.folder / name).write_bytes(data)
        colour = expect == "ok" and shape == (H, W) if colour is None else colour
        self.append(Case(name, self.folder / name, expect, message, shape, colour))


def make_cases(folder: Path) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = CaseList(folder)
    add = cases.add

    picture = Image.fromarray(base_picture())
    valid = {ext: encode(picture, fmt) for ext, fmt in IMAGE_FORMATS.items()}
    rng = np.random.default_rng(0)
    for ext, data in valid.items():
        add(f"valid.{ext}", data, "ok", shape=(H, W))
        add(f"empty.{ext}", b"", "error", "empty file")
        add(f"noise.{ext}", rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(), "error", "not a readable image")
        add(f"text.{ext}", b"<html><body>not an image</body></html>\n" * 20, "error", "not a readable image")
        for keep in (0.01, 0.3, 0.7, 0.95):
            add(f"truncated-{int(keep * 100)}.{ext}", data[: max(1, int(len(data) * keep))], "either")
        for other in IMAGE_FORMATS:  # the content of one format under another's extension
            if other != ext:
                add(f"{ext}-named.{other}", data, "ok", shape=(H, W))
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF  # one damaged byte mid-file
        add(f"bitflip.{ext}", bytes(flipped), "either")

    modes = {
        "cmyk.jpg": (picture.convert("CMYK"), "JPEG"),
        "cmyk.tif": (picture.convert("CMYK"), "TIFF"),
        "gray.jpg": (picture.convert("L"), "JPEG"),
        "gray.png": (picture.convert("L"), "PNG"),
        "gray-alpha.png": (picture.convert("LA"), "PNG"),
        "rgba.png": (picture.convert("RGBA"), "PNG"),
        "rgba.webp": (picture.convert("RGBA"), "WEBP"),
        "palette.png": (picture.convert("P"), "PNG"),
        "bilevel.png": (picture.convert("1"), "PNG"),
        "bilevel.tif": (picture.convert("1"), "TIFF"),
        "float.tif": (picture.convert("F"), "TIFF"),
        "int32.tif": (picture.convert("I"), "TIFF"),
    }
    for name, (image, fmt) in modes.items():
        # gray, bilevel, float and int images have no colour to keep
        add(name, encode(image, fmt), "ok", shape=(H, W), colour=image.mode in ("RGB", "RGBA", "CMYK", "P"))
    sixteen = (base_picture().astype(np.uint16) * 257)[:, :, ::-1]  # BGR, 16 bits per channel
    for ext in ("png", "tif"):
        ok, buf = cv2.imencode(f".{ext}", sixteen)
        assert ok
        add(f"rgb16.{ext}", buf.tobytes(), "ok", shape=(H, W))
    add("gray16.png", cv2.imencode(".png", sixteen[:, :, 0].copy())[1].tobytes(), "ok", shape=(H, W), colour=False)
    add("one-pixel.png", encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "ok", shape=(1, 1))
    add("one-pixel.jpg", encode(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"), "ok", shape=(1, 1))
    add("thin.png", encode(Image.new("RGB", (4000, 1), (9, 9, 9)), "PNG"), "ok", shape=(1, 4000))

    # Decompression bombs: a few hundred bytes that claim billions of pixels.
    add("bomb.png", png_header_only(100_000, 100_000), "error", "pixel limit")
    add("bomb-wide.png", png_header_only(2**31 - 1, 1), "error", "pixel limit")
    add("bomb.jpg", jpeg_header_only(65_000, 65_000), "error", "pixel limit")
    add("bomb.bmp", bmp_header_only(60_000, 60_000), "error", "pixel limit")
    add("bomb.tif", tiff_header_only(100_000, 100_000), "error", "pixel limit")
    add("bomb.gif", gif_header_only(65_535, 65_535), "error", "unsupported file type")
    add("bomb-real.png", encode(Image.new("1", (10_000, 6_000)), "PNG", optimize=True), "error", "pixel limit")

    # Names that are not valid UTF-8 (raw bytes, as a Linux file system allows) and non-ASCII names.
    for raw in (b"\xff\xfehand.jpg", b"caf\xe9.png", "Handschuh-äöü-手袋.jpg".encode()):
        path = Path(os.fsdecode(folder)) / os.fsdecode(raw)
        path.write_bytes(valid[raw.rsplit(b".", 1)[1].decode()])
        cases.append(Case(repr(raw), path, "ok", shape=(H, W), colour=True))

    odd_video = Path(os.fsdecode(folder)) / os.fsdecode(b"\xffclip.avi")
    odd_video.write_bytes(mjpeg_clip(folder / "for-odd-name.avi", frames=3).read_bytes())
    cases.append(Case("b'\\xffclip.avi'", odd_video, "error", "not UTF-8"))
    add_video_cases(cases)
    return cases


def add_video_cases(cases: CaseList) -> None:
    folder, add = cases.folder, cases.add

    mp4 = h264_clip(folder / "clip.mp4", frames=12)
    cases.append(Case("clip.mp4", folder / "clip.mp4", "ok", shape=(H, W)))
    data = mp4.read_bytes()
    for keep in (0.02, 0.5, 0.9):  # moov at the end: a cut file has no index and cannot be read at all
        add(f"truncated-{int(keep * 100)}.mp4", data[: int(len(data) * keep)], "error", "not a readable video")
    avi = mjpeg_clip(folder / "clip.avi", frames=12)
    cases.append(Case("clip.avi", avi, "ok", shape=(H, W)))
    add("truncated-60.avi", avi.read_bytes()[: int(avi.stat().st_size * 0.6)], "either")
    for ext in ("mp4", "avi", "mkv", "mov"):
        add(f"empty.{ext}", b"", "error", "not a readable video")
        add(f"text.{ext}", b"this is a text file, not a video\n" * 40, "error", "not a readable video")
        add(f"noise.{ext}", np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "error",
            "not a readable video")  # fmt: skip
    add("image-named.mp4", encode(Image.fromarray(base_picture()), "JPEG"), "either")
    no_frames = folder / "sound-only.mp4"
    with av.open(str(no_frames), "w") as container:  # a valid MP4 with an audio track and no video frame
        stream = container.add_stream("aac", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
        samples.sample_rate = 8000
        for packet in [*stream.encode(samples), *stream.encode()]:
            container.mux(packet)
    cases.append(Case("sound-only.mp4", no_frames, "error", "not a readable video"))
    # Absurd resolutions: YUV4MPEG2 headers (FFmpeg probes content, not names) claiming huge frames. FFmpeg
    # itself refuses sizes past its own limit; below that, our 50 MP limit refuses them before decoding.
    for w, h, message in ((100_000, 100_000, "not a readable video"), (1_000_000, 1, "not a readable video"),
                          (8_000, 7_000, "pixel limit"), (50_000, 1_100, "pixel limit")):  # fmt: skip
        header = f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode()
        add(f"huge-{w}x{h}.mkv", header + b"\x80" * 4096, "error", message)


def h264_clip(path: Path, frames: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            rgb = np.roll(base_picture(), i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mjpeg_clip(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for i in range(frames):
        writer.write(np.ascontiguousarray(np.roll(base_picture(), i, axis=1)[:, :, ::-1]))
    writer.release()
    return path


def png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def jpeg_header_only(w: int, h: int) -> bytes:
    sof = struct.pack(">BHHB", 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    segments = b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos
    return b"\xff\xd8" + segments + b"\x00" * 64 + b"\xff\xd9"


def bmp_header_only(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info)) + info + b"\0" * 64


def gif_header_only(w: int, h: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b";"


def tiff_header_only(w: int, h: int) -> bytes:
    """A little-endian TIFF whose only directory claims a w x h 8-bit gray image with one tiny strip."""
    tags = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 200), (278, 4, h),
            (279, 4, 16)]  # fmt: skip
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, kind, 1, v) for t, kind, v in tags)
    head = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    return head + b"\0" * (216 - len(head))
