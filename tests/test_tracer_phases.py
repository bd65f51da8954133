"""packet-tracer's phases from the stages that act: CONN-SETTINGS, IP-OPTIONS, INSPECT, 8.2's NAT phases
and the ``detailed`` rule lookups, against real ASA outputs.

Samples (kept as text in the search index this project uses):
[PT95]  rchapman.com, "ASA: Deny IP due to Land Attack", ASA 9.5(1): CONN-SETTINGS with ``class-map
        class-default`` / `` match any`` / ``policy-map global_policy`` / `` class class-default`` /
        ``  set connection decrement-ttl`` / ``service-policy global_policy global``; IP-OPTIONS with an
        empty Config; ``detailed`` rules `` in  id=0x7fd46c7677f0, priority=7, domain=conn-set,
        deny=false``, ``priority=6, domain=nat``, ``priority=0, domain=inspect-ip-options, deny=true``
        with ``reverse``; an object NAT rule under ``object network ny-monitor``.
[PT9X]  a public ASA 9.x forum post (CORP-ASA1): the same CONN-SETTINGS block, one space / two spaces
        as printed; ``Type: IP-OPTIONS`` with ``Config:`` empty; ``Subtype: log`` on a configured ACE.
[PTDENY] a public packet-tracer parser's test fixture (ASA 9.x): `` in  id=0x7fffde1286c0,
        priority=11, domain=permit, deny=true`` / ``        hits=60202233, user_data=0x6, cs_id=0x0,
        use_real_addr, flags=0x0, protocol=0`` / ``        src ip/id=0.0.0.0, mask=0.0.0.0, port=0,
        tag=any`` / ``        dst ip/id=0.0.0.0, mask=0.0.0.0, port=0, tag=any, dscp=0x0`` /
        ``        input_ifc=outside, output_ifc=any``.
[PT82S] pastebin.com/Mazh1EEb and /xUc1Xzbt, ASA 8.2: UN-NAT ``static (inside,outside) 67.79.5.28
        192.168.1.15 netmask 255.255.255.255`` / ``match ip inside host 192.168.1.15 outside any`` /
        ``static translation to 67.79.5.28`` / ``translate_hits = 1480, untranslate_hits = 458``;
        ``NAT divert to egress interface inside`` / ``Untranslate 67.79.5.28/0 to 192.168.1.15/0 using
        netmask 255.255.255.255``; an IP-OPTIONS phase.
[PT82D] a public packet-tracer parser's comments quoting 8.2 output: ``nat (PoweronMgmt) 1 10.111.33.0
        255.255.255.128`` / ``  match ip PoweronMgmt 10.111.33.0 255.255.255.128 outside any`` /
        ``    dynamic translation to pool 1 (61.88.171.148 [Interface PAT])`` / ``    translate_hits =
        15, untranslate_hits = 0``.
The match-line indentation of 8.2 (two spaces, then four) is the parser's quote's and ``show nat``'s.
"""

from __future__ import annotations

import re

from fixtures import BROWSING_INTERFACES
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.events import Drop, DropReason
from statewall.tracer import packet_tracer

BASE = (
    "ASA Version {version}\nhostname fw\n"
    + BROWSING_INTERFACES
    + "route outside 0.0.0.0 0.0.0.0 203.0.113.254 1\n"
)

MPF = """object network INSIDE
 subnet 10.1.1.0 255.255.255.0
 nat (inside,outside) dynamic interface
access-list OUTSIDE_IN extended permit tcp any host 10.1.1.5 eq www
access-group OUTSIDE_IN in interface outside
class-map LIMITED
 match port tcp eq 21
class-map inspection_default
 match default-inspection-traffic
policy-map global_policy
 class LIMITED
  set connection embryonic-conn-max 50
 class inspection_default
  inspect ftp
service-policy global_policy global
"""


def blocks(text: str) -> dict[str, list[str]]:
    """Phase type -> its lines from ``Type:`` to the blank line (the last such phase); 9.x's
    per-session NAT phase under ``NAT per-session``."""
    out: dict[str, list[str]] = {}
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if len(lines) > 2 and lines[0].startswith("Phase: "):
            key = lines[1].removeprefix("Type: ")
            out[key + (" per-session" if lines[2] == "Subtype: per-session" else "")] = lines[1:]
    return out


def types(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("Type: ")]


