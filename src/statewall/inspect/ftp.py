"""FTP inspection: the control connection read as a stream of lines, data connections opened for it.

Owns the per-connection state of an inspected FTP control connection (``FtpInspector``): where each
direction's lines start, the partial line carried between segments, the user and the transfer in
progress, the sequence adjustment its rewrites caused. The engine calls ``inspect`` for every packet
of the connection before NAT rewrites it and ``seqadj.adjust`` after; everything else happens here.

What is read. From the client, at the start of a line, ``PORT h1,h2,h3,h4,p1,p2`` and ``EPRT |1|a|p|``
/ ``EPRT |2|a|p|``; from the server ``227 ...h1,h2,h3,h4,p1,p2`` (scanned to the first digit, RFC 1123)
and ``229 ...(|||p|)``. Each announces one data connection: ``statewall.expect`` expects exactly it and,
when the announcing side is translated, says which address and port the peer must be told; the line is
then rewritten with them (``set_payload``) and the length change recorded in ``seqadj``. USER, RETR,
STOR/STOU/APPE and the 150/125 and 226/250 replies feed the ASA's 303002 audit (``FtpTransfer``).

Refused (the packet is dropped with ``inspect-ftp`` and its reason): a PORT/EPRT naming an address other
than the client's own -- an FTP bounce -- and a 227 naming a host other than the server (the own address
as either side sees it is fine: servers behind static NAT often announce their public address). Either
is reported as an ``FtpBounce`` event (the ASA's 406002). The ASA also terminates the connection
(Cisco's syslog guide, 406002: "drops the packet, terminates the connection, and logs the event");
netfilter instead just opens nothing (``loose=0``) and the connection goes on; statewall refuses in both
dialects so that the attempt is seen. A malformed PORT/EPRT/227/229 opens nothing; in the iptables
dialect it is dropped, as nf_conntrack_ftp drops a "partial match". ``strict`` (ASA ``inspect ftp
strict``, reference A.7) adds, each a drop that also closes the connection: a command before the
previous one was answered, a command with an embedded CR or NUL, a line not ended by CR LF, a reply code
(227 ...) from the client or a PORT/EPRT from the server, 227/PORT inside an error reply, a RETR/STOR
argument longer than ``STRICT_MAX_ARGUMENT``.

The ASA also refuses a data port below 1024, announced by either side (PORT/EPRT, 227/229): the packet
is dropped, the connection closed and ``FtpLowPort`` reported (406001). nf_conntrack_ftp has no such
check, so the iptables dialect expects any port.

Line starts, and how this differs from netfilter. nf_conntrack_ftp parses a segment only when its
first byte follows a newline it remembered (``NUM_SEQ_TO_REMEMBER = 2`` sequence numbers per
direction), and only the first line of it. So it never parses the first segment of either direction,
misses a command that does not start a segment, and misses a command split across segments. statewall
follows each direction's byte stream instead: from the SYN it knows where every line starts, parses
every line of a segment, and carries an unfinished line over to the next segment. When that partial
line may be a command it will have to rewrite (PORT/EPRT from a translated client, 227/229 from a
translated server), it withholds those bytes -- the segment leaves without them -- and sends them in
front of the next segment, whose sequence number moves back accordingly; the complete line is then
rewritten as one. The cost of being exact: a sender that waits for the acknowledgement of the withheld
bytes before sending the rest (Nagle) retransmits them; statewall then lets them through as they are
and that one command cannot be rewritten (``stats["unrewritten"]``). A connection picked up mid-stream
(no SYN seen) is synchronised as netfilter does, at the end of a segment ending in a newline; a gap in
the stream (a segment that never came by) loses the synchronisation the same way.

Retransmissions of a rewritten segment are rewritten identically (the last ``REMEMBER_REWRITES``
segments are remembered); ``seqadj`` does not count their length change twice.
"""

from __future__ import annotations

import ipaddress
from collections import deque

from ..conntrack import ORIGINAL
from ..events import FtpBounce, FtpLowPort, FtpTransfer
from ..expect import ExpectFailure
from ..packet import addr_to_str
from ..policy import Inspection
from ..seqadj import SeqAdj
from .refusal import Refusal

