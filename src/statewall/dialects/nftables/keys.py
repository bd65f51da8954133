"""nft's keys: the expressions a set is looked up or updated with, their types, and how nft spells
their values and times.

A key (``ip saddr``, ``tcp dport``, ``th dport``, ``meta l4proto``, ``iifname``, ``meta mark``) is
kept in the neutral model by that name (``statewall.nft_sets`` evaluates it on a packet); a
concatenation (``ip saddr . tcp dport``) is a tuple of them. Values are ``(lo, hi)`` integers, or a
name for ``ifname``. Times are nft's ``1d2h3m4s5ms``.
"""

from __future__ import annotations

import ipaddress

from ..iptables import names

# key expression -> its set type (nft's datatypes).
KEY_TYPES = {
    "ip saddr": "ipv4_addr",
    "ip daddr": "ipv4_addr",
    "ip6 saddr": "ipv6_addr",
    "ip6 daddr": "ipv6_addr",
    "tcp sport": "inet_service",
    "tcp dport": "inet_service",
    "udp sport": "inet_service",
    "udp dport": "inet_service",
    "th sport": "inet_service",
    "th dport": "inet_service",
    "meta l4proto": "inet_proto",
    "iifname": "ifname",
    "oifname": "ifname",
    "meta iifname": "ifname",
    "meta oifname": "ifname",
    "meta mark": "mark",
}
# The set types statewall reads; how many elements nft 1.0.6 prints per line of a declaration.
SET_TYPES = ("ipv4_addr", "ipv6_addr", "inet_service", "inet_proto", "ifname", "mark")
_TIME_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))


def key_at(words: list[str]) -> tuple[str, int] | None:
    """The key expression the words start with and how many words it takes, or None."""
    if len(words) >= 2 and f"{words[0]} {words[1]}" in KEY_TYPES:
        return f"{words[0]} {words[1]}", 2
    if words and words[0] in ("iifname", "oifname"):
        return words[0], 1
    return None


def parse_time(text: str) -> float | None:
    """nft's time (``30s``, ``1h30m``, ``500ms``, ``2d``; a bare number is seconds), None if malformed."""
    if text.isdigit():
        return float(text)
    total = 0.0
    i = 0
    matched = False
    while i < len(text):
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        if j == i:
            return None
        unit = "ms" if text.startswith("ms", j) else text[j : j + 1]
        mult = dict(_TIME_UNITS).get(unit)
        if mult is None:
            return None
        total += int(text[i:j]) * mult
        i = j + len(unit)
        matched = True
    return total if matched else None


def format_time(seconds: float) -> str:
    """nft's printed time: days, hours, minutes, seconds, milliseconds, the zero ones left out."""
    ms = round(seconds * 1000)
    out = []
    for unit, mult in _TIME_UNITS:
        step = round(mult * 1000)
        n, ms = divmod(ms, step)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


def value_text(kind: str, value) -> str:
    """A value of a set type as nft prints it (addresses, prefixes, ranges, ports, protocol names)."""
    if kind == "ifname":
        return f'"{value}"'
    lo, hi = value
    if kind in ("ipv4_addr", "ipv6_addr"):
        cls = ipaddress.IPv4Address if kind == "ipv4_addr" else ipaddress.IPv6Address
        if lo == hi:
            return str(cls(lo))
        size = hi - lo + 1
        if size & (size - 1) == 0 and lo % size == 0:
            bits = (32 if kind == "ipv4_addr" else 128) - size.bit_length() + 1
            return f"{cls(lo)}/{bits}"
        return f"{cls(lo)}-{cls(hi)}"
    if kind == "inet_proto":
        return dict(names.SAVE_PROTOCOL_NAMES).get(lo, str(lo))
    if kind == "mark":
        return f"0x{lo:08x}"
    return str(lo) if lo == hi else f"{lo}-{hi}"
