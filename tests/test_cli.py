"""`python -m app detect`: real files in, records and files out, one-line errors and exit codes for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import make_video
from openpyxl import load_workbook

from app.cli import EXIT_VIOLATION, HISTORY_COLUMNS, main
from app.engine import DetectionEngine, Measured
from app.evaluation import evaluate
from app.export import (
    AccuracyCheck,
    export_openvino,
    file_sha256,
    openvino_export_path,
    read_openvino_info,
    record_check,
)
from app.records import RecordStore
from app.runtime import DESK_CLIP, ROOT
from app.schema import local_zone
from app.service import measured_notice
from app.views import local_datetime


@pytest.fixture
def weights(trained_models: dict) -> Path:
    return trained_models["detect"][0]


def _detect(weights: Path, source: Path | str, out: Path, *extra: str) -> int:
    return main(["detect", "--weights", str(weights), "--source", str(source), "--save-dir", str(out),
                 "--conf", "0.002", "--imgsz", "96", *extra])  # fmt: skip


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_real_clip_with_policy_and_workbook(weights: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    clip = DESK_CLIP
    book = tmp_path / "clip.xlsx"
    code = _detect(weights, clip, tmp_path, "--stride", "30", "--policy", "bandsaw", "--excel", str(book))
    out = capsys.readouterr().out
    assert "(completed): 13 frame(s) of" in out and f"workbook: {book}" in out  # 378 frames, every 30th
    (run,) = RecordStore(tmp_path / "records.sqlite").runs()
    assert (run.kind, run.frames, run.policy, run.conf) == ("video", 13, "bandsaw", 0.002)
    assert Path(run.output_dir, "annotated.mp4").is_file()
    rows = load_workbook(book)["Detections"].max_row - 1
    assert rows == len(RecordStore(tmp_path / "records.sqlite").detections(run.id)) > 0
    events = RecordStore(tmp_path / "records.sqlite").events(run.id)  # the verdict line says what was recorded
    assert code == (EXIT_VIOLATION if events else 0)
    assert (f"  verdict: VIOLATION: {len(events)} event(s); " if events else "  verdict: OK: no violations; ") in out
    assert "\r" not in out  # the progress bar went to stderr: stdout is the summary alone


@pytest.mark.slow  # seconds of real work: in the full suite, keeping the fast loop under 2 minutes
def test_a_violation_exits_4_and_a_run_without_one_exits_0(weights: Path, tmp_path: Path, capsys) -> None:
    """A script watching a machine acts on the exit code: 4 when the policy found a violation, else 0."""
    policy = tmp_path / "no-gloves.yaml"  # every class of the test model is a glove, anywhere in view
    policy.write_text("name: no-gloves\nrule: gloves_forbidden\nroles:\n  glove: [Glove_Blue, Glove_White, "
                      "glove_steel, glove_steel_b, hand, head]\n")  # fmt: skip
    photo = tmp_path / "p.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    book = ("--excel", str(tmp_path / "seen.xlsx"))
    assert _detect(weights, photo, tmp_path / "seen", "--policy", str(policy), "--no-augment", *book) == EXIT_VIOLATION
    assert "  verdict: VIOLATION: 1 event(s); glove" in capsys.readouterr().out  # at 0.002 the model sees boxes
    book = ("--excel", str(tmp_path / "none.xlsx"))
    assert _detect(weights, photo, tmp_path / "none", "--policy", str(policy), "--no-augment", "--conf", "0.99",
                   *book) == 0  # fmt: skip
    assert "  verdict: No hand detected; nothing to judge: " in capsys.readouterr().out
    for out, verdict in (("seen", "VIOLATION: 1 event(s)"), ("none", "No hand detected")):  # both saved either way
        (run,) = RecordStore(tmp_path / out / "records.sqlite").runs()
        assert run.status == "completed"
        table = [[c.value for c in r] for r in load_workbook(tmp_path / f"{out}.xlsx")["Runs"].iter_rows()]
        assert table[1][table[0].index("Verdict")] == verdict  # the workbook words it as the summary


def test_history_lists_the_runs_with_their_verdicts_and_writes_their_workbook(
    weights: Path, tmp_path: Path, capsys
) -> None:
    """`python -m app history`: the console's History in a terminal (newest first, tallies and verdict as recorded),
    filtered as it is, with the listed runs' workbook; a records file that is not there is said, not created."""
    policy = tmp_path / "no-gloves.yaml"  # every class of the test model is a glove, anywhere in view
    policy.write_text("name: no-gloves\nrule: gloves_forbidden\nroles:\n  glove: [Glove_Blue, Glove_White, "
                      "glove_steel, glove_steel_b, hand, head]\n")  # fmt: skip
    for name, conf in (("seen.jpg", "0.002"), ("none.jpg", "0.99")):
        cv2.imwrite(str(tmp_path / name), np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
        _detect(weights, tmp_path / name, tmp_path / "out", "--policy", str(policy), "--no-augment", "--conf", conf)
    store = RecordStore(tmp_path / "out" / "records.sqlite")
    runs = store.runs()
    capsys.readouterr()
    assert main(["history", "--save-dir", str(tmp_path / "out")]) == 0
    label, header, *lines = capsys.readouterr().out.splitlines()
    assert label == f"Runs: 2, newest first; times in {local_zone()}"
    starts = [header.index(title) for title in HISTORY_COLUMNS]  # each column left-aligned under its title
    assert starts == sorted(starts)
    for line, run, verdict in zip(lines, runs, ("No hand detected", "VIOLATION: 1 event(s)"), strict=True):
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        assert cells == [local_datetime(run.started_at), run.id, Path(run.source).name, "image", "", "completed",
                         str(run.frames), str(len(store.detections(run.id))), str(len(store.events(run.id))),
                         verdict]  # fmt: skip
    book = tmp_path / "seen.xlsx"
    assert main(["history", "--save-dir", str(tmp_path / "out"), "--source", "seen.jpg", "--excel", str(book)]) == 0
    label, _, line, saved = capsys.readouterr().out.splitlines()
    assert label.startswith("Runs: 1, newest first") and runs[1].id in line and saved == f"workbook: {book}"
    assert [r[0].value for r in load_workbook(book)["Runs"].iter_rows(min_row=2)] == [runs[1].id]
    for args, said in ((["--save-dir", str(tmp_path / "typo")], f"error: no records at {tmp_path / 'typo'}"),
                       (["--save-dir", str(tmp_path / "out"), "--from", "30/11/2026"], "error: From: write the date"),
                       (["--save-dir", str(tmp_path / "out"), "--excel", str(tmp_path)],
                        f"error: cannot write the workbook {tmp_path}: Is a directory\n"),
                       (["--save-dir", str(tmp_path / "out"), "--source", "other.jpg", "--excel", str(book)],
                        "error: no runs in the selected range\n")):  # fmt: skip
        assert main(["history", *args]) == 2
        assert capsys.readouterr().err.startswith(said)
    assert not (tmp_path / "typo").exists()


def test_folder_run_reports_and_skips_a_bad_file(weights: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"p{i}.jpg"), np.full((64, 64, 3), 80 + 40 * i, np.uint8))
    (folder / "p9.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert _detect(weights, folder, tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert "skipped p9.jpg: p9.jpg: not a readable image" in captured.out + captured.err
    (run,) = RecordStore(tmp_path / "out" / "records.sqlite").runs()
    assert run.frames == 2
    assert sorted(p.name for p in Path(run.output_dir, "images").iterdir()) == ["p0.jpg", "p1.jpg"]


@pytest.mark.slow  # exports / several runs: outside the fast subset
def test_photos_run_with_test_time_augmentation_unless_told_not_to(weights: Path, tmp_path: Path, capsys) -> None:
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 120, np.uint8))
    assert _detect(weights, image, tmp_path / "on") == 0
    assert "IoU 0.7, test-time augmentation, policy" in capsys.readouterr().out  # the summary says what ran
    assert _detect(weights, image, tmp_path / "off", "--no-augment") == 0
    assert "test-time augmentation" not in capsys.readouterr().out
    ran = [RecordStore(tmp_path / out / "records.sqlite").runs()[0] for out in ("on", "off")]
    assert [(r.augment, r.runtime) for r in ran] == [(True, "torch"), (False, "openvino")]  # auto on a CPU


