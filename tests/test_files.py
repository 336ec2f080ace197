"""Files written whole or not at all, and YAML files read as plain data (`app/files.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import DatasetError
from app.files import atomic_path, atomic_write, read_yaml_mapping


def test_atomic_write(tmp_path: Path) -> None:
    """atomic_write creates folders, replaces the file and leaves no .part file behind."""
    path = tmp_path / "a" / "b" / "file.bin"
    assert atomic_write(path, b"one") == path
    assert atomic_write(path, b"two, longer") == path
    assert path.read_bytes() == b"two, longer"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails before the rename leaves the previous file untouched."""
    path = atomic_write(tmp_path / "file.bin", b"old")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("app.files.os.fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]  # no temporary file left either


def test_atomic_path_renames_only_a_finished_file(tmp_path: Path) -> None:
    target = tmp_path / "book.xlsx"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
        assert not target.exists()  # not before the block ends
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [1", "x.yaml is not valid YAML"), ("- a\n- b\n", "x.yaml: expected a mapping of things, got list"),
     ("!!python/object/apply:os.system ['true']", "x.yaml is not valid YAML")],
)  # fmt: skip
def test_yaml_must_be_a_plain_mapping(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(DatasetError, match=message) as raised:
        read_yaml_mapping(tmp_path / "x.yaml", DatasetError, "x.yaml", "of things")
    assert "\n" not in str(raised.value) and "<unicode string>" not in str(raised.value)


def test_a_yaml_syntax_error_is_one_line_at_its_place(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("monitors:\n  - name: a\n    source: 0\n   bad: [\n")
    with pytest.raises(DatasetError) as raised:
        read_yaml_mapping(tmp_path / "x.yaml", DatasetError, "x.yaml")
    assert str(raised.value) == (
        "x.yaml is not valid YAML at line 4, column 4: expected <block end>, but found '<block mapping start>'"
    )


def test_yaml_mapping_is_read(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("a: 1\nb: [2, 3]\n")
    assert read_yaml_mapping(tmp_path / "x.yaml", DatasetError, "x.yaml") == {"a": 1, "b": [2, 3]}
