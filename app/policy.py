"""Per-machine safety policies and the monitor that turns frame results into violation events.

A policy maps the model's classes to roles (glove, bare hand, other) and picks a rule:

- `gloves_required`: a bare hand (in the zone, if one is set) is a violation;
- `gloves_forbidden`: a glove in the danger zone (anywhere, if no zone is set) is a violation, as at a
  running bandsaw where a glove can be caught by the blade.

Events debounce the per-frame verdicts: an event opens after `min_frames` consecutive violating frames and
closes once no violation has been seen for `cooldown_s` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from .errors import PolicyError
from .results import Detection, FrameResult

POLICY_DIR = Path(__file__).parent / "policies"
RULES = ("gloves_required", "gloves_forbidden")
ROLES = ("glove", "bare_hand", "other")



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
            raise PolicyError(f"policy {self.name!r}: rule must be one of {RULES}, got {self.rule!r}")
        bad = {r for r in self.roles.values() if r not in ROLES}
        if bad:
            raise PolicyError(f"policy {self.name!r}: unknown roles {sorted(bad)}; use {ROLES}")
        if self.zone is not None and (
            len(self.zone) < 3 or any(len(p) != 2 or not all(0 <= v <= 1 for v in p) for p in self.zone)
        ):
            raise PolicyError(f"policy {self.name!r}: zone needs >= 3 (x, y) points with values in 0..1")
        if self.min_frames < 1 or self.cooldown_s < 0:
            raise PolicyError(f"policy {self.name!r}: min_frames must be >= 1 and cooldown_s >= 0")

    @classmethod
    def load(cls, path: str | Path) -> SafetyPolicy:
        """Read a policy YAML; a bare name (`bandsaw`) means `app/policies/<name>.yaml`."""
        path = Path(path)
        if not path.suffix and not path.exists():
            path = POLICY_DIR / f"{path}.yaml"
        if not path.is_file():
            raise PolicyError(f"policy file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise PolicyError(f"{path.name} is not valid YAML: {e}") from e
        if not isinstance(data, dict) or "rule" not in data or "roles" not in data:
            raise PolicyError(f"{path.name}: a policy needs 'rule' and 'roles' keys")
        roles = {str(n): role for role, names in (data.get("roles") or {}).items() for n in (names or [])}
        zone = data.get("zone")
        return cls(
            name=str(data.get("name") or path.stem),
            rule=data["rule"],
            roles=roles,
            zone=tuple(tuple(float(v) for v in p) for p in zone) if zone else None,
            min_frames=int(data.get("min_frames", 3)),
            cooldown_s=float(data.get("cooldown_s", 2.0)),
            description=str(data.get("description", "")),
        )

    def with_zone(self, zone: list[tuple[float, float]] | None) -> SafetyPolicy:
        """The same policy with another danger zone (e.g. drawn by the operator)."""
        return SafetyPolicy(**{**self.__dict__, "zone": tuple(map(tuple, zone)) if zone else None})

    def check(self, names: dict[int, str]) -> None:
        """Insist that every class the policy names exists in the model, and that the rule has its role."""
        model = {n.lower() for n in names.values()}
        unknown = sorted(n for n in self.roles if n.lower() not in model)
        if unknown:
            raise PolicyError(
                f"policy {self.name!r} names classes the model does not have: {', '.join(unknown)} "
                f"(model classes: {', '.join(names.values())})"
            )
        needed = "bare_hand" if self.rule == "gloves_required" else "glove"
        if needed not in self.roles.values():
            raise PolicyError(f"policy {self.name!r}: rule {self.rule} needs at least one class with role {needed}")

    def role(self, class_name: str) -> str:
        lowered = {n.lower(): r for n, r in self.roles.items()}
        return lowered.get(class_name.lower(), "other")


@dataclass
class FrameStatus:
    """The verdict for one frame: OK, or VIOLATION with the reasons and the offending detections."""

    violations: list[Detection] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def label(self) -> str:
        return "OK" if self.ok else "VIOLATION"


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
        for d in frame.detections:
            role = self.policy.role(d.class_name)
            in_zone = zone is None or _box_touches(zone, d.xyxy)
            if self.policy.rule == "gloves_required" and role == "bare_hand" and in_zone:
                status.violations.append(d)
                reason = "bare hand" + (" in zone" if zone is not None else "")
            elif self.policy.rule == "gloves_forbidden" and role == "glove" and in_zone:
                status.violations.append(d)
                reason = "glove in danger zone" if zone is not None else "glove at machine"
            else:
                continue
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


def list_policies() -> list[Path]:
    """The policies shipped in `app/policies/`."""
    return sorted(POLICY_DIR.glob("*.yaml"))
