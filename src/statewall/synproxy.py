"""Linux's SYNPROXY target (iptables ``-j SYNPROXY``, reference B.6) on the iptables dialect's path.

Owns what Linux's synproxy (nf_synproxy_core.c, ipt_SYNPROXY.c) adds to SYN cookies: the options the
target announces (``--mss``, ``--wscale``, ``--sack-perm``, ``--timestamp``, ``--ecn``) and how the
client's own options ride in the SYN-ACK's timestamp, the SYN and ACK sent to the server, the window
update sent to the client, and per connection (``Proxied``, the kernel's ``nf_conn_synproxy``) the
ISN, timestamp and sequence offsets. The cookie itself is TCP Intercept's
(``statewall.intercept.Intercept``): one SYN-cookie implementation for both dialects, whose MSS table
is Linux's. ``statewall.engine.nf_path.NfPath`` calls ``SynProxy.target`` where a SYNPROXY rule decides a
packet, and ``SynProxy.hook`` for every packet of a proxied connection once it is fully translated
(the kernel's hook at NF_IP_PRI_CONNTRACK_CONFIRM - 1 in POSTROUTING); what the proxy sends goes out
through ``NfPath.local_out`` (OUTPUT and POSTROUTING, as ``ip_local_out``).

A connection with the recipe (``nf_conntrack_tcp_loose = 0``; ``-t raw ... --syn -j CT --notrack``;
``... --ctstate INVALID,UNTRACKED -j SYNPROXY ...``; ``--ctstate INVALID -j DROP``):

1. The client's SYN is UNTRACKED and reaches the SYNPROXY rule. The answer is a SYN-ACK from the
   address the client called: sequence number the cookie (the client's MSS encoded, Linux's table),
   window 0, and the options both the client offered and the target allows. With ``--timestamp`` the
   SYN-ACK's TSval is the millisecond clock with its low 6 bits replaced by the client's window scale
   (0xf: none), SACK-permitted (bit 4) and ECN (bit 5): the only place a cookie can keep them; without
   it window scaling, SACK and ECN are off. The window scale announced is the target's ``--wscale``,
   the MSS its ``--mss``: they must match the server's (Linux's documentation says so too). Nothing is
   stored.
2. The client's ACK finds no connection; with ``tcp_loose`` off conntrack calls it INVALID and it
   reaches the SYNPROXY rule. ``ack - 1`` must be a cookie for ``seq - 1`` (``cookie_invalid``
   otherwise, dropped). For a valid one the proxy sends the server the SYN the client would have
   sent: the client's ISN, the cookie's MSS, the options the timestamp kept, the client's TSval with
   the proxy's TSval echoed, the ACK's window. That SYN creates the connection (conntrack in OUTPUT,
   then nat and filter OUTPUT and POSTROUTING: an ``-P OUTPUT DROP`` stops it as it does in Linux) and
   carries in its ack field the cookie, which the hook keeps as the connection's ``isn``.
3. The server's SYN-ACK (conntrack SYN_RECV) is not forwarded: the proxy sends the server the ACK
   (TSecr = the server's TSval, window = the largest the client side announced) and, after the
   connection's sequence adjustment is set to ``isn - S`` for the server's direction, the client an
   ACK carrying the server's window (shifted right by the server's window scale, as Linux does) -- the
   window update that lets the client send.
4. From then on the connection is an ordinary one whose server-side numbers are moved into the
   cookie's (``statewall.seqadj``, shared with an FTP helper's adjustments if the connection has one)
   and, with timestamps, whose TSval from the server loses ``tsoff`` (server TSval - proxy TSval) and
   TSecr from the client gains it. A RST from the server for the proxy's SYN reaches the client at the
   sequence number the client expects.

Where statewall differs: the proxy answers from the route's interface as Linux does, but its packets
toward the client are not tracked again (the kernel attaches the conntrack entry it already has); for
an INPUT rule the server is the box itself, which runs no services in statewall, so a validated client
gets no window update.
"""

from __future__ import annotations

from collections import Counter

from . import craft, intercept
from .events import DropReason
from .packet import Packet, decode
from .seqadj import SeqAdj
from .tcptrack import TcpState

_M = 0xFFFFFFFF
_SYN = 0x02
_RST = 0x04
_ACK = 0x10
_ECE = 0x40
_CWR = 0x80
_HANDSHAKE = 0x17  # FIN, SYN, RST, ACK

# NF_SYNPROXY_OPT_*: what a SYN offered, what a target allows, what a segment carries.
OPT_MSS = 0x01
OPT_WSCALE = 0x02
OPT_SACK_PERM = 0x04
OPT_TIMESTAMP = 0x08
OPT_ECN = 0x10
TCP_MAX_WSCALE = 14
NO_WSCALE = 0xF  # the timestamp cookie's "the client sent no window scale"
SYNPROXY_TTL = 64  # sysctl_ip_default_ttl / the IPv6 hop limit of the crafted segments

