"""nftables flowtables on netfilter's path: ``flow add @ft`` offloads an established connection, and its
later packets arriving on the flowtable's devices are forwarded at ingress, past every hook.

Owns the offload state of a connection (``NfConnection.offload``: the flowtable, its devices, when
the entry expires) and the fast forwarding, as the kernel's nf_flow_table does it
(net/netfilter/nft_flow_offload.c, nf_flow_table_core.c, nf_flow_table_ip.c):

- ``offload`` (the FORWARD hook's ``flow add``, nft_flow_offload_eval): only a confirmed TCP or UDP
  connection in ctstate ESTABLISHED, TCP in state ESTABLISHED and the packet no FIN or RST, without
  a helper or sequence adjustment (SYNPROXY); once (IPS_OFFLOAD). The packet itself goes on through
  POSTROUTING. While offloaded the connection does not time out in conntrack (nf_ct_offload_timeout
  keeps it a day ahead); once the entry lapses, the garbage collector gives it back its state's
  timeout less the flowtable's 30 s (flow_offload_fixup_ct), so it ends that state's timeout after
  the entry's last packet: statewall sets that deadline at once (the same end, with no collector).
- ``fast`` (nf_flow_offload_ip_hook at ingress, before PREROUTING and defragmentation): a packet of an
  offloaded connection, in the direction and on the device the entry was made for, is translated
  (both sides of NAT), its TTL lowered and sent out of its connection's egress, with no chain, counter
  or conntrack state touched; each packet renews the entry for 30 s (nf_flowtable_tcp_timeout and
  nf_flowtable_udp_timeout). The slow path takes a TCP FIN or RST (the entry is torn down first), a
  fragment, an IPv4 packet with options, a TTL of 1 or less, a packet larger than the egress MTU,
  and everything after the entry expired.
- Teardown (flow_offload_teardown, flow_offload_fixup_ct): conntrack takes the connection back with
  its TCP windows forgotten (td_maxwin 0: the next packet each way is picked up as it comes, the
  sequence numbers having moved on meanwhile) and its timeout that of its state (TCP) or of a replied
  UDP stream, counted from the entry's last packet.
"""

from __future__ import annotations

from ..packet import Packet
from ..policy import PROTO_TCP, PROTO_UDP
from . import forward, lifecycle

FLOW_TIMEOUT = 30.0  # nf_flowtable_tcp_timeout / nf_flowtable_udp_timeout (NF_FLOW_TIMEOUT)
_FIN_RST = 0x05


class Offload:
    """A connection's entry in a flowtable."""

    __slots__ = ("flowtable", "devices", "expires", "last")

    def __init__(self, flowtable: str, devices: frozenset[str], now: float) -> None:
        self.flowtable = flowtable
        self.devices = devices
        self.last = now
        self.expires = now + FLOW_TIMEOUT


def offload(path, c, args: dict) -> None:
    """``flow add @ft`` matched this packet in FORWARD: offload its connection if the kernel would."""
    flow, conn, pkt = c.flow, c.conn, c.pkt
    if conn is None or flow.new or flow.error or c.ctx.ctstate != "ESTABLISHED":
        return
    if pkt.proto not in (PROTO_TCP, PROTO_UDP) or conn.helper is not None or conn.synproxy is not None:
        return
    if pkt.proto == PROTO_TCP:
        trk = conn.tcp
        if pkt.flags & _FIN_RST or trk is None or trk.state.name != "ESTABLISHED":
            return
    current = conn.offload
    if current is not None and current.expires > c.now:
        return  # IPS_OFFLOAD is set already
    devices = path.flowtable_devices.get(str(args["flowtable"]), frozenset())
    conn.offload = Offload(str(args["flowtable"]), devices, c.now)
    _keep(path, conn, c.now)


def fast(path, iface: str, pkt: Packet, now: float, out: list) -> bool:
    """Forward ``pkt`` at ingress if it belongs to an offloaded connection; False: the slow path."""
    fw = path.fw
    dev = path.nf.device(iface)
    if dev not in path.offload_devices:
        return False
    proto = pkt.proto
    if proto not in (PROTO_TCP, PROTO_UDP) or not pkt.has_l4 or pkt.frag_offset or pkt.mf:
        return False
    if pkt.version == 4 and pkt.ipv4_options:
        return False
    half = fw.conns.by_key.get((pkt.version, proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
    if half is None:
        return False
    conn = half.conn
    off = getattr(conn, "offload", None)
    if off is None or dev not in off.devices or half.in_iface != iface:
        return False
    if off.expires <= now:
        teardown(path, conn, off.last)
        return False
    if proto == PROTO_TCP and pkt.flags & _FIN_RST:
        teardown(path, conn, now)
        return False
    egress = half.out_iface
    itf = fw.interfaces.get(egress) if egress is not None else None
    if itf is None or pkt.ttl <= 1 or pkt.total_len > itf.mtu:
        return False
    if half.rewrites:
        forward.rewrite_dst(half, pkt)
        forward.rewrite_src(half, pkt)
    pkt.set_ttl(pkt.ttl - 1)
    off.last = now
    off.expires = now + FLOW_TIMEOUT
    _keep(path, conn, now)
    fw.stats["forwarded"] += 1
    out.append((egress, pkt.buf))
    return True


def _keep(path, conn, since: float) -> None:
    """The connection's conntrack deadline: its state's timeout (TCP) or a replied UDP stream's, from
    the entry's last packet (see the module's docstring)."""
    settings = conn.ct_settings or path.settings
    trk = conn.tcp
    if trk is not None:
        timeout = getattr(settings, f"tcp_timeout_{trk.state.name.lower()}", settings.tcp_timeout_established)
        kind = trk.state.name
    else:
        timeout = settings.udp_timeout_stream
        kind = "idle"
    conn.last = since
    lifecycle.set_timeout(path.fw, conn, timeout, kind, since)


def teardown(path, conn, since: float) -> None:
    """The entry goes; conntrack takes the connection back (flow_offload_fixup_ct): its TCP windows
    forgotten, its timeout its state's from the entry's last packet."""
    conn.offload = None
    trk = conn.tcp
    if trk is not None:
        for peer in trk.seen:
            peer.td_maxwin = 0
    _keep(path, conn, since)
