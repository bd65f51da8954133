"""TCP Intercept: SYN cookies once an embryonic limit is reached, and the splice that follows.

Owns the cookies (their secret, time counter and encoding), the packets the firewall sends on the
server's behalf, and the state of a connection between a validated client and the server's answer
(``Pending``). ``statewall.limits`` decides *when* a SYN is intercepted; the engine orchestrates.

How a flow goes (reference A.3; Linux SYNPROXY B.6 and pf ``synproxy state`` C.2 do the same):

1. A SYN arrives while its class (or NAT line) is at its embryonic limit. The firewall answers it
   itself: a SYN-ACK from the address the client called, whose sequence number is the cookie, with a
   zero window (the client may not send data before the server is reached, as SYNPROXY does) and an
   MSS option. Nothing is stored: the SYN is forgotten, whatever the number of SYNs.
2. The cookie is 32 bits: a 28-bit keyed BLAKE2b of the tuple, the client's ISN and a time counter
   (one step per ``COOKIE_PERIOD`` s), then the counter's low 2 bits and a 2-bit index into an MSS
   table (Linux's ``msstab``, the largest entry not above what the client offered). An ACK
   ``ack - 1 == cookie`` for the current or previous counter proves the client received the SYN-ACK:
   the address is not spoofed. Cookies live one to two periods.
3. For a valid ACK the firewall opens the connection to the server as the client would have: a SYN
   with the client's ISN (``seq - 1`` of the ACK), the MSS from the cookie, the ACK's window, no window
   scale, SACK or timestamps (a cookie cannot carry them, so neither side may use them). The engine
   runs that SYN through the ordinary new-flow path: access rules, NAT, class, normalizer,
   sequence randomization, so the server sees an ordinary connection from the real client.
4. The server's SYN-ACK is not forwarded: its ISN ``S`` differs from the cookie ``C`` the client
   knows, so the connection's ``SeqShift`` (``statewall.seqrand``, the one place sequence numbers
   move) gets ``C - S`` for the server's direction, composed with any randomization of the client's.
   The client's ACK (kept in ``Pending``) then goes to the server, and the client gets a window update
   carrying the server's window: both halves are spliced.

An ACK that carries no valid cookie towards a destination intercepted within the cookie lifetime is
dropped (``intercept-unexpected``); elsewhere it is the ordinary "no connection" drop. While the
server has not answered, the client's packets are consumed; if the server resets or never answers, the
client (which believes it is connected) gets a RST and the teardown says "Flow terminated by TCP
Intercept".
"""

from __future__ import annotations

import hashlib
import struct

from . import craft
from .normalizer import pair_with
from .seqrand import SeqShift

_M = 0xFFFFFFFF
_SYN = 0x02
_RST = 0x04
_ACK = 0x10

COOKIE_PERIOD = 64.0  # seconds per cookie time counter (Linux: 60 s; a power of two reads better)
COOKIE_AGE = 2  # counters a cookie stays valid: the current one and the one before it
# The MSS values a cookie can name (Linux msstab / msstab6): the client gets the largest not above its own.
MSS_TABLE = {4: (536, 1300, 1440, 1460), 6: (1220, 1400, 1440, 1460)}
SYN_ACK_WINDOW = 0
# At most this many intercepted destinations are remembered for telling cookie failures from strays.
MAX_TARGETS = 1024


def make_secret(seq_secret: bytes) -> bytes:
    """The cookie key, derived from the firewall's own secret (reproducible with ``Firewall(seed=)``)."""
    return hashlib.blake2b(b"tcp-intercept", key=seq_secret, digest_size=16).digest()


def table_index(version: int, offered: int | None) -> int:
    """The MSS table entry a SYN's offer maps to (an absent option is the protocol's default, entry 0)."""
    table = MSS_TABLE[version]
    if offered is None:
        return 0
    idx = 0
    for i, value in enumerate(table):
        if value <= offered:
            idx = i
    return idx


def advertised_mss(value: int, maximum: int, minimum: int) -> int:
    """What the firewall's SYN-ACK announces for a table MSS: ``sysopt connection tcpmss`` applies to it
    as to any SYN-ACK it forwards (lowered to the maximum, raised to the minimum)."""
    if maximum and value > maximum:
        value = maximum
    if minimum and value < minimum:
        value = minimum
    return value


class Pending:
    """A validated client whose connection to the server is being opened (``Connection.intercept``).

    ``cookie_isn``: the ISN the client knows for the server (the cookie); ``client_ack``: the client's
    ACK, sent on to the server once it answers; ``mss``: what the firewall announced to the client.
    """

    __slots__ = ("cookie_isn", "client_ack", "mss")

    def __init__(self, cookie_isn: int, client_ack: bytes, mss: int) -> None:
        self.cookie_isn = cookie_isn
        self.client_ack = client_ack
        self.mss = mss


