"""Safety policies: verdicts per frame and events that open and close as the policy says."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BANDSAW_NAMES

from app.errors import PolicyError
from app.policy import SafetyMonitor, SafetyPolicy, list_policies, parse_zone
from app.results import Detection, FrameResult

GLOVE_NAMES = {0: "gloved_hand", 1: "bare_hand"}


def det(name: str, box: tuple[float, float, float, float], conf: float = 0.8) -> Detection:
    return Detection(class_id=0 if name == "gloved_hand" else 1, class_name=name, confidence=conf, xyxy=box)


def frame(i: int, *detections: Detection, fps: float = 10.0) -> FrameResult:
    return FrameResult(frame_index=i, timestamp=i / fps, width=100, height=100, detections=list(detections))


REQUIRED = SafetyPolicy(
    name="t", rule="gloves_required", roles={"gloved_hand": "glove", "bare_hand": "bare_hand"}, min_frames=3,
    cooldown_s=0.5,
)  # fmt: skip
FORBIDDEN = SafetyPolicy(
    name="t", rule="gloves_forbidden", roles={"gloved_hand": "glove", "bare_hand": "bare_hand"},
    zone=((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)), min_frames=1, cooldown_s=0.0,
)  # fmt: skip
LEFT, RIGHT, EDGE = (5, 5, 30, 30), (70, 10, 95, 40), (30, 40, 52, 60)


def test_gloves_required_flags_bare_hands_only() -> None:
    m = SafetyMonitor(REQUIRED)
    assert m.evaluate(frame(0, det("gloved_hand", LEFT))).ok
    status = m.evaluate(frame(0, det("gloved_hand", LEFT), det("bare_hand", RIGHT, 0.6)))
    assert status.label == "VIOLATION" and status.reasons == ["bare hand"]
    assert [d.class_name for d in status.violations] == ["bare_hand"]


def test_a_frame_is_ok_only_when_the_policy_judged_a_hand() -> None:
    """OK means hands were seen and none broke the rule; with no glove or bare hand (nothing, or only a class the
    policy does not judge) there is no verdict, whatever the zone."""
    for policy in (REQUIRED, FORBIDDEN):
        m = SafetyMonitor(policy)
        assert m.evaluate(frame(0, det("gloved_hand", LEFT))).label == "OK"
        assert m.evaluate(frame(0)).label == m.evaluate(frame(0, det("head", RIGHT))).label == "No hand detected"
        assert m.evaluate(frame(0, det("head", RIGHT), det("bare_hand", LEFT))).judged == 1


def test_gloves_forbidden_uses_the_zone() -> None:
    m = SafetyMonitor(FORBIDDEN)
    assert m.evaluate(frame(0, det("gloved_hand", LEFT))).ok  # glove away from the blade
    assert m.evaluate(frame(0, det("bare_hand", RIGHT))).ok  # bare hands are fine at a bandsaw
    assert m.evaluate(frame(0, det("gloved_hand", RIGHT))).reasons == ["glove in danger zone"]
    assert not m.evaluate(frame(0, det("gloved_hand", EDGE))).ok  # a box reaching into the zone counts


def test_event_needs_min_consecutive_frames() -> None:
    m = SafetyMonitor(REQUIRED)
    bare = det("bare_hand", RIGHT)
    for i, f in enumerate([frame(0, bare), frame(1, bare), frame(2), frame(3, bare), frame(4, bare)]):
        assert m.process(f).ok == (i == 2)
    assert m.events == []  # two blips of two frames: no event
    m.process(frame(5, bare))
    (event,) = m.events
    assert (event.start_frame, event.end_frame, event.closed) == (3, 5, False)


def test_event_closes_after_cooldown_and_gaps_shorter_than_cooldown_continue_it() -> None:
    m = SafetyMonitor(REQUIRED)  # min 3 frames, cooldown 0.5 s at 10 fps
    bare = det("bare_hand", RIGHT, 0.6)
    for i in range(3):
        m.process(frame(i, bare))
    m.process(frame(3))  # a missed detection, 0.1 s
    m.process(frame(4, det("bare_hand", RIGHT, 0.9)))  # continues the same event, new peak
    for i in range(5, 9):
        m.process(frame(i))
    assert not m.events[0].closed  # 0.4 s since the last violation
    m.process(frame(9))  # 0.5 s: closed
    (event,) = m.events
    assert event.closed and (event.start_frame, event.end_frame) == (0, 4)
    assert event.peak_confidence == pytest.approx(0.9) and event.class_name == "bare_hand"
    for i in range(10, 13):
        m.process(frame(i, bare))
    assert len(m.events) == 2


def test_changes_report_each_event_once_per_call() -> None:
    m = SafetyMonitor(FORBIDDEN)
    m.process(frame(0, det("gloved_hand", RIGHT)))
    assert [e.start_frame for e in m.take_changes()] == [0]
    m.process(frame(1, det("gloved_hand", RIGHT)))
    m.process(frame(2))
    (changed,) = m.take_changes()
    assert changed.closed and changed.end_frame == 1
    assert m.take_changes() == []


def test_still_images_are_events_each() -> None:
    m = SafetyMonitor(REQUIRED, still_images=True)
    for i in range(3):
        m.process(FrameResult(i, 0.0, 100, 100, [det("bare_hand", RIGHT)], source=f"img{i}.jpg"))
    m.finish()
    assert [(e.start_frame, e.end_frame, e.source, e.closed) for e in m.events] == [
        (0, 0, "img0.jpg", True), (1, 1, "img1.jpg", True), (2, 2, "img2.jpg", True)
    ]  # fmt: skip


def test_finish_closes_the_open_event() -> None:
    m = SafetyMonitor(FORBIDDEN)
    m.process(frame(0, det("gloved_hand", RIGHT)))
    m.finish()
    assert m.events[0].closed


@pytest.mark.parametrize(
    ("policy", "names"),
    [("bandsaw", dict(enumerate(BANDSAW_NAMES))), ("gloves", GLOVE_NAMES), ("gloves-forbidden", GLOVE_NAMES)],
)
def test_shipped_policies_fit_their_models(policy: str, names: dict[int, str]) -> None:
    p = SafetyPolicy.load(policy)
    p.check(names)
    assert p.min_frames >= 1


def test_every_shipped_policy_loads() -> None:
    assert {p.stem for p in list_policies()} >= {"bandsaw", "gloves", "gloves-forbidden"}
    for path in list_policies():
        SafetyPolicy.load(path)


def test_policy_naming_unknown_classes_is_refused() -> None:
    with pytest.raises(PolicyError, match="classes the model does not have: Glove_Blue"):
        SafetyPolicy.load("bandsaw").check(GLOVE_NAMES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rule: gloves_optional\nroles: {glove: [a]}\n", "rule must be one of"),
        ("rule: gloves_required\nroles: {mitten: [a]}\n", "unknown roles"),
        ("rule: gloves_required\nroles: {bare_hand: [a]}\nzone: [[0, 0], [2, 0], [1, 1]]\n", "zone: needs at least"),
        ("rule: gloves_required\nroles: {bare_hand: [a]}\nzone: [[0, 0], [1, x], [1, 1]]\n", "zone: write it as"),
        ("rule: gloves_required\nroles: {bare_hand: [a]}\nmin_frames: three\n", "min_frames must be a whole"),
        ("rule: gloves_required\nroles: {bare_hand: [a]}\nmin_frames: -2\n", "min_frames must be a whole"),
        ("rule: gloves_required\nroles: {bare_hand: [a]}\ncooldown_s: -1\n", "cooldown_s must be"),
        ("rule: gloves_required\nroles: {bare_hand: [a]}\ncooldown_s: soon\n", "cooldown_s must be a number"),
        ("rule: gloves_required\nroles: {bare_hand: [a]}\nmin_frame: 2\n", "unknown keys min_frame"),
        ("rule: gloves_required\nroles: [bare_hand]\n", "roles must map"),
        ("rule: gloves_required\n", "needs 'rule' and 'roles'"),
        ("rule: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_policy_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError, match=message):
        SafetyPolicy.load(tmp_path / "p.yaml")


def test_an_unknown_policy_name_lists_the_shipped_ones() -> None:
    with pytest.raises(PolicyError) as raised:
        SafetyPolicy.load("gloves-required")
    assert str(raised.value).endswith(
        "gloves-required.yaml (the shipped policies: bandsaw, gloves-forbidden, gloves; or a policy file's path)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [("0.1,0.1 0.5", "each point is one x,y pair"), ("a,b c,d e,f", "write points as x,y pairs"),
     ("0,0 1,0", "at least three"), ("0,0 1.5,0 1,1", "between 0 and 1")],
)  # fmt: skip
def test_typed_zones_are_checked(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_zone(text)


def test_typed_zone_is_parsed() -> None:
    assert parse_zone("0.3,0.2 0.7,0.2 0.5,0.9") == ((0.3, 0.2), (0.7, 0.2), (0.5, 0.9))
    assert parse_zone("  ") is None


def test_policy_fits_only_models_with_its_classes() -> None:
    assert SafetyPolicy.load("gloves").fits(GLOVE_NAMES) and not SafetyPolicy.load("bandsaw").fits(GLOVE_NAMES)


def test_shipped_policy_names_are_their_file_names() -> None:
    assert [SafetyPolicy.load(p).name for p in list_policies()] == [p.stem for p in list_policies()]


def test_zone_can_be_replaced_by_the_operator() -> None:
    moved = FORBIDDEN.with_zone([(0.0, 0.0), (0.4, 0.0), (0.4, 0.4)])
    m = SafetyMonitor(moved)
    assert not m.evaluate(frame(0, det("gloved_hand", LEFT))).ok
    assert m.evaluate(frame(0, det("gloved_hand", RIGHT))).ok


def test_class_filter_must_keep_what_the_rule_judges_by() -> None:
    gloves = SafetyPolicy.load("gloves")  # gloves required: judged by bare hands
    with pytest.raises(PolicyError, match="policy 'gloves' judges by bare_hand, which the class filter leaves out"):
        gloves.check_classes(GLOVE_NAMES, (0,))
    gloves.check_classes(GLOVE_NAMES, (1,))  # bare hands only: every violation is still seen
    gloves.check_classes(GLOVE_NAMES, None)
    SafetyPolicy.load("gloves-forbidden").check_classes(GLOVE_NAMES, (0,))
