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

Stateless ICMP (``STATELESS_ICMP``): without ``inspect icmp`` a real ASA keeps no state for an ICMP echo
(Cisco ASA syslog messages guide, 302020: ICMP connections are built when stateful ICMP is enabled with
``inspect icmp``), so an echo reply crosses only if an access rule (or the security levels) let it in on
its own way back. statewall keeps an echo session whatever the class says, and its replies pass on it.
Named for the policy (``stateless_icmp``, ``statewall check``), for a traced echo request
(``echo_request_gap``, packet-tracer) and for each IPv4 echo reply replay forwarded on such a session
(``GapMatcher.echo_reply``). Other records (time ranges, the DNS inspection map's unmodelled lines) are
named by ``statewall check`` and ``show service-policy``; they are not matched per packet here.

Responder data on an embryonic connection (``EMBRYONIC_DATA``): what an ASA does with a segment carrying
data from the responder before the initiator's ACK completed the three-way handshake has no Cisco source
statewall could find (docs/asa.md); statewall's tracker forwards it when it is in window, as
netfilter's does. A segment without SYN is meant (a SYN-ACK's data is the tcp-map's ``synack-data``,
modelled). Not a configuration feature, so ``statewall check`` has nothing to warn about and
packet-tracer (it traces a flow's first packet) never meets it; each such segment a replay of an ASA
configuration forwarded is counted (``GapMatcher.embryonic_data``, given the replay's engine).
"""

from __future__ import annotations

from .acl import CompiledMatch
from .conntrack import REPLY
from .engine.state import asa_version_before
from .events import ConnBuilt
from .inspect import MODELLED_ENGINES
from .packet import DecodeError, decode
from .policy import BUILTIN, Origin, Policy, Unmodelled
from .tcptrack import TcpState

STATELESS_ICMP = "stateless ICMP"
EMBRYONIC_DATA = "responder data on an embryonic connection"
_EMBRYONIC_ACTION = (
    "unknown: no Cisco source says whether an ASA forwards data from the responder before the "
    "initiator's ACK completes the handshake (statewall forwards it when it is in window)"
)
# The tracker's states before the three-way handshake completed (SYN_SENT2: a simultaneous open).
_EMBRYONIC = frozenset({TcpState.NONE, TcpState.SYN_SENT, TcpState.SYN_RECV, TcpState.SYN_SENT2})
_STATELESS_ACTION = (
    "keep no echo session without inspect icmp: an echo reply crosses only if an access rule (or the "
    "security levels) let it in on its way back"
)
_STATELESS_MESSAGE = (
    "stateless ICMP is not modelled: no class inspects icmp, so a real ASA keeps no session for an echo "
    "request and drops its reply unless an access rule (or the security levels) permit it on its way "
    "back; statewall keeps an echo session (timeout icmp) and lets the replies through on it"
)


class GapMatcher:
    """The per-packet checkable ``Unmodelled`` records of a policy, compiled once."""

    def __init__(self, policy: Policy, fw=None) -> None:
        self.vpn: list[tuple[Unmodelled, list[tuple[bool, CompiledMatch]]]] = []
        for u in policy.unmodelled:
            if u.acl and u.interface and u.feature.startswith("VPN"):
                acl = policy.access_lists.get(u.acl)
                if acl is not None:
                    rules = [
                        (r.action == "permit", CompiledMatch(r.match)) for r in acl.rules if not r.inactive
                    ]
                    self.vpn.append((u, rules))
        # Echo replies forwarded on an echo session the ASA would not keep (no class inspects icmp for
        # their flow): resolved per reply against the service policies, when the policy can have them.
        self.services = None
        if stateless_icmp(policy) is not None or (policy.dialect == "asa" and _inspects_icmp(policy)):
            from .mpf import ServicePolicies

            self.services = ServicePolicies(policy)
            self.policy = policy
            self._record = Unmodelled(STATELESS_ICMP, _STATELESS_ACTION, _policy_origin(policy), 0)
        # Responder data on an embryonic connection: the replay's engine, when it runs the ASA's
        # stages for an ASA configuration (its tracker is the one that forwards such data).
        box = getattr(fw, "box", None)
        asa = policy.dialect == "asa" and box is not None and box.name == "asa" and hasattr(fw, "conns")
        self.fw = fw if asa else None
        self._embryonic = Unmodelled(EMBRYONIC_DATA, _EMBRYONIC_ACTION, _policy_origin(policy), 0)
        self.active = bool(self.vpn) or self.services is not None or self.fw is not None

    def forwarded(self, in_iface: str, packet_in: bytes | bytearray, packets: list, events: list) -> list:
        """The records a packet that arrived on ``in_iface`` as ``packet_in`` and left as ``packets``
        (the engine's answer, with its ``events``) runs into: the per-packet ones (``applicable``) and
        stateless ICMP for an echo reply that crossed on an echo session (no flow built by it: a reply
        that opened a flow of its own met the access rules, as on the ASA). Both replays count these."""
        if not packets:
            return []
        out_iface, packet_out = packets[0]
        found = self.applicable(in_iface, out_iface, packet_out)
        if self.services is not None and not any(type(ev) is ConnBuilt for ev in events):
            u = self.echo_reply(in_iface, packet_in, out_iface, packet_out)
            if u is not None:
                found.append(u)
        if self.fw is not None and self.embryonic_data(packet_in):
            found.append(self._embryonic)
        return found

    def embryonic_data(self, packet_in: bytes | bytearray) -> bool:
        """Did the forwarded ``packet_in`` (as it arrived) carry data from the responder, without SYN, on
        a connection whose handshake had not completed (the tracker's state after it)? Cheap for other
        packets: an IPv4 one is read from its header; only IPv6 TCP is decoded."""
        n = len(packet_in)
        if n < 40:
            return False
        version = packet_in[0] >> 4
        if version == 4:
            ihl = (packet_in[0] & 0x0F) * 4
            if packet_in[9] != 6 or n < ihl + 20 or packet_in[ihl + 13] & 0x02:
                return False
            total = (packet_in[2] << 8) | packet_in[3]
            if total - ihl - (packet_in[ihl + 12] >> 4) * 4 <= 0:
                return False
        elif version != 6:
            return False
        try:
            pkt = decode(bytearray(packet_in))
        except DecodeError:
            return False
        if pkt.proto != 6 or pkt.flags & 0x02 or not pkt.payload_len:
            return False
        half = self.fw.conns.by_key.get((pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
        if half is None or half.dir != REPLY:
            return False
        trk = half.conn.tcp
        return trk is not None and trk.state in _EMBRYONIC

    def echo_reply(
        self, in_iface: str, packet_in: bytes | bytearray, out_iface: str, packet_out: bytes | bytearray
    ) -> Unmodelled | None:
        """The stateless ICMP record for an IPv4 echo reply the engine forwarded on an echo session whose
        class does not inspect icmp (a real ASA would have judged the reply by the access rules), else
        None. Cheap for other packets: only an IPv4 ICMP type 0 is decoded."""
        if self.services is None or len(packet_in) < 21 or packet_in[0] >> 4 != 4 or packet_in[9] != 1:
            return None
        ihl = (packet_in[0] & 0x0F) * 4
        if len(packet_in) <= ihl or packet_in[ihl] != 0:
            return None
        try:
            reply_in = decode(bytearray(packet_in))
            reply_out = decode(bytearray(packet_out))
        except DecodeError:
            return None
        # The request's flow: from the initiator (the reply's real destination, as it leaves) to the
        # responder (real from 8.3 on: the reply's source as it arrived; mapped before 8.3).
        to = reply_out if asa_version_before(self.policy.version, 8, 3) else reply_in
        eff = self.services.resolve(
            out_iface, in_iface, 4, reply_out.proto, reply_out.dst, reply_out.dport, to.src,
            reply_in.sport, 8, 0, count=False,
        )  # fmt: skip
        return None if eff.inspects_engine("icmp") is not None else self._record

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


def _inspects_icmp(policy: Policy) -> bool:
    """Does a class of an applied service policy say ``inspect icmp``? (The factory default global
    policy, applied when the configuration sets none, does not.)"""
    for sp in policy.service_policies:
        pm = policy.policy_maps.get(sp.policy_map)
        if pm is None:
            continue
        for pc in pm.classes:
            if any(ins.engine == "icmp" for ins in pc.inspects):
                return True
    return False


def _icmp_can_pass(policy: Policy) -> bool:
    """Can an ICMP echo cross the box at all: an interface without an inbound access list above the
    lowest security level (the ASA's implicit permit to lower levels), or a bound access list with a
    permit entry for ICMP or any IP protocol."""
    if len(policy.interfaces) < 2:
        return False
    groups = [g for g in policy.access_groups if g.direction == "in"]
    if not any(g.interface is None for g in groups):
        bound = {g.interface for g in groups}
        lowest = min(i.security_level for i in policy.interfaces.values())
        if any(n not in bound and i.security_level > lowest for n, i in policy.interfaces.items()):
            return True
    for g in groups:
        acl = policy.access_lists.get(g.acl)
        for r in acl.rules if acl is not None else ():
            if r.action == "permit" and not r.inactive and r.match.protocol in (None, 1):
                return True
    return False


def _policy_origin(policy: Policy) -> Origin:
    """Where a policy-wide record points: the global service policy's line (where ``inspect icmp``
    would go), else the configuration as a whole (line 0)."""
    for sp in policy.service_policies:
        if sp.interface is None and sp.origin.line:
            return sp.origin
    return Origin(policy.source_file or "<config>", 0, "")


def stateless_icmp(policy: Policy) -> Unmodelled | None:
    """The stateless ICMP record of an ASA policy where ICMP can cross the box and no class of its
    service policies inspects icmp (``statewall check`` warns with it), else None."""
    if policy.dialect != "asa" or _inspects_icmp(policy) or not _icmp_can_pass(policy):
        return None
    return Unmodelled(STATELESS_ICMP, _STATELESS_ACTION, _policy_origin(policy), 0)


def stateless_icmp_message() -> str:
    """``statewall check``'s warning text for ``stateless_icmp``."""
    return _STATELESS_MESSAGE


def echo_request_gap(policy: Policy, in_iface: str, packet_in: bytes | bytearray, out_iface: str | None,
                     packet_out: bytes | bytearray | None) -> str | None:  # fmt: skip
    """packet-tracer's note for an IPv4 echo request the engine forwarded whose class does not inspect
    icmp: what statewall does with its replies and what the ASA does, else None."""
    if policy.dialect != "asa" or out_iface is None or packet_out is None:
        return None
    try:
        first = decode(bytearray(packet_in))
        last = decode(bytearray(packet_out))
    except DecodeError:
        return None
    if first.version != 4 or first.proto != 1 or first.icmp_type != 8:
        return None
    from .mpf import ServicePolicies

    to = first if asa_version_before(policy.version, 8, 3) else last
    eff = ServicePolicies(policy).resolve(
        in_iface, out_iface, 4, 1, first.src, first.sport, to.dst, to.dport, 8, first.icmp_code, count=False
    )
    if eff.inspects_engine("icmp") is not None:
        return None
    return (
        "not modelled: stateless ICMP: no class inspects icmp for this flow, so a real ASA keeps no "
        "echo session (no 302020) and drops the echo reply unless an access rule (or the security "
        f"levels) permit it in on {out_iface}; statewall keeps an echo session and lets the replies "
        "through on it"
    )
