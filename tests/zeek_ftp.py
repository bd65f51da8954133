"""Zeek's FTP captures (../shared/corpus/zeek) as the replay tests use them: the ASA put in front of a
capture's client network, Zeek's logs as the answer key, one replay run, checksums verified from scratch.
"""

from __future__ import annotations

import json
from pathlib import Path

from statewall.config import parse_policy
from statewall.replay import replay

OUTSIDE_IP = "203.0.113.1"


def asa_front(inside_ip: str = "141.142.220.254") -> str:
    """The client's /24 on ``inside`` (level 100, the firewall at ``inside_ip``), everything else
    ``outside`` (level 0) behind OUTSIDE_IP."""
    return f"""hostname fw
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address {OUTSIDE_IP} 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address {inside_ip} 255.255.255.0
route outside 0.0.0.0 0.0.0.0 203.0.113.254
"""


# ftp/ipv4.pcap's client network behind PAT to the outside interface.
PAT = """global (outside) 1 interface
nat (inside) 1 141.142.220.0 255.255.255.0
"""
# The ASA inspects FTP by default (policy-map global_policy, class inspection_default); a test about what
# happens without an inspection to open the data connections says so.
NO_FTP_INSPECTION = """policy-map global_policy
 class inspection_default
  no inspect ftp
"""


def zeek_log(corpus: Path, baseline: str, name: str = "conn.log") -> list[dict[str, str]]:
    """The rows of one of Zeek's logs for a trace, as dicts keyed by the #fields header."""
    fields: list[str] = []
    rows = []
    for line in (corpus / "zeek" / "Baseline" / baseline / name).read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def run(config: str, capture: Path, outdir: Path) -> tuple[dict, list[dict]]:
    """Replay ``capture`` through ``config`` into ``outdir``: the summary and the events (events.jsonl)."""
    summary = replay(parse_policy(config, "zeek-ftp.cfg"), [(None, capture)], outdir)
    events = [json.loads(line) for line in (outdir / "events.jsonl").read_text().splitlines()]
    return summary, events


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksums_ok(raw: bytes) -> bool:
    """The TCP checksum (and for IPv4 the header checksum) verify: one's-complement sums come to 0xffff."""
    if raw[0] >> 4 == 4:
        ihl = (raw[0] & 0x0F) * 4
        total = int.from_bytes(raw[2:4], "big")
        segment = raw[ihl:total]
        pseudo = raw[12:20] + b"\x00\x06" + len(segment).to_bytes(2, "big")
        return _sum16(raw[:ihl]) == 0xFFFF and _sum16(pseudo + segment) == 0xFFFF
    plen = int.from_bytes(raw[4:6], "big")
    segment = raw[40 : 40 + plen]
    pseudo = raw[8:40] + len(segment).to_bytes(4, "big") + b"\x00\x00\x00\x06"
    return _sum16(pseudo + segment) == 0xFFFF
