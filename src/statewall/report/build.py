"""The report's data, built from a replay's output directory and nothing else.

Sources (all written by ``statewall.replay``): ``events.jsonl`` (connections, translations, drops with
their reason, configuration line and hint, syslog), ``arrived/<iface>.pcap`` (each packet as it reached
the firewall, after the replay carried it into the connection's coordinates), ``<iface>.pcap`` (what
left) and ``summary.json``. A packet is put on a connection by its addresses and ports *as seen on
that interface*: a connection's ``ConnBuilt`` gives both ends' real and mapped coordinates, so the
initiator's side sees initiator-real to responder-mapped and the responder's side initiator-mapped to
responder-real. A ``Drop`` is matched to the arriving packet it was for by interface, time and
addresses; a drop with no connection (an access list refusing a SYN) starts a *denied flow*, listed
like a connection.

A drop can be the consequence of an earlier one on the same connection: a segment whose ACK is beyond
what the firewall forwarded in the other direction, after the firewall dropped data of that direction
(a replayed capture's server acknowledges segments the firewall never let through: tcp-invalid-ack), or
an out-of-order segment that waited for data the firewall dropped (tcp-buffer-timeout). Such a drop is
marked ``consequence_of`` its root cause's drop, offered no fix, and its reason is listed under the
cause's when all its drops are consequences (``_Builder.consequences``).

Bounded for large captures: at most ``MAX_CONNS`` connections are listed, ``DETAIL_CONNS`` of them
(those with drops first) get their packets, syslog lines and sentences, and the packets kept per
connection shrink so that the whole page holds about ``ROW_BUDGET`` arrows (the first three quarters
and the last quarter of each connection, and every drop); the page says what it left out.
"""

from __future__ import annotations

import heapq
import json
import os
import socket
import struct
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..events import DropReason
from ..pcapio import CaptureError, read_packets
from .fixes import fixes_for
from .narrate import narrate
from .records import event_from_record

MAX_CONNS = 100_000
DETAIL_CONNS = 20_000
ROW_BUDGET = 250_000
MIN_ROWS = 24
MAX_DROP_ROWS = 500  # drops kept per connection beyond its packet rows
MAX_DROPS = 50_000  # drops described in full (reason, line, hint, fixes)
MAX_DENIED = 20_000

# A packet row: [time (microseconds; from the connection's start in the page), side (0 the initiator's
# interface, 1 the responder's), kind, direction (0 from the initiator), TCP flags or ICMP type, seq,
# ack, payload length, drop index or -1].
# Row kinds (the page's ladder draws each): a packet arriving, leaving, arriving and dropped, and a
# drop of a packet the firewall held (no arrival seen at that time: timers, reassembly).
ARRIVED, LEFT, DROPPED, DROP_ONLY = 0, 1, 2, 3

_TCP, _UDP, _ICMP, _ICMP6 = 6, 17, 1, 58
_V6_EXT = {0, 43, 60, 51}
_unpack_ports = struct.Struct("!HHII").unpack_from