def test_ftp_on_port_21_gives_conn_settings_ip_options_and_inspect_in_the_asa_order():
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    text, allowed = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21)
    assert allowed
    # [PT9X] order: ACCESS-LIST, CONN-SETTINGS, NAT, NAT per-session, IP-OPTIONS, (INSPECT),
    # FLOW-CREATION.
    assert types(text) == [
        "FLOW-LOOKUP", "ROUTE-LOOKUP", "ACCESS-LIST", "CONN-SETTINGS", "NAT", "NAT", "IP-OPTIONS", "INSPECT",
        "FLOW-CREATION",
    ]  # fmt: skip
    b = blocks(text)
    assert b["CONN-SETTINGS"] == [
        "Type: CONN-SETTINGS",
        "Subtype: ",
        "Result: ALLOW",
        "Config:",
        "class-map LIMITED",
        " match port tcp eq 21",
        "policy-map global_policy",
        " class LIMITED",
        "  set connection embryonic-conn-max 50",
        "service-policy global_policy global",
        "Additional Information:",
    ]
    assert b["INSPECT"][3:] == [
        "Config:",
        "class-map inspection_default",
        " match default-inspection-traffic",
        "policy-map global_policy",
        " class inspection_default",
        "  inspect ftp",
        "service-policy global_policy global",
        "Additional Information:",
    ]
    assert b["IP-OPTIONS"] == [
        "Type: IP-OPTIONS",
        "Subtype: ",
        "Result: ALLOW",
        "Config:",
        "Additional Information:",
    ]
    # [PT95] object NAT under its object.
    assert b["NAT"][3:7] == ["Config:", "object network INSIDE", " nat (inside,outside) dynamic interface",
                             "Additional Information:"]  # fmt: skip


def test_port_80_has_no_inspect_and_no_conn_settings_phase():
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    text, allowed = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 80)
    assert allowed
    assert "INSPECT" not in types(text) and "CONN-SETTINGS" not in types(text)


def test_detailed_prints_the_rules_in_the_9x_form():
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    text, _ = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21, detailed=True)
    b = blocks(text)
    conn = b["CONN-SETTINGS"][b["CONN-SETTINGS"].index(" Forward Flow based lookup yields rule:") + 1 :]
    assert re.fullmatch(r" in  id=0x7f[0-9a-f]{10}, priority=7, domain=conn-set, deny=false", conn[0])
    assert re.fullmatch(
        r"        hits=0, user_data=0x7f[0-9a-f]{10}, cs_id=0x0, use_real_addr, flags=0x0, protocol=6",
        conn[1],
    )
    assert conn[2:] == [
        "        src ip/id=0.0.0.0, mask=0.0.0.0, port=0, tag=any",
        "        dst ip/id=0.0.0.0, mask=0.0.0.0, port=21, tag=any, dscp=0x0",
        "        input_ifc=inside, output_ifc=any",
    ]
    ipo = b["IP-OPTIONS"][b["IP-OPTIONS"].index(" Forward Flow based lookup yields rule:") + 1 :]
    assert re.fullmatch(r" in  id=0x7f[0-9a-f]{10}, priority=0, domain=inspect-ip-options, deny=true", ipo[0])
    assert ipo[1] == "        hits=0, user_data=0x0, cs_id=0x0, reverse, flags=0x0, protocol=0"
    nat = b["NAT"][b["NAT"].index(" Forward Flow based lookup yields rule:") + 1 :]
    assert re.fullmatch(r" in  id=0x7f[0-9a-f]{10}, priority=6, domain=nat, deny=false", nat[0])
    assert nat[2:] == [
        "        src ip/id=10.1.1.0, mask=255.255.255.0, port=0, tag=any",
        "        dst ip/id=0.0.0.0, mask=0.0.0.0, port=0, tag=any, dscp=0x0",
        "        input_ifc=inside, output_ifc=outside",
    ]
    # The printed ids are stable (statewall's hash, not the ASA's memory address).
    again, _ = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21, detailed=True)
    assert again == text


def test_detailed_implicit_deny_of_an_access_list_as_the_asa_prints_it():
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    text, allowed = packet_tracer(policy, "outside", "tcp", "192.0.2.7", 1234, "10.1.1.5", 22, detailed=True)
    assert not allowed
    acl = blocks(text)["ACCESS-LIST"]
    assert acl[:6] == ["Type: ACCESS-LIST", "Subtype: ", "Result: DROP", "Config:", "Implicit Rule",
                       "Additional Information:"]  # fmt: skip
    rule = acl[acl.index(" Forward Flow based lookup yields rule:") + 1 :]
    # [PTDENY], but for the hit count and user_data.
    assert re.fullmatch(r" in  id=0x7f[0-9a-f]{10}, priority=11, domain=permit, deny=true", rule[0])
    assert rule[1:] == [
        "        hits=0, user_data=0x0, cs_id=0x0, use_real_addr, flags=0x0, protocol=0",
        "        src ip/id=0.0.0.0, mask=0.0.0.0, port=0, tag=any",
        "        dst ip/id=0.0.0.0, mask=0.0.0.0, port=0, tag=any, dscp=0x0",
        "        input_ifc=outside, output_ifc=any",
    ]


