"""Operator console: image, video and webcam detection with safety policies, history and Excel export.

    python webui.py                              # http://127.0.0.1:7860, this machine only
    python webui.py --host 0.0.0.0 --auth operator:secret
    GLOVE_CONSOLE_AUTH=operator:secret python webui.py --host 0.0.0.0
    python webui.py --db postgresql://writer@db.workshop:5432/gloves   # one history for several machines
    python webui.py --monitors monitors.yaml    # also watch the config's cameras (Monitors tab)
    python webui.py --runtime torch             # PyTorch instead of the default (OpenVINO on a CPU: INT8 or FP32)
    python webui.py --policy gloves             # the machine's policy, selected on every page load (where it fits)

A bind beyond this machine needs a login (--auth or GLOVE_CONSOLE_AUTH) unless --allow-no-auth is given.
Browsers only allow the webcam on https or localhost: on a network, put the console behind a TLS reverse proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import app  # noqa: F401  (first: sets the offline environment and GRADIO_TEMP_DIR under .runtime/)

# isort: split
from app.console import LAUNCH_OPTIONS, build_console
from app.engine import RUNTIME_HELP, RUNTIMES
from app.errors import GloveSafetyError, PolicyError
from app.monitor import MonitorConfig, MonitorSet
from app.runtime import EXPORTS_DIR, WEIGHTS_DIR
from app.service import DetectionService

AUTH_ENV = "GLOVE_CONSOLE_AUTH"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", default=os.environ.get(AUTH_ENV), help=f"user:password (or set {AUTH_ENV})")
    p.add_argument("--allow-no-auth", action="store_true", help="serve beyond this machine without a login")
    p.add_argument("--exports", type=Path, default=EXPORTS_DIR, help="where runs, records and workbooks go")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="folder of .pt models to offer")
    p.add_argument("--conf", type=float, default=None, help="initial confidence threshold (default: each model's)")
    p.add_argument("--policy", default=None, help="this machine's safety policy (a name in app/policies), selected "
                   "on every page load where it fits the model (default: none)")  # fmt: skip
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help=f"what models run in (also --monitors'). {RUNTIME_HELP}")  # fmt: skip
    p.add_argument("--db", default=None, help="records: a SQLite file or postgresql://user@host:port/db "
                   "(default: $GLOVE_RECORDS, else EXPORTS/records.sqlite)")  # fmt: skip
    p.add_argument("--monitors", type=Path, default=None, help="also run the camera monitors of this config YAML "
                   "(README: Monitoring cameras); other processes' monitors on the same records show too")  # fmt: skip
    return p.parse_args(argv)


def check_access(args: argparse.Namespace) -> tuple[str, str] | None:
    """The login pair, or None on a local bind; refuses an open bind beyond this machine."""
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise SystemExit("webui.py: --auth must look like user:password")
        auth = (user, password)
    if args.host not in LOCAL_HOSTS and auth is None and not args.allow_no_auth:
        raise SystemExit(
            f"webui.py: refusing to serve on {args.host} without a login: pass --auth user:password "
            f"(or set {AUTH_ENV}), or --allow-no-auth if the network is trusted"
        )
    return auth


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth = check_access(args)
    try:
        config = MonitorConfig.load(args.monitors) if args.monitors else None
        service = DetectionService(
            exports_dir=args.exports, weights_dir=args.weights_dir, db=args.db, runtime=args.runtime
        )
        if args.policy and args.policy not in service.policies():
            raise PolicyError(f"unknown policy {args.policy!r}: the console offers {', '.join(service.policies())}")
        monitors = MonitorSet(config, service).start() if config else None
    except GloveSafetyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ui = build_console(service, default_conf=args.conf, default_policy=args.policy)
    _stop_on_signals()
    try:
        ui.queue(default_concurrency_limit=2).launch(
            server_name=args.host,
            server_port=args.port,
            auth=auth,
            allowed_paths=[str(p) for p in service.served_dirs],  # results and monitors' recordings only
            show_error=True,
            footer_links=[],
            ssr_mode=False,  # no Node.js server beside Python
            # Gradio's own start lines suggest `share=True`, a public link that a safety console must not make
            quiet=True,
            prevent_thread_lock=True,
            **LAUNCH_OPTIONS,
        )
        where = "this machine only" if args.host in LOCAL_HOSTS else "with a login" if auth else "no login"
        print(f"console on {ui.local_url} ({where}); Ctrl-C stops", flush=True)
        # Until Ctrl-C or SIGTERM. Not `block_thread`: its graceful close waits seconds for open browser pages;
        # the server's thread is a daemon and ends with the process once the runs are saved.
        with contextlib.suppress(KeyboardInterrupt):
            while ui.is_running:
                time.sleep(0.5)
    finally:
        if monitors is not None:
            monitors.stop()
        service.shutdown()
    return 0


def _stop_on_signals() -> None:
    """SIGTERM (a service manager stopping the console) ends it as Ctrl-C does, so open live runs are saved; the
    first one only: a second must neither cut the saving short nor leave Gradio's server thread serving. A Ctrl-C
    that this process was started to ignore (`nohup ... &`) stays ignored."""

    def stop(*_: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, stop)


if __name__ == "__main__":
    sys.exit(main())
