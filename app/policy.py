"""Per-machine safety policies and the monitor that turns frame results into violation events.

A policy maps the model's classes to roles (glove, bare hand, other) and picks a rule:

- `gloves_required`: a bare hand (in the zone, if one is set) is a violation;
- `gloves_forbidden`: a glove in the danger zone (anywhere, if no zone is set) is a violation, as at a
  running bandsaw where a glove can be caught by the blade.

Events debounce the per-frame verdicts: an event opens after `min_frames` consecutive violating frames and
closes once no violation has been seen for `cooldown_s` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from .errors import PolicyError
from .files import read_yaml_mapping
from .results import Detection, FrameResult

POLICY_DIR = Path(__file__).parent / "policies"
ROLES = ("glove", "bare_hand", "other")
OK, VIOLATION = "ok", "violation"  # a verdict's state, as the console's banners mark it (`data-state`)
NO_HAND = "No hand detected"  # the verdict's headline, of a frame or a run, when the policy had nothing to judge
NO_VERDICT = ("No safety policy selected", "detections only: choose a policy for a verdict")  # headline, detail
FINISHED = ("completed", "stopped")  # a run's statuses that judged every frame it was to see; else "so far"
POLICY_KEYS = ("name", "description", "rule", "roles", "zone", "min_frames", "cooldown_s")


class Rule:
    """A safety rule: which detections violate it. A new rule is a subclass here plus its name in a policy YAML.

    Attributes:
        name: The `rule:` value in a policy file.
        needs: The role the model must have at least one class for (else the rule can never fire).
    """

    name: ClassVar[str]
    needs: ClassVar[str]

    def reason(self, role: str, in_zone: bool, zoned: bool) -> str | None:
        """Why a detection with this role violates the rule (None if it does not); `in_zone` is True when there
        is no zone (`zoned` False) or the box touches it."""
        raise NotImplementedError


class GlovesRequired(Rule):
    """A bare hand (in the zone, if one is set) is a violation."""

    name, needs = "gloves_required", "bare_hand"

    def reason(self, role: str, in_zone: bool, zoned: bool) -> str | None:
        if role == "bare_hand" and in_zone:
            return "bare hand in zone" if zoned else "bare hand"
        return None


class GlovesForbidden(Rule):
    """A glove in the danger zone (anywhere, if no zone is set) is a violation: a blade can catch a glove."""

    name, needs = "gloves_forbidden", "glove"

    def reason(self, role: str, in_zone: bool, zoned: bool) -> str | None:
        if role == "glove" and in_zone:
            return "glove in danger zone" if zoned else "glove at machine"
        return None


RULES: dict[str, Rule] = {r.name: r for r in (GlovesRequired(), GlovesForbidden())}
"""Every rule by its YAML name."""


@dataclass(frozen=True)
class SafetyPolicy:
    """One machine's rule.

    Attributes:
        name: Short identifier, recorded with each run.
        rule: One of `RULES`.
        roles: Class name -> role (`glove`, `bare_hand`, `other`); names compare case-insensitively.
        zone: Danger-zone polygon as (x, y) in 0..1 of the image, or None for the whole image.
        min_frames: Consecutive violating frames before an event opens (1 for still images).
        cooldown_s: Seconds without a violation before an open event closes.
    """

    name: str
    rule: str
    roles: dict[str, str]
    zone: tuple[tuple[float, float], ...] | None = None
    min_frames: int = 3
    cooldown_s: float = 2.0
    description: str = ""

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise PolicyError(f"policy {self.name!r}: rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        bad = {r for r in self.roles.values() if r not in ROLES}
        if bad:
            raise PolicyError(f"policy {self.name!r}: unknown roles {sorted(bad)}; use {', '.join(ROLES)}")
        if self.zone is not None:
            check_zone(self.zone, f"policy {self.name!r}: zone")
        if not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise PolicyError(f"policy {self.name!r}: min_frames must be a whole number >= 1, got {self.min_frames!r}")
        if not isinstance(self.cooldown_s, (int, float)) or self.cooldown_s < 0:
            raise PolicyError(f"policy {self.name!r}: cooldown_s must be a number of seconds >= 0")

    @property
    def rule_check(self) -> Rule:
        return RULES[self.rule]

    @classmethod
    def load(cls, path: str | Path) -> SafetyPolicy:
        """Read a policy YAML; a bare name (`bandsaw`) means `app/policies/<name>.yaml`."""
        path = Path(path)
        if not path.suffix and not path.exists():
            path = POLICY_DIR / f"{path}.yaml"
        if not path.is_file():
            names = ", ".join(p.stem for p in list_policies())
            raise PolicyError(f"policy file not found: {path} (the shipped policies: {names}; or a policy file's path)")
        data = read_yaml_mapping(path, PolicyError, path.name, "with rule and roles keys")
        if "rule" not in data or "roles" not in data:
            raise PolicyError(f"{path.name}: a policy needs 'rule' and 'roles' keys")
        unknown = sorted(set(map(str, data)) - set(POLICY_KEYS))
        if unknown:
            raise PolicyError(f"{path.name}: unknown keys {', '.join(unknown)}; a policy has {', '.join(POLICY_KEYS)}")
        roles_in = data.get("roles")
        if not isinstance(roles_in, dict) or not all(isinstance(v, list | None) for v in roles_in.values()):
            raise PolicyError(f"{path.name}: roles must map each role to a list of class names")
        roles = {str(n): str(role) for role, names in roles_in.items() for n in (names or [])}
        zone = data.get("zone")
        return cls(
            name=str(data.get("name") or path.stem),
            rule=str(data["rule"]),
            roles=roles,
            zone=check_zone(zone, f"{path.name}: zone") if zone else None,
            min_frames=_number(data, "min_frames", 3, int, path.name),
            cooldown_s=_number(data, "cooldown_s", 2.0, float, path.name),
            description=str(data.get("description", "")),
        )

    @classmethod
    def from_json(cls, text: str) -> SafetyPolicy:
        """The policy as a run recorded it (`RunRow.policy_json`), to judge the run again from its records."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise PolicyError(f"recorded policy settings are not JSON: {e}") from e
        if not isinstance(data, dict):
            raise PolicyError("recorded policy settings are not a mapping")
        missing = [k for k in ("name", "rule", "roles") if k not in data]  # edited by hand
        if missing:
            raise PolicyError(f"recorded policy settings lack {', '.join(missing)}")
        known = {f.name for f in fields(cls)}  # keys of another version are left out
        policy = {k: v for k, v in data.items() if k in known}
        zone = policy.get("zone")  # JSON turned its pairs into lists
        return cls(**{**policy, "zone": tuple(tuple(p) for p in zone) if zone else None})

    def with_zone(self, zone: Sequence[Sequence[float]] | None) -> SafetyPolicy:
        """The same policy with another danger zone (e.g. drawn by the operator)."""
        return replace(self, zone=check_zone(zone, "danger zone") if zone else None)

    def check(self, names: dict[int, str]) -> None:
        """Insist that every class the policy names exists in the model, and that the rule has its role."""
        model = {n.lower() for n in names.values()}
        unknown = sorted(n for n in self.roles if n.lower() not in model)
        if unknown:
            raise PolicyError(
                f"policy {self.name!r} names classes the model does not have: {', '.join(unknown)} "
                f"(model classes: {', '.join(names.values())})"
            )
        needed = self.rule_check.needs
        if needed not in self.roles.values():
            raise PolicyError(f"policy {self.name!r}: rule {self.rule} needs at least one class with role {needed}")

    def check_classes(self, names: dict[int, str], classes: tuple[int, ...] | None) -> None:
        """Refuse a class filter that hides classes this policy's rule judges by: the run would answer OK without
        having looked (a `bare_hand` left out under "gloves required")."""
        if classes is None:
            return
        needs = self.rule_check.needs
        hidden = [n for i, n in names.items() if i not in classes and self.role(n) == needs]
        if hidden:
            raise PolicyError(
                f"policy {self.name!r} judges by {', '.join(hidden)}, which the class filter leaves out, so it "
                "could never see a violation: keep those classes, or run without a policy"
            )

    def fits(self, names: dict[int, str]) -> bool:
        """Whether `check` accepts this model (a console offers only the policies that fit)."""
        try:
            self.check(names)
        except PolicyError:
            return False
        return True

    def role(self, class_name: str) -> str:
        lowered = {n.lower(): r for n, r in self.roles.items()}
        return lowered.get(class_name.lower(), "other")

    def judges(self, class_name: str) -> bool:
        """Whether a detection of this class is judged (a glove or a bare hand; a head is no hand to judge)."""
        return self.role(class_name) != "other"