def test_detailed_configured_ace_with_its_port():
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    text, allowed = packet_tracer(policy, "outside", "tcp", "192.0.2.7", 1234, "10.1.1.5", 80, detailed=True)
    assert allowed
    acl = blocks(text)["ACCESS-LIST"]
    assert acl[1] == "Subtype: log"
    rule = acl[acl.index(" Forward Flow based lookup yields rule:") + 1 :]
    assert re.fullmatch(r" in  id=0x7f[0-9a-f]{10}, priority=13, domain=permit, deny=false", rule[0])
    assert rule[3] == "        dst ip/id=10.1.1.5, mask=255.255.255.255, port=80, tag=any, dscp=0x0"


CONFIG_82 = """global (outside) 1 interface
access-list nonat extended permit ip 10.1.1.0 255.255.255.0 172.16.0.0 255.255.0.0
nat (inside) 0 access-list nonat
nat (inside) 1 10.1.1.0 255.255.255.0
static (inside,outside) 203.0.113.5 10.1.1.5 netmask 255.255.255.255
access-list OUTSIDE_IN extended permit tcp any host 203.0.113.5 eq www
access-group OUTSIDE_IN in interface outside
"""


def test_82_dynamic_nat_phase():
    policy = parse_policy(BASE.format(version="8.2(5)") + CONFIG_82, "fw.cfg")
    text, allowed = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 80)
    assert allowed
    assert blocks(text)["NAT"][3:9] == [
        "Config:",
        "nat (inside) 1 10.1.1.0 255.255.255.0",
        "  match ip inside 10.1.1.0 255.255.255.0 outside any",
        "    dynamic translation to pool 1 (203.0.113.1 [Interface PAT])",
        "    translate_hits = 0, untranslate_hits = 0",
        "Additional Information:",
    ]


def test_82_nat_exempt_phase():
    policy = parse_policy(BASE.format(version="8.2(5)") + CONFIG_82, "fw.cfg")
    text, allowed = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "172.16.1.1", 80)
    assert allowed
    assert "NAT" not in types(text)
    assert blocks(text)["NAT-EXEMPT"] == [
        "Type: NAT-EXEMPT",
        "Subtype: ",
        "Result: ALLOW",
        "Config:",
        "nat (inside) 0 access-list nonat",
        "  match ip inside 10.1.1.0 255.255.255.0 outside 172.16.0.0 255.255.0.0",
        "    NAT exempt",
        "    translate_hits = 0, untranslate_hits = 0",
        "Additional Information:",
    ]


def test_82_static_un_nat_phase_as_pt82s():
    policy = parse_policy(BASE.format(version="8.2(5)") + CONFIG_82, "fw.cfg")
    text, allowed = packet_tracer(policy, "outside", "tcp", "192.0.2.7", 1234, "203.0.113.5", 80)
    assert allowed
    assert blocks(text)["UN-NAT"] == [
        "Type: UN-NAT",
        "Subtype: static",
        "Result: ALLOW",
        "Config:",
        "static (inside,outside) 203.0.113.5 10.1.1.5 netmask 255.255.255.255",
        "  match ip inside host 10.1.1.5 outside any",
        "    static translation to 203.0.113.5",
        "    translate_hits = 0, untranslate_hits = 0",
        "Additional Information:",
        "NAT divert to egress interface inside",
        "Untranslate 203.0.113.5/0 to 10.1.1.5/0 using netmask 255.255.255.255",
    ]
    assert "IP-OPTIONS" in types(text)


def test_82_detailed_rules_have_the_old_form():
    policy = parse_policy(BASE.format(version="8.2(5)") + CONFIG_82, "fw.cfg")
    text, _ = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 80, detailed=True)
    ipo = blocks(text)["IP-OPTIONS"]
    rule = ipo[ipo.index(" Forward Flow based lookup yields rule:") + 1 :]
    assert re.fullmatch(r" in  id=0x[0-9a-f]{8}, priority=0, domain=inspect-ip-options, deny=true", rule[0])
    assert rule[2:] == [
        "        src ip=0.0.0.0, mask=0.0.0.0, port=0",
        "        dst ip=0.0.0.0, mask=0.0.0.0, port=0, dscp=0x0",
    ]


