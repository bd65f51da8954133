"""The ASA platform a configuration runs on, and the connection limit that comes with it.

An ASA holds at most a model's number of concurrent connections (the "maximum concurrent sessions" of
Cisco's data sheets); a new connection past it is dropped (201011, conn-limit; ``engine.asa``'s build
stage). The figure is the hardware's, not the configuration's, so statewall takes it from one of:

- ``--asa-platform MODEL`` on the command line (``5516-X``, ``ASA5516``, ``5506-X security-plus``,
  ``5585-X SSP-20``, or a pasted ``show version`` line such as ``Hardware:   ASA5516, 8192 MB RAM``);
- the output of ``show version`` in a pasted console transcript: its ``Hardware:`` line, and its
  licence line (``This platform has an ASA 5506 Security Plus license.``) where the licence changes the
  figure; or the same ``Hardware:`` line in the comment header a saved ``show running-config`` starts
  with (``: Hardware:   ASA5506, 4096 MB RAM, ...``), which names no licence (``licence_unknown``);
- else the ASA 5516-X's 250 000 (``engine.compiled.ASA_CONN_MAX``).

The figures below are Cisco's data sheets' maximum concurrent sessions (firewall) for the base licence
and, where it differs, the Security Plus licence: "Cisco ASA 5500 Series Adaptive Security Appliances"
(5505-5580) and "Cisco ASA 5500-X Series Next-Generation Firewalls" (5506-X-5585-X). The 5506-X,
5516-X and 5555-X figures are the ones statewall used before; the others are the data sheets' as they
are commonly quoted and were not checked against the sheets themselves: a wrong one is a line here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...policy import Origin, Policy

# model number -> (name, base licence, Security Plus licence or None when the licence changes nothing)
TABLE: dict[str, tuple[str, int, int | None]] = {
    "5505": ("ASA 5505", 10_000, 25_000),
    "5510": ("ASA 5510", 50_000, 130_000),
    "5520": ("ASA 5520", 280_000, None),
    "5540": ("ASA 5540", 400_000, None),
    "5550": ("ASA 5550", 650_000, None),
    "5580-20": ("ASA 5580-20", 1_000_000, None),
    "5580-40": ("ASA 5580-40", 2_000_000, None),
    "5506": ("ASA 5506-X", 20_000, 50_000),
    "5508": ("ASA 5508-X", 100_000, None),
    "5512": ("ASA 5512-X", 100_000, None),
    "5515": ("ASA 5515-X", 250_000, None),
    "5516": ("ASA 5516-X", 250_000, None),
    "5525": ("ASA 5525-X", 500_000, None),
    "5545": ("ASA 5545-X", 750_000, None),
    "5555": ("ASA 5555-X", 1_000_000, None),
    "5585-10": ("ASA 5585-X SSP-10", 1_000_000, None),
    "5585-20": ("ASA 5585-X SSP-20", 2_000_000, None),
    "5585-40": ("ASA 5585-X SSP-40", 4_000_000, None),
    "5585-60": ("ASA 5585-X SSP-60", 10_000_000, None),
}
DEFAULT = "5516"

_MODEL = re.compile(
    r"(?:^|[^0-9])(?:asa\s*)?(55\d\d)(?:-?x)?(?:[\s-]*(?:ssp[\s-]*)?(10|20|40|60)(?![0-9]))?", re.IGNORECASE
)
_SEC_PLUS = re.compile(r"sec(?:urity)?[\s-]*plus", re.IGNORECASE)
# show version's line, or the same in the comment header of a saved running-config (": Hardware: ...").
_HARDWARE = re.compile(r"^\s*(?::\s*)?Hardware:\s+(\S.*)$")
_LICENSE = re.compile(r"^\s*This platform has an? (.*) license\.?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Platform:
    name: str  # e.g. "ASA 5506-X Security Plus"
    conn_max: int


def lookup(text: str) -> Platform | None:
    """The platform ``text`` names (a model, or a ``show version`` Hardware line), None if none."""
    m = _MODEL.search(text)
    if m is None:
        return None
    number, ssp = m.group(1), m.group(2)
    key = f"{number}-{ssp}" if ssp and f"{number}-{ssp}" in TABLE else number
    if key not in TABLE:
        return None
    name, base, plus = TABLE[key]
    if plus is not None and _SEC_PLUS.search(text):
        return Platform(f"{name} Security Plus", plus)
    return Platform(name, base)


def default() -> Platform:
    name, base, _ = TABLE[DEFAULT]
    return Platform(name, base)


def known() -> str:
    """The models ``lookup`` knows, for a usage message."""
    return ", ".join(name for name, _, _ in TABLE.values())


def from_show_version(text: str) -> tuple[Platform, int, str] | None:
    """The platform of a ``show version`` output pasted in ``text``: (platform, line number, line) of its
    ``Hardware:`` line, the licence line's Security Plus applied; None when there is none."""
    found = None
    plus = False
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HARDWARE.match(line)
        if m is not None and found is None:
            platform = lookup(m.group(1).split(",", 1)[0])
            if platform is not None:
                found = (platform, number, line.strip())
        m = _LICENSE.match(line)
        if m is not None and _SEC_PLUS.search(m.group(1)):
            plus = True
    if found is None:
        return None
    platform, number, line = found
    if plus:
        better = lookup(platform.name + " security plus")
        if better is not None:
            platform = better
    return platform, number, line


def licence_unknown(platform: Platform, line: str) -> int | None:
    """The Security Plus figure a platform taken from ``line`` might have instead, when ``line`` is a
    running-config's header (which names no licence) and the licence changes the figure; else None."""
    if not line.lstrip().startswith(":") or platform.name.endswith("Security Plus"):
        return None
    better = lookup(platform.name + " security plus")
    return None if better is None or better.conn_max == platform.conn_max else better.conn_max


def hardware_line(name: str) -> str | None:
    """The ``: Hardware:`` header line a running-config of platform ``name`` starts with (the model
    only: the memory and CPU are not known; a licence is not part of it), None if ``name`` is unknown."""
    for key, (known_name, _base, _plus) in TABLE.items():
        if name == known_name or name == f"{known_name} Security Plus":
            model = key.replace("5585-", "5585-SSP-")
            return f": Hardware:   ASA{model}"
    return None


def apply(policy: Policy, platform: Platform, origin: Origin | None) -> None:
    """Run ``policy`` on ``platform``: its connection limit becomes the table's bound (``origin``: the
    line that named the platform; None for the command line)."""
    policy.platform = platform.name
    policy.conntrack.max = platform.conn_max
    policy.conntrack.origins["max"] = origin
