"""One process's replay outputs against a sharded replay's, as docs/scale.md says they compare.

Equal: the summary (but its ``shards`` part, the bytes out of each interface and whether a report was
written), every event (events.jsonl), every packet out of every interface, into every interface
(arrived/) and into asp-drop.pcap (byte for byte, with its timestamp and its pcapng comment:
connection number, verdict, drop reason), each compared as the list of them in time order; the log
lines as a multiset; and the report.html the run says it wrote is there. Allowed to differ, and
mapped back before comparing: the PAT port a host got (a shard allocates from its own port blocks);
with it, on an FTP control connection (port 21), the PORT or EPRT text that names a mapped data port
and what follows from its length (the packet's lengths, sequence numbers and checksums, the
connection's byte count in 302014); the sequence numbers of a TCP connection opened towards a mapped
port (randomized with a key that includes that port). Records at the same timestamp may come in
another order (one timer sweep's outputs from different shards are merged by shard). Checked on the
way: no two translations of the sharded run hold the same mapped address and port at the same time,
and each is one of one process's translations (real address and port, time) with another port; the
sharded run's ports per host are returned for the caller to check against its shard's blocks.

``Reference(one)`` reads one process's outputs once (digests of each sorted list) for comparing many
sharded runs with it.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from statewall.packet import addr_to_str, decode
from statewall.pcapio import read_comments, read_packets

_ICMP = (1, 58)
# Every record of events.jsonl starts with these, then the event's own fields; the Elastic Common
# Schema copies follow from ``"event.kind"`` on (statewall.logfmt.jsonl.event_record).
_HEAD = '{"@timestamp":"'
_ECS = ',"event.kind":"'


def _own_text(line: str) -> str:
    """An events.jsonl record with its own fields only, as JSON text: the Elastic Common Schema copies
    (dotted names, ``@timestamp``: derived from the own fields, a mapped port among them) left out. A
    record with the layout event_record writes is cut as text (a quote within a string is escaped, so
    these keys cannot be met inside a value); another is parsed and written again."""
    if line.startswith(_HEAD):
        start = line.find(',"event":"')
        cut = line.find(_ECS)
        if 0 < start < cut:
            return "{" + line[start + 1 : cut] + "}"
    ev = json.loads(line)
    return _dumps({k: v for k, v in ev.items() if "." not in k and not k.startswith("@")})


def _own_fields(line: str) -> dict:
    return json.loads(_own_text(line))


def _events(path: Path) -> list[dict]:
    """The events with their own fields (``_own_text``)."""
    with open(path, encoding="utf-8") as f:
        return [_own_fields(line) for line in f]


# Both runs write an event type's fields in one order, and mapping a port back changes values in place:
# an event's text as written and as parsed and written again are the same.
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_MAPPED = re.compile(r'"mapped_address":"([^"]*)","mapped_port":(\d+)')
_PROTOCOL = re.compile(r'"protocol":(\d+)')
_TIME = re.compile(r'"time":([^,}]+)')


def _event_key(text: str, pm: PortMap | None) -> str:
    """An event (its own fields' text) as compared: with ``pm``, its PAT ports mapped back to one
    process's (``_normalize_event``); an FTP control connection's teardown without its byte count
    (``_ftp_bytes``). An ASA's event is mapped on its text: each ``mapped_address``/``mapped_port``
    pair of a PAT address (a translation's, an end's of a connection or FTP transfer) gets the port
    that ``PortMap`` gives for the event's protocol and time; Linux's events, and the FTP teardowns,
    are parsed, mapped and written again."""
    ftp = text.startswith('{"event":"ConnTeardown"') and '"port":21,' in text
    if pm is None:
        return _dumps(_ftp_bytes(json.loads(text))) if ftp else text
    if pm.nf or ftp:
        return _dumps(_ftp_bytes(_normalize_event(json.loads(text), pm)))
    matches = [m for m in _MAPPED.finditer(text) if m.group(1) in pm.pat]
    if not matches:
        return text
    proto = _PROTOCOL.search(text)
    protocol = int(proto.group(1)) if proto else 6  # 303002 (FtpTransfer) names the TCP connection
    when = float(_TIME.search(text).group(1))
    out, at = [], 0
    for m in matches:
        out.append(text[at : m.start(2)])
        out.append(str(pm.port(protocol, m.group(1), int(m.group(2)), when)))
        at = m.end(2)
    out.append(text[at:])
    return "".join(out)


def _event_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [_own_text(line) for line in f]


def _translations(ev: dict, nf: bool, teardown: bool = False) -> list[tuple]:
    """(key: protocol, real address, real port, time; mapped port; slot) of a translation event.

    An ASA's translations are its XlateBuilt/XlateTeardown events, keyed by the mapped address and port.
    An iptables ruleset's (SNAT, MASQUERADE: no xlate events) are its connections' mapped source ends,
    keyed also by the peer (address and port; 0 for ICMP): Linux's mappings are unique per tuple, so
    two connections to different peers may hold one mapped port at once."""
    kind = ev["event"]
    if not nf:
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


class PortMap:
    """The sharded run's PAT ports -> one process's, by the translation (real end, time built).

    ``ports``: one process's mapped port of each translation (``_translations``'s key); ``pat``: the
    addresses that translations map to. Checked on the way: no two translations of the sharded run
    hold one slot (mapped address and port, with the peer for Linux) at once, and each is one of one
    process's."""

    def __init__(self, ports: dict[tuple, int], pat: set[str], nf: bool, sharded: list[dict]) -> None:
        self.nf = nf
        self.pat = pat
        self.slots: dict[tuple, tuple[list[float], list[int]]] = {}
        # The sharded run's mapped ports by real address (what the caller checks against the blocks).
        self.by_host: dict[str, set[int]] = {}
        live: dict[tuple, tuple] = {}
        kinds = ("ConnBuilt", "ConnTeardown") if nf else ("XlateBuilt", "XlateTeardown")
        built = [ev for ev in sharded if ev["event"] in kinds]
        for ev in sorted(built, key=lambda e: (e["time"], e["event"] in ("XlateBuilt", "ConnBuilt"))):
            if ev["event"] in ("XlateTeardown", "ConnTeardown"):
                for _key, _mapped, slot in _translations(ev, nf, teardown=True):
                    live.pop(slot, None)
                continue
            for key, mapped, slot in _translations(ev, nf):
                assert slot not in live, f"two translations hold {slot} at once: {live[slot]} and {key}"
                assert slot[1] in pat, (
                    f"translation {key} maps to {slot[1]}, an address one process never used"
                )
                live[slot] = key
                assert key in ports, f"translation {key} is not one process's"
                times, olds = self.slots.setdefault(slot, ([], []))
                times.append(ev["time"])
                olds.append(ports[key])
                self.by_host.setdefault(key[1], set()).add(mapped)

    def port(self, proto: int, maddr: str, port: int, when: float, peer: tuple = ()) -> int:
        if self.nf:
            peer = (peer[0], 0 if proto in _ICMP else peer[1]) if peer else ("", 0)
            history = self.slots.get((proto, maddr, port, *peer))
        else:
            history = self.slots.get((proto, maddr, port))
        if not history:
            return port
        times, olds = history
        return olds[max(bisect_right(times, when) - 1, 0)]


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