def test_ip_options_stage_drops_the_first_packet_once():
    """A SYN with a record-route option and no ``inspect ip-options`` in its class: the IP-OPTIONS stage
    drops it before a connection exists, counted once (invalid-ip-option)."""
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    from scapy.layers.inet import IP, TCP, IPOption

    fw = Firewall(policy)
    syn = IP(src="10.1.1.9", dst="198.51.100.7", options=[IPOption(b"\x07\x07\x04\x00\x00\x00\x00\x00")])
    res = fw.receive("inside", bytearray(bytes(syn / TCP(sport=1234, dport=80, flags="S"))), 0.0)
    drops = [e for e in res.events if isinstance(e, Drop)]
    assert [d.reason for d in drops] == [DropReason.INVALID_IP_OPTION]
    assert fw.drops[DropReason.INVALID_IP_OPTION] == 1 and not res.packets and len(fw.conns) == 0


def test_access_list_prints_the_object_groups_the_ace_names():
    """[PT9X]: ``access-group INSIDE_access_in in interface INSIDE`` / ``access-list INSIDE_access_in
    extended permit ip object-group DM_INLINE_NETWORK_4 any`` / ``object-group network
    DM_INLINE_NETWORK_4`` / `` network-object 192.168.242.0 255.255.255.0``."""
    cfg = """object-group network DM_INLINE_NETWORK_4
 network-object host 10.1.1.7
 network-object 10.1.1.0 255.255.255.128
access-list INSIDE_access_in extended permit ip object-group DM_INLINE_NETWORK_4 any
access-group INSIDE_access_in in interface inside
"""
    policy = parse_policy(BASE.format(version="9.12(4)") + cfg, "fw.cfg")
    text, allowed = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 80)
    assert allowed
    assert blocks(text)["ACCESS-LIST"][1:9] == [
        "Subtype: log",
        "Result: ALLOW",
        "Config:",
        "access-group INSIDE_access_in in interface inside",
        "access-list INSIDE_access_in extended permit ip object-group DM_INLINE_NETWORK_4 any",
        "object-group network DM_INLINE_NETWORK_4",
        " network-object host 10.1.1.7",
        " network-object 10.1.1.0 255.255.255.128",
    ]


def test_xml_detailed_carries_the_rule_lookup_in_extra():
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    plain, _ = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21, output="xml")
    xml, _ = packet_tracer(
        policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21, detailed=True, output="xml"
    )
    assert "Forward Flow based lookup yields rule:" not in plain
    assert "<extra> Forward Flow based lookup yields rule:\n in  id=0x7f" in xml
    assert "domain=conn-set" in xml and "domain=inspect-ftp" in xml


# [PTPS] 9.x outputs with the per-session NAT phase, kept as text in public repositories: an ASAv 9.x
# lab notebook (OTUS course project, "Построение высоконадежной безопасной корпоративной сети"):
# ``packet-tracer input inside tcp 172.16.8.2 telnet 66.66.66.1`` after ``clear configure all`` (no NAT
# rule) prints ``Phase: 2`` / ``Type: NAT`` / ``Subtype: per-session`` / ``Result: ALLOW`` / ``Config:`` /
# ``Additional Information:`` right after ROUTE-LOOKUP and before IP-OPTIONS; the same notebook's ICMP
# trace through ``object network OBJ_NAT_LAN`` / `` nat (inside,outside2) dynamic interface`` prints NAT,
# then NAT per-session, then IP-OPTIONS; [PT95]'s ``detailed`` form: ``priority=0,
# domain=nat-per-session, deny=false`` / ``reverse, use_real_addr, flags=0x0, protocol=6``; [PT9X]
# (CORP-ASA1): CONN-SETTINGS, NAT (``Static translate ...``), NAT per-session, IP-OPTIONS.
PER_SESSION = ["Type: NAT", "Subtype: per-session", "Result: ALLOW", "Config:", "Additional Information:"]


