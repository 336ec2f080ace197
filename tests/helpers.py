"""Helpers shared by the tests: generated media and the browser set-up (fixtures live in conftest.py)."""

from __future__ import annotations

import glob
import json
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from app.outputs import VideoWriter
from app.runtime import ROOT

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


def x264_options(video: Path) -> str:
    """The encoder settings x264 writes into every H.264 stream it makes (e.g. `cabac=1 ... subme=2` for the
    `veryfast` preset, `cabac=0 ... subme=0` for `ultrafast`)."""
    found = re.search(rb"x264 - core \d+.*? options: ([^\x00]*)", video.read_bytes())
    assert found is not None, f"{video.name}: no x264 settings in the stream"
    return found[1].decode()


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header claims width x height (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path


POSTGRES_MISSING = (
    "PostgreSQL is not installed: `apt-get install postgresql` (./test.sh and .ci/run install it); the records "
    "tests run against a real server"
)


@contextmanager
def postgres_cluster(fsync: bool = True) -> Iterator[str]:
    """A PostgreSQL cluster of its own, from Debian's binaries, in a temporary folder and on a free loopback port;
    yields its base URL (`postgresql://postgres@127.0.0.1:PORT`, trust authentication: loopback only), then stops
    it and removes the folder. Raises FileNotFoundError with `POSTGRES_MISSING` where PostgreSQL is not installed.

    PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user, in a folder of its own
    (pytest's temporary folders are private to root).
    """
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        raise FileNotFoundError(POSTGRES_MISSING)
    bindir = Path(initdb[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="glove-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    try:
        subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-N",
                        "--encoding=UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)  # fmt: skip
        # Without a log file the server would keep the caller's output pipe open.
        ctl = [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60"]
        options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
        subprocess.run([*ctl, "-o", options, "start"], check=True, capture_output=True)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}"
        finally:
            subprocess.run([*ctl, "-m", "fast", "stop"], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def postgres_control(server: str) -> Callable[[str], None]:
    """`pg_ctl` for the server at a base URL (`postgresql://postgres@127.0.0.1:PORT`): `control("restart")`,
    `control("stop")`, `control("start")`; its data folder and binaries are asked while it is up."""
    import psycopg  # the records tests' driver; most tests never need it

    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        data = admin.execute("SHOW data_directory").fetchone()[0]
        bindir = admin.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()[0]
        options = admin.execute("SELECT string_agg(a, ' ') FROM unnest(ARRAY["
                                "'-k ' || current_setting('unix_socket_directories'), "
                                "'-p ' || current_setting('port'), "
                                "'-c listen_addresses=' || current_setting('listen_addresses'), "
                                "'-c fsync=' || current_setting('fsync')]) a").fetchone()[0]  # fmt: skip
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    log = Path(data).parent / "server.log"  # without a log file the server would hold the caller's pipe open

    def control(action: str) -> None:
        subprocess.run([*as_owner, f"{bindir}/pg_ctl", "-D", data, "-l", str(log), "-o", options, "-m", "fast",
                        "-w", action], check=True, capture_output=True)  # fmt: skip

    return control


def y4m(clip: Path, out: Path, frames: int = 40, size: int = 320) -> Path:
    """A video clip as a Y4M file, the format Chromium's fake camera reads (`--use-file-for-fake-video-capture`)."""
    with av.open(str(clip)) as src, open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W{size} H{size} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames:
                break
            yuv = frame.reformat(width=size, height=size, format="yuv420p").to_ndarray()
            f.write(b"FRAME\n" + yuv.tobytes())
    return out


@contextmanager
def running_console(*args: str, log: Path | None = None, timeout_s: float = 120) -> Iterator[str]:
    """`webui.py` with these arguments on a free local port, answering; yields its URL and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "webui.py"), "--port", str(port), *args]
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    urllib.request.urlopen(url, timeout=1)
                    break
                except OSError:
                    tail = log.read_text()[-3000:] if log else ""
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"webui.py did not start: {tail}") from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# --- alert receivers: a webhook endpoint and an MQTT broker and subscriber of a test's own ---

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_MISSING = (
    "Mosquitto is not installed: `apt-get install mosquitto` (./test.sh installs it); the MQTT alert tests run "
    "against a real broker"
)


def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)


class Receiver:
    """A webhook receiver on loopback that answers with `codes` in turn (then 200) and keeps each request."""

    def __init__(self, codes: tuple[int, ...] = ()) -> None:
        self.codes = list(codes)
        self.requests: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        self.hits = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hits += 1
                receiver.requests.put((self.path, dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        # One thread serves every request, so the test's thread count is not the server's.
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/gloves?token=secret"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def body(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(self.requests.get(timeout=timeout)[2])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Broker:
    """A Mosquitto broker of its own on a loopback port, with its config, log and (optional) persistence in `folder`."""

    def __init__(self, folder: Path, persistence: bool = False) -> None:
        if not os.access(MOSQUITTO, os.X_OK):
            pytest.fail(MOSQUITTO_MISSING)
        self.port = free_port()
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence {str(persistence).lower()}\npersistence_location {folder}/\n"
            # As root, Mosquitto would switch to the `mosquitto` user, who cannot write pytest's folders.
            "user root\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        log = (self.folder / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            assert self.process.poll() is None, (self.folder / "mosquitto.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "Mosquitto did not open its port in 10 s"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Mosquitto saves its persistence file and exits
            self.process.wait(10)


class Subscriber:
    """A paho client that subscribes (QoS 1) to `topic` on every connect and keeps what arrives."""

    def __init__(self, port: int, topic: str, client_id: str = "", clean_session: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _client, _userdata, message: self.messages.put(message)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber got no SUBACK in 10 s"

    def get(self, timeout: float = 10.0) -> tuple[dict[str, Any], bool]:
        """The next message's JSON and its retain flag."""
        message = self.messages.get(timeout=timeout)
        return json.loads(message.payload), message.retain

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