def _packet_key(data: bytes, ts: float, opened: set[tuple], pm: PortMap | None) -> bytes:
    """A packet as compared: with ``pm``, its PAT port (or echo identifier) mapped back to one
    process's (a packet leaving by a mapped address, or arriving at one: arrived/, asp-drop.pcap);
    then, if of an FTP control connection (port 21), without what the PORT text changes: lengths,
    sequence and acknowledgement numbers, options, checksums, with the PORT/EPRT argument blanked; a
    packet of a connection opened towards a mapped port likewise without its sequence numbers. Others
    as they are. One decode for both."""
    buf = bytearray(data)
    try:
        pkt = decode(buf)
    except Exception:
        return data
    if pm is not None and not pkt.is_fragment:
        src = addr_to_str(pkt.version, pkt.src)
        dst = addr_to_str(pkt.version, pkt.dst)
        if src in pm.pat:  # leaving by the mapped side
            peer = (dst, pkt.dport)
            if pkt.proto in _ICMP:
                if pkt.icmp_type in (8, 128):  # an echo request leaves with the mapped identifier
                    pkt.set_icmp_id(pm.port(pkt.proto, src, pkt.sport, ts, peer))
            elif pkt.sport:
                pkt.set_sport(pm.port(pkt.proto, src, pkt.sport, ts, peer))
        elif dst in pm.pat:  # arriving at the mapped side
            peer = (src, pkt.sport)
            if pkt.proto in _ICMP:
                if pkt.icmp_type in (0, 129):  # an echo reply comes back to the mapped identifier
                    pkt.set_icmp_id(pm.port(pkt.proto, dst, pkt.dport, ts, peer))
            elif pkt.dport:
                pkt.set_dport(pm.port(pkt.proto, dst, pkt.dport, ts, peer))
    if pkt.proto != 6 or not pkt.has_l4:
        return bytes(buf)
    ends = (addr_to_str(pkt.version, pkt.src), pkt.sport, addr_to_str(pkt.version, pkt.dst), pkt.dport)
    if 21 not in (pkt.sport, pkt.dport) and ends not in opened:
        return bytes(buf)
    doff = (buf[pkt.l4off + 12] >> 4) * 4
    payload = _PORT_TEXT.sub(rb"\1*", bytes(buf[pkt.l4off + doff : pkt.end]))
    flags = buf[pkt.l4off + 13]
    head = f"seq-free {pkt.version} {pkt.src} {pkt.sport} {pkt.dst} {pkt.dport} {flags} ".encode()
    return head + payload


