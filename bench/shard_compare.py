"""One process's replay outputs against a sharded replay's, as docs/scale.md says they compare.

Equal: the summary (but its ``shards`` part and the bytes out of each interface), every event
(events.jsonl), every packet out of every interface, into every interface (arrived/) and into
asp-drop.pcap (byte for byte, with its timestamp and its pcapng comment: connection number, verdict,
drop reason), each compared as the list of them in time order; the log lines as a multiset; and a
report.html is there. Allowed to differ, and mapped back before comparing: the PAT port a host got (a
shard allocates from its own port blocks); with it, on an FTP control connection (port 21), the PORT or
EPRT text that names a mapped data port and what follows from its length (the packet's lengths,
sequence numbers and checksums, the connection's byte count in 302014); the sequence numbers of a
TCP connection opened towards a mapped port (randomized with a key that includes that port). Records
at the same timestamp may come in another order
(one timer sweep's outputs from different shards are merged by shard). Checked on the way: no two
translations of the sharded run hold the same mapped address and port at the same time.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections import Counter
from pathlib import Path

from statewall.packet import addr_to_str, decode
from statewall.pcapio import read_comments, read_packets

_ICMP = (1, 58)


def _events(path: Path) -> list[dict]:
    """The events with their own fields; the Elastic Common Schema copies (dotted names, ``@timestamp``:
    derived from the own fields, a mapped port among them) left out."""
    out = []
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        out.append({k: v for k, v in ev.items() if "." not in k and not k.startswith("@")})
    return out


class PortMap:
    """The sharded run's PAT ports -> one process's, by the translation (real end, time built).

    An ASA's translations are its XlateBuilt/XlateTeardown events, keyed by the mapped address and port.
    An iptables ruleset's (SNAT, MASQUERADE: no xlate events) are its connections' mapped source ends,
    keyed also by the peer (address and port; 0 for ICMP): Linux's mappings are unique per tuple, so
    two connections to different peers may hold one mapped port at once."""

    def __init__(self, one: list[dict], sharded: list[dict]) -> None:
        self.nf = not any(ev["event"] == "XlateBuilt" for ev in one + sharded)
        ports: dict[tuple, int] = {}
        for ev in one:
            for key, mapped, _slot in self._translations(ev):
                ports[key] = mapped
        self.pat = {slot[1] for ev in one + sharded for _k, _m, slot in self._translations(ev)}
        self.slots: dict[tuple, list[tuple[float, int]]] = {}
        live: dict[tuple, tuple] = {}
        built = [ev for ev in sharded if ev["event"] in self._kinds()]
        for ev in sorted(built, key=lambda e: (e["time"], e["event"] in ("XlateBuilt", "ConnBuilt"))):
            if ev["event"] in ("XlateTeardown", "ConnTeardown"):
                for _key, _mapped, slot in self._translations(ev, teardown=True):
                    live.pop(slot, None)
                continue
            for key, _mapped, slot in self._translations(ev):
                assert slot not in live, f"two translations hold {slot} at once: {live[slot]} and {key}"
                live[slot] = key
                assert key in ports, f"translation {key} is not one process's"
                self.slots.setdefault(slot, []).append((ev["time"], ports[key]))

    def _kinds(self) -> tuple[str, str]:
        return ("ConnBuilt", "ConnTeardown") if self.nf else ("XlateBuilt", "XlateTeardown")

    def _translations(self, ev: dict, teardown: bool = False) -> list[tuple]:
        """(key: protocol, real address, real port, time; mapped port; slot) of a translation event."""
        kind = ev["event"]
        if not self.nf:
            if kind not in ("XlateBuilt", "XlateTeardown") or (kind == "XlateTeardown") != teardown:
                return []
            key = (ev["protocol"], ev["real_address"], ev["real_port"], ev["time"])
            return [(key, ev["mapped_port"], (ev["protocol"], ev["mapped_address"], ev["mapped_port"]))]
        if kind not in ("ConnBuilt", "ConnTeardown") or (kind == "ConnTeardown") != teardown:
            return []
        i, r = ev["initiator"], ev["responder"]
        if i["mapped_address"] == i["address"] and i["mapped_port"] == i["port"]:
            return []
        proto = ev["protocol"]
        peer = (r["address"], 0 if proto in _ICMP else r["port"])
        key = (proto, i["address"], i["port"], ev["time"])
        return [(key, i["mapped_port"], (proto, i["mapped_address"], i["mapped_port"], *peer))]

    def port(self, proto: int, maddr: str, port: int, when: float, peer: tuple = ()) -> int:
        if self.nf:
            peer = (peer[0], 0 if proto in _ICMP else peer[1]) if peer else ("", 0)
            history = self.slots.get((proto, maddr, port, *peer))
        else:
            history = self.slots.get((proto, maddr, port))
        if not history:
            return port
        i = bisect_right([t for t, _ in history], when) - 1
        return history[max(i, 0)][1]


def _normalize_event(ev: dict, pm: PortMap) -> dict:
    proto = ev.get("protocol", 6)  # 303002 (FtpTransfer) names the TCP control connection
    if ev["event"] in ("XlateBuilt", "XlateTeardown"):
        ev["mapped_port"] = pm.port(proto, ev["mapped_address"], ev["mapped_port"], ev["time"])
    for end, other in (("initiator", "responder"), ("responder", "initiator")):
        e, o = ev.get(end), ev.get(other)
        if isinstance(e, dict) and e.get("mapped_address") in pm.pat and "mapped_port" in e:
            peer = (o["address"], o["port"]) if isinstance(o, dict) else ()
            old = e["mapped_port"]
            e["mapped_port"] = pm.port(proto, e["mapped_address"], old, ev["time"], peer)
            if pm.nf and proto in _ICMP and isinstance(o, dict):
                # Linux's ICMP connection names the echo's identifier as both ends' "port": the
                # responder's is the mapped one.
                for k in ("port", "mapped_port"):
                    if o.get(k) == old:
                        o[k] = e["mapped_port"]
    if ev["event"] == "CtEvent" and ev.get("reply") and ev["reply"][1] in pm.pat:
        # conntrack's reply tuple (server, mapped address, server port, mapped port).
        rep = ev["reply"]
        old = rep[3]
        rep[3] = pm.port(proto, rep[1], old, ev["time"], (rep[0], rep[2]))
        if proto in _ICMP and rep[2] == old:  # an echo's identifier is both "ports"
            rep[2] = rep[3]
    return ev


def _normalize_packet(data: bytes, ts: float, pm: PortMap) -> bytes:
    buf = bytearray(data)
    try:
        pkt = decode(buf)
    except Exception:
        return data
    if pkt.is_fragment:
        return data
    src = addr_to_str(pkt.version, pkt.src)
    dst = addr_to_str(pkt.version, pkt.dst)
    if src in pm.pat:  # leaving by the mapped side
        peer = (dst, pkt.dport)
        if pkt.proto in _ICMP:
            if pkt.icmp_type in (8, 128):  # an echo request leaves with the mapped identifier
                pkt.set_icmp_id(pm.port(pkt.proto, src, pkt.sport, ts, peer))
        elif pkt.sport:
            pkt.set_sport(pm.port(pkt.proto, src, pkt.sport, ts, peer))
    elif dst in pm.pat:  # arriving at the mapped side (arrived/, asp-drop.pcap)
        peer = (src, pkt.sport)
        if pkt.proto in _ICMP:
            if pkt.icmp_type in (0, 129):  # an echo reply comes back to the mapped identifier
                pkt.set_icmp_id(pm.port(pkt.proto, dst, pkt.dport, ts, peer))
        elif pkt.dport:
            pkt.set_dport(pm.port(pkt.proto, dst, pkt.dport, ts, peer))
    else:
        return data
    return bytes(buf)


# An FTP PORT/EPRT command through PAT names the mapped data port, so its text (and its length, the
# sequence numbers after it, the connection's byte count) differs with the port a shard chose.
_BYTES = re.compile(r"bytes \d+")
_PORT_TEXT = re.compile(rb"^(PORT |EPRT )[^\r\n]*", re.M)


def _opened_to_mapped(events: list[dict], pat: set[str]) -> set[tuple]:
    """(src, sport, dst, dport) both ways, real and mapped, of the TCP connections opened towards a PAT
    address's port (an FTP data connection the server opens to the client's PORT): their randomized
    initial sequence number is keyed by the ports they arrived with, the mapped one included."""
    out: set[tuple] = set()
    for ev in events:
        if ev["event"] != "ConnBuilt" or ev["protocol"] != 6:
            continue
        i, r = ev["initiator"], ev["responder"]
        if r["mapped_address"] in pat and r["mapped_address"] != r["address"]:
            for a, b in (
                ((i["address"], i["port"]), (r["address"], r["port"])),
                ((i["address"], i["port"]), (r["mapped_address"], r["mapped_port"])),
            ):
                out.add((*a, *b))
                out.add((*b, *a))
    return out


def _canonical(data: bytes, opened: set[tuple]) -> bytes:
    """A packet of an FTP control connection (port 21) without what the PORT text changes: lengths,
    sequence and acknowledgement numbers, options, checksums; the PORT/EPRT argument blanked. A packet
    of a connection opened towards a mapped port likewise without its sequence numbers. Others as
    they are."""
    try:
        pkt = decode(bytearray(data))
    except Exception:
        return data
    if pkt.proto != 6 or not pkt.has_l4:
        return data
    ends = (addr_to_str(pkt.version, pkt.src), pkt.sport, addr_to_str(pkt.version, pkt.dst), pkt.dport)
    if 21 not in (pkt.sport, pkt.dport) and ends not in opened:
        return data
    doff = (data[pkt.l4off + 12] >> 4) * 4
    payload = _PORT_TEXT.sub(rb"\1*", data[pkt.l4off + doff : pkt.end])
    flags = data[pkt.l4off + 13]
    head = f"seq-free {pkt.version} {pkt.src} {pkt.sport} {pkt.dst} {pkt.dport} {flags} ".encode()
    return head + payload


def _ftp_bytes(ev: dict) -> dict:
    if ev["event"] == "ConnTeardown" and 21 in (ev["initiator"]["port"], ev["responder"]["port"]):
        ev["bytes"] = None
    return ev


def compare(one: Path, sharded: Path) -> dict:
    """Assert that the two output directories agree as the module docstring says; returns counts."""
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((sharded / "summary.json").read_text())
    s2.pop("shards")
    # Bytes out of an interface follow an FTP PORT/EPRT text that names a mapped port (its length).
    for s in (s1, s2):
        for io in s.get("interfaces", {}).values():
            io.pop("bytes_out", None)
    assert s1 == s2
    assert (sharded / "report.html").stat().st_size > 0

    ev1, ev2 = _events(one / "events.jsonl"), _events(sharded / "events.jsonl")
    pm = PortMap(ev1, ev2)
    moved = sum(1 for ev in ev2 for key, mapped, _slot in pm._translations(ev) if mapped != key[2])
    norm2 = [_ftp_bytes(_normalize_event(ev, pm)) for ev in ev2]
    ev1 = [_ftp_bytes(ev) for ev in ev1]

    def by_time(evs: list[dict]) -> list[str]:
        return [json.dumps(e, sort_keys=True) for e in sorted(evs, key=lambda e: (e["time"], json.dumps(e)))]

    assert by_time(ev1) == by_time(norm2)

    packets = 0
    opened = _opened_to_mapped(ev1, pm.pat)
    # Every capture: what left each interface, what arrived at it, what was dropped (with the
    # comments: the connection's number and the verdict or drop reason).
    files = [*s1["outputs"]["captures"].values(), s1["outputs"]["asp_drop"]]
    files += [f"arrived/{name}" for name in s1["outputs"]["arrived"].values()]
    for name in files:
        commented = not name.startswith("arrived/")
        read = read_comments if commented else (lambda path: [(ts, d, None) for ts, d in read_packets(path)])
        p1 = sorted((ts, _canonical(d, opened), c or "") for ts, d, c in read(one / name))
        p2 = sorted(
            (ts, _canonical(_normalize_packet(d, ts, pm), opened), c or "")
            for ts, d, c in read(sharded / name)
        )
        assert len(p1) == len(p2), name
        for a, b in zip(p1, p2):
            assert a == b, f"{name}: {a[0]} {a[1].hex()} {a[2]} != {b[1].hex()} {b[2]}"
        if name in s1["outputs"]["captures"].values():
            packets += len(p1)

    # Log lines: equal as a multiset once a PAT address's ports are blanked (events.jsonl above holds
    # the same facts with the ports compared exactly).
    pat = "|".join(re.escape(a) for a in sorted(pm.pat)) or "(?!)"
    blank = re.compile(rf"({pat})/\d+")
    # conntrack -E's reply tuple (iptables): the mapped port or echo identifier after the mapped address.
    blank_ct = re.compile(rf"(dst=(?:{pat}) (?:sport=\d+ dport=|type=\d+ code=\d+ id=))\d+")

    def lines(path: Path) -> Counter[str]:
        out: Counter[str] = Counter()
        for line in path.read_text().splitlines():
            line = blank_ct.sub(r"\1*", blank.sub(r"\1/*", line))
            if "-302014:" in line and "/21 " in line:
                line = _BYTES.sub("bytes *", line)  # an FTP control connection's count (see above)
            out[line] += 1
        return out

    assert lines(one / "log.txt") == lines(sharded / "log.txt")
    translations = sum(len(pm._translations(ev)) for ev in ev1)
    return {"events": len(ev1), "packets": packets, "translations": translations, "pat_ports_moved": moved}