ORIGINAL, REPLY = 0, 1


class Options:
    """``struct synproxy_options``: the option bits a segment carries and their values."""

    __slots__ = ("options", "mss_option", "mss_encode", "wscale", "tsval", "tsecr")

    def __init__(self) -> None:
        self.options = 0
        self.mss_option = 0
        self.mss_encode = 0
        self.wscale = 0
        self.tsval = 0
        self.tsecr = 0


def parse_options(pkt: Packet) -> Options:
    """``synproxy_parse_options``: MSS, window scale (at most 14), timestamps, SACK-permitted."""
    o = Options()
    mss = pkt.mss()
    if mss is not None:
        o.mss_option = mss
        o.options |= OPT_MSS
    ws = pkt.wscale()
    if ws is not None:
        o.wscale = min(ws, TCP_MAX_WSCALE)
        o.options |= OPT_WSCALE
    ts = pkt.timestamps()
    if ts is not None:
        o.tsval, o.tsecr = ts
        o.options |= OPT_TIMESTAMP
    if pkt.sack_permitted():
        o.options |= OPT_SACK_PERM
    return o


def build_options(o: Options) -> bytes:
    """``synproxy_build_options``: Linux's layout, word by word (MSS; SACK-permitted sharing a word
    with timestamps or NOP-padded alone; NOP + window scale)."""
    out = b""
    bits = o.options
    if bits & OPT_MSS:
        out += craft.tcp_option_mss(o.mss_option)
    if bits & OPT_TIMESTAMP:
        out += craft.tcp_option_sack_permitted() if bits & OPT_SACK_PERM else b"\x01\x01"
        out += craft.tcp_option_timestamps(o.tsval, o.tsecr)
    elif bits & OPT_SACK_PERM:
        out += b"\x01\x01" + craft.tcp_option_sack_permitted()
    if bits & OPT_WSCALE:
        out += b"\x01" + craft.tcp_option_wscale(o.wscale)
    return out


def target_options(args: dict) -> tuple[int, int, int]:
    """(option bits, MSS, window scale) a SYNPROXY rule allows (``xt_synproxy_info``)."""
    bits = 0
    if args.get("mss") is not None:
        bits |= OPT_MSS
    if args.get("wscale") is not None:
        bits |= OPT_WSCALE
    if args.get("sack_perm"):
        bits |= OPT_SACK_PERM
    if args.get("timestamp"):
        bits |= OPT_TIMESTAMP
    if args.get("ecn"):
        bits |= OPT_ECN
    return bits, int(args.get("mss") or 0), int(args.get("wscale") or 0)


def timestamp_cookie(o: Options, wscale: int, now: float) -> None:
    """``synproxy_init_timestamp_cookie``: the SYN-ACK's TSval keeps what the cookie cannot."""
    o.tsecr = o.tsval
    o.tsval = int(now * 1000) & _M & ~0x3F
    if o.options & OPT_WSCALE:
        o.tsval |= o.wscale
        o.wscale = wscale
    else:
        o.tsval |= NO_WSCALE
    if o.options & OPT_SACK_PERM:
        o.tsval |= 1 << 4
    if o.options & OPT_ECN:
        o.tsval |= 1 << 5


def check_timestamp_cookie(o: Options) -> None:
    """``synproxy_check_timestamp_cookie``: the client's options back from the echoed TSval."""
    o.wscale = o.tsecr & 0xF
    if o.wscale != NO_WSCALE:
        o.options |= OPT_WSCALE
    if o.tsecr & (1 << 4):
        o.options |= OPT_SACK_PERM
    if o.tsecr & (1 << 5):
        o.options |= OPT_ECN


def tstamp_adjust(pkt: Packet, direction: int, tsoff: int) -> None:
    """``synproxy_tstamp_adjust``: the server's TSval into the proxy's clock, the client's TSecr back."""
    if not tsoff:
        return
    ts = pkt.timestamps()
    if ts is None:
        return
    if direction == REPLY:
        pkt.set_timestamps((ts[0] - tsoff) & _M, ts[1])
    else:
        pkt.set_timestamps(ts[0], (ts[1] + tsoff) & _M)


class Proxied:
    """A connection SYNPROXY opened (``NfConnection.synproxy``, the kernel's ``nf_conn_synproxy``):
    ``isn`` the cookie (the ISN the client knows for the server), ``its`` the proxy's TSval the client
    echoed, ``tsoff`` the server's TSval minus ``its``, and the connection's sequence adjustment."""

    __slots__ = ("isn", "its", "tsoff", "seqadj")

    def __init__(self, seqadj: SeqAdj | None = None) -> None:
        self.isn = 0
        self.its = 0
        self.tsoff = 0
        self.seqadj = seqadj if seqadj is not None else SeqAdj()


