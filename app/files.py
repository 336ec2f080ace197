"""Files written whole or not at all, and YAML files read as plain data: used by every module that writes or reads
a file people (or other processes) may be reading at the same moment."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from .errors import GloveSafetyError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends without an error (a
    reader never sees half a file), removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part")  # writers never share one
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> Path:
    """Write bytes to `path` through a temporary file in the same folder, synced, and an atomic rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_yaml_mapping(path: Path, error: type[GloveSafetyError], where: str, expected: str = "") -> dict:
    """A YAML file that must hold a mapping, parsed as plain data (no tags run code); otherwise `error` saying
    what is wrong, naming the file as `where` and what the mapping should hold (`expected`)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:  # one line at the place it broke, not PyYAML's excerpt of "<unicode string>"
        mark = e.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise error(f"{where} is not valid YAML{at}: {e.problem or e.context}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise error(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping{' ' + expected if expected else ''}, got {type(data).__name__}")
    return data
