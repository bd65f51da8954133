"""IPv4 options: which a box lets through.

Owns the rule for packets whose IPv4 header carries options (malformed options never get here: the
decoder drops them, ``invalid-ip-option``).

ASA (Cisco ASA firewall configuration guide, "IP Options Inspection"; ``show asp drop`` usage,
``invalid-ip-option``): a packet with IP options is dropped unless ``inspect ip-options`` applies to its
connection and allows them; the inspection allows End of Options List, No Operation and Router Alert
(RTRALT) by default (its factory class inspects RSVP, whose messages carry Router Alert), and "if an IP
header contains additional options other than EOOL, NOP, or RTRALT, regardless of whether the ASA is
configured to allow these options, the ASA will drop the packet". ``inspect ip-options MAP`` uses a
``policy-map type inspect ip-options`` map (``IpOptionsInspectMap``) instead: each of EOOL, NOP and
RTRALT is allowed (``action allow``), removed (``action clear``: the options field is padded to a
32-bit boundary, the header length, total length and checksum change - Cisco's list of what clearing
does), or, when the map does not list it, dropped (Cisco Security Manager user guide, IP Options maps:
"If you do not select an option, the option is prohibited"). ASA 9.5's further map parameters (other
options by name, ``default action``) are kept and named as not modelled; those options stay dropped.

Linux forwards options (record route and timestamps filled in by ``ip_forward_options``: not
modelled); its source-route rule is netfilter's path's (``statewall.engine.nf_path``).
"""

from __future__ import annotations

from .packet import Packet

RTRALT = 148
# What the ASA's ip-options inspection allows (EOOL and NOP are not listed by the codec).
_ASA_ALLOWED = frozenset({RTRALT})
_NAMES = {
    0: "end of options list",
    1: "no operation",
    7: "record route",
    68: "timestamp",
    130: "security",
    131: "loose source route",
    133: "extended security",
    136: "stream id",
    137: "strict source route",
    148: "router alert",
}


def _name(t: int) -> str:
    return _NAMES.get(t, f"option {t}")


# The options an ip-options map decides about, by type byte (EOOL and NOP are one byte each).
EOOL, NOP = 0, 1
_DEFAULT_MAP = {EOOL: "allow", NOP: "allow", RTRALT: "allow"}


def _present(pkt: Packet) -> set[int]:
    """The option types in ``pkt``'s header, EOOL and NOP included (the codec lists neither)."""
    found = {t for t, _, _ in pkt.ipv4_options}
    buf, i, end = pkt.buf, pkt.ipoff + 20, pkt.ipoff + pkt.l3_len
    while i < end:
        t = buf[i]
        if t == EOOL:
            found.add(EOOL)
            break
        if t == NOP:
            found.add(NOP)
            i += 1
            continue
        i += buf[i + 1]
    return found


def asa_refusal(pkt: Packet, eff, maps=None) -> str | None:
    """Why the ASA drops ``pkt`` for its IP options (None: it passes, with the options a map clears
    removed). ``eff``: the connection's class settings (``statewall.mpf.Effective``), which say whether
    ``inspect ip-options`` applies and with which map; ``maps``: the policy's ip-options maps by name."""
    if pkt.version != 4 or pkt.l3_len <= 20:
        return None
    ins = eff.inspects_engine("ip-options") if eff is not None else None
    if ins is None:
        return "IP options without inspect ip-options"
    m = maps.get(ins.map) if ins.map and maps else None
    actions = m.actions if m is not None else _DEFAULT_MAP
    where = f"ip-options map {m.name}" if m is not None else "ip-options inspection"
    clear = set()
    for t in sorted(_present(pkt)):
        if t not in _DEFAULT_MAP:
            return f"IP option {_name(t)} is not one ip-options inspection allows"
        action = actions.get(t)
        if action is None:
            return f"IP option {_name(t)} is not allowed by {where}"
        if action == "clear":
            clear.add(t)
    if clear:
        pkt.strip_ipv4_options(clear)
    return None