def _ftp_bytes(ev: dict) -> dict:
    if ev["event"] == "ConnTeardown" and 21 in (ev["initiator"]["port"], ev["responder"]["port"]):
        ev["bytes"] = None
    return ev


def _packet_keys(path: Path, opened: set[tuple], pm: PortMap | None) -> list[tuple[float, bytes, str]]:
    """A capture's packets as compared: (time, ``_packet_key``, comment), sorted. Captures with
    comments (pcapng: what left an interface, asp-drop.pcap) keep them: the connection's number and
    the verdict or drop reason."""
    if path.parent.name == "arrived":
        records: Iterator[tuple[float, bytes, str | None]] = ((ts, d, None) for ts, d in read_packets(path))
    else:
        records = iter(read_comments(path))
    return sorted((ts, _packet_key(d, ts, opened, pm), c or "") for ts, d, c in records)


def _digest(items: Iterable) -> tuple[int, str]:
    """(how many, SHA-256 of them in order): what a reference keeps of a sorted list of strings (events,
    log lines with their counts) or of packets (time, bytes, comment)."""
    h = hashlib.sha256()
    n = 0
    for item in items:
        if type(item) is str:
            h.update(item.encode())
        elif type(item[1]) is bytes:
            ts, data, comment = item
            h.update(f"{ts!r} {len(data)} {comment}".encode())
            h.update(data)
        else:
            h.update(repr(item).encode())
        h.update(b"\n")
        n += 1
    return n, h.hexdigest()


def _log_blanks(pat: set[str]):
    """Log lines as compared: a PAT address's ports blanked (events.jsonl holds the same facts with the
    ports compared exactly); an FTP control connection's byte count in 302014 blanked (see above)."""
    alt = "|".join(re.escape(a) for a in sorted(pat)) or "(?!)"
    blank = re.compile(rf"({alt})/\d+")
    # conntrack -E's reply tuple (iptables): the mapped port or echo identifier after the mapped address.
    blank_ct = re.compile(rf"(dst=(?:{alt}) (?:sport=\d+ dport=|type=\d+ code=\d+ id=))\d+")

    def lines(path: Path) -> list[tuple[str, int]]:
        out: Counter[str] = Counter()
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = blank_ct.sub(r"\1*", blank.sub(r"\1/*", line.rstrip("\n")))
                if "-302014:" in line and "/21 " in line:
                    line = _BYTES.sub("bytes *", line)
                out[line] += 1
        return sorted(out.items())

    return lines