def test_9x_prints_the_per_session_nat_phase_after_nat_and_8x_does_not():
    for version in ("9.12(4)", "9.0(1)"):
        policy = parse_policy(BASE.format(version=version) + MPF, "fw.cfg")
        text, allowed = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21)
        assert allowed
        b = blocks(text)
        assert b["NAT per-session"] == PER_SESSION
        t = types(text)
        assert t[t.index("NAT") : t.index("NAT") + 3] == ["NAT", "NAT", "IP-OPTIONS"]
        assert b["NAT"][1] == "Subtype: "
    for version in ("8.4(2)", "8.2(5)"):
        policy = parse_policy(BASE.format(version=version) + MPF, "fw.cfg")
        text, _ = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21)
        assert "Subtype: per-session" not in text


def test_per_session_nat_phase_without_a_nat_rule_and_for_icmp_as_9x_prints_it():
    base = BASE.format(version="9.12(4)")
    for policy in (parse_policy(base, "fw.cfg"), parse_policy(base + MPF, "fw.cfg")):
        for proto, sport, dport in (("tcp", 1234, 23), ("icmp", 8, 0), ("udp", 5000, 53)):
            text, allowed = packet_tracer(policy, "inside", proto, "10.1.1.9", sport, "198.51.100.7", dport)
            assert allowed, text
            t = types(text)
            assert blocks(text)["NAT per-session"] == PER_SESSION
            assert t[t.index("IP-OPTIONS") - 1] == "NAT"
    # Dropped before NAT: no per-session phase.
    acl = "access-list IN extended deny ip any any\naccess-group IN in interface inside\n"
    deny = parse_policy(base + acl, "fw.cfg")
    text, allowed = packet_tracer(deny, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 23)
    assert not allowed and "per-session" not in text


def test_detailed_per_session_lookup_is_the_default_tcp_rule():
    policy = parse_policy(BASE.format(version="9.12(4)") + MPF, "fw.cfg")
    text, _ = packet_tracer(policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21, detailed=True)
    ps = blocks(text)["NAT per-session"]
    rule = ps[ps.index(" Forward Flow based lookup yields rule:") + 1 :]
    assert re.fullmatch(r" in  id=0x7f[0-9a-f]{10}, priority=0, domain=nat-per-session, deny=false", rule[0])
    flags = "reverse, use_real_addr, flags=0x0, protocol=6"
    assert rule[1] == f"        hits=0, user_data=0x0, cs_id=0x0, {flags}"
    assert rule[4] == "        input_ifc=any, output_ifc=any"


def test_an_inspection_statewall_does_not_model_sits_with_the_inspect_phases():
    """The NOT MODELLED INSPECT phase follows the modelled INSPECT phase of the same class and comes
    before FLOW-CREATION, numbered in sequence, in text, xml and JSON; its Result is neither ALLOW nor
    DROP, and the verdict stays the engine's."""
    import json

    limit = "  set connection embryonic-conn-max 50\n"
    mpf = MPF.replace(limit, limit + "  inspect ftp\n  inspect rtsp\n")
    policy = parse_policy(BASE.format(version="9.12(4)") + mpf, "fw.cfg")
    words = (policy, "inside", "tcp", "10.1.1.9", 1234, "198.51.100.7", 21)
    text, allowed = packet_tracer(*words)
    assert allowed
    assert types(text)[-4:] == ["IP-OPTIONS", "INSPECT", "INSPECT", "FLOW-CREATION"]
    assert "Phase: 9\nType: INSPECT\nSubtype: rtsp\nResult: NOT MODELLED\nConfig:\ninspect rtsp\n" in text
    assert "Phase: 8\nType: INSPECT\nSubtype: np-inspect\nResult: ALLOW\n" in text
    assert "statewall does not model inspect rtsp (fw.cfg:25)" in text
    xml, _ = packet_tracer(*words, output="xml")
    assert "<id>9</id>\n<type>INSPECT</type>\n<subtype>rtsp</subtype>\n<result>NOT MODELLED</result>" in xml
    doc = json.loads(packet_tracer(*words, output="json")[0])
    assert [(p["type"], p["result"], p["modelled"]) for p in doc["phases"][-3:]] == [
        ("INSPECT", "ALLOW", True), ("INSPECT", "NOT MODELLED", False), ("FLOW-CREATION", "ALLOW", True),
    ]  # fmt: skip
    assert any("NOT MODELLED" in note for note in doc["statewall"])
    # A dropped packet prints no NOT MODELLED phase: the ASA's text ends at the drop.
    deny = BASE.format(version="9.12(4)") + mpf + "access-list IN extended deny ip any any\n"
    deny += "access-group IN in interface inside\n"
    text, allowed = packet_tracer(parse_policy(deny, "fw.cfg"), *words[1:])
    assert not allowed and "NOT MODELLED" not in text