def packet_fields(data: bytes) -> tuple | None:
    """(proto, src, sport, dst, dport, flags, seq, ack, payload length) of an IP packet, addresses packed
    (4 or 16 bytes), tolerant of anything short or odd (None then): the packets here may be the very
    ones dropped as malformed."""
    try:
        if data[0] == 0x45 and data[9] == _TCP and not (data[6] & 0x1F or data[7]):
            # The common case first: IPv4 without options carrying TCP.
            sport, dport, seq, ack = _unpack_ports(data, 20)
            end = min(len(data), (data[2] << 8) | data[3])
            return (
                _TCP,
                data[12:16],
                sport,
                data[16:20],
                dport,
                data[33],
                seq,
                ack,
                end - 20 - (data[32] >> 4) * 4,
            )
        v = data[0] >> 4
        if v == 4:
            ihl = (data[0] & 15) * 4
            proto = data[9]
            src = data[12:16]
            dst = data[16:20]
            end = min(len(data), int.from_bytes(data[2:4], "big"))
            l4 = ihl
            later_fragment = bool((data[6] & 0x1F) or data[7])
        elif v == 6:
            proto = data[6]
            src = data[8:24]
            dst = data[24:40]
            end = min(len(data), 40 + int.from_bytes(data[4:6], "big"))
            l4 = 40
            later_fragment = False
            while proto in _V6_EXT or proto == 44:
                nxt = data[l4]
                if proto == 44:
                    later_fragment = bool(int.from_bytes(data[l4 + 2 : l4 + 4], "big") & 0xFFF8)
                    l4 += 8
                elif proto == 51:
                    l4 += (data[l4 + 1] + 2) * 4
                else:
                    l4 += (data[l4 + 1] + 1) * 8
                proto = nxt
        else:
            return None
        if later_fragment:
            return (proto, src, 0, dst, 0, 0, 0, 0, max(0, end - l4))
        if proto == _TCP:
            sport, dport, seq, ack = _unpack_ports(data, l4)
            doff = (data[l4 + 12] >> 4) * 4
            return (proto, src, sport, dst, dport, data[l4 + 13], seq, ack, max(0, end - l4 - doff))
        if proto == _UDP:
            sport, dport = struct.unpack_from("!HH", data, l4)
            return (proto, src, sport, dst, dport, 0, 0, 0, max(0, end - l4 - 8))
        if proto in (_ICMP, _ICMP6):
            return (proto, src, 0, dst, 0, data[l4], 0, 0, max(0, end - l4 - 8))
        return (proto, src, 0, dst, 0, 0, 0, 0, max(0, end - l4))
    except (IndexError, ValueError, struct.error):
        return None


def _pack(address: str) -> bytes:
    """An address's packed form (what ``packet_fields`` gives), so that a packet is matched without
    formatting its addresses."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except (OSError, ValueError):
        return address.encode()


def _key(iface: str, proto: int, a: bytes, pa: int, b: bytes, pb: int) -> tuple:
    """A packet's key on an interface, in its own direction (ports only for TCP and UDP)."""
    if proto not in (_TCP, _UDP):
        pa = pb = 0
    return (iface, proto, a, pa, b, pb)


class Conn:
    """One connection (or denied flow) as the report shows it."""

    def __init__(self, cid: int, proto: int, direction: str, ini: dict, res: dict, t0: float) -> None:
        self.id = cid
        self.proto = proto
        self.direction = direction
        self.ini = ini
        self.res = res
        self.t0 = t0
        self.t1: float | None = None
        self.last = t0
        self.teardown: str | None = None
        self.duration: float | None = None
        self.bytes = 0
        self.master: int | None = None
        self.children: list[int] = []
        self.origin: dict | None = None
        self.xlates: list[dict] = []
        self.records: list[dict] = []  # its events, for syslog lines and sentences
        self.drops: Counter[str] = Counter()
        self.drop_ids: list[int] = []
        self.detail = False
        self.head: list[list] = []
        self.tail: deque = deque()
        self.mid_drops: list[list] = []
        self.cap_head = 0
        self.rows_seen = 0
        self.counts = [[0, 0, 0], [0, 0, 0]]  # per side: arrived, left, dropped
        self.denied = False

    def flow_keys(self) -> list[tuple[tuple, int, int]]:
        """(key, side, direction) of each kind of packet of this connection: side 0 is the initiator's
        interface (initiator real to responder mapped), side 1 the responder's (initiator mapped to
        responder real); direction 0 from the initiator, 1 back."""
        i, r, p = self.ini, self.res, self.proto
        a, am = _pack(i["address"]), _pack(i["mapped_address"])
        b, bm = _pack(r["address"]), _pack(r["mapped_address"])
        ii, ri = i["interface"], r["interface"]
        return [
            (_key(ii, p, a, i["port"], bm, r["mapped_port"]), 0, 0),
            (_key(ii, p, bm, r["mapped_port"], a, i["port"]), 0, 1),
            (_key(ri, p, am, i["mapped_port"], b, r["port"]), 1, 0),
            (_key(ri, p, b, r["port"], am, i["mapped_port"]), 1, 1),
        ]

    def add_row(self, row: list) -> None:
        self.rows_seen += 1
        if len(self.head) < self.cap_head:
            self.head.append(row)
            return
        if self.tail.maxlen == 0:
            if row[2] in (DROPPED, DROP_ONLY) and len(self.mid_drops) < MAX_DROP_ROWS:
                self.mid_drops.append(row)
            return
        if len(self.tail) == self.tail.maxlen:
            old = self.tail[0]
            if old[2] in (DROPPED, DROP_ONLY) and len(self.mid_drops) < MAX_DROP_ROWS:
                self.mid_drops.append(old)
        self.tail.append(row)

    def rows(self) -> list[list]:
        return (
            sorted(self.head + self.mid_drops + list(self.tail), key=lambda r: r[0])
            if (self.mid_drops)
            else self.head + list(self.tail)
        )

    @property
    def verdict(self) -> str:
        if self.denied:
            return "denied"
        if self.drops:
            return "dropped"
        if self.teardown is None:
            return "open"
        if "Reset" in self.teardown or "RST" in self.teardown:
            return "reset"
        if "FIN" in self.teardown:
            return "closed"
        if "imeout" in self.teardown:
            return "timeout"
        return "other"