def _summary(path: Path) -> dict:
    """summary.json without what may differ: the ``shards`` part, the bytes out of each interface (an
    FTP PORT/EPRT text that names a mapped port has its length), whether a report was written."""
    s = json.loads((path / "summary.json").read_text())
    s.pop("shards", None)
    for io in s.get("interfaces", {}).values():
        io.pop("bytes_out", None)
    s["outputs"].pop("report", None)
    return s


class Reference:
    """One process's outputs, read once and kept as what a sharded run is compared with: the summary,
    its translations (real end and time -> mapped port), and a digest of each compared list (events,
    every capture, log lines). Comparing many sharded runs with one process's reads it once; a
    difference is shown from the files, read again."""

    def __init__(self, one: Path) -> None:
        self.path = one
        self.summary = _summary(one)
        texts = _event_texts(one / "events.jsonl")
        events = [json.loads(t) for t in texts]
        self.nf = not any(ev["event"] == "XlateBuilt" for ev in events)
        self.ports: dict[tuple, int] = {}
        self.pat: set[str] = set()
        self.translations = 0
        for ev in events:
            for key, mapped, slot in _translations(ev, self.nf):
                self.ports[key] = mapped
                self.pat.add(slot[1])
                self.translations += 1
        self.opened = _opened_to_mapped(events, self.pat)
        del events
        self.events = _digest(sorted(_event_key(t, None) for t in texts))
        del texts
        outputs = self.summary["outputs"]
        self.captures = list(outputs["captures"].values())
        self.files = [
            *self.captures,
            outputs["asp_drop"],
            *(f"arrived/{n}" for n in outputs["arrived"].values()),
        ]
        self.digests = {name: _digest(_packet_keys(one / name, self.opened, None)) for name in self.files}
        self.packets = sum(self.digests[name][0] for name in self.captures)
        self.lines = _log_blanks(self.pat)
        self.log = _digest(self.lines(one / "log.txt"))


def _first_difference(name: str, one: list, sharded: list) -> str:
    for k, (a, b) in enumerate(zip(one, sharded)):
        if a != b:
            return f"{name}: item {k} of {len(one)}: one process {a!r} != sharded {b!r}"
    return f"{name}: one process has {len(one)}, the sharded run {len(sharded)}"


def compare(one: Path | Reference, sharded: Path) -> dict:
    """Assert that a sharded run's outputs agree with one process's as the module docstring says.
    ``one``: its output directory, or a ``Reference`` read from it. Returns counts, and ``ports``: the
    sharded run's mapped ports of each real address (its translations), for the caller to check
    against the port blocks."""
    ref = one if isinstance(one, Reference) else Reference(one)
    s2 = json.loads((sharded / "summary.json").read_text())
    if s2["outputs"].get("report"):
        assert (sharded / s2["outputs"]["report"]).stat().st_size > 0
    assert ref.summary == _summary(sharded)

    texts = _event_texts(sharded / "events.jsonl")
    kinds = ('{"event":"ConnBuilt"', '{"event":"ConnTeardown"') if ref.nf else ('{"event":"Xlate',)
    translations = [json.loads(t) for t in texts if t.startswith(kinds)]
    pm = PortMap(ref.ports, ref.pat, ref.nf, translations)
    moved = sum(
        1 for ev in translations for key, mapped, _slot in _translations(ev, ref.nf) if mapped != key[2]
    )
    del translations
    keys = sorted(_event_key(t, pm) for t in texts)
    del texts
    if _digest(keys) != ref.events:
        want = sorted(_event_key(t, None) for t in _event_texts(ref.path / "events.jsonl"))
        raise AssertionError(_first_difference("events.jsonl", want, keys))
    del keys

    for name in ref.files:
        got = _packet_keys(sharded / name, ref.opened, pm)
        if _digest(got) != ref.digests[name]:
            want = _packet_keys(ref.path / name, ref.opened, None)
            raise AssertionError(_first_difference(name, want, got))

    got_lines = ref.lines(sharded / "log.txt")
    if _digest(got_lines) != ref.log:
        raise AssertionError(_first_difference("log.txt", ref.lines(ref.path / "log.txt"), got_lines))
    return {
        "events": ref.events[0],
        "packets": ref.packets,
        "translations": ref.translations,
        "pat_ports_moved": moved,
        "ports": pm.by_host,
    }
