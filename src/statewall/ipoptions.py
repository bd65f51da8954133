"""IPv4 options: which a box lets through.

Owns the rule for packets whose IPv4 header carries options (malformed options never get here: the
decoder drops them, ``invalid-ip-option``).

ASA (Cisco ASA firewall configuration guide, "IP Options Inspection"; ``show asp drop`` usage,
``invalid-ip-option``): a packet with IP options is dropped unless ``inspect ip-options`` applies to its
connection and allows them; the inspection allows End of Options List, No Operation and Router Alert
(RTRALT) by default (its factory class inspects RSVP, whose messages carry Router Alert), and "if an IP
header contains additional options other than EOOL, NOP, or RTRALT, regardless of whether the ASA is
configured to allow these options, the ASA will drop the packet". Inspect maps that clear options
(``policy-map type inspect ip-options``) are not modelled.

Linux forwards options (record route and timestamps filled in by ``ip_forward_options``: not
modelled); its source-route rule is netfilter's path's (``statewall.engine.nf_path``).
"""

from __future__ import annotations

from .packet import Packet

RTRALT = 148
# What the ASA's ip-options inspection allows (EOOL and NOP are not listed by the codec).
_ASA_ALLOWED = frozenset({RTRALT})
_NAMES = {
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


def asa_refusal(pkt: Packet, eff) -> str | None:
    """Why the ASA drops ``pkt`` for its IP options (None: it passes). ``eff``: the connection's class
    settings (``statewall.mpf.Effective``), which say whether ``inspect ip-options`` applies."""
    if pkt.version != 4 or pkt.l3_len <= 20:
        return None
    inspected = eff is not None and eff.inspects_engine("ip-options") is not None
    if not inspected:
        return "IP options without inspect ip-options"
    for t, _, _ in pkt.ipv4_options:
        if t not in _ASA_ALLOWED:
            return f"IP option {_name(t)} is not one ip-options inspection allows"
    return None
