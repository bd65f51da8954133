"""Lab scenarios: named, self-checking runs of real traffic through ``statewall run``.

A scenario is a module of this package that decorates a function with ``@scenario(name, summary)``;
``statewall lab list`` shows them and ``statewall lab run NAME`` runs one. The function receives a
``ScenarioRun``: the ``Lab`` to build in (removed afterwards unless ``--keep``), ``say`` for progress
and results, and ``check`` to record each expectation; the scenario passes when every check held.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from ..netns import Lab


@dataclass(slots=True)
class ScenarioRun:
    """What a scenario works with, and the checks it recorded."""

    lab: Lab
    offload: bool = True
    out: IO[str] = sys.stdout
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    # A directory to record each firewall run in (statewall run --record), its report rendered on
    # stop; None: not recorded. ``reports`` lists the report.html paths written.
    record: str | None = None
    reports: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((what, ok, detail))
        self.say(f"  [{'ok' if ok else 'FAILED'}] {what}" + (f": {detail}" if detail else ""))
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    func: Callable[[ScenarioRun], None]


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, summary: str
) -> Callable[[Callable[[ScenarioRun], None]], Callable[[ScenarioRun], None]]:
    def register(func: Callable[[ScenarioRun], None]) -> Callable[[ScenarioRun], None]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} registered twice")
        SCENARIOS[name] = Scenario(name, summary, func)
        return func

    return register


def load_all() -> dict[str, Scenario]:
    """Import every scenario module of this package; returns the registry."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return SCENARIOS
