"""Which configured-but-not-modelled features (``Policy.unmodelled``) a forwarded packet runs into.

Owns the question "would a real box have done something here that statewall does not?" for one packet
the engine forwarded, so that packet-tracer and replay can say so instead of presenting the packet's
fate as the box's. One kind of record carries enough to be matched per packet:

- a VPN entry with its traffic selector and interface (ASA ``crypto map NAME SEQ match address ACL`` on a
  map applied with ``crypto map NAME interface IFACE``): a packet leaving through that interface that
  the access list permits would be encrypted and sent to the peer. IPsec access lists match the
  addresses as they leave the box (mapped, after NAT; Cisco ASA configuration guide, "Real IP addresses
  in ACLs": IPsec ACLs keep the mapped addresses);

And, for packet-tracer (one packet, so the cost of resolving the service policies does not matter), the
inspections of the ASA's service policies that apply to the packet's flow and that statewall does not
implement (``inspections``).

Other records (time ranges, the DNS inspection map's unmodelled lines) are named by ``statewall check``
and ``show service-policy``; they are not matched per packet here. (ICMP without ``inspect icmp`` is
modelled, not a gap: the ASA's stages keep no session for it, ``statewall.engine.asa.stateless``.)
"""

from __future__ import annotations

from .acl import CompiledMatch
from .engine.state import asa_version_before
from .inspect import MODELLED_ENGINES
from .packet import DecodeError, decode
from .policy import BUILTIN, Policy, Unmodelled


class GapMatcher:
    """The per-packet checkable ``Unmodelled`` records of a policy, compiled once."""

    def __init__(self, policy: Policy) -> None:
        self.vpn: list[tuple[Unmodelled, list[tuple[bool, CompiledMatch]]]] = []
        for u in policy.unmodelled:
            if u.acl and u.interface and u.feature.startswith("VPN"):
                acl = policy.access_lists.get(u.acl)
                if acl is not None:
                    rules = [
                        (r.action == "permit", CompiledMatch(r.match)) for r in acl.rules if not r.inactive
                    ]
                    self.vpn.append((u, rules))
        self.active = bool(self.vpn)

    def forwarded(self, in_iface: str, packets: list) -> list:
        """The records a packet that arrived on ``in_iface`` and left as ``packets`` (the engine's
        answer) runs into (``applicable``, for its first packet out). Both replays count these."""
        if not packets:
            return []
        out_iface, packet_out = packets[0]
        return self.applicable(in_iface, out_iface, packet_out)

    def applicable(
        self, in_iface: str, out_iface: str | None, packet_out: bytes | bytearray | None
    ) -> list[Unmodelled]:
        """The records a packet received on ``in_iface`` and sent on ``out_iface`` (as ``packet_out``)
        runs into."""
        found: list[Unmodelled] = []
        if not self.vpn or out_iface is None or packet_out is None:
            return found
        try:
            pkt = decode(bytearray(packet_out))
        except DecodeError:
            return found
        fields = (
            pkt.version,
            pkt.proto,
            pkt.src,
            pkt.sport,
            pkt.dst,
            pkt.dport,
            pkt.icmp_type,
            pkt.icmp_code,
        )
        for u, rules in self.vpn:
            if u.interface != out_iface:
                continue
            for permit, match in rules:
                if match.matches(*fields):
                    if permit:
                        found.append(u)
                    break
        return found


def inspections(
    policy: Policy,
    in_iface: str,
    packet_in: bytes | bytearray,
    out_iface: str | None,
    packet_out: bytes | bytearray | None,
) -> list[Unmodelled]:
    """The inspections the service policies apply to this packet's flow that statewall does not
    implement, as records (the configuration line, or the factory default policy, as origin)."""
    if policy.dialect != "asa" or out_iface is None or packet_out is None:
        return []
    from .mpf import ServicePolicies

    try:
        first = decode(bytearray(packet_in))
        last = decode(bytearray(packet_out))
    except DecodeError:
        return []
    # The class-map access lists see the destination as it arrived before ASA 8.3, the real one after.
    to = first if asa_version_before(policy.version, 8, 3) else last
    eff = ServicePolicies(policy).resolve(
        in_iface, out_iface, first.version, first.proto, first.src, first.sport, to.dst, to.dport,
        first.icmp_type, first.icmp_code, count=False,
    )  # fmt: skip
    # The line of the class's own `inspect` command: one inspection may be written in several classes.
    written = {
        (u.feature, u.origin.file, u.origin.line): u
        for u in policy.unmodelled
        if u.feature.startswith("inspect ")
    }
    by_feature = {key[0]: u for key, u in written.items()}
    out: list[Unmodelled] = []
    for ins, _use in eff.inspects:
        if ins.engine in MODELLED_ENGINES:
            continue
        feature = f"inspect {ins.engine}"
        known = written.get((feature, ins.origin.file, ins.origin.line)) or by_feature.get(feature)
        if known is not None:
            out.append(known)
        else:
            origin = ins.origin
            if origin is BUILTIN:
                origin = type(origin)("<factory default>", 0, f"policy-map global_policy / {feature}")
            out.append(Unmodelled(feature, f"{feature} traffic (application inspection)", origin))
    return out
