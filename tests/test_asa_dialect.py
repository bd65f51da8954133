"""The ASA dialect: seed configurations parse verbatim, malformed lines fail at the right column,
unknown lines warn, and a printed running-config parses back to the same policy."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from fixtures import PIX_INTERFACES
from statewall.dialects.asa import ConfigError, parse, parse_file, render
from statewall.policy import PROTO_TCP, Origin, Policy, PortMatch

CONFIGS = Path(__file__).parent / "configs"
ROUND_TRIP_FIXTURES = ["seed000.cfg", "seed000-solution-b.cfg", "asa-full.cfg"]


def without_origins(value: object) -> object:
    """The policy as plain data minus where each element came from (file, line, text)."""
    if isinstance(value, Origin):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: without_origins(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in ("origin", "origins", "pool_origins", "warnings", "source_file", "fates", "col")
        }
    if isinstance(value, dict):
        return {k: without_origins(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_origins(v) for v in value]
    return value


def same_model(a: Policy, b: Policy) -> None:
    pa, pb = without_origins(a), without_origins(b)
    # Passthrough entries are (Origin, text): compare the texts.
    pa["passthrough"] = [text for _, text in a.passthrough]  # type: ignore[index]
    pb["passthrough"] = [text for _, text in b.passthrough]  # type: ignore[index]
    # What is not modelled is the same set of features; a running-config may print them in another order.
    pa["unmodelled"] = sorted(map(repr, pa["unmodelled"]))  # type: ignore[index]
    pb["unmodelled"] = sorted(map(repr, pb["unmodelled"]))  # type: ignore[index]
    assert pa == pb


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, "seed.cfg")
    return str(info.value)


# --------------------------------------------------------------------------------------------------
# Seed 000: the pasted console transcript


def test_seed000_transcript_parses_verbatim():
    policy = parse_file(CONFIGS / "seed000.cfg")
    assert policy.warnings == []
    assert policy.hostname == "pixfirewall"  # from the prompts: the transcript has no hostname command

    outside, inside = policy.interfaces["outside"], policy.interfaces["inside"]
    assert (outside.hardware, outside.security_level) == ("Ethernet0", 0)
    assert outside.ipv4 == [ipaddress.IPv4Interface("192.168.9.30/24")]
    assert (inside.hardware, inside.security_level) == ("Ethernet1", 100)
    assert inside.ipv4 == [ipaddress.IPv4Interface("10.0.0.1/24")]
    assert (outside.speed, outside.duplex) == ("100", "full")

    (pat,) = policy.nat_rules
    assert (pat.kind, pat.real_interface, pat.mapped_interface, pat.nat_id) == (
        "dynamic",
        "inside",
        "outside",
        1,
    )
    assert pat.real == (ipaddress.IPv4Network("10.0.0.0/8"),)
    assert pat.pool is not None and pat.pool.interface and pat.pool.pat
    assert pat.origin.line == 16 and pat.origin.text == "nat (inside) 1 10.0.0.0 255.0.0.0"
    assert [o.text for o in pat.pool_origins] == ["global (outside) 1 interface"]

    (route,) = policy.routes
    assert route.interface == "outside"
    assert route.network == ipaddress.IPv4Network("0.0.0.0/0")
    assert route.gateway == ipaddress.IPv4Address("192.168.9.2")
    assert route.distance == 1


def test_origins_are_lines_without_prompts():
    policy = parse_file(CONFIGS / "seed000.cfg")
    itf = policy.interfaces["inside"]
    assert (itf.origin.file, itf.origin.line, itf.origin.text) == (
        str(CONFIGS / "seed000.cfg"),
        8,
        "interface Ethernet1",
    )
    assert str(policy.routes[0].origin).endswith(":17: route outside 0.0.0.0 0.0.0.0 192.168.9.2 1")


def test_seed000_solution_b_models_the_policy_framework():
    policy = parse_file(CONFIGS / "seed000-solution-b.cfg")
    rule = policy.access_lists["ftp-list"].rules[0]  # the 8.2 short form, without "extended"
    assert rule.action == "permit" and rule.match.protocol == PROTO_TCP
    assert rule.match.sources == (ipaddress.IPv4Network("10.0.0.2/32"),)
    assert rule.match.destinations == (ipaddress.IPv4Network("192.168.9.2/32"),)
    # class-map -> policy-map -> tcp-map -> service-policy, all modelled, nothing left as text.
    assert policy.passthrough == [] and policy.warnings == []
    assert policy.tcp_maps["mss-map"].exceed_mss == "allow"
    (cls,) = policy.policy_maps["ftp-map"].classes
    assert cls.class_map == "ftp-map" and cls.connection.tcp_map == "mss-map"
    bound = [(sp.policy_map, sp.interface) for sp in policy.service_policies]
    assert ("ftp-map", "outside") in bound and ("global_policy", None) in bound  # + the factory default


# --------------------------------------------------------------------------------------------------
# Errors: file:line:col: message, pointing at the offending token


def on_base(*lines: str) -> str:
    return PIX_INTERFACES + "".join(line + "\n" for line in lines)


# (configuration, "line:col: message" expected after "seed.cfg:")
ERRORS = [
    (
        "interface Ethernet0\n ip address 192.168.9.300 255.255.255.0\n",
        "2:13: invalid IP address '192.168.9.300'",
    ),
    (
        "pixfirewall(config)#interface Ethernet0\npixfirewall(config-if)#ip address 10.0.0.300 255.0.0.0\n",
        "2:35: invalid IP address '10.0.0.300'",
    ),
    ("interface Ethernet0\n security-level 101\n", "2:17: security-level must be 0..100"),
    ("interface Ethernet0\n security-level high\n", "2:17: security-level must be 0..100"),
    ("interface Ethernet0\n ip address 10.0.0.1 255.0.255.0\n", "2:22: invalid netmask '255.0.255.0'"),
    (
        "interface Ethernet0\n speed 42\n",
        "2:8: invalid speed '42' (expected auto or 10 or 100 or 1000 or 10000 or nonegotiate)",
    ),
    ("interface Ethernet0\n nameif\n", "2:8: missing interface name"),
    (on_base("interface Ethernet2", " nameif inside"), "10:9: nameif 'inside' used twice"),
    (
        on_base("access-group foo in interface outside"),
        "9:14: access-group refers to unknown access-list 'foo'",
    ),
    (
        on_base("access-list a extended permit ip any any", "access-group a in interface dmz"),
        "10:29: access-group refers to unknown interface 'dmz'",
    ),
    (on_base("route dmz 0.0.0.0 0.0.0.0 10.0.0.2"), "9:7: route refers to unknown interface 'dmz'"),
    (on_base("route outside 10.1.0.0 255.255.0.0 10.0.0.2 300"), "9:45: distance must be 1..255"),
    (
        on_base("route outside 10.1.0.1 255.255.0.0 10.0.0.2"),
        "9:15: address '10.1.0.1' has bits outside its netmask",
    ),
    (on_base("mtu dmz 1500"), "9:5: mtu refers to unknown interface 'dmz'"),
    (on_base("mtu outside 20"), "9:13: mtu must be 64..65535"),
    (on_base("access-list a extended permit tcp any any eq nosuch"), "9:46: unknown tcp port 'nosuch'"),
    (on_base("access-list a extended permit foo any any"), "9:31: unknown protocol 'foo'"),
    (
        on_base("access-list a extended allow ip any any"),
        "9:24: invalid action 'allow' (expected permit or deny)",
    ),
    (on_base("access-list a extended permit ip any"), "9:37: missing destination address"),
    (on_base("access-list a extended permit ip any any extra"), "9:42: unexpected 'extra'"),
    (on_base("access-list a extended permit ip any object-group nope"), "9:51: unknown object-group 'nope'"),
    (on_base("access-list a extended permit tcp any any range 90 80"), "9:52: port range 90-80 is empty"),
    (on_base("access-list a extended permit ip any any log 9"), "9:46: log level must be 0..7"),
    (
        on_base("nat (dmz) 1 10.0.0.0 255.0.0.0", "global (outside) 1 interface"),
        "9:5: nat refers to unknown interface 'dmz'",
    ),
    (on_base("nat (inside) 0 access-list nope"), "9:28: nat refers to unknown access-list 'nope'"),
    (on_base("global (outside) 0 interface"), "9:18: global id must be 1..2147483647"),
    (on_base("timeout conn 0:04:00"), "9:14: timeout conn must be 0 or 0:05:00..1193:00:00"),
    (on_base("timeout udp 0:00:30"), "9:13: timeout udp must be 0 or 0:01:00..1193:00:00"),
    (on_base("timeout xlate 0:0:59"), "9:15: timeout xlate must be 0 or 0:01:00..1193:00:00"),
    (on_base("timeout conn 1:61:00"), "9:14: invalid duration '1:61:00' (expected hh:mm:ss)"),
    (on_base("timeout bogus 1:00:00"), "9:9: unknown timeout 'bogus'"),
    ("hostname -bad-\n", "1:10: invalid hostname '-bad-'"),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_malformed_known_command_is_located(text: str, expected: str):
    assert error_of(text) == f"seed.cfg:{expected}"


def test_config_error_fields():
    with pytest.raises(ConfigError) as info:
        parse("interface Ethernet0\n security-level 101\n", "x.cfg")
    err = info.value
    assert (err.file, err.line, err.col, err.message) == ("x.cfg", 2, 17, "security-level must be 0..100")


def test_unknown_command_is_a_warning_naming_its_line():
    policy = parse(
        PIX_INTERFACES + "frobnicate the widgets\n  with sub-lines\nroute outside 0 0 192.168.9.2\n", "w.cfg"
    )
    (warning,) = policy.warnings
    assert str(warning) == "w.cfg:9:1: warning: unknown command 'frobnicate' ignored"
    assert len(policy.routes) == 1  # parsing went on after it


# --------------------------------------------------------------------------------------------------
# Round trip: render(parse(x)) parses to the same model


@pytest.mark.parametrize("name", ROUND_TRIP_FIXTURES)
def test_render_parses_back_to_the_same_model(name: str):
    first = parse_file(CONFIGS / name)
    text = render(first)
    second = parse(text, "rendered.cfg")
    same_model(first, second)
    assert render(second) == text  # printing is stable


def test_render_seed000_running_config():
    text = render(parse_file(CONFIGS / "seed000.cfg"))
    assert "interface Ethernet0\n speed 100\n duplex full\n nameif outside\n security-level 0\n" in text
    assert " ip address 192.168.9.30 255.255.255.0\n" in text
    assert "global (outside) 1 interface\nnat (inside) 1 10.0.0.0 255.0.0.0\n" in text
    assert "route outside 0.0.0.0 0.0.0.0 192.168.9.2 1\n" in text
    assert "timeout conn 1:00:00 half-closed 0:10:00 udp 0:02:00 icmp 0:00:02\n" in text


# --------------------------------------------------------------------------------------------------
# Transcripts: prompts, mode changes, sub-modes without indentation


def test_transcript_mode_words_and_exec_prompts_are_not_commands():
    text = """ciscoasa> enable