class Intercept:
    """One firewall's SYN cookies and what they have done (``stats``)."""

    __slots__ = ("secret", "last", "targets", "stats")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.last = float("-inf")  # when the last SYN was intercepted
        self.targets: dict[tuple[int, int, int], float] = {}  # (version, dst, dport) -> last intercept
        self.stats = {"syn_cookies": 0, "valid_acks": 0, "invalid_acks": 0, "server_failures": 0}

    def engaged(self, now: float) -> bool:
        """Cookies may be in flight: some SYN was intercepted within a cookie's lifetime."""
        return now - self.last < COOKIE_AGE * COOKIE_PERIOD

    def aimed_at(self, version: int, dst: int, dport: int, now: float) -> bool:
        """A SYN to this destination was intercepted within a cookie's lifetime."""
        t = self.targets.get((version, dst, dport))
        return t is not None and now - t < COOKIE_AGE * COOKIE_PERIOD

    def _hash(self, version: int, src: int, sport: int, dst: int, dport: int, isn: int, counter: int) -> int:
        size = 16 if version == 6 else 4
        data = (
            src.to_bytes(size, "big")
            + dst.to_bytes(size, "big")
            + struct.pack("!HHIQ", sport, dport, isn, counter & 0xFFFFFFFFFFFFFFFF)
        )
        return int.from_bytes(hashlib.blake2b(data, key=self.secret, digest_size=4).digest(), "big") >> 4

    def cookie(
        self, version: int, src: int, sport: int, dst: int, dport: int, isn: int, idx: int, now: float
    ) -> int:
        """The cookie for a SYN with ISN ``isn`` whose MSS maps to table entry ``idx``, at ``now``."""
        counter = int(now // COOKIE_PERIOD)
        h = self._hash(version, src, sport, dst, dport, isn, counter)
        return (h << 4) | ((counter & 3) << 2) | idx

    def answer(self, pkt, now: float, maximum: int, minimum: int) -> bytearray:
        """The SYN-ACK answering an intercepted SYN (sent back where it came from)."""
        v = pkt.version
        idx = table_index(v, pkt.mss())
        isn = pkt.seq
        c = self.cookie(v, pkt.src, pkt.sport, pkt.dst, pkt.dport, isn, idx, now)
        self.last = now
        key = (v, pkt.dst, pkt.dport)
        targets = self.targets
        if key in targets:
            del targets[key]  # re-inserted last: the dict stays in least-recently-intercepted order
        elif len(targets) >= MAX_TARGETS:
            del targets[next(iter(targets))]
        targets[key] = now
        self.stats["syn_cookies"] += 1
        mss = advertised_mss(MSS_TABLE[v][idx], maximum, minimum)
        return craft.tcp_packet(
            v,
            pkt.dst,
            pkt.src,
            pkt.dport,
            pkt.sport,
            c,
            (isn + 1) & _M,
            _SYN | _ACK,
            window=SYN_ACK_WINDOW,
            options=craft.tcp_option_mss(mss),
        )

    def validate(self, pkt, now: float) -> int | None:
        """The MSS table index a bare ACK's cookie carries, or None when it carries no valid cookie."""
        cookie = (pkt.ack - 1) & _M
        isn = (pkt.seq - 1) & _M
        low = (cookie >> 2) & 3
        counter = int(now // COOKIE_PERIOD)
        for age in range(COOKIE_AGE):
            c = counter - age
            if c & 3 != low:
                continue
            if self._hash(pkt.version, pkt.src, pkt.sport, pkt.dst, pkt.dport, isn, c) == cookie >> 4:
                self.stats["valid_acks"] += 1
                return cookie & 3
        self.stats["invalid_acks"] += 1
        return None

    def client_syn(self, pkt, idx: int) -> bytearray:
        """The SYN the client would have sent: what the firewall sends on to the server for a valid ACK."""
        v = pkt.version
        return craft.tcp_packet(
            v,
            pkt.src,
            pkt.dst,
            pkt.sport,
            pkt.dport,
            (pkt.seq - 1) & _M,
            0,
            _SYN,
            window=pkt.window,
            options=craft.tcp_option_mss(MSS_TABLE[v][idx]),
            ttl=pkt.ttl,
        )


def prepare(conn, pending: Pending) -> None:
    """A validated connection was created: it needs a sequence shift for the server's side later."""
    conn.intercept = pending
    if conn.seqrand is None:
        shift = SeqShift(0, 0)
        if conn.helper is not None:
            shift.seqadj = conn.helper.seqadj
        conn.seqrand = shift


def splice(conn, synack) -> tuple[bytearray, bytearray]:
    """The server answered: shift its numbers into the cookie's and return the client's ACK (for the
    server) and the window update (for the client), both as they arrive on their own interfaces."""
    p: Pending = conn.intercept
    shift = conn.seqrand
    shift.offsets = (shift.offsets[0], (p.cookie_isn - synack.seq) & _M)
    if conn.norm is not None:
        # The client was told the firewall's MSS: hold it to that, as for any MSS the firewall announced.
        conn.norm.mss_limit = pair_with(conn.norm.mss_limit, 1, p.mss)  # a shared pair, replaced
    conn.intercept = None
    v, _, src, sport, dst, dport = conn.halves[1].key
    update = craft.tcp_packet(
        v,
        src,
        dst,
        sport,
        dport,
        (synack.seq + 1) & _M,
        synack.ack,
        _ACK,
        window=synack.window,
        ttl=synack.ttl,
    )
    return bytearray(p.client_ack), update


def client_reset(conn, pending: Pending) -> tuple[str, bytearray]:
    """(interface, RST) telling a client that believes itself connected that the server is not there."""
    fwd = conn.halves[0]
    v, _, src, sport, dst, dport = fwd.key
    client_next = conn.tcp.seen[0].td_end if conn.tcp is not None else 0
    rst = craft.tcp_packet(v, dst, src, dport, sport, (pending.cookie_isn + 1) & _M, client_next, _RST | _ACK)
    return fwd.in_iface, rst