@dataclass
class FrameStatus:
    """The verdict for one frame: VIOLATION with the reasons and the offending detections; OK when the policy
    judged hands and none broke its rule; no verdict when it had nothing to judge (no glove or bare hand detected:
    a green OK there would read as "all hands gloved" of a frame whose hands the model missed)."""

    violations: list[Detection] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    judged: int = 0  # detections of a class the policy judges (a glove or a bare hand; not `other`)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def label(self) -> str:
        return "VIOLATION" if self.violations else "OK" if self.judged else NO_HAND


@dataclass
class SafetyEvent:
    """A period of violation: from its first to its last violating frame."""

    reason: str
    class_name: str
    start_frame: int
    start_time: float
    end_frame: int
    end_time: float
    peak_confidence: float
    source: str = ""
    snapshot: np.ndarray | None = field(default=None, repr=False)  # annotated frame at peak confidence
    closed: bool = False
    id: int | None = None  # set by the records store


class SafetyMonitor:
    """Applies a policy frame by frame and keeps the run's events.

    Example:
        >>> monitor = SafetyMonitor(SafetyPolicy.load("gloves"))
        >>> status = monitor.process(frame_result)
        >>> status.label, [e.reason for e in monitor.events]
    """

    def __init__(self, policy: SafetyPolicy, still_images: bool = False) -> None:
        self.policy = policy
        # Unrelated still images have no "consecutive frames": each violating image is its own event.
        self.min_frames = 1 if still_images else policy.min_frames
        self.cooldown_s = 0.0 if still_images else policy.cooldown_s
        self.still_images = still_images
        self.events: list[SafetyEvent] = []
        self.changed: list[SafetyEvent] = []  # opened, extended or closed since the last `take_changes`
        self._streak: list[tuple[FrameResult, FrameStatus]] = []
        self._open: SafetyEvent | None = None
        self._zone_cache: tuple[tuple[int, int], np.ndarray] | None = None

    def evaluate(self, frame: FrameResult) -> FrameStatus:
        """The verdict for one frame under the policy, without touching events."""
        status = FrameStatus()
        zone = self._zone_mask(frame.width, frame.height)
        rule = self.policy.rule_check
        for d in frame.detections:
            status.judged += self.policy.judges(d.class_name)
            in_zone = zone is None or _box_touches(zone, d.xyxy)
            reason = rule.reason(self.policy.role(d.class_name), in_zone, zone is not None)
            if reason is None:
                continue
            status.violations.append(d)
            if reason not in status.reasons:
                status.reasons.append(reason)
        return status

    def process(self, frame: FrameResult) -> FrameStatus:
        """Evaluate a frame and update events; changed events are collected for `take_changes`."""
        status = self.evaluate(frame)
        if self.still_images and self._open is not None:
            self._close()  # a new image never continues the previous image's event
        if status.ok:
            self._streak.clear()
            if self._open is not None and frame.timestamp - self._open.end_time >= self.cooldown_s:
                self._close()
            return status
        if self._open is not None:
            self._extend(self._open, frame, status)
            return status
        self._streak.append((frame, status))
        if len(self._streak) >= self.min_frames:
            first_frame, first_status = self._streak[0]
            peak = max(first_status.violations, key=lambda d: d.confidence)
            event = SafetyEvent(
                reason=first_status.reasons[0],
                class_name=peak.class_name,
                start_frame=first_frame.frame_index,
                start_time=first_frame.timestamp,
                end_frame=first_frame.frame_index,
                end_time=first_frame.timestamp,
                peak_confidence=-1.0,
                source=frame.source,
            )
            for f, s in self._streak:
                self._extend(event, f, s)
            self._streak.clear()
            self._open = event
            self.events.append(event)
        return status

    @property
    def open_event(self) -> SafetyEvent | None:
        """The event still open: its violation lasts, or ended less than the cooldown ago."""
        return self._open

    def finish(self) -> None:
        """Close the open event at the end of the run."""
        if self._open is not None:
            self._close()
        self._streak.clear()

    def take_changes(self) -> list[SafetyEvent]:
        """Events opened, extended or closed since the last call (each listed once)."""
        changed, self.changed = self.changed, []
        return changed

    def _extend(self, event: SafetyEvent, frame: FrameResult, status: FrameStatus) -> None:
        event.end_frame, event.end_time = frame.frame_index, frame.timestamp
        peak = max(status.violations, key=lambda d: d.confidence)
        if peak.confidence > event.peak_confidence:
            event.peak_confidence, event.class_name = peak.confidence, peak.class_name
            image = frame.annotated if frame.annotated is not None else frame.image
            event.snapshot = None if image is None else image.copy()
        self._mark(event)

    def _close(self) -> None:
        self._open.closed = True
        self._mark(self._open)
        self._open = None

    def _mark(self, event: SafetyEvent) -> None:
        if all(e is not event for e in self.changed):
            self.changed.append(event)

    def _zone_mask(self, width: int, height: int) -> np.ndarray | None:
        """The zone rasterised at frame size (cached): exact box/zone overlap for any polygon shape."""
        if self.policy.zone is None:
            return None
        if self._zone_cache is None or self._zone_cache[0] != (width, height):
            mask = np.zeros((height, width), np.uint8)
            pts = np.round(np.array(self.policy.zone) * [width - 1, height - 1]).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1)
            self._zone_cache = ((width, height), mask)
        return self._zone_cache[1]


