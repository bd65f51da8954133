"""Application inspection: which connections get an inspector, and the inspectors themselves.

Owns the decision "does this new TCP connection carry a protocol we inspect?" (``Inspectors.attach``)
and the resolution of the policy's inspections (``effective_inspections``). The inspectors live in
their own modules (``statewall.inspect.ftp``, ``statewall.inspect.dns``: the ASA's DNS inspection, given
to UDP connections by their class's ``inspect dns``; ``statewall.inspect.icmp``: the ASA's ICMP echo
inspection); the expectations they create in
``statewall.expect``.

Where inspections come from. ``Policy.inspections`` (neutral ``Inspection`` entries) is authoritative
when a dialect filled it: the iptables dialect for ``-j CT --helper ftp``, the ASA dialect once it
resolves its modular policy framework itself. When it is empty, the ASA dialect's own model decides:
the service policies' ``inspect ftp [strict]`` on the ports their class-maps match
(``default-inspection-traffic`` is 21 for FTP), else -- a policy without the MPF model filled in --
the ASA factory default ``inspect ftp`` on port 21 in ``global_policy``, unless the configuration says
``no inspect ftp`` (``inspect ftp strict`` makes it strict). Other dialects inspect nothing by
default. An inspection applies to a connection whose destination port, as sent or after UN-NAT, is one
of its ports; per-interface service policies are treated as global.
"""

from __future__ import annotations

import dataclasses

from ..policy import BUILTIN, PROTO_TCP, Inspection, Policy
from .ftp import FtpInspector, FtpTransfer, Refusal

__all__ = [
    "MODELLED_ENGINES",
    "FtpInspector",
    "FtpTransfer",
    "Inspectors",
    "Refusal",
    "effective_inspections",
    "set_data_refreshes_control",
]

# The inspection engines statewall implements; every other ``inspect`` engine is parsed but not modelled
# (``statewall check`` warns, ``show service-policy`` says so). ``ip-options`` is applied by the IP
# options stage (``statewall.ipoptions``, with its ``policy-map type inspect ip-options`` map), not by
# an inspector here.
MODELLED_ENGINES = frozenset({"ftp", "dns", "icmp", "icmp error", "ip-options"})

FTP_DEFAULT_PORT = 21
# A class-map port range wider than this is not expanded (no FTP server listens on thousands of ports).
_MAX_RANGE = 1024


def effective_inspections(policy: Policy) -> list[Inspection]:
    """The enabled inspections the engine applies for ``policy`` (see the module docstring)."""
    if policy.inspections:
        return [i for i in policy.inspections if i.enabled]
    if policy.dialect != "asa":
        return []
    if policy.service_policies or policy.policy_maps:
        # The dialect modelled the policy framework: what it applies is what is inspected.
        return _from_mpf(policy)
    return _from_passthrough(policy)


def set_data_refreshes_control(policy: Policy, on: bool) -> None:
    """The lab's switch for seed 004: whether data activity keeps FTP control connections alive.

    Fixes the policy's inspections as resolved now (whatever dialect or default they came from) with
    ``data_refreshes_control`` set, so that a Firewall built from ``policy`` afterwards uses them.
    """
    policy.inspections = [
        dataclasses.replace(i, data_refreshes_control=on) for i in effective_inspections(policy)
    ]


def _from_mpf(policy: Policy) -> list[Inspection]:
    out: list[Inspection] = []
    for sp in policy.service_policies:
        pm = policy.policy_maps.get(sp.policy_map)
        if pm is None:
            continue
        for pc in pm.classes:
            for insp in pc.inspects:
                if insp.engine.split()[0].lower() != "ftp":
                    continue
                ports = _class_ports(policy, pc.class_map)
                if ports:
                    out.append(Inspection("ftp", ports, insp.strict, insp.origin))
    return out


def _class_ports(policy: Policy, name: str) -> tuple[int, ...]:
    cm = policy.class_maps.get(name)
    if cm is None:
        return (FTP_DEFAULT_PORT,) if name == "inspection_default" else ()
    ports: list[int] = []
    for m in cm.matches:
        if m.kind == "default-inspection-traffic":
            ports.append(FTP_DEFAULT_PORT)
        elif m.kind == "port" and m.ports is not None and m.protocol in (None, PROTO_TCP):
            pm = m.ports
            if pm.op == "eq":
                ports.append(pm.low)
            elif pm.op == "range" and pm.high is not None and pm.high - pm.low <= _MAX_RANGE:
                ports.extend(range(pm.low, pm.high + 1))
        elif m.kind in ("any", "access-list"):
            # The class selects by addresses or everything; FTP is still recognised on its own port.
            ports.append(FTP_DEFAULT_PORT)
    return tuple(dict.fromkeys(ports))


def _from_passthrough(policy: Policy) -> list[Inspection]:
    found: Inspection | None = None
    for origin, text in policy.passthrough:
        words = text.split()
        if words[:3] == ["no", "inspect", "ftp"]:
            return []
        if words[:2] == ["inspect", "ftp"]:
            found = Inspection("ftp", (FTP_DEFAULT_PORT,), "strict" in words[2:], origin)
    return [found or Inspection("ftp", (FTP_DEFAULT_PORT,), False, BUILTIN)]


class Inspectors:
    """The inspections of one engine, by port; ``attach`` gives a new connection its inspector."""

    __slots__ = ("by_port", "expect", "linux")

    def __init__(self, policy: Policy, expect) -> None:
        self.by_port: dict[int, Inspection] = {}
        for insp in effective_inspections(policy):
            if insp.protocol == "ftp":
                for port in insp.ports:
                    self.by_port.setdefault(port, insp)
        self.expect = expect
        self.linux = policy.dialect != "asa"

    def __bool__(self) -> bool:
        return bool(self.by_port)

    def attach(self, conn, dport: int, real_dport: int) -> FtpInspector | None:
        """The inspector for a new TCP connection to ``dport`` (``real_dport`` after UN-NAT), or None."""
        if conn.proto != PROTO_TCP:
            return None
        insp = self.by_port.get(dport) or self.by_port.get(real_dport)
        if insp is None:
            return None
        return self.attach_inspection(conn, insp)

    def attach_inspection(self, conn, inspection: Inspection) -> FtpInspector:
        """The inspector for ``conn`` under an inspection chosen elsewhere (per-connection MPF lookup)."""
        return FtpInspector(conn, inspection, self.expect, linux=self.linux)
