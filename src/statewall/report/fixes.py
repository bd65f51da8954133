"""The change that would let a dropped packet through, as configuration a user can paste.

A ``Drop`` event's ``hint`` names the change in words (``sysopt connection tcpmss minimum 1460, or
exceed-mss allow in a tcp-map applied to this flow (set connection advanced-options)``). For the ASA's
tcp-map settings the words are not enough to act on: a tcp-map does nothing until a class of traffic
uses it through a policy-map bound by a service-policy. Here each alternative of the hint becomes its
own fix; a tcp-map one is spelled out as the four commands that apply it to the dropped flow only
(an access list naming the two hosts, a class-map matching it, the tcp-map, a policy-map using the
tcp-map for that class and a service-policy on the interface where the packet arrived), the way the
Cisco ASA configuration guide's "Configuring TCP Normalization" chapter (Configure a TCP map, then
``set connection advanced-options`` in a policy map) lays it out.
"""

from __future__ import annotations

import re
from typing import Any

_TCP_MAP = re.compile(r"^(?P<cmd>.+?) in a tcp-map applied to this flow")
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _alternatives(hint: str) -> list[str]:
    # "A, or B (note)": each alternative on its own; commas inside an alternative stay.
    return [part.strip() for part in re.split(r",? or (?=[a-z])", hint) if part.strip()]


def _mpf(command: str, drop: dict[str, Any]) -> str:
    """The class-map / tcp-map / policy-map / service-policy commands applying ``command`` (a tcp-map
    setting such as ``exceed-mss allow``) to the dropped packet's two hosts."""
    setting = _NAME.sub("-", command.split()[0]).strip("-") or "tcp"
    name = f"{setting}-flow"
    proto = {6: "tcp", 17: "udp"}.get(drop.get("protocol", 6), "ip")
    return "\n".join(
        [
            f"access-list {name} extended permit {proto} host {drop['src']} host {drop['dst']}",
            f"class-map {name}",
            f" match access-list {name}",
            f"tcp-map {setting}-map",
            f" {command}",
            f"policy-map {name}",
            f" class {name}",
            f"  set connection advanced-options {setting}-map",
            f"service-policy {name} interface {drop['interface']}",
        ]
    )


def fixes_for(drop: dict[str, Any]) -> list[dict[str, str]]:
    """``[{"title": ..., "config": ...}]``: each change that would let ``drop`` (an events.jsonl record)
    through, as configuration where it can be written down, else the hint's words alone."""
    hint = drop.get("hint") or ""
    if not hint:
        return []
    out: list[dict[str, str]] = []
    for alt in _alternatives(hint):
        alt = re.sub(r"\s*\((set connection advanced-options)\)$", "", alt)
        m = _TCP_MAP.match(alt)
        if m and drop.get("src") and drop.get("dst"):
            out.append({"title": f"{m['cmd']} in a tcp-map for this flow", "config": _mpf(m["cmd"], drop)})
        elif re.match(r"^(sysopt|timeout|access-list|policy-map|inspect|no |set |nat |static )", alt):
            out.append({"title": alt, "config": alt})
        else:
            out.append({"title": alt, "config": ""})
    return out