@pytest.mark.slow  # keeps the fast subset under two minutes
def test_tracking_video_run_counts_unique_objects(weights: Path, tmp_path: Path, capsys) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=6)
    assert _detect(weights, clip, tmp_path / "out", "--track", "--classes", "hand", "Glove_Blue") == 0
    (run,) = RecordStore(tmp_path / "out" / "records.sqlite").runs()
    assert run.tracking and json.loads(run.classes) == ["Glove_Blue", "hand"]  # kept classes, by name
    assert "only Glove_Blue, hand, policy none" in capsys.readouterr().out  # and the summary says so


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jpg", "missing.jpg: file not found"),
        (lambda d: (d / "bad.jpg").write_bytes(b"not an image") and d / "bad.jpg", "bad.jpg: not a readable image"),
        (lambda d: (d / "text.mp4").write_text("hello " * 100) and d / "text.mp4", "text.mp4: not a readable video"),
        (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "unsupported file type '.txt'"),
    ],
)
def test_bad_sources_exit_2_with_one_line(weights: Path, tmp_path: Path, capsys, make, message: str) -> None:
    assert _detect(weights, make(tmp_path), tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_truncated_video_is_processed_up_to_the_cut_and_exits_3(weights: Path, tmp_path: Path, capsys) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=40, noise=True)  # index up front, as our writer makes them
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 2 // 3])
    assert _detect(weights, cut, tmp_path / "out") == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: damaged input: video ended after") and "of 40 frames" in err
    (run,) = RecordStore(tmp_path / "out" / "records.sqlite").runs()
    assert 0 < run.frames < 40 and run.status == "completed"