def _segment(
    v: int,
    src: int,
    dst: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    o: Options,
) -> Packet:
    # synproxy_build_ip: TTL 64, no IP id, DF; the window field is 16 bits (htons).
    return decode(
        craft.tcp_packet(
            v,
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            flags,
            window & 0xFFFF,
            build_options(o),
            ttl=SYNPROXY_TTL,
            df=v == 4,
        )
    )


class SynProxy:
    """The SYN proxy of one iptables path: its cookies and the kernel's counters
    (``/proc/net/stat/synproxy``: syn_received, cookie_invalid, cookie_valid, cookie_retrans,
    conn_reopened)."""

    __slots__ = ("path", "cookies", "stats")

    def __init__(self, path) -> None:
        self.path = path
        # Keyed from the firewall's secret, which a reload keeps: cookies in flight stay valid.
        self.cookies = intercept.Intercept(intercept.make_secret(path.fw.seq_secret))
        self.stats: Counter[str] = Counter(
            syn_received=0, cookie_invalid=0, cookie_valid=0, cookie_retrans=0, conn_reopened=0
        )

    # -- the target ------------------------------------------------------------------------------

    def target(self, rule, ctstate: str, iface: str, egress: str | None, pkt: Packet, now: float, out, ev):
        """A SYNPROXY rule decided ``pkt`` (``synproxy_tg4``/``6``; the traversal hands over only a SYN or
        a bare ACK): answer the SYN with a cookie, or open the server's side for a valid cookie ACK."""
        fw = self.path.fw
        o = parse_options(pkt)
        if pkt.flags & _HANDSHAKE == _SYN:
            self.stats["syn_received"] += 1
            allowed, mss, wscale = target_options(rule.target_args)
            if pkt.flags & (_ECE | _CWR) == _ECE | _CWR:
                o.options |= OPT_ECN
            o.options &= allowed
            o.mss_encode = o.mss_option
            o.mss_option = mss
            if o.options & OPT_TIMESTAMP:
                timestamp_cookie(o, wscale, now)
            else:
                o.options &= ~(OPT_WSCALE | OPT_SACK_PERM | OPT_ECN)
            v = pkt.version
            idx = intercept.table_index(v, o.mss_encode)
            cookie = self.cookies.cookie(v, pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.seq, idx, now)
            flags = _SYN | _ACK | (_ECE if o.options & OPT_ECN else 0)
            synack = _segment(v, pkt.dst, pkt.src, pkt.dport, pkt.sport, cookie, pkt.seq + 1, flags, 0, o)
            # Sent with the SYN's conntrack: UNTRACKED after the recipe's raw rule.
            self.path.local_out(
                synack, iface, now, out, ev, ctstate="UNTRACKED" if ctstate == "UNTRACKED" else "ESTABLISHED"
            )
            fw.drop(
                ev,
                DropReason.SYNPROXY,
                iface,
                pkt,
                now,
                egress=egress,
                origin=rule.origin,
                message="SYN answered with a SYN cookie (SYNPROXY)",
            )
            return
        if not self.client_ack(pkt, o, pkt.seq, iface, now, out, ev, rule):
            fw.drop(
                ev,
                DropReason.SYNPROXY_INVALID,
                iface,
                pkt,
                now,
                egress=egress,
                origin=rule.origin,
                message="ACK without a valid SYN cookie (SYNPROXY)",
            )
            return
        fw.drop(
            ev,
            DropReason.SYNPROXY,
            iface,
            pkt,
            now,
            egress=egress,
            origin=rule.origin,
            message="cookie valid: SYNPROXY opens the connection to the server",
        )

    def client_ack(self, pkt: Packet, o: Options, recv_seq: int, iface, now, out, ev, rule=None) -> bool:
        """``synproxy_recv_client_ack``: False when the ACK carries no valid cookie; else the SYN the
        client would have sent goes to the server, through OUTPUT, creating the connection."""
        idx = self.cookies.validate(pkt, now)
        if idx is None:
            self.stats["cookie_invalid"] += 1
            return False
        self.stats["cookie_valid"] += 1
        v = pkt.version
        o.mss_option = intercept.MSS_TABLE[v][idx]
        o.options |= OPT_MSS
        if o.options & OPT_TIMESTAMP:
            check_timestamp_cookie(o)
        flags = _SYN | (_ECE | _CWR if o.options & OPT_ECN else 0)
        # The ack field relays the cookie to the hook (the kernel's "our ISN").
        syn = _segment(
            v, pkt.src, pkt.dst, pkt.sport, pkt.dport, recv_seq - 1, pkt.ack - 1, flags, pkt.window, o
        )
        path = self.path
        known = path.fw.conns.by_key.get((v, syn.proto, syn.src, syn.sport, syn.dst, syn.dport))
        if known is not None and getattr(known.conn, "synproxy", None) is not None:
            self.stats["cookie_retrans"] += 1
        path.local_out(syn, iface, now, out, ev, rule=rule, attach=Proxied)
        return True

    # -- the hook: every packet of a proxied connection ---------------------------------------------

    def hook(self, conn, half, pkt: Packet, now: float, out, ev) -> bool:
        """``ipv4_synproxy_hook`` for a packet of ``conn`` (fully translated, before the sequence
        adjustment): True when it was taken (the server's SYN-ACK)."""
        sp: Proxied = conn.synproxy
        trk = conn.tcp
        if trk is None or pkt.proto != 6:
            return False
        flags = pkt.flags
        d = half.dir
        state = trk.state
        if state == TcpState.CLOSE:
            if flags & _RST and d == REPLY:
                # The server refused the proxy's SYN: its RST reaches the client in the cookie's numbers.
                sp.seqadj.init(REPLY, sp.isn - pkt.seq + 1)
                tstamp_adjust(pkt, d, sp.tsoff)
                return False
            if not flags & _SYN or flags & _ACK or d != ORIGINAL:
                tstamp_adjust(pkt, d, sp.tsoff)
                return False
            # A SYN reopening the connection: the offsets are set again once it is established.
            sp.tsoff = 0
            self.stats["conn_reopened"] += 1
            state = TcpState.SYN_SENT
        if state == TcpState.SYN_SENT:
            o = parse_options(pkt)
            if not flags & _SYN and flags & _ACK and d == ORIGINAL:
                # The client's ACK again (its keep-alive is SND.NXT - 1: one more makes the SYN's).
                if not self.client_ack(pkt, o, (pkt.seq + 1) & _M, half.in_iface, now, out, ev):
                    self.path.fw.drop(
                        ev,
                        DropReason.SYNPROXY_INVALID,
                        half.in_iface,
                        pkt,
                        now,
                        egress=half.out_iface,
                        message="ACK without a valid SYN cookie",
                    )
                else:
                    self.stats["cookie_retrans"] += 1
                return True
            sp.isn = pkt.ack
            if o.options & OPT_TIMESTAMP:
                sp.its = o.tsecr
        elif state == TcpState.SYN_RECV and flags & (_SYN | _ACK) == _SYN | _ACK:
            self._splice(conn, half, pkt, now, out, ev)
            return True
        tstamp_adjust(pkt, d, sp.tsoff)
        return False

    def _splice(self, conn, half, pkt: Packet, now: float, out, ev) -> None:
        """The server answered: ACK it, move its numbers into the cookie's, open the client's window."""
        sp: Proxied = conn.synproxy
        o = parse_options(pkt)
        if o.options & OPT_TIMESTAMP:
            sp.tsoff = (o.tsval - sp.its) & _M
        o.options &= ~(OPT_MSS | OPT_WSCALE | OPT_SACK_PERM)
        v = pkt.version
        client_if = conn.halves[ORIGINAL].in_iface
        o.tsval, o.tsecr = o.tsecr, o.tsval
        maxwin = conn.tcp.seen[ORIGINAL].td_maxwin
        ack = _segment(v, pkt.dst, pkt.src, pkt.dport, pkt.sport, pkt.ack, pkt.seq + 1, _ACK, maxwin, o)
        path = self.path
        path.local_out(ack, client_if, now, out, ev)
        sp.seqadj.init(REPLY, sp.isn - pkt.seq)
        o.tsval, o.tsecr = o.tsecr, o.tsval
        update = _segment(
            v, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.seq + 1, pkt.ack, _ACK, pkt.window >> o.wscale, o
        )
        path.local_out(update, client_if, now, out, ev, half=conn.halves[REPLY], ctstate="ESTABLISHED")
        path.fw.drop(
            ev,
            DropReason.SYNPROXY,
            half.in_iface,
            pkt,
            now,
            egress=half.out_iface,
            message="the server's SYN-ACK: SYNPROXY completes both halves",
        )


__all__ = [
    "OPT_ECN",
    "OPT_MSS",
    "OPT_SACK_PERM",
    "OPT_TIMESTAMP",
    "OPT_WSCALE",
    "Options",
    "Proxied",
    "SynProxy",
    "build_options",
    "check_timestamp_cookie",
    "parse_options",
    "timestamp_cookie",
    "tstamp_adjust",
]