def _box_touches(mask: np.ndarray, xyxy: tuple[float, float, float, float]) -> bool:
    h, w = mask.shape
    x1, y1 = max(int(xyxy[0]), 0), max(int(xyxy[1]), 0)
    x2, y2 = min(int(np.ceil(xyxy[2])), w), min(int(np.ceil(xyxy[3])), h)
    return x2 > x1 and y2 > y1 and bool(mask[y1:y2, x1:x2].any())


def check_zone(zone: object, what: str) -> tuple[tuple[float, float], ...]:
    """A zone as a tuple of (x, y) points in 0..1, or `PolicyError` naming `what` is wrong with it."""
    try:
        points = tuple((float(x), float(y)) for x, y in zone)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        example = "[[0.3, 0.2], [0.7, 0.2], [0.5, 0.9]]"
        raise PolicyError(f"{what}: write it as a list of x, y points, e.g. {example}") from None
    if len(points) < 3 or not all(0 <= v <= 1 for p in points for v in p):
        raise PolicyError(f"{what}: needs at least three x, y points with values between 0 and 1")
    return points


def parse_zone(text: str | None) -> tuple[tuple[float, float], ...] | None:
    """A zone typed as `x,y` pairs separated by spaces (`0.3,0.2 0.7,0.2 0.5,0.9`); None for empty text."""
    if not text or not text.strip():
        return None
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in text.split()]
    except ValueError:
        example = "0.3,0.2 0.7,0.2 0.5,0.9"
        raise PolicyError(f"danger zone: write points as x,y pairs separated by spaces, e.g. {example}") from None
    if any(len(p) != 2 for p in points):
        raise PolicyError("danger zone: each point is one x,y pair, e.g. 0.3,0.2")
    return check_zone(points, "danger zone")