_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1),
    b"\xa1\xb2\xc3\xd4": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\x3c\x4d": (">", 1000),
}


def _frames(path: Path) -> Iterator[tuple[int, bytes]]:
    """(time in microseconds, IP packet) of a capture. The replay's own files (classic pcap, raw IP)
    are read here directly, times kept exact; anything else through ``statewall.pcapio``."""
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed below, also when the generator is dropped
    except OSError:
        return
    with f:
        head = f.read(24)
        fmt = _PCAP_MAGIC.get(head[:4])
        if fmt is None or len(head) < 24 or struct.unpack(fmt[0] + "I", head[20:24])[0] != 101:
            f.close()
            try:
                for ts, data in read_packets(path):
                    yield round(ts * 1e6), data
            except (CaptureError, OSError, ValueError):
                return
            return
        rec = struct.Struct(fmt[0] + "IIII").unpack
        div = fmt[1]
        read = f.read
        while True:
            h = read(16)
            if len(h) < 16:
                return
            sec, frac, incl, _orig = rec(h)
            data = read(incl)
            if len(data) < incl:
                return
            yield sec * 1_000_000 + frac // div, data


def _read_events(outdir: Path) -> Iterator[dict[str, Any]]:
    path = outdir / "events.jsonl"
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # being written (a live recording read while it runs): not whole yet
            line = line.strip()
            if line:
                yield json.loads(line)


def _ep(d: dict) -> dict:
    return {k: d[k] for k in ("interface", "address", "port", "mapped_address", "mapped_port")}


def _origin(o: Any) -> dict | None:
    if isinstance(o, dict) and o.get("line"):
        return {"file": o.get("file", ""), "line": o["line"], "text": o.get("text", "")}
    return None