def test_real_clip_cut_short_is_unreadable_and_exits_2(weights: Path, shared_data: Path, tmp_path: Path, capsys):
    clip = DESK_CLIP.read_bytes()  # its index sits at the end of the file
    (tmp_path / "cut.mp4").write_bytes(clip[: len(clip) // 2])
    assert _detect(weights, tmp_path / "cut.mp4", tmp_path / "out") == 2
    assert "cut.mp4: not a readable video" in capsys.readouterr().err


def test_real_glove_photos(weights: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in sorted((shared_data / "gloves" / "valid" / "images").glob("*.jpg"))[:3]:
        (folder / image.name).symlink_to(image)
    assert _detect(weights, folder, tmp_path / "out", "--excel", str(tmp_path / "p.xlsx")) == 0
    (run,) = RecordStore(tmp_path / "out" / "records.sqlite").runs()
    assert run.kind == "folder" and run.frames == 3
    assert len(list(Path(run.output_dir, "images").glob("*.jpg"))) == 3


def test_bad_weights_and_policy_exit_2(weights: Path, tmp_path: Path, capsys) -> None:
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "w.pt").write_bytes(b"garbage")
    assert _detect(tmp_path / "w.pt", image, tmp_path / "out") == 2
    assert "not a YOLO checkpoint" in capsys.readouterr().err
    assert _detect(weights, image, tmp_path / "out", "--policy", "gloves") == 2
    assert "classes the model does not have" in capsys.readouterr().err
    assert _detect(weights, image, tmp_path / "out", "--classes", "mitten") == 2
    assert "unknown class 'mitten'" in capsys.readouterr().err


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_module_entry_point_exit_codes(weights: Path, tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "app", "detect", "--weights", str(weights), "--save-dir", str(tmp_path / "o")]
    ok = subprocess.run([*base, "--source", str(image)], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "(completed): 1 frame(s)" in ok.stdout
    bad = subprocess.run([*base, "--source", str(tmp_path / "nope.png")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("nope.png: file not found")


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_evaluate_on_val_and_scenes_writes_scores(trained_models: dict, tmp_path: Path, capsys) -> None:
    weights, data = trained_models["detect"]
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--weights", str(weights), "--data", str(data), "--scenes", "--imgsz", "96", "--device", "cpu"]
    assert main([*argv, "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [Path(r["data"]).name for r in results] == [data.name, "scenes.yaml"]
    val, scenes = results
    assert val["images"] == 4 and 1 <= scenes["images"] <= 4  # the 4 val photos, 1-4 to a scene
    instances = sum(len(p.read_text().splitlines()) for p in (data.parent / "valid" / "labels").glob("*.txt"))
    for result in results:
        assert sum(c["instances"] for c in result["classes"]) == instances
        assert all(0 <= result[k] <= 1 for k in ("precision", "recall", "map50", "map50_95"))
        assert (Path(result["plots_dir"]) / "confusion_matrix.png").is_file()
        # [predicted][true]: each labelled object is counted once, found (any class) or missed (background row)
        assert sum(sum(row[:-1]) for row in result["confusion_matrix"]) == instances
    printed = capsys.readouterr().out
    assert "| all | " in printed and printed.count("Confusion matrix at confidence 0.25: ") == 2


def test_evaluate_bad_inputs_exit_2(trained_models: dict, tmp_path: Path, capsys) -> None:
    weights, _ = trained_models["detect"]
    (tmp_path / "bad.yaml").write_text("names: [a]\ntrain: nowhere\nval: nowhere\n")
    assert main(["evaluate", "--weights", str(weights), "--data", str(tmp_path / "bad.yaml")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["evaluate", "--weights", str(tmp_path / "missing.pt")]) == 2


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_evaluate_several_datasets_prints_one_table(trained_models: dict, tmp_path: Path, capsys) -> None:
    weights, data = trained_models["detect"]
    argv = ["evaluate", "--weights", str(weights), "--data", str(data), str(data), "--imgsz", "64", "96",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out.split("All results")[1].strip().splitlines()[1:]
    rows = [line for line in table if line.startswith(f"| {weights.name} |")]
    assert [r.split(" | ")[3] for r in rows] == ["64", "96", "64", "96"]  # every dataset x size, in one table
    assert all(r.split(" | ")[2] == "val" for r in rows)


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_evaluate_bootstrap_prints_intervals_and_paired_differences(trained_models: dict, tmp_path: Path, capsys):
    """`--bootstrap`: each score's interval, and each model against the first on the same images; the same model
    under another name is no different at all (the same boxes on the same images)."""
    weights, data = trained_models["detect"]
    twin = tmp_path / "twin.pt"
    twin.write_bytes(weights.read_bytes())
    argv = ["evaluate", "--weights", str(weights), str(twin), "--data", str(data), "--imgsz", "96", "--device", "cpu",
            "--bootstrap", "200", "--json", str(tmp_path / "e.json")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.split("All results")[1]
    header, _, first, second = out.strip().splitlines()[1:5]
    assert "mAP50 95% interval" in header
    for row in (first, second):
        cells = row.split(" | ")
        lo, hi = map(float, cells[8].split("-"))
        assert lo <= float(cells[7]) <= hi
    assert (
        f"  {twin} at 96 against {weights.name} at 96, {data.stem} val: mAP50 +0.000 (+0.000 to +0.000): not told "
        "apart by these images"
    ) in out
    assert all(len(r["map50_interval"]) == 2 for r in json.loads((tmp_path / "e.json").read_text()))
    with pytest.raises(SystemExit) as stop:  # argparse: N must be 1 or more
        main([*argv[:-2], "--bootstrap", "0"])
    assert stop.value.code == 2 and "must be 1 or more" in capsys.readouterr().err


@pytest.mark.slow  # seconds of real work: in the full suite, not the fast loop
def test_calibrate_stores_the_best_size_and_confidence(trained_models: dict, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(trained_models["detect"][0].read_bytes())
    data = trained_models["detect"][1]
    # a checked export made from this file, and one whose check names another file
    mine = export_openvino(weights, imgsz=96, precision="fp16", out=openvino_export_path(weights, "fp16"))
    record_check(mine, AccuracyCheck(file_sha256(weights), 0.004, ("gloves.yaml",)))
    other = shutil.copytree(mine, openvino_export_path(weights, "int8"))
    record_check(other, AccuracyCheck("0" * 64, 0.0, ("gloves.yaml",)))
    assert main(["calibrate", "--weights", str(weights), "--data", str(data), "--imgsz", "64", "96",
                 "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    defaults = DetectionEngine(weights).defaults
    # rewriting the defaults changed the file's SHA-256, not a weight: its own export follows it, takes the new
    # defaults (at its own size) and stays the checked export `auto` chooses; the other is left alone
    assert read_openvino_info(mine).check == AccuracyCheck(file_sha256(weights), 0.004, ("gloves.yaml",))
    assert DetectionEngine(mine).defaults == replace(
        defaults, imgsz=96, measured=replace(defaults.measured, exported_from="w.pt")
    )
    assert f"and in the checked export made from it, {mine}\n" in printed  # FP16: not one `auto` picks
    assert read_openvino_info(other).check.source_sha256 == "0" * 64 and not DetectionEngine(other).defaults.calibrated
    assert defaults.calibrated and defaults.imgsz in (64, 96) and 0 < defaults.conf < 1
    chosen = {k: v for k, v in defaults.as_dict().items() if k != "measured"}
    assert f"stored in {weights}: {chosen}" in printed and defaults.measured.text() in printed
    # What it found at the stored defaults, counted against the validator's own tally of the labelled objects
    check = evaluate(weights, data, imgsz=defaults.imgsz, iou=defaults.iou, agnostic=defaults.agnostic,
                     matrix_conf=defaults.conf, plots_dir=tmp_path / "check")  # fmt: skip
    names = list(DetectionEngine(weights).names.values())
    m = check.confusion_matrix
    assert defaults.measured == Measured(defaults.measured.data, check.images, tuple(
        (c.name, m[names.index(c.name)][names.index(c.name)], c.instances) for c in check.classes if c.instances),
        sum(row[-1] for row in m[:-1]))  # fmt: skip
    assert defaults.measured.data == f"{data.parent.name if data.stem == 'data' else data.stem} valid"
    # and a run with the model says so, beside its progress (stdout holds the summary alone)
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((64, 64, 3), np.uint8))
    main(["detect", "--weights", str(weights), "--source", str(tmp_path / "a.jpg"), "--save-dir", str(tmp_path / "o")])
    said = capsys.readouterr()
    assert measured_notice(weights, defaults) in said.err.splitlines() and "measured" not in said.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--split", "test"], "has no test split"),
        (["evaluate", "--data", "{empty}", "--scenes"], "holds no images"),
        (["detect", "--source", "{image}", "--policy", "{policy}"], "min_frames must be a whole number"),
        (["detect", "--source", "{image}", "--policy", "{negative}"], "min_frames must be a whole number"),
        (["detect", "--source", "{image}", "--policy", "{rule}"], "rule must be one of gloves_required"),
        (["detect", "--source", "{image}", "--policy", "{zone}"], "zone: needs at least three"),
        (["detect", "--source", "{image}", "--policy", "bandsaw", "--zone", "0,0 2,0 1,1"], "danger zone"),
        (["calibrate", "--data", "{empty}"], "has no images"),
    ],
)
def test_user_errors_give_one_line_and_exit_2(trained_models: dict, tmp_path: Path, capsys, argv, message) -> None:
    weights, data = trained_models["detect"]
    empty = tmp_path / "empty"
    for split in ("train", "valid"):
        (empty / split / "images").mkdir(parents=True)
    (empty / "data.yaml").write_text("names: [a]\ntrain: train/images\nval: valid/images\n")
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    policies = {"policy": "min_frames: three", "negative": "min_frames: -1", "rule": "rule: gloves_optional",
                "zone": "zone: [[0, 0], [1.5, 0], [1, 1]]"}  # fmt: skip
    for name, line in policies.items():
        rule = "" if line.startswith("rule") else "rule: gloves_forbidden\n"
        (tmp_path / f"{name}.yaml").write_text(f"{rule}roles: {{glove: [hand]}}\n{line}\n")
    values = {"{empty}": str(empty / "data.yaml"), "{image}": str(tmp_path / "a.jpg")}
    values |= {f"{{{name}}}": str(tmp_path / f"{name}.yaml") for name in policies}
    argv = [values.get(a, a) for a in argv]
    extra = ["--save-dir", str(tmp_path / "out")] if argv[0] == "detect" else ["--data", str(data)]
    extra = [] if "--data" in argv else extra
    assert main([argv[0], "--weights", str(weights), *argv[1:], *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