def _number(data: dict, key: str, default: float, kind: type, where: str) -> Any:
    """A numeric policy value, or `PolicyError` naming the key (YAML reads `three` as text)."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        want = "a whole number" if kind is int else "a number"
        raise PolicyError(f"{where}: {key} must be {want}, got {value!r}")
    return kind(value)


def list_policies() -> list[Path]:
    """The policies shipped in `app/policies/`."""
    return sorted(POLICY_DIR.glob("*.yaml"))


def run_verdict(
    policy: SafetyPolicy | None, counts: Mapping[str, int], events: int, reasons: Iterable[str], conf: float,
    status: str,
) -> tuple[str | None, str, str]:  # fmt: skip
    """A run's verdict, as the console's banner, the CLI's summary, History and the workbook word it: (`OK`,
    `VIOLATION`, or None for no verdict), a headline and a detail, from its detections per class, its number of
    events and their reasons, its confidence and its status (a run still going, failed or interrupted is judged
    "so far"). No verdict without a policy, nor when no class the policy judges (gloves, bare hands; not `other`)
    was detected: a green OK there would read as "all hands gloved" of a photo whose hands the model missed."""
    more = "" if status in FINISHED else " so far"
    if policy is None:
        return None, *NO_VERDICT
    if not events:
        if any(map(policy.judges, counts)):
            return OK, f"OK: no violations{more}", f"policy {policy.name}"
        unseen = f"nothing to judge: no hand in view, or none this model sees at confidence {conf:g}"
        return None, f"{NO_HAND}{more}", f"{unseen} (policy {policy.name})"
    why = ", ".join(sorted(set(reasons)))
    return VIOLATION, f"VIOLATION: {events} event(s){more}", f"{why} (policy {policy.name})"


def recorded_verdict(policy_json: str | None, counts: Mapping[str, int], events: int, conf: float, status: str) -> str:
    """A saved run's verdict headline (`run_verdict`), judged again from its records and the policy settings it
    recorded, as History and the workbook list it."""
    try:
        policy = SafetyPolicy.from_json(policy_json) if policy_json else None
    except PolicyError as e:
        return f"unknown: {e}"
    return run_verdict(policy, counts, events, (), conf, status)[1]