class _Builder:
    def __init__(self, outdir: Path, config_text: str | None) -> None:
        self.outdir = outdir
        self.summary: dict[str, Any] = {}
        if (outdir / "summary.json").exists():
            self.summary = json.loads((outdir / "summary.json").read_text(encoding="utf-8"))
        self.config_text = config_text
        self.conns: dict[int, Conn] = {}
        self.order: list[Conn] = []
        self.by_key: dict[tuple, list[tuple[Conn, int, int]]] = {}
        self.denied: dict[tuple, Conn] = {}
        self.drops: list[dict] = []
        self.drops_at: dict[tuple, list[int]] = {}
        self.drop_conn: list[Conn | None] = []
        self.drop_matched: list[bool] = []
        self.drop_reason: list[str] = []
        # Consequences: drop index -> the index of the drop that caused it (its root), and per TCP
        # connection [end forwarded from the initiator, from the responder, first data drop from the
        # initiator, from the responder] (ends in the coordinates of the side the packets left by).
        self.consequence: dict[int, int] = {}
        self.tcp_ends: dict[int, list] = {}
        self.unlisted_drops = 0
        self.line_hits: Counter[tuple[str, int]] = Counter()
        self.line_drops: dict[tuple[str, int], Counter[str]] = {}
        self.line_text: dict[tuple[str, int], str] = {}
        self.reason_origins: dict[str, Counter[tuple]] = {}
        self.reason_hints: dict[str, list[str]] = {}
        self.reason_first: dict[str, int] = {}
        self.pending_xlates: dict[tuple, dict] = {}
        self.pending_ct: dict[int, list[dict]] = {}
        self.linux = False
        self.other_packets = 0
        self.first = self.summary.get("first_time")
        self.last = self.summary.get("last_time")
        self.event_count = 0

    # ---- events --------------------------------------------------------------------------------

    def _index(self, conn: Conn) -> None:
        for key, side, d in conn.flow_keys():
            self.by_key.setdefault(key, []).append((conn, side, d))

    def _count_origin(self, o: dict | None, drop_reason: str | None = None) -> None:
        if o is None:
            return
        k = (o["file"], o["line"])
        self.line_text.setdefault(k, o["text"])
        if drop_reason is None:
            self.line_hits[k] += 1
        else:
            self.line_drops.setdefault(k, Counter())[drop_reason] += 1

    def events(self) -> None:
        sid = -1
        for rec in _read_events(self.outdir):
            self.event_count += 1
            kind = rec.get("event")
            t = rec.get("time", 0.0)
            if self.first is None or t < self.first:
                self.first = t
            if kind == "ConnBuilt":
                conn = Conn(
                    rec["conn_id"], rec["protocol"], rec["direction"], _ep(rec["initiator"]),
                    _ep(rec["responder"]), t,
                )  # fmt: skip
                conn.origin = _origin(rec.get("origin"))
                self._count_origin(conn.origin)
                conn.master = rec.get("master")
                if conn.master in self.conns:
                    self.conns[conn.master].children.append(conn.id)
                ini = conn.ini
                for ep in (ini, conn.res):
                    x = self.pending_xlates.pop((ep["interface"], ep["address"], ep["port"]), None)
                    if x is not None:
                        conn.xlates.append(x)
                        conn.records.append(x)
                self.conns[conn.id] = conn
                self.order.append(conn)
                self._index(conn)
                conn.records.append(rec)
                conn.records += self.pending_ct.pop(conn.id, [])
            elif kind == "ConnTeardown":
                conn = self.conns.get(rec["conn_id"])
                if conn is not None:
                    conn.t1 = t
                    conn.teardown = rec.get("reason") or "torn down"
                    conn.duration = rec.get("duration")
                    conn.bytes = rec.get("bytes", 0)
                    conn.records.append(rec)
            elif kind == "XlateBuilt":
                self._count_origin(_origin(rec.get("origin")))
                self.pending_xlates[(rec["real_interface"], rec["real_address"], rec["real_port"])] = rec
            elif kind == "Drop":
                sid = self._drop(rec, t, sid)
            elif kind in ("FtpTransfer", "FtpBounce"):
                conn = self.conns.get(rec.get("conn_id"))
                if conn is not None:
                    conn.records.append(rec)
            elif kind == "CtEvent":
                # An iptables ruleset's conntrack -E lines, on their connection's ladder.
                self.linux = True
                conn = self.conns.get(rec.get("conn_id"))
                if conn is not None and len(conn.records) < 200:
                    conn.records.append(rec)
                elif conn is None:
                    self.pending_ct.setdefault(rec.get("conn_id"), []).append(rec)
            elif kind == "NfLog":
                self.linux = True
            if self.last is None or t > self.last:
                self.last = t

    def _drop(self, rec: dict, t: float, sid: int) -> int:
        reason = rec.get("reason", "")
        idx = len(self.drop_conn)
        o = _origin(rec.get("origin"))
        self._count_origin(o, reason)
        self.reason_origins.setdefault(reason, Counter())[(o["line"], o["text"]) if o else None] += 1
        hints = self.reason_hints.setdefault(reason, [])
        if rec.get("hint") and rec["hint"] not in hints and len(hints) < 5:
            hints.append(rec["hint"])
        self.reason_first.setdefault(reason, idx)
        proto = rec.get("protocol", 0)
        src, dst = rec.get("src", ""), rec.get("dst", "")
        key = (
            _key(rec["interface"], proto, _pack(src), rec.get("sport", 0), _pack(dst), rec.get("dport", 0))
            if src
            else None
        )
        conn: Conn | None = None
        detail = rec.get("detail") or {}
        if isinstance(detail, dict) and detail.get("conn") in self.conns:
            conn = self.conns[detail["conn"]]
        elif key is not None:
            conn = self._lookup(key, t)[0]
        if conn is None and src:
            flow = (rec["interface"], proto, src, rec.get("sport", 0), dst, rec.get("dport", 0))
            conn = self.denied.get(flow)
            if conn is None and len(self.denied) < MAX_DENIED:
                sport, dport = rec.get("sport", 0), rec.get("dport", 0)
                egress = rec.get("egress") or "?"
                conn = Conn(
                    sid, proto, "denied",
                    {"interface": rec["interface"], "address": src, "port": sport, "mapped_address": src,
                     "mapped_port": sport},
                    {"interface": egress, "address": dst, "port": dport, "mapped_address": dst,
                     "mapped_port": dport},
                    t,
                )  # fmt: skip
                conn.denied = True
                sid -= 1
                self.denied[flow] = conn
                self.conns[conn.id] = conn
                self.order.append(conn)
                self._index(conn)
        self.drop_conn.append(conn)
        self.drop_matched.append(False)
        self.drop_reason.append(reason)
        if idx < MAX_DROPS:
            d = {
                "t": t,
                "reason": reason,
                "description": _description(reason),
                "asa_id": rec.get("asa_id"),
                "interface": rec["interface"],
                "egress": rec.get("egress"),
                "protocol": proto,
                "src": src,
                "sport": rec.get("sport", 0),
                "dst": dst,
                "dport": rec.get("dport", 0),
                "flags": rec.get("tcp_flags"),
                "message": rec.get("message", ""),
                "hint": rec.get("hint"),
                "origin": o,
                "conn": conn.id if conn is not None else None,
            }
            flow = d
            if conn is not None and not conn.denied:
                # The class of a fix matches the connection by its real addresses, from its initiator.
                i, r = conn.ini, conn.res
                flow = {**d, "src": i["address"], "dst": r["address"], "interface": i["interface"]}
            d["fixes"] = fixes_for(flow)
            self.drops.append(d)
        if conn is not None:
            conn.drops[reason] += 1
            conn.last = max(conn.last, t)
            if len(conn.drop_ids) < MAX_DROP_ROWS:
                conn.drop_ids.append(idx)
            if len(conn.records) < 200:
                conn.records.append(rec)
        if key is not None:
            self.drops_at.setdefault((round(t * 1e6), *key), []).append(idx)
        return sid

    def _lookup(self, key: tuple, t: float) -> tuple[Conn | None, int, int]:
        """The connection a packet with ``key`` at ``t`` belongs to (the latest built by then), its side
        and direction."""
        cands = self.by_key.get(key)
        if not cands:
            return None, 0, 0
        if len(cands) == 1:
            return cands[0]
        for cand in reversed(cands):
            if cand[0].t0 <= t + 1e-6:
                return cand
        return cands[0]

    # ---- packets -------------------------------------------------------------------------------

    def plan(self) -> None:
        """Which connections are listed and detailed, and how many packet rows each may keep."""
        listed = self.order[:MAX_CONNS]
        self.unlisted_conns = len(self.order) - len(listed)
        self.listed = listed
        ranked = sorted(listed, key=lambda c: (not c.drops, c.t0))
        detailed = ranked[:DETAIL_CONNS]
        per = max(MIN_ROWS, ROW_BUDGET // max(1, len(detailed)))
        for c in detailed:
            c.detail = True
            c.cap_head = per * 3 // 4
            c.tail = deque(maxlen=per - c.cap_head)

    def _streams(self) -> Iterator[tuple[int, int, int, int, bytes]]:
        """Every packet arrived and left, by time (microseconds), arrivals first at equal times, each
        file in its own order: (time, 0 arrived / 1 left, interface index, sequence, packet)."""
        outputs = self.summary.get("outputs") or {}
        files = [(self.outdir / "arrived" / f, i, 0) for i, f in (outputs.get("arrived") or {}).items()]
        files += [(self.outdir / f, i, 1) for i, f in (outputs.get("captures") or {}).items()]
        self.ifaces = [iface for _, iface, _ in files]

        def tagged(path: Path, order: int, n: int) -> Iterator[tuple[int, int, int, int, bytes]]:
            for k, (t, data) in enumerate(_frames(path)):
                yield t, order, n, k, data

        gens = [tagged(path, order, n) for n, (path, _iface, order) in enumerate(files)]
        return heapq.merge(*gens)

    def packets(self) -> None:
        lookup = self._lookup
        drops_at = self.drops_at
        fields = packet_fields
        ifaces = None
        for t_us, order, n, _k, data in self._streams():
            if ifaces is None:
                ifaces = self.ifaces
            f = fields(data)
            if f is None:
                self.other_packets += 1
                continue
            proto, src, sport, dst, dport, flags, seq, ack, plen = f
            if proto not in (_TCP, _UDP):
                sport = dport = 0
            key = (ifaces[n], proto, src, sport, dst, dport)
            ts = t_us / 1e6
            kind = LEFT if order else ARRIVED
            extra = -1
            if not order and drops_at:
                waiting = drops_at.get((t_us, *key))
                if waiting:
                    extra = waiting.pop(0)
                    kind = DROPPED
                    self.drop_matched[extra] = True
            conn, side, d = lookup(key, ts)
            if kind == DROPPED:
                owner = self.drop_conn[extra]
                if owner is not conn:
                    conn, side, d = owner, 0, 0
            if conn is None:
                self.other_packets += 1
                continue
            conn.counts[side][kind if kind < 2 else 2] += 1
            if ts > conn.last:
                conn.last = ts
            if proto == _TCP and not conn.denied and kind != ARRIVED:
                self._follow(conn, kind, d, flags, seq, ack, plen, extra, ts)
            if conn.detail:
                conn.add_row([t_us, side, kind, d, flags, seq, ack, plen, extra])

    def _follow(self, conn: Conn, kind: int, d: int, flags: int, seq: int, ack: int, plen: int, idx: int,
                ts: float) -> None:  # fmt: skip
        """What the firewall forwarded and dropped of a TCP connection, for ``consequences``: a dropped
        segment from ``d`` whose ACK is beyond the end the firewall forwarded from the other side, after
        it dropped data of that side, is that drop's consequence (the ACK and the forwarded segments
        are in the same coordinates: those of the side the other direction leaves by)."""
        st = self.tcp_ends.get(conn.id)
        if st is None:
            st = self.tcp_ends[conn.id] = [None, None, None, None]
        if kind == LEFT:
            end = (seq + plen + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF  # SYN and FIN count one
            e = st[d]
            if e is None or 0 < ((end - e) & 0xFFFFFFFF) < 0x80000000:
                st[d] = end
            return
        other = 1 - d
        lost, e = st[2 + other], st[other]
        if (
            flags & 0x10
            and lost is not None
            and e is not None
            and 0 < ((ack - e) & 0xFFFFFFFF) < 0x80000000
            and self._about_the_ack(idx)
        ):
            self.consequence[idx] = self.consequence.get(lost[0], lost[0])
        if (plen or flags & 0x01) and st[2 + d] is None:
            st[2 + d] = (self.consequence.get(idx, idx), ts)

    def _about_the_ack(self, idx: int) -> bool:
        """Whether drop ``idx`` is for its ACK: the ASA's invalid ACK, conntrack's ACK over the bound."""
        reason = self.drop_reason[idx]
        if reason == "tcp-invalid-ack":
            return True
        if reason != "ctstate-invalid" or idx >= len(self.drops):
            return False
        return "ACK" in (self.drops[idx]["message"] or "")

    def consequences(self) -> None:
        """Mark each consequence (module docstring): its drop refers to its cause and offers no fix. An
        out-of-order segment that timed out waiting on a connection whose data from the same side the
        firewall had dropped before is one too."""
        for idx, conn in enumerate(self.drop_conn):
            if conn is None or idx in self.consequence or self.drop_reason[idx] != "tcp-buffer-timeout":
                continue
            st = self.tcp_ends.get(conn.id)
            if st is None or idx >= len(self.drops):
                continue
            d = 0 if self.drops[idx]["interface"] == conn.ini["interface"] else 1
            lost = st[2 + d]
            if lost is not None and lost[1] <= self.drops[idx]["t"]:
                self.consequence[idx] = lost[0]
        for idx, cause in self.consequence.items():
            if idx >= len(self.drops):
                continue
            d = self.drops[idx]
            c = self.drops[cause] if cause < len(self.drops) else None
            d["consequence_of"] = cause
            d["fixes"] = []
            d["hint"] = None
            what = (
                "it waited for data the firewall dropped"
                if d["reason"] == "tcp-buffer-timeout"
                else "it acknowledges data the firewall dropped and never forwarded"
            )
            d["consequence"] = (
                f"a consequence of the earlier {c['reason'] if c else 'drop'} drop on this connection: "
                f"{what}; no fix of its own (fix the cause)"
            )

    def held_drops(self) -> None:
        """Drops with no arriving packet matched (timers, reassembly, a packet the parser could not
        read): a mark on their connection's ladder at the drop's time."""
        for idx, conn in enumerate(self.drop_conn):
            if conn is None or self.drop_matched[idx] or not conn.detail:
                continue
            d = self.drops[idx] if idx < len(self.drops) else None
            if d is None:
                continue
            side = 0 if conn.denied or d["interface"] == conn.ini["interface"] else 1
            conn.add_row([round(d["t"] * 1e6), side, DROP_ONLY, 0, d["flags"] or 0, 0, 0, 0, idx])

    # ---- output --------------------------------------------------------------------------------

    def syslog(self, conn: Conn) -> list[list]:
        if self.linux:
            from ..logfmt.linux import format_event
        else:
            from ..logfmt.asa import format_event
        out = []
        for rec in conn.records:
            ev = event_from_record(rec)
            if ev is None:
                continue
            for line in format_event(ev, hostname=None, timestamp=False):
                out.append([round((rec["time"] - conn.t0) * 1e6), line])
        return out

    def model(self) -> dict[str, Any]:
        t_first = self.first if self.first is not None else 0.0
        t_last = self.last if self.last is not None else t_first
        conns = []
        rows_total = 0
        for c in self.listed:
            end = c.t1 if c.t1 is not None else max(c.last, c.t0)
            item: dict[str, Any] = {
                "id": c.id,
                "p": c.proto,
                "dir": c.direction,
                "i": c.ini,
                "r": c.res,
                "t0": round(c.t0 - t_first, 6),
                "t1": round(end - t_first, 6),
                "v": c.verdict,
                "end": c.teardown,
                "dur": c.duration,
                "b": c.bytes,
                "n": c.counts,
                "drops": dict(c.drops),
            }
            if c.master is not None:
                item["master"] = c.master
            if c.children:
                item["children"] = c.children
            if c.origin:
                item["origin"] = c.origin
            if c.detail:
                rows = c.rows()
                rows_total += len(rows)
                t0 = round(c.t0 * 1e6)
                for r in rows:
                    r[0] -= t0
                item["rows"] = rows
                item["omitted"] = c.rows_seen - len(rows)
                item["log"] = self.syslog(c)
                item["story"] = narrate(c, self)
            conns.append(item)
        return {
            "schema": 1,
            "title": "statewall replay report: "
            + (
                ", ".join(Path(c.get("path", "?")).name for c in self.summary.get("captures", []))
                or "no capture"
            ),
            "summary": self.summary,
            "first_time": t_first,
            "last_time": t_last,
            "span": max(0.0, t_last - t_first),
            "conns": conns,
            "unlisted_conns": self.unlisted_conns,
            "detail_limit": DETAIL_CONNS,
            "rows": rows_total,
            "other_packets": self.other_packets,
            "drops": self.drops,
            "drops_total": len(self.drop_conn),
            "reasons": self.reasons(),
            "config": self.config(),
            "syslog_flavour": "linux" if self.linux else "asa",
        }

    def reasons(self) -> list[dict[str, Any]]:
        """Drops by reason: the count, the configuration lines responsible, the hints and one example.
        ``consequences``: how many of them are consequences of earlier drops; a reason whose drops all
        are has no hints, ``under`` names its cause's reason and it follows that reason in the list."""
        counts: Counter[str] = Counter(self.summary.get("drops_by_reason") or {})
        for reason, origins in self.reason_origins.items():
            counts[reason] = max(counts[reason], sum(origins.values()))
        cons: Counter[str] = Counter()
        causes: dict[str, Counter[str]] = {}
        for idx, cause in self.consequence.items():
            reason = self.drop_reason[idx]
            cons[reason] += 1
            causes.setdefault(reason, Counter())[self.drop_reason[cause]] += 1
        out = []
        for reason, count in counts.most_common():
            origins = self.reason_origins.get(reason, Counter())
            only = bool(cons[reason]) and cons[reason] >= count
            first = self.reason_first.get(reason)
            if not only:
                # The example is the first drop of the reason that is not a consequence.
                first = next(
                    (i for i, r in enumerate(self.drop_reason) if r == reason and i not in self.consequence),
                    first,
                )
            example = self.drops[first] if first is not None and first < len(self.drops) else None
            entry = {
                "reason": reason,
                "description": _description(reason),
                "count": count,
                "lines": [{"line": k[0], "text": k[1], "count": n} for k, n in origins.most_common() if k],
                "unattributed": origins.get(None, 0),
                "hints": [] if only else self.reason_hints.get(reason, []),
                "example": example,
                "consequences": cons[reason],
            }
            if cons[reason]:
                entry["caused_by"] = sorted(causes[reason])
            if only:
                entry["under"] = causes[reason].most_common(1)[0][0]
            out.append(entry)
        # Each reason made only of consequences goes right after its cause's.
        main = [e for e in out if "under" not in e or e["under"] not in counts]
        for e in [e for e in out if e not in main]:
            at = next(i for i, m in enumerate(main) if m["reason"] == e["under"])
            while at + 1 < len(main) and main[at + 1].get("under") == e["under"]:
                at += 1
            main.insert(at + 1, e)
        return main

    def config(self) -> dict[str, Any]:
        text = self.config_text
        name = self.summary.get("config") or ""
        if text is None and name and os.path.isfile(name):
            try:
                text = Path(name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = None
        hits_by_line: dict[int, int] = {}
        drops_by_line: dict[int, dict[str, int]] = {}
        known: dict[int, str] = {}
        for (_f, line), n in self.line_hits.items():
            hits_by_line[line] = hits_by_line.get(line, 0) + n
        for (_f, line), c in self.line_drops.items():
            d = drops_by_line.setdefault(line, {})
            for r, n in c.items():
                d[r] = d.get(r, 0) + n
        for (_f, line), t in self.line_text.items():
            known[line] = t
        lines = []
        if text is not None:
            for i, t in enumerate(text.splitlines(), 1):
                lines.append([i, t, hits_by_line.get(i, 0), drops_by_line.get(i, {})])
        else:
            for i in sorted(known):
                lines.append([i, known[i], hits_by_line.get(i, 0), drops_by_line.get(i, {})])
        return {"name": name, "complete": text is not None, "lines": lines}


def _description(keyword: str) -> str:
    try:
        return DropReason.from_keyword(keyword).description
    except KeyError:
        return keyword


def build_model(outdir: str | os.PathLike[str], config_text: str | None = None) -> dict[str, Any]:
    """The report's data for a replay's output directory (see the module docstring)."""
    b = _Builder(Path(outdir), config_text)
    b.events()
    b.plan()
    b.packets()
    b.consequences()
    b.held_drops()
    return b.model()