__all__ = ["FtpInspector", "FtpTransfer", "Refusal", "MAX_LINE", "STRICT_MAX_ARGUMENT"]

_M = 0xFFFFFFFF
_SYN = 0x02

# A partial line longer than this is not a command worth waiting for: forward it, stop parsing it.
MAX_LINE = 1024
# inspect ftp strict: the longest RETR/STOR argument accepted (statewall's bound; Cisco names the
# check without a figure).
STRICT_MAX_ARGUMENT = 512
REMEMBER_REWRITES = 4

_CLIENT_PATTERNS = (b"PORT", b"EPRT")
_SERVER_PATTERNS = (b"227 ", b"229 ")
_TRANSFER_COMMANDS = {b"RETR": "Retrieved", b"STOR": "Stored", b"STOU": "Stored", b"APPE": "Stored"}


class _Refused(Exception):
    def __init__(self, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.close = close


class _Stream:
    """One direction's byte stream as the inspector follows it (sequence numbers as sent)."""

    __slots__ = ("next_seq", "line", "line_seq", "held", "skip", "rewrites")

    def __init__(self) -> None:
        self.next_seq: int | None = None  # the sequence number of the next byte; None: not in sync
        self.line = bytearray()  # the unfinished line carried over from earlier segments
        self.line_seq = 0  # the sequence number of its first byte
        self.held = False  # its bytes were withheld from the receiver
        self.skip = False  # do not parse it (too long, or its start was already sent unrewritten)
        # (seq, payload as received, seq sent, payload sent) of the last rewritten segments
        self.rewrites: deque[tuple[int, bytes, int, bytes]] = deque(maxlen=REMEMBER_REWRITES)

    def lose_sync(self) -> None:
        self.next_seq = None
        self.line.clear()
        self.held = False
        self.skip = False


def _signed(x: int) -> int:
    x &= _M
    return x - (1 << 32) if x & 0x80000000 else x


class FtpInspector:
    """The inspection of one FTP control connection (``conn.helper``)."""

    __slots__ = (
        "conn",
        "expect",
        "inspection",
        "strict",
        "linux",
        "translated",
        "seqadj",
        "streams",
        "user",
        "transfer",
        "awaiting_reply",
        "stats",
    )

    def __init__(self, conn, inspection: Inspection, expect, *, linux: bool = False) -> None:
        self.conn = conn
        self.expect = expect
        self.inspection = inspection
        self.strict = inspection.strict
        self.linux = linux
        # nf_nat_ftp mangles only when the master is translated; so do we.
        self.translated = any(h.rewrites for h in conn.halves)
        self.seqadj = SeqAdj()
        self.streams = (_Stream(), _Stream())
        self.user = ""
        self.transfer: list | None = None  # [action, filename, started]
        self.awaiting_reply = False
        self.stats = {"expectations": 0, "rewritten": 0, "held": 0, "unrewritten": 0, "refused": 0}

    # ---------------------------------------------------------------------------------------------
    # The engine's interface

    def inspect(self, half, pkt, now: float, ev: list) -> Refusal | None:
        """Read one packet of the control connection (before NAT); rewrite it if it announces a data
        connection. Returns a ``Refusal`` when the packet must be dropped."""
        st = self.streams[half.dir]
        if pkt.flags & _SYN:
            st.lose_sync()
            st.next_seq = (pkt.seq + 1) & _M
            return None
        plen = pkt.payload_len
        if not plen:
            return None
        seq = pkt.seq
        if st.next_seq is None:
            self._pickup(st, pkt, seq, plen)
            return None
        rel = _signed(seq - st.next_seq)
        saved = (st.next_seq, bytes(st.line), st.line_seq, st.held, st.skip)
        try:
            if rel > 0:
                # A gap: bytes we never saw. Start again where a segment ends a line, as netfilter.
                st.lose_sync()
                self._pickup(st, pkt, seq, plen)
                return None
            if rel < 0:
                return self._old_data(st, half, pkt, seq, plen, -rel, now, ev)
            self._new_data(st, half, pkt, seq, pkt.payload(), 0, now, ev)
        except _Refused as r:
            # The packet is dropped: its retransmission must find the stream as it was.
            st.next_seq, line, st.line_seq, st.held, st.skip = saved
            st.line[:] = line
            self.stats["refused"] += 1
            return Refusal(r.message, r.close, self.inspection.origin)
        return None

    def closed(self, now: float) -> None:
        """The control connection is gone: so are its unused expectations."""
        self.expect.remove_master(self.conn, now)

    def to_live(self, direction: int, pkt) -> None:
        """Replay: carry a captured segment's acks into the sequence space the rewrites made."""
        if self.seqadj.active:
            self.seqadj.to_live(direction, pkt)

    # ---------------------------------------------------------------------------------------------
    # Stream bookkeeping

    @staticmethod
    def _pickup(st: _Stream, pkt, seq: int, plen: int) -> None:
        if pkt.buf[pkt.payload_off + plen - 1] == 0x0A:
            st.next_seq = (seq + plen) & _M

    def _old_data(self, st, half, pkt, seq, plen, behind, now, ev):
        """A segment starting before ``next_seq``: a retransmission, perhaps with new data after."""
        payload = pkt.payload()
        if st.held and _signed(seq - st.line_seq) <= 0 < _signed(seq + plen - st.line_seq):
            if seq == st.line_seq and behind < plen:
                # The sender resent the withheld bytes together with what follows: the whole line is
                # in this segment now; start over from its beginning.
                st.line.clear()
                st.held = False
                st.next_seq = seq
                self._new_data(st, half, pkt, seq, payload, 0, now, ev)
                return None
            # The sender waits for the withheld bytes to be acknowledged: let them go as they are.
            st.held = False
            st.skip = True
            self.stats["unrewritten"] += 1
            return None
        for rseq, rin, oseq, rout in st.rewrites:
            if rseq == seq and rin == payload:
                # The same segment again: the receiver must see the same bytes again.
                self._emit(pkt, oseq, rout, half.dir, 0)
                return None
        if behind < plen:
            self._new_data(st, half, pkt, seq, payload, behind, now, ev)
        return None

    def _new_data(self, st, half, pkt, seq, payload: bytes, start: int, now, ev) -> None:
        """Parse ``payload[start:]`` (the bytes after ``next_seq``); rewrite the segment if needed.

        ``payload[:start]`` is old data, forwarded as it is.
        """
        d = half.dir
        out = bytearray(payload[:start])
        out_seq = seq
        if st.held:
            # Withheld bytes go first (with their line, below): the segment starts where they did.
            out_seq = st.line_seq
        delta = 0
        changed = st.held
        pos = start
        n = len(payload)
        while pos < n:
            nl = payload.find(b"\n", pos)
            if nl < 0:
                break
            chunk = payload[pos : nl + 1]
            carried = bool(st.line)
            line = bytes(st.line) + chunk if carried else chunk
            if st.skip:
                new = None
            else:
                # A line whose beginning already left unchanged cannot be rewritten any more.
                new = self._line(d, half, line, not carried or st.held, now, ev)
            if carried and st.held:
                out += new if new is not None else line
                changed = True
            elif carried:
                out += chunk
            else:
                out += new if new is not None else chunk
            if new is not None:
                delta += len(new) - len(line)
                changed = True
                self.stats["rewritten"] += 1
            st.line.clear()
            st.held = False
            st.skip = False
            pos = nl + 1
        if pos < n:
            rest = payload[pos:]
            if st.line:
                st.line += rest
                if not st.held:
                    out += rest
            elif st.skip:
                # Still inside a line too long to be a command: not a line start, nothing to keep.
                out += rest
            else:
                st.line += rest
                st.line_seq = (seq + pos) & _M
                if self._may_rewrite(d, rest):
                    st.held = True
                    changed = True
                    self.stats["held"] += 1
                else:
                    out += rest
            if len(st.line) > MAX_LINE:
                if st.held:
                    # Not a command after all: release what was withheld, in stream order.
                    out += st.line if out_seq == st.line_seq else rest
                    st.held = False
                st.skip = True
                st.line.clear()
        st.next_seq = (seq + n) & _M
        if changed:
            self._emit(pkt, out_seq, bytes(out), d, delta)
            st.rewrites.append((seq, payload, out_seq, bytes(out)))

    def _emit(self, pkt, out_seq: int, out: bytes, d: int, delta: int) -> None:
        if out_seq != pkt.seq:
            pkt.set_seq(out_seq)
        if out != pkt.payload():
            pkt.set_payload(out)
        if delta:
            self.seqadj.set(d, out_seq, delta)

    def _may_rewrite(self, d: int, partial: bytes) -> bool:
        """Could this unfinished line become a command we will have to rewrite?"""
        if not self.translated:
            return False
        head = partial[:4].upper()
        patterns = _CLIENT_PATTERNS if d == ORIGINAL else _SERVER_PATTERNS
        return any(p.startswith(head) if len(head) < 4 else head == p for p in patterns)

    # ---------------------------------------------------------------------------------------------
    # Lines

    def _line(self, d: int, half, line: bytes, can_rewrite: bool, now: float, ev: list) -> bytes | None:
        """One complete line (with its newline). Returns its rewritten form, or None to keep it."""
        if d == ORIGINAL:
            return self._command(half, line, can_rewrite, now, ev)
        return self._reply(half, line, can_rewrite, now, ev)

    def _command(self, half, line: bytes, can_rewrite: bool, now: float, ev: list) -> bytes | None:
        verb = line.split(b" ", 1)[0].rstrip(b"\r\n").upper()
        if self.strict:
            if not line.endswith(b"\r\n"):
                raise _Refused("strict: command not terminated by CR LF", close=True)
            if b"\r" in line[:-2] or b"\x00" in line:
                raise _Refused("strict: embedded command", close=True)
            if self.awaiting_reply and verb != b"ABOR":
                raise _Refused(
                    f"strict: {verb.decode(errors='replace')} sent before the previous command was answered",
                    close=True,
                )
            if line[:3].isdigit():
                raise _Refused("strict: reply code sent by the client", close=True)
            if verb in _TRANSFER_COMMANDS and len(line.strip()) - len(verb) - 1 > STRICT_MAX_ARGUMENT:
                raise _Refused(
                    f"strict: {verb.decode()} argument longer than {STRICT_MAX_ARGUMENT}", close=True
                )
        self.awaiting_reply = True
        if verb == b"USER":
            self.user = _argument(line)
        elif verb in _TRANSFER_COMMANDS:
            self.transfer = [_TRANSFER_COMMANDS[verb], _argument(line), False]
        head = line[:4].upper()
        if head == b"PORT" and self.conn.version != 4:
            return None  # an IPv4 form on an IPv6 connection names no address of ours
        if head == b"PORT":
            parsed = _parse_port(line, 4, self.conn.version)
            kind = "PORT"
        elif head == b"EPRT":
            parsed = _parse_eprt(line, self.conn.version)
            kind = "EPRT"
        else:
            return None
        if parsed is None:
            return self._malformed(kind, line)
        start, end, addr, port = parsed
        self._check_own_address(half, addr, kind, now, ev)
        self._check_port(half, addr, port, kind, now, ev)
        return self._announce(half, line, kind, start, end, port, can_rewrite, now, ev)

    def _reply(self, half, line: bytes, can_rewrite: bool, now: float, ev: list) -> bytes | None:
        code = line[:3]
        is_code = code.isdigit() and len(line) > 3 and line[3:4] in (b" ", b"-")
        if self.strict:
            head = line[:4].upper()
            if head in (b"PORT", b"EPRT"):
                raise _Refused(f"strict: {head.decode()} sent by the server", close=True)
            if is_code and code[:1] in (b"4", b"5") and (b"227 " in line or b"PORT" in line.upper()):
                raise _Refused("strict: 227/PORT inside an error reply", close=True)
        if is_code and line[3:4] == b" ":
            self.awaiting_reply = False
        if is_code:
            self._audit(code, now, ev)
        if line.startswith(b"227 "):
            parsed = _parse_227(line, self.conn.version)
            kind = "227"
            if parsed is not None:
                self._check_own_address(half, parsed[2], kind, now, ev)
        elif line.startswith(b"229 "):
            parsed = _parse_229(line)
            kind = "229"
        else:
            return None
        if parsed is None:
            return self._malformed(kind, line)
        start, end, addr, port = parsed
        self._check_port(half, addr, port, kind, now, ev)
        return self._announce(half, line, kind, start, end, port, can_rewrite, now, ev)

    def _audit(self, code: bytes, now: float, ev: list) -> None:
        t = self.transfer
        if t is None:
            return
        if code in (b"150", b"125"):
            t[2] = True
        elif code in (b"226", b"250") and t[2]:
            c = self.conn
            ev.append(FtpTransfer(now, c.id, c.initiator, c.responder, self.user or "?", t[0], t[1]))
            self.transfer = None
        elif code[:1] in (b"4", b"5"):
            self.transfer = None

    def _malformed(self, kind: str, line: bytes) -> None:
        if self.linux or self.strict:
            # nf_conntrack_ftp drops a "partial match"; the ASA's strict mode reads it as truncated.
            raise _Refused(
                f"{'strict: truncated' if self.strict else 'partial matching of'} {kind} command",
                close=self.strict,
            )
        return None

    def _check_own_address(self, half, addr: int, kind: str, now: float, ev: list) -> None:
        """A PORT/EPRT/227 must name the sender itself (as it is, or as the other side sees it)."""
        other = self.conn.halves[1 - half.dir]
        if addr == half.key[2] or addr == other.key[4]:
            return
        v = self.conn.version
        who = "client" if half.dir == ORIGINAL else "server"
        what = "FTP bounce: " if half.dir == ORIGINAL else ""
        ev.append(
            FtpBounce(now, self.conn.id, half.in_iface, kind, (v, half.key[2]), (v, addr), (v, half.key[4]))
        )
        raise _Refused(
            f"{what}{kind} names {addr_to_str(v, addr)}, not the {who} {addr_to_str(v, half.key[2])} "
            f"(on interface {half.in_iface})",
            close=not self.linux,
        )

    def _check_port(self, half, addr: int | None, port: int, kind: str, now: float, ev: list) -> None:
        """The ASA refuses a data port below 1024, the well-known range of servers: Cisco's syslog
        guide, 406001 ("FTP port command low port"): it drops the packet, terminates the connection
        and logs the event. nf_conntrack_ftp has no such check (Linux expects any port)."""
        if self.linux or port >= 1024:
            return
        v = self.conn.version
        ev.append(
            FtpLowPort(
                now,
                self.conn.id,
                half.in_iface,
                kind,
                addr_to_str(v, half.key[2] if addr is None else addr),
                port,
                addr_to_str(v, half.key[4]),
            )
        )
        raise _Refused(f"{kind} announces port {port}, below 1024", close=True)

    def _announce(self, half, line, kind, start, end, port, can_rewrite, now, ev) -> bytes | None:
        try:
            exp = self.expect.announce(
                self.conn,
                half.dir,
                port,
                now,
                ev,
                kind=kind,
                origin=self.inspection.origin,
                data_refreshes_control=self.inspection.data_refreshes_control,
            )
        except ExpectFailure as e:
            raise _Refused(f"{kind}: cannot expect the data connection: {e}") from None
        self.stats["expectations"] += 1
        if not self.translated:
            return None
        new = line[:start] + _format(kind, self.conn.version, exp.dst, exp.dport) + line[end:]
        if new == line:
            return None
        if not can_rewrite:
            # Its beginning already went out unchanged: the peer will not use what we expect.
            self.expect.withdraw(exp, now)
            self.stats["unrewritten"] += 1
            return None
        return new


# -------------------------------------------------------------------------------------------------
# Argument parsers: (start, end, address or None, port) of the bytes a rewrite replaces, or None


def _argument(line: bytes) -> str:
    parts = line.rstrip(b"\r\n").split(b" ", 1)
    return parts[1].decode("latin-1") if len(parts) > 1 else ""


def _numbers(line: bytes, i: int, count: int, sep: int) -> tuple[list[int], int] | None:
    """``count`` decimal numbers separated by ``sep`` from ``line[i]``; (numbers, index after)."""
    nums = []
    n = len(line)
    for k in range(count):
        j = i
        while j < n and 0x30 <= line[j] <= 0x39:
            j += 1
        if j == i or j - i > 5:
            return None
        nums.append(int(line[i:j]))
        i = j
        if k < count - 1:
            if i >= n or line[i] != sep:
                return None
            i += 1
    return nums, i


def _h_p(nums: list[int]) -> tuple[int, int] | None:
    if any(x > 255 for x in nums):
        return None
    addr = (nums[0] << 24) | (nums[1] << 16) | (nums[2] << 8) | nums[3]
    port = (nums[4] << 8) | nums[5]
    return (addr, port) if port else None


def _parse_port(line: bytes, after: int, version: int):
    """``PORT h1,h2,h3,h4,p1,p2`` then CR (or LF): skip to the first space, as nf_conntrack_ftp."""
    if version != 4:
        return None
    i = line.find(b" ", after)
    if i < 0:
        return None
    i += 1
    got = _numbers(line, i, 6, 0x2C)
    if got is None:
        return None
    nums, end = got
    if end >= len(line) or line[end] not in (0x0D, 0x0A):
        return None
    hp = _h_p(nums)
    return None if hp is None else (i, end, hp[0], hp[1])


def _parse_227(line: bytes, version: int):
    """``227 <text> h1,h2,h3,h4,p1,p2``: scan to the first digit after the code (RFC 1123)."""
    if version != 4:
        return None
    i = 4
    n = len(line)
    while i < n and not 0x30 <= line[i] <= 0x39:
        i += 1
    got = _numbers(line, i, 6, 0x2C)
    if got is None:
        return None
    nums, end = got
    hp = _h_p(nums)
    return None if hp is None else (i, end, hp[0], hp[1])


def _delimiter(c: int) -> bool:
    return 33 <= c <= 126 and not 0x30 <= c <= 0x39


def _parse_eprt(line: bytes, version: int):
    """``EPRT <d>1<d>a.b.c.d<d>port<d>`` or ``<d>2<d>v6<d>port<d>`` (RFC 2428)."""
    i = line.find(b" ", 4)
    if i < 0 or i + 4 > len(line):
        return None
    i += 1
    d = line[i]
    if not _delimiter(d) or line[i + 2] != d or line[i + 1] != (0x31 if version == 4 else 0x32):
        return None
    a_end = line.find(bytes((d,)), i + 3)
    if a_end < 0:
        return None
    try:
        addr = int(ipaddress.ip_address(line[i + 3 : a_end].decode("ascii")))
        if ipaddress.ip_address(line[i + 3 : a_end].decode("ascii")).version != version:
            return None
    except (ValueError, UnicodeDecodeError):
        return None
    p_end = line.find(bytes((d,)), a_end + 1)
    if p_end < 0:
        return None
    port_text = line[a_end + 1 : p_end]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return (i, p_end + 1, addr, int(port_text))


def _parse_229(line: bytes):
    """``229 <text> (<d><d><d>port<d>)``: skip to '(' (RFC 2428)."""
    i = line.find(b"(", 4)
    if i < 0 or i + 5 > len(line):
        return None
    i += 1
    d = line[i]
    if not _delimiter(d) or line[i + 1] != d or line[i + 2] != d:
        return None
    p_end = line.find(bytes((d,)), i + 3)
    if p_end < 0:
        return None
    port_text = line[i + 3 : p_end]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return (i, p_end + 1, None, int(port_text))


def _format(kind: str, version: int, addr: int, port: int) -> bytes:
    """The argument as nf_nat_ftp prints it."""
    if kind in ("PORT", "227"):
        a = addr.to_bytes(4, "big")
        return f"{a[0]},{a[1]},{a[2]},{a[3]},{port >> 8},{port & 0xFF}".encode()
    if kind == "EPRT":
        if version == 4:
            return f"|1|{ipaddress.IPv4Address(addr)}|{port}|".encode()
        # %pI6: eight groups of four hex digits, no "::" compression.
        return f"|2|{ipaddress.IPv6Address(addr).exploded}|{port}|".encode()
    return f"|||{port}|".encode()
