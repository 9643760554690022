"""ProfileRegistry: the profiles in force, fed by files.py (local) or watch.py (Kubernetes).

`apply()` validates a raw spec: a valid one replaces the profile's spec in force; an invalid one is
recorded as the profile's problem while its last good spec stays in force. Readers ask
`effective(tenant)`: the profile that lists the tenant (first by name), else the profile named
`default`, else the built-in default spec. Thread-safe: the Kubernetes watch runs in a thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .model import DEFAULT_PROFILE, AgentProfileSpec, format_validation_error

log = logging.getLogger(__name__)


class SpecRejected(ValueError):
    """Raised by `ProfileRegistry.check`; the message names the field (`spec.sandbox.limits.x: ...`)."""


@dataclass(frozen=True)
class ApplyResult:
    valid: bool
    reason: str  # CamelCase, used as the condition reason
    message: str
    generation: int | None
    changed: bool  # the spec in force changed


@dataclass
class ProfileState:
    name: str
    source: str
    spec: AgentProfileSpec | None = None  # last good spec (in force), None when never valid
    applied_generation: int | None = None
    observed_generation: int | None = None
    raw: Any = None  # last raw spec seen (valid or not)
    last: ApplyResult | None = None

    @property
    def problem(self) -> str | None:
        return None if self.last is None or self.last.valid else self.last.message


@dataclass(frozen=True)
class EffectiveProfile:
    name: str
    spec: AgentProfileSpec
    generation: int | None


@dataclass
class ProfileRegistry:
    default_spec: AgentProfileSpec = field(default_factory=AgentProfileSpec)
    # Checks a spec against what only the app knows (e.g. its limits merged onto the replica's
    # settings still make a valid sandbox policy); raises ValueError with the reason.
    check: Callable[[AgentProfileSpec], None] | None = None
    _states: dict[str, ProfileState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list[Callable[[str], None]] = field(default_factory=list)
    version: int = 0  # bumped whenever a spec in force changes

    def apply(
        self, name: str, raw_spec: Any, *, generation: int | None = None, source: str = ""
    ) -> ApplyResult:
        with self._lock:
            state = self._states.setdefault(name, ProfileState(name=name, source=source))
            state.source = source or state.source
            if state.last is not None and state.raw == raw_spec and state.observed_generation == generation:
                return state.last  # nothing new (a re-sent watch event, or our own status update)
            try:
                if raw_spec is not None and not isinstance(raw_spec, dict):
                    raise ValueError(f"spec must be a mapping, not {type(raw_spec).__name__}")
                spec = AgentProfileSpec.model_validate(raw_spec or {})
                if self.check is not None:
                    self.check(spec)
            except ValidationError as exc:
                result = ApplyResult(
                    False, "ValidationFailed", format_validation_error(exc), generation, False
                )
            except SpecRejected as exc:
                result = ApplyResult(False, "ValidationFailed", str(exc), generation, False)
            except ValueError as exc:
                result = ApplyResult(False, "ValidationFailed", f"spec: {exc}", generation, False)
            else:
                changed = spec != state.spec
                state.spec, state.applied_generation = spec, generation
                result = ApplyResult(True, "Applied", "spec applied", generation, changed)
            state.raw, state.observed_generation, state.last = raw_spec, generation, result
            if result.changed:
                self.version += 1
        if result.valid:
            log.info("profile applied", extra={"profile": name, "generation": generation, "source": source})
        else:
            log.warning(
                "profile invalid; last good spec stays in force",
                extra={"profile": name, "generation": generation, "source": source, "error": result.message},
            )
        if result.changed:
            self._notify(name)
        return result

    def record_problem(self, name: str, reason: str, message: str, *, source: str = "") -> ApplyResult:
        """A document that could not even be read (e.g. YAML syntax): keep the last good spec."""
        with self._lock:
            state = self._states.setdefault(name, ProfileState(name=name, source=source))
            state.raw = object()  # forces the next readable document to be applied
            state.last = ApplyResult(False, reason, message, None, False)
        log.warning(
            "profile unreadable; last good spec stays in force", extra={"profile": name, "error": message}
        )
        return state.last

    def remove(self, name: str) -> None:
        with self._lock:
            state = self._states.pop(name, None)
            if state is not None and state.spec is not None:
                self.version += 1
        if state is not None and state.spec is not None:
            self._notify(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._states)

    def state(self, name: str) -> ProfileState | None:
        with self._lock:
            return self._states.get(name)

    def problems(self) -> dict[str, str]:
        """Profile name -> why its current document is not in force (for /diagnostics)."""
        with self._lock:
            return {name: s.problem for name, s in sorted(self._states.items()) if s.problem}

    def snapshot(self) -> list[dict[str, Any]]:
        """JSON-able summary for /diagnostics: what is in force and what was refused."""
        with self._lock:
            return [
                {
                    "name": name,
                    "source": s.source,
                    "in_force": s.spec is not None,
                    "tenants": list(s.spec.tenants) if s.spec is not None else [],
                    "applied_generation": s.applied_generation,
                    "observed_generation": s.observed_generation,
                    "problem": s.problem,
                }
                for name, s in sorted(self._states.items())
            ]

    def effective(self, tenant: str) -> EffectiveProfile:
        with self._lock:
            good = {name: s for name, s in sorted(self._states.items()) if s.spec is not None}
        for name, state in good.items():
            if tenant in state.spec.tenants:
                return EffectiveProfile(name, state.spec, state.applied_generation)
        if DEFAULT_PROFILE in good:
            state = good[DEFAULT_PROFILE]
            return EffectiveProfile(DEFAULT_PROFILE, state.spec, state.applied_generation)
        return EffectiveProfile("<built-in>", self.default_spec, None)

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """`callback(profile_name)` after a spec in force changes (e.g. to resize a warm pool)."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[str], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _notify(self, name: str) -> None:
        for callback in list(self._listeners):
            try:
                callback(name)
            except Exception:
                log.exception("profile listener failed", extra={"profile": name})
