"""Nothing touches the network: build, train, validate and predict with every non-loopback connection refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_polygon_dataset

from app.runtime import OFFLINE_ENV, ROOT

pytestmark = [pytest.mark.training, pytest.mark.slow]  # trains a model with the network cut

# Runs in a fresh process: the guard is in place before anything (app, Ultralytics, matplotlib) is imported.
GUARDED_RUN = r"""
import atexit, json, socket, sys


attempts = []
LOCAL = ("127.", "::1", "localhost")

def _local(host):
    return host is None or str(host).startswith(LOCAL) or str(host) in ("", "0.0.0.0")

def _guard(original, what):
    def guarded(sock, address, *args):
        if sock.family == socket.AF_UNIX or _local(address[0]):
            return original(sock, address, *args)
        attempts.append(f"{what} {address!r}")
        raise OSError("network access refused by test guard")
    return guarded

socket.socket.connect = _guard(socket.socket.connect, "connect")
socket.socket.connect_ex = _guard(socket.socket.connect_ex, "connect_ex")
_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if not _local(host):
        attempts.append(f"dns {host!r}")
        raise socket.gaierror("name lookup refused by test guard")
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
atexit.register(lambda: print("ATTEMPTS " + json.dumps(attempts)))

import numpy as np
import app
from app.training import TrainOptions, prepare, train

data, project = sys.argv[1], sys.argv[2]
opts = TrainOptions(data=data, model="models/yolo11n-bra.yaml", epochs=1, imgsz=64, batch=4, workers=0,
                    device="cpu", project=project, name="offline")
yolo, report = prepare(opts)
result = train(opts, yolo, report)
from ultralytics import YOLO
best = YOLO(str(result.best))
metrics = best.val(data=str(report.spec.yaml_file), imgsz=64, batch=4, workers=0, device="cpu",
                   project=project, name="val", plots=True, verbose=False)
preds = best.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)
print("DONE", len(preds), float(metrics.box.map50))
"""


def test_build_train_validate_predict_without_network(tmp_path: Path) -> None:
    data = make_polygon_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV}  # `import app` must set these itself
    env.update(PYTHONPATH=str(ROOT), YOLO_CONFIG_DIR=str(tmp_path / "config"))  # no font there yet
    out = subprocess.run(
        [sys.executable, "-c", GUARDED_RUN, str(data), str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("DONE 1 ") for line in lines), out.stdout[-2000:]
    attempts = json.loads(next(line for line in lines if line.startswith("ATTEMPTS "))[len("ATTEMPTS ") :])
    assert attempts == []
    assert (tmp_path / "config" / "Ultralytics" / "Arial.ttf").is_file()  # the local font stood in
    assert (tmp_path / "runs" / "detect" / "offline" / "weights" / "best.pt").is_file()