ciscoasa# configure terminal
ciscoasa(config)# hostname fw1
fw1(config)# interface GigabitEthernet0/1
fw1(config-if)# nameif inside
fw1(config-if)# ip address 10.1.1.1 255.255.255.0
fw1(config-if)# exit
fw1(config)# interface GigabitEthernet0/0
fw1(config-if)# nameif outside
fw1(config-if)# security-level 0
fw1(config-if)# end
fw1#
fw1# write memory
fw1# configure terminal
fw1(config)# route outside 0 0 198.51.100.1
fw1(config)# exit
fw1# wr mem
"""
    policy = parse(text)
    assert policy.warnings == []
    assert policy.hostname == "fw1"
    assert policy.interfaces["inside"].security_level == 100  # the ASA's default for "inside"
    assert policy.interfaces["inside"].ipv4 == [ipaddress.IPv4Interface("10.1.1.1/24")]
    assert policy.interfaces["outside"].security_level == 0
    assert policy.routes[0].network == ipaddress.IPv4Network("0.0.0.0/0")


def test_a_top_level_command_typed_in_a_sub_mode_leaves_it():
    # Seed 002's example: "policy-map" and "service-policy" typed at sub-mode prompts.
    text = """hostname(config)# interface Ethernet0
hostname(config-if)# nameif outside
hostname(config-if)# exit
hostname(config)# class-map CONNS
hostname(config-cmap)# match any
hostname(config-cmap)# policy-map CONNS
hostname(config-pmap)# class CONNS
hostname(config-pmap-c)# set connection conn-max 1000 embryonic-conn-max 3000
hostname(config-pmap-c)# service-policy CONNS interface outside
"""
    policy = parse(text)
    assert list(policy.class_maps)[:1] == ["CONNS"]
    (cls,) = policy.policy_maps["CONNS"].classes
    assert (cls.connection.conn_max, cls.connection.embryonic_conn_max) == (1000, 3000)
    assert ("CONNS", "outside") in [(sp.policy_map, sp.interface) for sp in policy.service_policies]


def test_unindented_running_config_sub_commands_follow_the_mode():
    # Some pasted configurations lose their indentation: sub-commands still belong to their mode.
    text = "interface Ethernet0\nnameif outside\nsecurity-level 0\nip address 192.0.2.1 255.255.255.0\n"
    text += "policy-map global_policy\nclass inspection_default\ninspect ftp\nroute outside 0 0 192.0.2.254\n"
    policy = parse(text)
    assert policy.interfaces["outside"].ipv4 == [ipaddress.IPv4Interface("192.0.2.1/24")]
    (cls,) = policy.policy_maps["global_policy"].classes
    assert cls.class_map == "inspection_default" and [i.engine for i in cls.inspects] == ["ftp"]
    assert len(policy.routes) == 1


# --------------------------------------------------------------------------------------------------
# The rich fixture: every command, and the model it yields


@pytest.fixture(scope="module")
def full() -> Policy:
    return parse_file(CONFIGS / "asa-full.cfg")


def test_full_header_and_interfaces(full: Policy):
    assert (full.version, full.hostname) == ("8.2(1)", "edge-fw")
    out = full.interfaces["outside"]
    assert out.description == "uplink to the ISP"
    assert out.standby_ipv4 == ipaddress.IPv4Address("192.168.9.31")
    assert out.ipv6 == [ipaddress.IPv6Interface("2001:db8:9::30/64"), ipaddress.IPv6Interface("fe80::30/64")]
    assert full.interfaces["inside"].ipv6_enable
    assert full.interfaces["dmz"].mtu == 1400
    assert (full.interfaces["guests"].vlan, full.interfaces["guests"].hardware) == (20, "Ethernet0/2.20")
    assert full.interfaces["management"].management_only
    (unnamed,) = full.unnamed_interfaces
    assert (unnamed.hardware, unnamed.shutdown, unnamed.ipv4) == ("Ethernet0/3", True, [])
    assert full.same_security_inter and full.same_security_intra


def test_full_objects(full: Policy):
    net = ipaddress.ip_network
    assert full.network_objects["web-servers"].networks == [net("10.0.0.80/32"), net("10.0.1.0/24")]
    assert full.network_objects["all-servers"].networks == [
        net("10.0.0.80/32"),
        net("10.0.1.0/24"),
        net("172.16.0.10/32"),
    ]
    assert full.network_objects["pool-range"].networks == [
        net("10.0.2.10/31"),
        net("10.0.2.12/30"),
        net("10.0.2.16/30"),
        net("10.0.2.20/32"),
    ]
    assert full.network_objects["mixed"].members == ["mail-server", net("2001:db8:2::/48")]


def test_full_access_lists(full: Policy):
    rules = full.access_lists["outside_in"].rules
    web = rules[0]
    assert web.remark == "web and mail from anywhere"
    assert web.destination_object == "web-servers"
    assert web.match.destination_ports == (PortMatch("eq", 80),)
    assert rules[1].match.destination_ports == (PortMatch("range", 8080, 8090),)
    mail = rules[2]
    assert (mail.log, mail.log_level, mail.log_interval) == (True, 5, 30)
    assert rules[3].match.destinations == (ipaddress.ip_network("10.0.0.80/32"),)  # "host websrv" via names
    assert (rules[4].match.protocol, rules[4].match.icmp_type) == (1, 0)
    assert (rules[5].match.icmp_type, rules[5].match.icmp_code) == (3, 4)
    assert (rules[6].match.protocol, rules[6].match.icmp_type, rules[6].match.family) == (58, 2, 6)
    assert rules[7].match.source_ports == (PortMatch("gt", 1023),)
    assert rules[8].match.source_ports == (PortMatch("neq", 25),)
    assert (rules[9].match.protocol, rules[9].match.family) == (47, 4)
    assert rules[10].match.family is None  # a group of IPv4 and IPv6 networks
    assert rules[11].inactive
    assert (rules[-1].action, rules[-1].log, rules[-1].log_level) == ("deny", True, None)
    assert [(i, t) for i, t, _ in full.access_lists["outside_in"].remarks] == [
        (0, "web and mail from anywhere"),
        (len(rules), "trailing remark"),
    ]
    assert full.access_lists["dmz_in"].rules[0].log is False  # log disable
    assert full.access_lists["dmz_in"].rules[2].log_level == 6  # log informational
    std = full.access_lists["std_routes"]
    assert std.kind == "standard"
    assert std.rules[0].match.destinations == (ipaddress.ip_network("10.0.0.0/8"),)
    groups = [(g.acl, g.interface, g.direction) for g in full.access_groups]
    assert groups == [
        ("outside_in", "outside", "in"),
        ("dmz_in", "dmz", "in"),
        ("guests_in", "guests", "out"),
        ("global_acl", None, "in"),
    ]


def test_full_nat(full: Policy):
    rules = full.nat_rules
    summary = [(r.kind, r.real_interface, r.mapped_interface, r.nat_id) for r in rules]
    assert summary == [
        ("exempt", "inside", None, 0),
        # nat id 1 has globals on outside and dmz: one rule per mapped interface
        ("dynamic", "inside", "outside", 1),
        ("dynamic", "inside", "dmz", 1),
        ("dynamic", "inside", "outside", 1),
        ("dynamic", "inside", "dmz", 1),
        ("dynamic", "guests", "outside", 2),
        ("dynamic", "inside", "outside", 2),
        ("exempt", "dmz", None, 0),
        ("static", "dmz", "outside", None),
        ("static", "inside", "dmz", None),
        ("static", "dmz", "outside", None),
        ("static", "dmz", "outside", None),
        ("static", "dmz", "outside", None),
    ]
    assert rules[0].acl == "nonat"
    pool = rules[1].pool
    assert pool is not None and pool.interface and pool.pat
    assert pool.ranges == [(ipaddress.IPv4Address("192.168.9.40"), ipaddress.IPv4Address("192.168.9.50"))]
    assert [o.line for o in rules[1].pool_origins] == [113, 114]
    assert (rules[1].max_conns, rules[1].embryonic_limit, rules[1].udp_max_conns) == (100, 50, 20)
    assert rules[2].pool is not None and rules[2].pool.ranges[0][0] == ipaddress.IPv4Address("172.16.0.200")
    assert rules[3].randomseq is False
    assert rules[6].acl == "policy_nat"
    web = rules[8]
    assert (web.real, web.mapped) == (
        (ipaddress.ip_network("172.16.0.80/32"),),
        (ipaddress.ip_network("192.168.9.80/32"),),
    )
    smtp = rules[10]
    assert (smtp.protocol, smtp.mapped_port, smtp.real_port, smtp.max_conns) == (6, 25, 25, 200)
    dns = rules[11]
    assert dns.mapped == () and dns.pool is not None and dns.pool.interface
    assert (dns.protocol, dns.mapped_port, dns.real_port) == (17, 53, 53)


def test_full_routes_and_timeouts(full: Policy):
    routes = [(r.interface, str(r.network), str(r.gateway), r.distance) for r in full.routes]
    assert routes == [
        ("outside", "0.0.0.0/0", "192.168.9.2", 1),
        ("inside", "10.10.0.0/16", "10.0.0.254", 5),
        ("outside", "::/0", "2001:db8:9::1", 1),
        ("inside", "2001:db8:10::/48", "fe80::254", 2),
    ]
    t = full.timeouts
    assert (t.xlate, t.pat_xlate, t.conn, t.half_closed, t.udp, t.icmp, t.embryonic) == (
        3600,
        60,
        7200,
        1200,
        300,
        10,
        60,
    )
    assert t.origins["conn"].text == "timeout conn 2:00:00 half-closed 0:20:00 udp 0:05:00 icmp 0:00:10"
    assert t.extra["uauth"] == "0:05:00 absolute"
    assert t.extra["sip_media"] == "0:02:00"


def test_full_passthrough_and_warnings(full: Policy):
    texts = [t for _, t in full.passthrough]
    assert texts[:5] == [
        "domain-name example.net",
        "enable password 8Ry2YjIyt7RRXU24 encrypted",
        "passwd 2KFQnbNIdI.2KYOU encrypted",
        "names",
        "name 10.0.0.80 websrv description the web server",
    ]
    assert "dns server-group DefaultDNS" in texts and " domain-name example.net" in texts
    assert texts[-1] == "prompt hostname context"
    assert "policy-map type inspect dns preset_dns_map" in texts  # inspect maps: kept as written
    # Every line that affects traffic but is not modelled is a warning naming the gap.
    gaps = [w.gap for w in full.warnings if w.gap]
    assert gaps == [
        "failover",
        "failover",
        "timeout sip, sip_media, sip-invite, sip-disconnect",
        "timeout sip-provisional-media, uauth",
        "VPN",
        "VPN",
        "VPN",
    ]
    # The checker's findings: an object-group and an access list nothing uses.
    assert [w.message for w in full.warnings if not w.gap] == [
        "object-group all-servers is defined but never used",
        "access-list std_routes is applied nowhere (no access-group, NAT, class-map or other command "
        "uses it)",
    ]


def test_half_closed_minimum_depends_on_the_release():
    assert error_of("timeout half-closed 0:00:30\n") == (
        "seed.cfg:1:21: timeout half-closed must be 0 or 0:05:00..1193:00:00"
    )
    policy = parse("ASA Version 9.1(2)\ntimeout half-closed 0:00:30\n")
    assert policy.timeouts.half_closed == 30


def test_nat_and_global_without_partner_are_kept_with_a_warning():
    policy = parse(on_base("nat (inside) 5 10.0.0.0 255.255.255.0", "global (outside) 6 interface"), "n.cfg")
    assert policy.nat_rules == []
    assert [str(w) for w in policy.warnings] == [
        "n.cfg:9:1: warning: nat id 5 has no global; this line translates nothing",
        "n.cfg:10:1: warning: global id 6 is not used by any nat line",
    ]
    assert [t for _, t in policy.passthrough] == [
        "nat (inside) 5 10.0.0.0 255.255.255.0",
        "global (outside) 6 interface",
    ]


def test_object_nat_is_modelled_and_prints_back_in_its_object():
    text = on_base(
        "object network obj_any", " subnet 0.0.0.0 0.0.0.0", " nat (inside,outside) dynamic interface"
    )
    policy = parse(text, "o.cfg")
    assert policy.warnings == [] and policy.passthrough == []
    (rule,) = policy.nat_rules
    assert (rule.kind, rule.section, rule.real_object, rule.pool.interface) == ("dynamic", 2, "obj_any", True)
    assert "object network obj_any\n nat (inside,outside) dynamic interface\n" in render(policy)
    again = parse(render(policy))
    same_model(policy, again)


MORE_ERRORS = [
    ("access-list a extended permit ip any any time-range work\n", "1:53: time-range 'work' does not exist"),
    ("object-group network g\n network-object host 10.0.0.256\n", "2:22: invalid IP address '10.0.0.256'"),
    ("object-group network g\n group-object h\n", "2:15: unknown object-group 'h'"),
    ("object network o\n range 10.0.0.9 10.0.0.1\n", "2:17: invalid range 10.0.0.9-10.0.0.1"),
    ("object network o\nobject-group network o\n", "2:22: 'o' is already an object"),
    (
        "object network o\n host 10.0.0.1\naccess-list a extended permit ip any object-group o\n",
        "3:51: 'o' is an object, not an object-group",
    ),
    (
        "access-list a extended permit ip any any\naccess-list a standard permit any\n",
        "2:15: access-list 'a' is extended; cannot add a standard entry",
    ),
    ("access-list a extended permit ip any any eq 80\n", "1:42: ports are only valid for tcp, udp and sctp"),
    ("access-list a remark\n", "1:21: missing remark text"),
    ("static (inside) 10.0.0.1 10.0.0.1\n", "1:8: invalid interfaces '(inside)' (expected (real,mapped))"),
    ("global outside 1 interface\n", "1:8: invalid interface 'outside' (expected (name))"),
    ("global (outside) 1 10.0.0.9-10.0.0.1\n", "1:20: invalid range '10.0.0.9-10.0.0.1'"),
    ("nat (inside) 1 10.0.0.0 255.0.0.0 tcp 70000\n", "1:39: tcp max connections must be 0..65535"),
    ("timeout pat-xlate 0\n", "1:19: timeout pat-xlate must be 0:00:30..0:05:00"),
    (
        "ipv6 route outside 2001:db8::1/32 fe80::1\n",
        "1:20: prefix '2001:db8::1/32' has bits outside its length",
    ),
    (
        "interface Ethernet0\n ipv6 address 2001:db8::1\n",
        "2:15: invalid IPv6 prefix '2001:db8::1' (expected address/length)",
    ),
    ("interface Ethernet0 extra\n", "1:21: unexpected 'extra'"),
    (
        "object-group service WEB udp\n port-object eq domain\n"
        "access-list a extended permit tcp any any object-group WEB\n",
        "3:56: port group 'WEB' is for udp, not tcp",
    ),
    (
        "object-group protocol P\nprotocol-object tcp\n"  # unindented: still the group's sub-command
        "access-list a extended permit object-group Q any any\n",
        "3:44: 'Q' is not a defined protocol or service object-group",
    ),
    (
        "object network o\n host 10.0.0.1\nobject service o\n",
        "3:16: 'o' is already defined as a network object (objects share one name space)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MORE_ERRORS)
def test_more_errors(text: str, expected: str):
    # Every problem of the file is reported; the one the case is about is among them.
    assert f"seed.cfg:{expected}" in error_of(text).splitlines()
