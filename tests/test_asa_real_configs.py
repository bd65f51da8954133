"""Real ASA configurations: every version and object form of 8.0-9.20 loads, console transcripts lose no
line, every problem is reported in one pass, and every line has one fate (modelled, no effect on
traffic through the box, or not modelled and named as such)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror

from fixtures import ASA_INTERFACES, PIX_INTERFACES, kinds
from statewall.cli import main
from statewall.dialects.asa import ConfigError, parse, render
from statewall.dialects.errors import ConfigErrors
from statewall.engine import Firewall
from statewall.events import ConnBuilt, Drop, DropReason
from statewall.logfmt.mpf import format_show_service_policy

CORPUS = Path(__file__).parent / "corpus"

ASA9 = "ASA Version 9.12(4)\nhostname fw\n" + ASA_INTERFACES + "route outside 0.0.0.0 0.0.0.0 203.0.113.254\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, "c.cfg")
    return [str(e) for e in info.value.errors]


# --------------------------------------------------------------------------------------------------
# 1. Every form a real running-config holds


@pytest.mark.parametrize(
    "header",
    [
        "ASA Version 9.9",
        "ASA Version 9.12(4)",
        "ASA Version 9.20(2)10",
        "ASA Version 8.2(5)13",
        "ASA Version 8.0(4)32 <context>",
        "PIX Version 7.2(4)",
    ],
)
def test_every_version_line_form_loads(header: str):
    policy = parse(f"{header}\nhostname fw\n")
    assert policy.version == header.split()[2]
    assert policy.warnings == []


def test_a_version_that_is_no_release_is_a_warning_and_the_newest_defaults_apply():
    policy = parse("ASA Version this-is-an-ASA\nhostname fw\n", "v.cfg")
    assert policy.version is None
    assert [str(w) for w in policy.warnings] == [
        "v.cfg:1:13: warning: 'this-is-an-ASA' is not an ASA release (e.g. 9.12(4)); the newest release's "
        "defaults apply"
    ]


def test_a_pix_6x_configuration_is_refused_at_its_header():
    # PIX 6.3's own syntax (nameif with the hardware name, ip address per interface name, fixup) is not
    # read: the header says so first, then every line the 7.x grammar cannot take is located too.
    text = (
        "PIX Version 6.3(5)\ninterface ethernet0 auto\nnameif ethernet0 outside security0\n"
        "ip address outside 203.0.113.2 255.255.255.0\nfixup protocol ftp 21\n"
    )
    with pytest.raises(ConfigErrors) as e:
        parse(text, "pix.cfg")
    first = str(e.value).splitlines()[0]
    assert first.startswith(
        "pix.cfg:1:13: PIX 6.3(5) is not read by statewall (ASA 8.0 to 9.20 and PIX 7.x are)"
    )
    assert parse("PIX Version 7.2(4)\nhostname fw\n").version == "7.2(4)"


def test_9x_timeouts_with_sctp_and_hostnames_with_underscores_load():
    policy = parse(
        "ASA Version 9.9\nhostname asa_dns-1\n"
        "timeout conn 1:00:00 half-closed 0:10:00 udp 0:02:00 sctp 0:02:00 icmp 0:00:02\n"
        "timeout icmp-error 0:00:02\ntimeout igp stale-route 0:01:10\n"
    )
    assert policy.hostname == "asa_dns-1"
    assert policy.timeouts.extra["sctp"] == "0:02:00"
    # sctp prints on the conn line, where the ASA prints it, and reads back the same.
    assert "timeout conn 1:00:00 half-closed 0:10:00 udp 0:02:00 sctp 0:02:00 icmp 0:00:02" in render(policy)
    again = parse(render(policy)).timeouts
    assert (again.conn, again.extra) == (policy.timeouts.conn, policy.timeouts.extra)


SERVICES = (
    ASA9
    + """\
object network web
 host 192.168.1.10
object service https
 service tcp destination eq https
object service dns
 service tcp-udp destination eq domain
object-group service web-ports tcp
 port-object eq www
 port-object range 8080 8081
object-group service web-services
 service-object object https
 service-object tcp destination eq www
 service-object icmp echo
object-group service old-style
 service-object tcp eq smtp
object-group protocol tunnels
 protocol-object gre
 protocol-object 50
object-group icmp-type pings
 icmp-object echo
 icmp-object echo-reply
object-group network servers
 network-object object web
 network-object host 192.168.1.11
object-group network all
 group-object servers
access-list in remark published services
access-list in extended permit tcp any object-group all object-group web-ports
access-list in extended permit object-group web-services any object web
access-list in extended permit object dns any host 192.168.1.53
access-list in extended permit object-group tunnels any host 192.168.1.12
access-list in extended permit icmp any any object-group pings
access-list in extended permit object-group old-style any host 192.168.1.25 log 4 interval 60
access-group in in interface outside
"""
)


def test_service_protocol_and_icmp_groups_expand_into_the_asa_s_elements():
    policy = parse(SERVICES, "s.cfg")
    by_line: dict[int, list] = {}
    for r in policy.access_lists["in"].rules:
        m = r.match
        by_line.setdefault(r.origin.line, []).append(
            (r.element, m.protocol, m.destination_ports and m.destination_ports[0].low, m.icmp_type)
        )
    assert by_line == {
        # A port group: one element per port; the network group stays one address list.
        39: [(0, 6, 80, None), (1, 6, 8080, None)],
        # A service group: a service object, a TCP port and ICMP echo.
        40: [(0, 6, 443, None), (1, 6, 80, None), (2, 1, (), 8)],
        # tcp-udp: a TCP and a UDP element.
        41: [(0, 6, 53, None), (1, 17, 53, None)],
        # A protocol group (GRE, ESP by number).
        42: [(0, 47, (), None), (1, 50, (), None)],
        # An icmp-type group.
        43: [(0, 1, (), 8), (1, 1, (), 0)],
        # The 8.2 form "service-object tcp eq smtp" is the destination port; log level and interval kept.
        44: [(0, 6, 25, None)],
    }
    rules = policy.access_lists["in"].rules
    assert (rules[-1].log_level, rules[-1].log_interval) == (4, 60)
    assert [str(a) for a in rules[0].match.destinations] == ["192.168.1.10/32", "192.168.1.11/32"]
    assert rules[0].remark == "published services"


def test_service_groups_print_back_as_written_and_read_back_to_the_same_model():
    from test_asa_dialect import same_model

    policy = parse(SERVICES)
    text = render(policy)
    for line in (
        "object-group service web-ports tcp",
        " port-object range 8080 8081",
        " service-object object https",
        "access-list in extended permit tcp any object-group all object-group web-ports",
        "access-list in extended permit object-group web-services any object web",
        "access-list in extended permit object dns any host 192.168.1.53",
        "access-list in extended permit icmp any any object-group pings",
        "access-list in extended permit object-group old-style any host 192.168.1.25 log 4 interval 60",
        "access-list in remark published services",
    ):
        assert line in text.splitlines(), line
    same_model(policy, parse(text))


def test_a_service_group_in_an_access_list_passes_exactly_its_services():
    fw = Firewall(parse(SERVICES))
    ok = fw.receive(
        "outside", bytes(IP(src="198.51.100.7", dst="192.168.1.10") / TCP(dport=443, flags="S")), 1.0
    )
    assert [iface for iface, _ in ok.packets] == ["inside"]
    assert kinds(ok.events, ConnBuilt)
    ping = fw.receive("outside", bytes(IP(src="198.51.100.7", dst="192.168.1.10") / ICMP(type=8)), 1.0)
    assert [iface for iface, _ in ping.packets] == ["inside"]
    dns = fw.receive(
        "outside", bytes(IP(src="198.51.100.7", dst="192.168.1.53") / UDP(dport=53) / DNS()), 1.0
    )
    assert [iface for iface, _ in dns.packets] == ["inside"]
    no = fw.receive(
        "outside", bytes(IP(src="198.51.100.7", dst="192.168.1.10") / TCP(dport=22, flags="S")), 1.0
    )
    (drop,) = kinds(no.events, Drop)
    assert drop.reason is DropReason.ACL_DROP and drop.acl == "in"


def test_interface_forms_load_and_print_back():
    policy = parse(
        "ASA Version 8.4(7)\nhostname fw\n"
        "interface GigabitEthernet0/0\n nameif outside\n security-level 0\n ip address dhcp setroute\n"
        "interface GigabitEthernet0/1\n channel-group 1 mode active\n no nameif\n no security-level\n"
        " no ip address\n"
        "interface Port-channel1.10\n vlan 10\n nameif inside\n security-level 100\n"
        " ip address 10.0.0.1 255.255.255.0\n"
        "interface Ethernet0/2\n switchport access vlan 20\n"
        "interface Management0/0\n shutdown\n nameif management\n management-only\n"
        " ip address 192.168.1.1 255.255.255.0\n",
        "i.cfg",
    )
    outside = policy.interfaces["outside"]
    assert outside.ipv4 == [] and outside.address_source == "dhcp setroute"
    assert policy.interfaces["inside"].vlan == 10
    assert policy.interfaces["management"].management_only and policy.interfaces["management"].shutdown
    gaps = [(w.origin.line, w.gap) for w in policy.warnings if w.gap]
    assert gaps == [
        (6, "ip address dhcp setroute"),
        (8, "EtherChannel membership"),
        (18, "switch port VLAN membership"),
    ]
    text = render(policy)
    assert " ip address dhcp setroute" in text and " channel-group 1 mode active" in text
    assert parse(text).interfaces["outside"].address_source == "dhcp setroute"


def test_names_stay_names_when_printed_back():
    policy = parse(
        PIX_INTERFACES + "names\nname 192.168.9.80 websrv\n"
        "access-list out extended permit tcp any host websrv eq www\naccess-group out in interface outside\n"
    )
    text = render(policy)
    assert "name 192.168.9.80 websrv" in text
    assert "access-list out extended permit tcp any host websrv eq www" in text.splitlines()
    assert parse(text).access_lists["out"].rules[0].match == policy.access_lists["out"].rules[0].match


# --------------------------------------------------------------------------------------------------
# 2. Console transcripts

TRANSCRIPT = """\
ciscoasa> enable
Password: ********
ciscoasa# configure terminal
ciscoasa(config)# interface GigabitEthernet0/0
ciscoasa(config-if)# nameif outside
INFO: Security level for "outside" set to 0 by default.
ciscoasa(config-if)# ip address 203.0.113.2 255.255.255.0
ciscoasa(config-if)# interface GigabitEthernet0/1
ciscoasa(config-if)# nameif inside
INFO: Security level for "inside" set to 100 by default.
ciscoasa(config-if)# ip address 10.0.0.1 255.255.255.0
ciscoasa(config-if)# exit
ciscoasa(config)# object network inside-net
ciscoasa(config-network-object)# subnet 10.0.0.0 255.255.255.0
WARNING: an unrelated console warning
ciscoasa(config-network-object)# nat (inside,outside) dynamic interface
ciscoasa(config-network-object)# show nat
Auto NAT Policies (Section 2)
1 (inside) to (outside) source dynamic inside-net interface
    translate_hits = 0, untranslate_hits = 0
<--- More --->
ciscoasa(config-network-object)# end
ciscoasa# write memory
Building configuration...
Cryptochecksum: 3f2f1d4b 8b2a3c4d 5e6f7a8b 9c0d1e2f
[OK]
ciscoasa# copy running-config startup-config
Source filename [running-config]?
2471 bytes copied in 0.180 secs
"""


def test_console_messages_and_show_output_do_not_close_the_block_or_lose_a_line():
    policy = parse(TRANSCRIPT, "t.txt")
    # The INFO line used to end the interface block: both interfaces lost their addresses and the
    # object NAT was gone, and packet-tracer said allow.
    assert str(policy.interfaces["outside"].ipv4[0]) == "203.0.113.2/24"
    assert str(policy.interfaces["inside"].ipv4[0]) == "10.0.0.1/24"
    (rule,) = policy.nat_rules
    assert (rule.real_object, rule.pool.interface) == ("inside-net", True)
    assert policy.warnings == []
    # Every configuration line has a fate; the console's own lines are not configuration.
    assert [o.line for o, _ in policy.fates] == [4, 5, 7, 8, 9, 11, 13, 14, 16]


def test_a_command_the_console_refused_is_not_applied():
    text = (
        "ciscoasa(config)# interface GigabitEthernet0/0\nciscoasa(config-if)# nameif outside\n"
        "ciscoasa(config-if)# ip address 203.0.113.2 255.255.255.0\n"
        "ciscoasa(config)# access-list a extended permit tcp any any eq 99999\n"
        "                                                                ^\n"
        "ERROR: % Invalid input detected at '^' marker.\n"
        "ciscoasa(config)# access-list a extended permit tcp any any eq 80\n"
    )
    policy = parse(text, "r.txt")
    assert len(policy.access_lists["a"].rules) == 1
    warning = policy.warnings[0]
    assert str(warning).startswith("r.txt:4:19: warning: the console refused this command (ERROR: ")


# --------------------------------------------------------------------------------------------------
# 4. Every problem in one pass


def test_every_error_of_the_file_is_reported_in_file_order_with_columns():
    text = ASA9 + (
        "access-list a extended permit tcp any any eq 70000\n"
        "route nowhere 10.0.0.0 255.0.0.0 192.168.1.2\n"
        "frobnicate\n"
        "access-group missing in interface outside\n"
        "object network o\n host 10.0.0.1\nobject service o\n"
    )
    assert errors_of(text) == [
        "c.cfg:12:46: port must be 0..65535",
        "c.cfg:13:7: route refers to unknown interface 'nowhere'",
        "c.cfg:15:14: access-group refers to unknown access-list 'missing'",
        "c.cfg:18:16: 'o' is already defined as a network object (objects share one name space)",
    ]
    with pytest.raises(ConfigErrors) as info:
        parse(text, "c.cfg")
    assert [str(w) for w in info.value.warnings] == [
        "c.cfg:14:1: warning: unknown command 'frobnicate' ignored"
    ]


def test_an_empty_file_and_a_file_that_is_not_an_asa_configuration_are_errors():
    assert errors_of("") == ["c.cfg:1:1: empty configuration: it holds no command"]
    assert errors_of("! only comments\n:\n") == ["c.cfg:1:1: empty configuration: it holds no command"]
    assert errors_of("Dear team,\nplease find attached\n") == [
        "c.cfg:1:1: not an ASA configuration: none of its lines is an ASA command (first line: 'Dear team,')"
    ]


def test_two_statics_mapping_one_address_to_two_hosts_are_refused():
    text = PIX_INTERFACES + (
        "static (inside,outside) 192.168.9.80 10.0.0.80 netmask 255.255.255.255\n"
        "static (inside,outside) 192.168.9.80 10.0.0.81 netmask 255.255.255.255\n"
        "static (inside,outside) tcp 192.168.9.81 www 10.0.0.80 www netmask 255.255.255.255\n"
        "static (inside,outside) tcp 192.168.9.81 smtp 10.0.0.81 smtp netmask 255.255.255.255\n"
    )
    assert errors_of(text) == [
        "c.cfg:10:25: mapped address 192.168.9.80 on outside is already mapped to 10.0.0.80 by line 9; a "
        "static cannot map it to 10.0.0.81 too"
    ]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def packet_tracer(capsys, cfg: Path, *words: str) -> tuple[int, str, str]:
    """``statewall packet-tracer -c CFG input WORDS...``, as ``run`` returns it."""
    return run(capsys, "packet-tracer", "-c", str(cfg), "input", *words)


def test_check_reports_all_problems_as_json_records(tmp_path: Path, capsys):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(ASA9 + "route nowhere 10.0.0.0 255.0.0.0 192.168.1.2\nfrobnicate\ntimeout conn 1\n")
    code, out, _ = run(capsys, "check", "--json", "-c", str(cfg))
    doc = json.loads(out)
    assert code == 2 and doc["ok"] is False
    assert [(p["severity"], p["line"], p["col"]) for p in doc["problems"]] == [
        ("error", 12, 7),
        ("warning", 13, 1),
        ("error", 14, 14),
    ]


def test_check_strict_makes_warnings_errors_and_verbose_lists_the_lines_without_effect(
    tmp_path: Path, capsys
):
    cfg = tmp_path / "w.cfg"
    cfg.write_text(ASA9 + "ssh 192.168.1.0 255.255.255.0 inside\nthreat-detection scanning-threat shun\n")
    code, out, err = run(capsys, "check", "-c", str(cfg))
    assert code == 0
    assert err.startswith(f"{cfg}:13:1: warning: threat-detection shun is not modelled")
    assert out.splitlines()[-3:] == [
        "not modelled: threat-detection shun (1)",
        "lines: 10 modelled, 2 with no effect on traffic through the box, 1 not modelled",
        "platform: ASA 5516-X, connection limit 250000 (default; set it with --asa-platform)",
    ]
    code, out, err = run(capsys, "check", "--strict", "-c", str(cfg))
    assert code == 2 and "error: threat-detection shun is not modelled" in err
    code, out, _ = run(capsys, "check", "--verbose", "-c", str(cfg))
    assert f"{cfg}:12: no effect on traffic through the box: ssh 192.168.1.0 255.255.255.0 inside" in out
    assert f"{cfg}:2: no effect on traffic through the box: hostname fw" in out


# --------------------------------------------------------------------------------------------------
# 3 and 5. Not modelled: named in check, carried in the model, never shown as working


GAPS = (
    ASA9
    + """\
access-list vpn extended permit ip 192.168.1.0 255.255.255.0 10.9.0.0 255.255.0.0
crypto map outside_map 10 match address vpn
crypto map outside_map 10 set peer 198.51.100.1
crypto map outside_map interface outside
ip verify reverse-path interface outside
nat-control
threat-detection scanning-threat shun
logging enable
policy-map type inspect dns preset_dns_map
 parameters
  message-length maximum 512
  no dns-guard
policy-map global_policy
 class inspection_default
  inspect dns preset_dns_map
  inspect icmp
  inspect icmp error
  inspect ftp
service-policy global_policy global
"""
)


def test_features_that_affect_traffic_but_are_not_modelled_are_named_and_carried_in_the_model():
    policy = parse(GAPS, "g.cfg")
    gaps = [(w.origin.line, w.col, w.gap) for w in policy.warnings if w.gap]
    assert gaps == [
        (13, 1, "VPN (crypto map outside_map)"),
        (14, 1, "VPN (crypto map outside_map)"),
        (15, 1, "VPN (crypto map outside_map)"),
        (18, 1, "threat-detection shun"),
    ]
    # What packet-tracer and replay need to say "a real ASA would encrypt this": the map's ACL and
    # interface together.
    (vpn,) = [u for u in policy.unmodelled if u.acl and u.interface]
    assert (vpn.acl, vpn.interface) == ("vpn", "outside")
    assert vpn.action == "encrypt traffic matching access-list vpn and send it through outside"
    # Item 5's commands, parsed fully into the model.
    assert list(policy.reverse_path) == ["outside"] and policy.nat_control
    dm = policy.dns_inspect_maps["preset_dns_map"]
    assert (dm.message_length_max, dm.dns_guard) == (512, False)
    # Logging is modelled: the logging module applies it to what is logged and sent. nat-control does
    # not exist in 9.x: a warning, no effect.
    fates = dict((o.line, f) for o, f in policy.fates)
    assert (fates[19], fates[17]) == ("modelled", "no-effect")


def test_show_service_policy_never_lists_an_unimplemented_inspection_as_active():
    text = format_show_service_policy(parse(GAPS))
    assert "      Inspect: ftp, packet 0, drop 0, reset-drop 0" in text.splitlines()
    for engine in ("dns preset_dns_map", "icmp", "icmp error"):
        assert f"      Inspect: {engine}, packet 0, drop 0, reset-drop 0" in text.splitlines()
    # An inspection statewall does not implement is never shown as active.
    text = format_show_service_policy(parse(GAPS.replace("inspect icmp error", "inspect sip")))
    assert "      Inspect: sip (not modelled: statewall does not inspect sip)" in text.splitlines()


def test_the_not_modelled_item_5_commands_print_back():
    policy = parse(GAPS)
    again = parse(render(policy))
    assert again.reverse_path.keys() == policy.reverse_path.keys() and again.nat_control
    assert again.dns_inspect_maps["preset_dns_map"].message_length_max == 512


def test_a_time_ranged_entry_loads_and_says_it_is_applied_at_all_times():
    policy = parse(
        ASA9 + "time-range work\n periodic weekdays 8:00 to 18:00\n"
        "access-list in extended permit tcp any any eq ssh time-range work\n"
        "access-group in in interface outside\n",
        "tr.cfg",
    )
    (rule,) = policy.access_lists["in"].rules
    assert rule.time_range == "work"
    (w,) = [w for w in policy.warnings if w.gap == "time-range"]
    assert str(w) == (
        "tr.cfg:14:51: warning: time-range work is not modelled: statewall applies this entry at all times, "
        "a "
        "real ASA only during the time range"
    )
    assert "time-range work\n periodic weekdays 8:00 to 18:00\n" in render(policy)


# --------------------------------------------------------------------------------------------------
# 6. What a configuration checker finds


def test_checker_warnings_shadowed_unused_applied_nowhere_overlapping():
    policy = parse(
        ASA9 + "interface GigabitEthernet0/2\n nameif dmz\n security-level 50\n"
        " ip address 192.168.1.129 255.255.255.128\n"
        "object network unused-host\n host 10.1.1.1\n"
        "object-group service unused-ports tcp\n port-object eq 22\n"
        "access-list in extended permit tcp any 192.168.1.0 255.255.255.0\n"
        "access-list in extended permit tcp any host 192.168.1.10 eq www\n"
        "access-list in extended deny ip any any\n"
        "access-list in extended permit udp any any eq domain\n"
        "access-list orphan extended permit ip any any\n"
        "access-group in in interface outside\n",
        "k.cfg",
    )
    found = [str(w) for w in policy.warnings]
    assert found == [
        "k.cfg:7:1: warning: interface inside (192.168.1.0/24) overlaps interface dmz (192.168.1.128/25)",
        "k.cfg:16:1: warning: object unused-host is defined but never used",
        "k.cfg:18:1: warning: port object-group unused-ports is defined but never used",
        "k.cfg:21:1: warning: access-list in: this entry can never match: the entry at line 20 ('access-list "
        "in extended permit tcp any 192.168.1.0 255.255.255.0') matches everything it matches",
        "k.cfg:23:1: warning: access-list in: this entry can never match: the entry at line 22 ('access-list "
        "in extended deny ip any any') matches everything it matches",
        "k.cfg:24:1: warning: access-list orphan is applied nowhere (no access-group, NAT, class-map or "
        "other command uses it)",
    ]


# --------------------------------------------------------------------------------------------------
# Scale: the loader is linear in the number of lines


def test_a_large_generated_configuration_loads_whole():
    lines = [ASA9.rstrip("\n")]
    n_objects = 5000
    for i in range(n_objects):
        lines += [f"object network h{i}", f" host 10.{i >> 8}.{i & 255}.1"]
    lines += ["object-group service web tcp", " port-object eq www", " port-object eq https"]
    for i in range(45000):
        lines.append(f"access-list in extended permit tcp any object h{i % n_objects} object-group web")
        lines.append(
            f"access-list in extended permit udp any host 172.16.{i >> 8 & 255}.{i & 255} eq {1 + i}"
        )
    lines += ["access-group in in interface outside", "route inside 172.16.0.0 255.255.0.0 192.168.1.2"]
    text = "\n".join(lines) + "\n"
    assert len(lines) > 100_000
    policy = parse(text, "big.cfg")
    rules = policy.access_lists["in"].rules
    assert len(rules) == 45000 * 2 + 45000  # the web group expands to two elements
    assert len(policy.fates) == text.count("\n")
    # The same host/port pair repeats every 5000 entries: each repeat is found shadowed, no other entry.
    shadowed = [w for w in policy.warnings if "can never match" in w.message]
    assert len(shadowed) == 45000 - n_objects
    fw = Firewall(policy)
    last = fw.receive(
        "outside", bytes(IP(src="198.51.100.1", dst="172.16.175.199") / UDP(sport=5, dport=45000)), 1.0
    )
    assert [iface for iface, _ in last.packets] == ["inside"]


def test_deeply_nested_and_very_large_groups_load():
    depth = 3000
    lines = [ASA9.rstrip("\n"), "object-group network g0", " network-object host 192.168.1.50"]
    for i in range(1, depth):
        lines += [f"object-group network g{i}", f" group-object g{i - 1}"]
    lines += ["object-group service s0", " service-object tcp destination eq www"]
    for i in range(1, depth):
        lines += [f"object-group service s{i}", f" group-object s{i - 1}"]
    lines.append("object-group network wide")
    lines += [f" network-object host 10.{i >> 8 & 255}.{i & 255}.9" for i in range(20000)]
    lines += [
        f"access-list in extended permit object-group s{depth - 1} any object-group g{depth - 1}",
        "access-list in extended permit ip object-group wide any",
        "access-group in in interface outside",
        f"nat (inside,outside) source dynamic g{depth - 1} interface",
    ]
    policy = parse("\n".join(lines) + "\n")
    first, second = policy.access_lists["in"].rules
    assert [str(n) for n in first.match.destinations] == ["192.168.1.50/32"]
    assert (first.match.protocol, first.match.destination_ports[0].low) == (6, 80)
    assert len(second.match.sources) == 20000
    (rule,) = policy.nat_rules
    assert [str(n) for n in rule.real] == ["192.168.1.50/32"]


VPN = (
    ASA9
    + """\
access-list vpn extended permit ip 192.168.1.0 255.255.255.0 10.9.0.0 255.255.0.0
crypto map outside_map 10 match address vpn
crypto map outside_map 10 set peer 198.51.100.1
crypto map outside_map interface outside
"""
)


def test_packet_tracer_shows_the_vpn_a_real_asa_would_encrypt_into(tmp_path: Path, capsys):
    cfg = tmp_path / "vpn.cfg"
    cfg.write_text(VPN)
    code, out, _ = packet_tracer(capsys, cfg, "inside", "tcp", "192.168.1.5", "40000", "10.9.1.1", "443")
    assert code == 0
    # In the ASA's place for it: after NAT (per-session) and IP-OPTIONS, before FLOW-CREATION (a public
    # ASA 9.x output, CORP-ASA1's: NAT, NAT per-session, IP-OPTIONS, FOVER, FLOW-EXPORT, VPN encrypt,
    # ..., FLOW-CREATION), numbered with the others, its Result never ALLOW or DROP.
    asa, _, notes = out.partition("Action: allow\n")
    types = [line[6:] for line in asa.splitlines() if line.startswith("Type: ")]
    assert types[-4:] == ["NAT", "IP-OPTIONS", "VPN", "FLOW-CREATION"]
    block = asa.split("Type: VPN\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == [
        "Subtype: encrypt",
        "Result: NOT MODELLED",
        "Config:",
        "crypto map outside_map 10 match address vpn",
        "Additional Information:",
        "a real ASA would encrypt traffic matching access-list vpn and send it through outside; statewall "
        f"does not model VPN (crypto map outside_map) ({cfg}:13)",
    ]
    assert "Phase: 6\nType: VPN\n" in asa
    assert "statewall: the phases marked NOT MODELLED are what a real ASA would also do" in notes
    # The same phase in the xml and --json forms.
    code, xml, _ = packet_tracer(
        capsys, cfg, "inside", "tcp", "192.168.1.5", "40000", "10.9.1.1", "443", "xml"
    )
    assert code == 0
    assert "<id>6</id>\n<type>VPN</type>\n<subtype>encrypt</subtype>\n<result>NOT MODELLED</result>" in xml
    code, js, _ = run(capsys, "packet-tracer", "-c", str(cfg), "--json", "input", "inside", "tcp",
                      "192.168.1.5", "40000", "10.9.1.1", "443")  # fmt: skip
    doc = json.loads(js)
    vpn = [ph for ph in doc["phases"] if ph["type"] == "VPN"]
    assert [(ph["id"], ph["result"], ph["modelled"]) for ph in vpn] == [(6, "NOT MODELLED", False)]
    assert doc["phases"][-1]["type"] == "FLOW-CREATION" and doc["result"]["action"] == "allow"
    # Traffic the crypto map does not select: no such phase.
    code, out, _ = packet_tracer(capsys, cfg, "inside", "tcp", "192.168.1.5", "40000", "8.8.8.8", "443")
    assert "NOT MODELLED" not in out


def test_replay_counts_packets_a_real_asa_would_have_encrypted_apart(tmp_path: Path):
    from statewall.pcapio import PcapWriter
    from statewall.replay import replay

    cap = tmp_path / "in.pcap"
    with PcapWriter(cap) as w:
        for n, dst in enumerate(["10.9.1.1", "8.8.8.8", "10.9.2.2"]):
            w.write(bytes(IP(src="192.168.1.5", dst=dst) / UDP(sport=5000, dport=53) / DNS()), float(n))
    summary = replay(parse(VPN), [("inside", cap)], tmp_path / "out")
    assert summary["forwarded"] == 3
    assert summary["not_modelled"] == {"VPN (crypto map outside_map)": 2}


def test_an_fqdn_object_loads_and_the_entries_naming_it_say_they_are_not_applied():
    from test_asa_dialect import same_model

    text = ASA9 + (
        "object network cdn\n fqdn v4 www.example.com\n"
        "access-list out extended permit tcp any object cdn eq https\n"
        "access-list out extended permit tcp any any eq ssh\n"
        "access-group out in interface outside\n"
    )
    policy = parse(text, "f.cfg")
    assert [str(w) for w in policy.warnings if w.gap] == [
        "f.cfg:13:2: warning: FQDN object is not modelled (a real ASA would resolve www.example.com and "
        "match the addresses it resolves to); statewall ignores it",
        "f.cfg:14:1: warning: this entry names FQDN object cdn, which statewall cannot resolve: the entry is "
        "not applied (not modelled)",
    ]
    # Only the entry statewall can apply is in the model; the other still prints back.
    (rule,) = policy.access_lists["out"].rules
    assert rule.match.destination_ports[0].low == 22
    printed = render(policy)
    assert " fqdn v4 www.example.com" in printed
    assert "access-list out extended permit tcp any object cdn eq https" in printed
    same_model(policy, parse(printed))


def test_a_port_group_in_the_source_port_position():
    policy = parse(
        ASA9 + "object-group service high tcp\n port-object range 1024 65535\n"
        "access-list in extended permit tcp any object-group high host 192.168.1.10 eq www\n"
        "access-group in in interface outside\n"
    )
    (rule,) = policy.access_lists["in"].rules
    assert (rule.match.source_ports[0].low, rule.match.source_ports[0].high) == (1024, 65535)
    assert "access-list in extended permit tcp any object-group high host 192.168.1.10 eq www" in render(
        policy
    )
    fw = Firewall(policy)
    low = fw.receive(
        "outside", bytes(IP(src="198.51.100.7", dst="192.168.1.10") / TCP(sport=80, dport=80)), 1.0
    )
    assert kinds(low.events, Drop)
    high = fw.receive(
        "outside",
        bytes(IP(src="198.51.100.7", dst="192.168.1.10") / TCP(sport=40000, dport=80, flags="S")),
        1.0,
    )
    assert [iface for iface, _ in high.packets] == ["inside"]


def test_identity_firewall_entries_load_and_say_they_are_not_applied():
    policy = parse(
        ASA9 + "access-list in extended permit ip user LOCAL\\bob any any\n"
        "access-list in extended permit tcp any any eq ssh\naccess-group in in interface outside\n",
        "u.cfg",
    )
    assert [str(w) for w in policy.warnings] == [
        "u.cfg:12:1: warning: this entry matches on user LOCAL\\bob, which statewall cannot know: the entry "
        "is not applied (not modelled)"
    ]
    (rule,) = policy.access_lists["in"].rules
    assert rule.match.destination_ports[0].low == 22
    assert "access-list in extended permit ip user LOCAL\\bob any any" in render(policy).splitlines()


def test_8_2_outside_nat_is_kept_as_written_and_not_applied():
    policy = parse(
        PIX_INTERFACES + "global (inside) 2 interface\nnat (outside) 2 192.168.9.0 255.255.255.0 outside\n",
        "o.cfg",
    )
    assert [r for r in policy.nat_rules if r.real_interface == "outside"] == []
    (w,) = [w for w in policy.warnings if w.gap]
    assert str(w).startswith("o.cfg:10:43: warning: outside NAT is not modelled")
    assert "nat (outside) 2 192.168.9.0 255.255.255.0 outside" in render(policy).splitlines()


def test_the_pager_s_prompt_and_the_blanks_that_erase_it_lose_no_line():
    text = (
        "interface GigabitEthernet0/0\n nameif outside\n security-level 0\n"
        "<--- More --->\n"
        "               ip address 203.0.113.2 255.255.255.0\n"
        "<--- More --->\n"
        "              interface GigabitEthernet0/1\n nameif inside\n ip address 10.0.0.1 255.255.255.0\n"
    )
    policy = parse(text)
    assert str(policy.interfaces["outside"].ipv4[0]) == "203.0.113.2/24"
    assert str(policy.interfaces["inside"].ipv4[0]) == "10.0.0.1/24"
    assert policy.warnings == []


def test_packet_tracer_names_the_inspections_it_does_not_model(tmp_path: Path, capsys):
    cfg = tmp_path / "g.cfg"
    cfg.write_text(GAPS.replace("inspect icmp error", "inspect sip"))
    code, out, _ = packet_tracer(capsys, cfg, "inside", "udp", "192.168.1.5", "5060", "198.51.100.9", "5060")
    assert code == 0
    phases = out.split("Action: allow\n", 1)[0]
    assert "Type: INSPECT\nSubtype: sip\nResult: NOT MODELLED\nConfig:\ninspect sip\n" in phases
    # With the INSPECT phases: after IP-OPTIONS (no inspection of this flow is modelled), before
    # FLOW-CREATION.
    types = [line[6:] for line in phases.splitlines() if line.startswith("Type: ")]
    assert types[types.index("IP-OPTIONS") :] == ["IP-OPTIONS", "INSPECT", "FLOW-CREATION"]
    # The factory default policy's inspections, when the configuration has no service policy of its own.
    cfg.write_text(ASA9)
    code, out, _ = packet_tracer(capsys, cfg, "inside", "udp", "192.168.1.5", "40000", "198.51.100.9", "69")
    phases = out.split("Action: allow\n", 1)[0]
    assert "Subtype: tftp\nResult: NOT MODELLED\nConfig:\npolicy-map global_policy / inspect tftp\n" in phases
    for port in ("21", "53"):  # FTP and DNS inspection are modelled
        code, out, _ = packet_tracer(
            capsys,
            cfg,
            "inside",
            "tcp" if port == "21" else "udp",
            "192.168.1.5",
            "40000",
            "198.51.100.9",
            port,
        )
        assert "Action: allow" in out and "NOT MODELLED" not in out


def test_a_not_modelled_inspection_written_in_two_classes_cites_the_matching_classs_line(
    tmp_path: Path, capsys
):
    cfg = tmp_path / "two.cfg"
    cfg.write_text(
        ASA9 + "access-list sip-a extended permit udp any any eq 5060\n"
        "access-list sip-b extended permit udp any any eq 5070\n"
        "class-map a\n match access-list sip-a\n"
        "class-map b\n match access-list sip-b\n"
        "policy-map edge\n class a\n  inspect sip\n class b\n  inspect sip\n"
        "service-policy edge interface inside\n"
    )
    lines = cfg.read_text().splitlines()
    first, second = (i + 1 for i, ln in enumerate(lines) if ln == "  inspect sip")
    for port, line in (("5060", first), ("5070", second)):
        code, out, _ = packet_tracer(
            capsys, cfg, "inside", "udp", "192.168.1.5", "40000", "198.51.100.9", port
        )
        assert code == 0
        phase = out.split("Subtype: sip\nResult: NOT MODELLED\n", 1)[1].split("\n\n", 1)[0]
        assert f"{cfg}:{line}" in phase, (port, phase)


def _class_limit_config(version: str, acl_host: str) -> str:
    """A published server (8.2 static) whose class-map access list names ``acl_host``, with conn-max 1."""
    return (
        f"ASA Version {version}\n"
        + PIX_INTERFACES
        + "static (inside,outside) 192.168.9.80 10.0.0.80 netmask 255.255.255.255\n"
        "access-list in extended permit tcp any host 192.168.9.80 eq www\n"
        "access-group in in interface outside\n"
        f"access-list web extended permit tcp any host {acl_host} eq www\n"
        "class-map web-class\n match access-list web\n"
        "policy-map global_policy\n class web-class\n  set connection conn-max 1\n"
        "service-policy global_policy global\n"
    )


@pytest.mark.parametrize(
    ("version", "acl_host", "limited"),
    [
        ("8.2(5)", "192.168.9.80", True),  # 8.2: the mapped address is what the class sees
        ("8.2(5)", "10.0.0.80", False),
        ("8.4(7)", "10.0.0.80", True),  # 8.3+: the real address
        ("8.4(7)", "192.168.9.80", False),
    ],
)
def test_class_map_access_lists_match_mapped_addresses_before_8_3_and_real_ones_after(
    version: str, acl_host: str, limited: bool
):
    text = _class_limit_config(version, acl_host)
    if version.startswith("8.4"):
        # 8.3+ NAT for the same server.
        text = text.replace(
            "static (inside,outside) 192.168.9.80 10.0.0.80 netmask 255.255.255.255\n",
            "object network web\n host 10.0.0.80\n nat (inside,outside) static 192.168.9.80\n",
        ).replace("host 192.168.9.80 eq www\naccess-group", "host 10.0.0.80 eq www\naccess-group")
    policy = parse(text, "m.cfg")
    assert not [w for w in policy.warnings if w.gap]  # modelled: no pre-8.3 warning any more
    fw = Firewall(policy)
    syn = [
        bytes(IP(src="198.51.100.7", dst="192.168.9.80") / TCP(sport=sport, dport=80, flags="S"))
        for sport in (40001, 40002)
    ]
    first = fw.receive("outside", syn[0], 1.0)
    assert [iface for iface, _ in first.packets] == ["inside"]
    second = fw.receive("outside", syn[1], 1.0)
    if limited:
        (d,) = kinds(second.events, Drop)
        assert d.reason is DropReason.CONN_LIMIT and second.packets == []
    else:
        assert [iface for iface, _ in second.packets] == ["inside"]


def test_ip_verify_reverse_path_drops_a_spoofed_source_with_106021(tmp_path: Path, capsys):
    from statewall.logfmt.asa import format_event

    policy = parse(
        ASA9 + "ip verify reverse-path interface outside\n"
        "access-list out extended permit ip any any\naccess-group out in interface outside\n",
        "rpf.cfg",
    )
    assert not [w for w in policy.warnings if w.gap]  # modelled: the engine's RPF-CHECK stage
    fw = Firewall(policy)
    # A packet from the outside claiming an inside source: the route back leaves by inside.
    spoofed = fw.receive(
        "outside", bytes(IP(src="192.168.1.77", dst="192.168.1.10") / UDP(dport=53) / DNS()), 1.0
    )
    (d,) = kinds(spoofed.events, Drop)
    assert d.reason is DropReason.RPF_VIOLATED and spoofed.packets == []
    assert d.origin.text == "ip verify reverse-path interface outside"
    (line,) = format_event(d)
    assert line.endswith(
        "%ASA-1-106021: Deny UDP reverse path check from 192.168.1.77 to 192.168.1.10 on interface outside"
    )
    # A source the default route leads back to passes, and so does traffic from an interface without it.
    ok = fw.receive("outside", bytes(IP(src="198.51.100.7", dst="192.168.1.10") / UDP(dport=53) / DNS()), 1.0)
    assert [iface for iface, _ in ok.packets] == ["inside"]
    out = fw.receive("inside", bytes(IP(src="10.9.9.9", dst="198.51.100.7") / UDP(dport=53) / DNS()), 1.0)
    assert [iface for iface, _ in out.packets] == ["outside"]
    # packet-tracer shows the stage and the line behind it.
    cfg = tmp_path / "rpf.cfg"
    cfg.write_text(ASA9 + "ip verify reverse-path interface outside\n")
    code, text, _ = packet_tracer(capsys, cfg, "outside", "udp", "192.168.1.77", "5000", "192.168.1.10", "53")
    assert (
        "Type: RPF-CHECK\nSubtype: reverse-path\nResult: DROP\nConfig:\n"
        "ip verify reverse-path interface outside" in text
    )
    assert "Drop-reason: (rpf-violated) Reverse-path verify failed" in text


# --------------------------------------------------------------------------------------------------
# 5. nat-control and 8.2's translation requirements (305005)

DMZ = "interface Ethernet2\n nameif dmz\n security-level 50\n ip address 172.16.0.1 255.255.255.0\n"


def _nat82(extra: str) -> Firewall:
    return Firewall(
        parse(
            "ASA Version 8.2(5)\n"
            + PIX_INTERFACES
            + DMZ
            + "route outside 0.0.0.0 0.0.0.0 192.168.9.2\n"
            + extra,
            "n.cfg",
        )
    )


def _one_drop(result) -> Drop:
    (d,) = kinds(result.events, Drop)
    assert result.packets == []
    return d


def test_nat_control_drops_a_flow_to_a_lower_level_that_no_nat_rule_matches_with_305005():
    from statewall.logfmt.asa import format_event

    fw = _nat82("nat-control\n")
    res = fw.receive(
        "inside", bytes(IP(src="10.0.0.9", dst="198.51.100.25") / TCP(sport=11039, dport=80, flags="S")), 1.0
    )
    d = _one_drop(res)
    assert d.reason is DropReason.NAT_FAILED and d.origin.text == "nat-control"
    (line,) = format_event(d)
    assert line.endswith(
        "%ASA-3-305005: No translation group found for tcp src inside:10.0.0.9/11039 "
        "dst outside:198.51.100.25/80"
    )
    ping = fw.receive("inside", bytes(IP(src="10.0.0.9", dst="198.51.100.25") / ICMP(id=7, seq=1)), 1.0)
    (line,) = format_event(_one_drop(ping))
    assert line.endswith(
        "%ASA-3-305005: No translation group found for icmp src inside:10.0.0.9 dst outside:198.51.100.25 "
        "(type 8, code 0)"
    )
    # To a higher level no translation is needed (only outside NAT would require one).
    fw = _nat82(
        "nat-control\naccess-list o extended permit tcp any any\naccess-group o in interface outside\n"
    )
    res = fw.receive(
        "outside", bytes(IP(src="198.51.100.25", dst="10.0.0.9") / TCP(sport=4000, dport=80, flags="S")), 1.0
    )
    assert [iface for iface, _ in res.packets] == ["inside"]


@pytest.mark.parametrize(
    "rule",
    [
        "nat (inside) 0 10.0.0.0 255.255.255.0",  # identity NAT
        "access-list nonat extended permit ip 10.0.0.0 255.255.255.0 any\nnat (inside) 0 access-list nonat",
        "static (inside,outside) 10.0.0.9 10.0.0.9 netmask 255.255.255.255",  # identity static
        "global (outside) 1 interface\nnat (inside) 1 10.0.0.0 255.255.255.0",  # PAT
    ],
)
def test_under_nat_control_a_nat_rule_identity_or_exemption_lets_the_flow_pass(rule: str):
    fw = _nat82("nat-control\n" + rule + "\n")
    res = fw.receive(
        "inside", bytes(IP(src="10.0.0.9", dst="198.51.100.25") / TCP(sport=11039, dport=80, flags="S")), 1.0
    )
    assert [iface for iface, _ in res.packets] == ["outside"]
    assert not kinds(res.events, Drop)


def test_nat_control_same_security_needs_a_rule_only_from_an_interface_with_dynamic_nat():
    base = (
        "same-security-traffic permit inter-interface\n"
        "interface Ethernet3\n nameif dmz2\n security-level 50\n ip address 172.16.1.1 255.255.255.0\n"
        "nat-control\n"
    )
    fw = _nat82(base)
    res = fw.receive(
        "dmz", bytes(IP(src="172.16.0.5", dst="172.16.1.5") / UDP(sport=5000, dport=53) / DNS()), 1.0
    )
    assert [iface for iface, _ in res.packets] == ["dmz2"]
    fw = _nat82(base + "global (outside) 2 interface\nnat (dmz) 2 172.16.0.0 255.255.255.0\n")
    d = _one_drop(
        fw.receive(
            "dmz", bytes(IP(src="172.16.0.5", dst="172.16.1.5") / UDP(sport=5000, dport=53) / DNS()), 1.0
        )
    )
    assert d.reason is DropReason.NAT_FAILED and d.detail == {"no_group": True}


def test_a_nat_id_without_a_global_on_a_lower_interface_drops_with_305005_even_without_nat_control():
    from statewall.logfmt.asa import format_event

    fw = _nat82("global (outside) 1 interface\nnat (inside) 1 10.0.0.0 255.255.255.0\n")
    # Outside: PAT to the interface address.
    out = fw.receive(
        "inside", bytes(IP(src="10.0.0.9", dst="198.51.100.25") / UDP(sport=5000, dport=53) / DNS()), 1.0
    )
    assert [iface for iface, _ in out.packets] == ["outside"]
    # The dmz (lower than inside) has no global 1: the real ASA refuses to send the real address there.
    d = _one_drop(
        fw.receive(
            "inside", bytes(IP(src="10.0.0.9", dst="172.16.0.5") / UDP(sport=5000, dport=53) / DNS()), 1.0
        )
    )
    assert d.origin.text == "nat (inside) 1 10.0.0.0 255.255.255.0"
    (line,) = format_event(d)
    assert line.endswith(
        "%ASA-3-305005: No translation group found for udp src inside:10.0.0.9/5000 dst dmz:172.16.0.5/53"
    )
    # A host outside the nat rule's addresses goes untranslated, as before.
    ok = fw.receive(
        "inside", bytes(IP(src="10.0.1.5", dst="172.16.0.5") / UDP(sport=5000, dport=53) / DNS()), 1.0
    )
    assert [iface for iface, _ in ok.packets] == ["dmz"]


def test_packet_tracer_shows_the_nat_stage_refusing_for_nat_control(tmp_path: Path, capsys):
    cfg = tmp_path / "n.cfg"
    cfg.write_text(
        "ASA Version 8.2(5)\n" + PIX_INTERFACES + "route outside 0.0.0.0 0.0.0.0 192.168.9.2\nnat-control\n"
    )
    code, text, _ = packet_tracer(capsys, cfg, "inside", "tcp", "10.0.0.9", "1234", "198.51.100.25", "80")
    assert (
        "Type: NAT\nSubtype: \nResult: DROP\nConfig:\nnat-control\nAdditional Information:\n"
        "No translation group found: nat-control: no NAT rule matches this flow\n" in text
    )
    assert "Drop-reason: (nat-xlate-failed) NAT failed" in text


# --------------------------------------------------------------------------------------------------
# 5. inspect dns with preset_dns_map: DNS guard, message-length maximum (410001)


def _dns_query(qid: int, sport: int = 5353, edns: int | None = None) -> bytes:
    from scapy.layers.dns import DNS, DNSQR, DNSRROPT

    dns = DNS(id=qid, qd=DNSQR(qname="example.com"))
    if edns is not None:
        dns.ar = DNSRROPT(rclass=edns)
    return bytes(IP(src="192.168.1.5", dst="198.51.100.53") / UDP(sport=sport, dport=53) / dns)


def _dns_reply(qid: int, size: int = 0, dport: int = 5353) -> bytes:
    from scapy.layers.dns import DNS, DNSQR, DNSRR

    an = DNSRR(rrname="example.com", type="TXT", rdata="x" * size) if size else DNSRR(rrname="example.com")
    dns = DNS(id=qid, qr=1, qd=DNSQR(qname="example.com"), an=an)
    return bytes(IP(src="198.51.100.53", dst="192.168.1.5") / UDP(sport=53, dport=dport) / dns)


def test_dns_guard_lets_one_reply_per_query_through_and_closes_the_connection_on_it():
    from statewall.events import ConnTeardown
    from statewall.logfmt.asa import format_event

    fw = Firewall(parse(ASA9, "d.cfg"))  # the factory global_policy: inspect dns preset_dns_map
    assert [i for i, _ in fw.receive("inside", _dns_query(77), 1.0).packets] == ["outside"]
    # A reply whose id answers no query is dropped; the connection stays for the real answer.
    wrong = fw.receive("outside", _dns_reply(78), 1.1)
    (d,) = kinds(wrong.events, Drop)
    assert d.reason is DropReason.INSPECT_DNS_ID and wrong.packets == []
    answer = fw.receive("outside", _dns_reply(77), 1.2)
    assert [i for i, _ in answer.packets] == ["inside"]
    (t,) = kinds(answer.events, ConnTeardown)
    assert t.reason == "Flow closed by inspection" and len(fw.conns) == 0
    # A second answer to the same query is a new flow from outside: the access rules refuse it.
    again = fw.receive("outside", _dns_reply(77), 1.3)
    (line,) = format_event(_one_drop(again))
    assert line.endswith(
        "%ASA-2-106006: Deny inbound UDP from 198.51.100.53/53 to 192.168.1.5/5353 on interface outside"
    )


def test_two_queries_on_one_connection_close_it_after_the_second_answer():
    fw = Firewall(parse(ASA9, "d.cfg"))
    fw.receive("inside", _dns_query(1), 1.0)
    fw.receive("inside", _dns_query(2), 1.0)
    assert [i for i, _ in fw.receive("outside", _dns_reply(2), 1.1).packets] == ["inside"]
    assert len(fw.conns) == 1
    assert [i for i, _ in fw.receive("outside", _dns_reply(1), 1.2).packets] == ["inside"]
    assert len(fw.conns) == 0


def test_a_dns_reply_over_the_preset_map_s_512_bytes_is_dropped_with_410001():
    from statewall.logfmt.asa import format_event

    fw = Firewall(parse(ASA9, "d.cfg"))
    fw.receive("inside", _dns_query(77), 1.0)
    big = fw.receive("outside", _dns_reply(77, size=600), 1.1)
    d = _one_drop(big)
    assert d.reason is DropReason.INSPECT_DNS_TOO_LONG
    (line,) = format_event(d)
    assert line.endswith(
        "%ASA-4-410001: Dropped UDP DNS reply from outside:198.51.100.53/53 to inside:192.168.1.5/5353; "
        "packet length 655 bytes exceeds configured limit of 512 bytes"
    )
    assert fw.drops[DropReason.INSPECT_DNS_TOO_LONG] == 1
    # The preset map's "message-length maximum client auto": a client advertising EDNS0 4096 gets
    # its long answer.
    fw.receive("inside", _dns_query(78, sport=5354, edns=4096), 2.0)
    long_ok = fw.receive("outside", _dns_reply(78, size=600, dport=5354), 2.1)
    assert [i for i, _ in long_ok.packets] == ["inside"]


def test_a_dns_map_sets_the_limit_and_turns_dns_guard_off():
    text = (
        ASA9 + "policy-map type inspect dns big\n parameters\n  message-length maximum 1024\n  no dns-guard\n"
        "policy-map global_policy\n class inspection_default\n  inspect dns big\n"
        "service-policy global_policy global\n"
    )
    policy = parse(text, "d.cfg")
    assert not [w for w in policy.warnings if w.gap]  # the map's parameters are modelled
    fw = Firewall(policy)
    fw.receive("inside", _dns_query(5), 1.0)
    assert [i for i, _ in fw.receive("outside", _dns_reply(5, size=600), 1.1).packets] == ["inside"]
    # Without DNS guard the connection stays and a second reply passes.
    assert len(fw.conns) == 1
    assert [i for i, _ in fw.receive("outside", _dns_reply(5), 1.2).packets] == ["inside"]
    d = _one_drop(fw.receive("outside", _dns_reply(5, size=1100), 1.3))
    assert d.reason is DropReason.INSPECT_DNS_TOO_LONG and d.detail["limit"] == 1024
    # "inspect dns" without a map checks no length (Cisco: DNS packet size is not checked).
    fw = Firewall(parse(text.replace("inspect dns big", "inspect dns"), "d.cfg"))
    fw.receive("inside", _dns_query(6), 1.0)
    assert [i for i, _ in fw.receive("outside", _dns_reply(6, size=1100), 1.1).packets] == ["inside"]


def test_show_service_policy_counts_dns_inspection():
    fw = Firewall(parse(ASA9, "d.cfg"))
    fw.receive("inside", _dns_query(77), 1.0)
    fw.receive("outside", _dns_reply(77, size=600), 1.1)
    text = format_show_service_policy(fw.policy, fw.service_policies.uses)
    assert "      Inspect: dns, packet 2, drop 1, reset-drop 0" in text.splitlines()


# --------------------------------------------------------------------------------------------------
# 5. inspect icmp and inspect icmp error

ICMP_INSPECTED = (
    ASA9 + "object network lan\n subnet 192.168.1.0 255.255.255.0\n nat (inside,outside) dynamic interface\n"
    "policy-map global_policy\n class inspection_default\n  inspect icmp\n  inspect icmp error\n"
    "service-policy global_policy global\n"
)


def _ping(seq: int, ident: int = 77) -> bytes:
    return bytes(IP(src="192.168.1.5", dst="198.51.100.9") / ICMP(type=8, id=ident, seq=seq))


def _pong(out: bytes, seq: int) -> bytes:
    sent = IP(bytes(out))
    return bytes(IP(src="198.51.100.9", dst=sent.src) / ICMP(type=0, id=sent[ICMP].id, seq=seq))


def test_inspect_icmp_lets_one_reply_per_request_through_and_closes_the_session_on_it():
    from statewall.events import ConnTeardown
    from statewall.logfmt.asa import format_event

    fw = Firewall(parse(ICMP_INSPECTED, "i.cfg"))
    req = fw.receive("inside", _ping(1), 1.0)
    ((iface, out),) = req.packets
    assert iface == "outside" and IP(bytes(out)).src == "203.0.113.1"
    # A reply to a sequence number no request sent: 313004.
    wrong = fw.receive("outside", _pong(out, 9), 1.1)
    d = _one_drop(wrong)
    assert d.reason is DropReason.INSPECT_ICMP_SEQ and d.origin.text == "inspect icmp"
    (line,) = format_event(d)
    assert line.endswith(
        "%ASA-4-313004: Denied ICMP type=0, from laddr 198.51.100.9 on interface outside to 203.0.113.1: "
        "no matching session"
    )
    # The reply to seq 1 passes, translated back, and closes the session (302021 at once).
    ok = fw.receive("outside", _pong(out, 1), 1.2)
    ((iface, back),) = ok.packets
    assert iface == "inside" and IP(bytes(back)).dst == "192.168.1.5" and IP(bytes(back))[ICMP].id == 77
    (t,) = kinds(ok.events, ConnTeardown)
    assert t.reason == "Flow closed by inspection" and len(fw.conns) == 0
    # Without translation, a reply that finds no session and that the access rules let in is refused
    # by the inspection: 313004.
    fw = Firewall(
        parse(
            ICMP_INSPECTED.replace(" nat (inside,outside) dynamic interface\n", "")
            + "access-list out extended permit icmp any any echo-reply\n"
            "access-group out in interface outside\n",
            "i.cfg",
        )
    )
    ((_, out),) = fw.receive("inside", _ping(1), 1.0).packets
    assert fw.receive("outside", _pong(out, 1), 1.1).packets
    dup = _one_drop(fw.receive("outside", _pong(out, 1), 1.2))
    assert dup.reason is DropReason.INSPECT_ICMP_SEQ


def test_without_inspect_icmp_the_reply_needs_an_access_rule_of_its_own():
    # Without inspect icmp the request's connection is unidirectional (Cisco: "the ASA establishes
    # unidirectional sessions"): the reply meets the outside interface's security level, and with an
    # access rule permitting echo-reply it passes, every time, on a connection of its own.
    plain = ICMP_INSPECTED.replace("  inspect icmp\n", "")
    fw = Firewall(parse(plain, "i.cfg"))
    ((_, out),) = fw.receive("inside", _ping(1), 1.0).packets
    assert [c.direction for c in fw.conns] == ["outbound"]
    assert _one_drop(fw.receive("outside", _pong(out, 1), 1.1)).reason is DropReason.ACL_DROP
    fw = Firewall(parse(plain + _ECHO_REPLY_ACL, "i.cfg"))
    ((_, out),) = fw.receive("inside", _ping(1), 1.0).packets
    assert fw.receive("outside", _pong(out, 1), 1.1).packets
    assert fw.receive("outside", _pong(out, 1), 1.2).packets
    assert [c.direction for c in fw.conns] == ["outbound", "inbound"]


_ECHO_REPLY_ACL = (
    "access-list OUTSIDE_IN extended permit icmp any any echo-reply\n"
    "access-group OUTSIDE_IN in interface outside\n"
)


def test_stateless_icmp_in_check_packet_tracer_and_replay(tmp_path, capsys):
    """Without inspect icmp the ASA keeps unidirectional ICMP connections, and so does statewall: check
    has nothing to warn about, packet-tracer shows the request creating a flow and the reply dropped by
    the outside interface's security level (ACCESS-LIST, as the ASA would) or, permitted by an access
    rule, creating a flow of its own; replay forwards the requests and drops the replies (106014); with
    inspect icmp the replies pass on their sessions."""
    from statewall.pcapio import PcapWriter
    from statewall.replay import replay

    plain = tmp_path / "plain.cfg"
    plain.write_text(ICMP_INSPECTED.replace("  inspect icmp\n", ""))
    inspected = tmp_path / "inspected.cfg"
    inspected.write_text(ICMP_INSPECTED)
    for cfg in (plain, inspected):
        code, _, err = run(capsys, "check", "--strict", "-c", str(cfg))
        assert code == 0 and err == "", cfg.name
    trace = ("packet-tracer", "input", "inside", "icmp", "192.168.1.5", "8", "0", "198.51.100.9")
    code, out, _ = run(capsys, trace[0], "-c", str(plain), *trace[1:])
    assert code == 0 and "stateless ICMP" not in out and "not modelled" not in out
    flow = (
        "Type: FLOW-CREATION\nSubtype: \nResult: ALLOW\nConfig:\nAdditional Information:\n"
        "New flow created with id 1, packet dispatched to next module\n"
    )
    assert out.count("Type: FLOW-CREATION") == 1 and flow in out, out
    code, out, _ = run(capsys, trace[0], "-c", str(inspected), *trace[1:])
    assert code == 0 and "New flow created with id" in out
    reply = ("packet-tracer", "input", "outside", "icmp", "198.51.100.9", "0", "0", "192.168.1.5")
    for cfg in (plain, inspected):
        code, out, _ = run(capsys, reply[0], "-c", str(cfg), *reply[1:])
        assert code == 1 and "Type: ACCESS-LIST\nSubtype: \nResult: DROP\nConfig:\nImplicit Rule\n" in out
        assert "Action: drop" in out
    # Permitted by an access rule, the reply creates a flow of its own (without inspect icmp); with
    # inspect icmp the traced reply finds no session: 313004 (INSPECT).
    permitted = tmp_path / "permitted.cfg"
    permitted.write_text(plain.read_text() + _ECHO_REPLY_ACL)
    code, out, _ = run(capsys, reply[0], "-c", str(permitted), *reply[1:])
    assert code == 0 and out.count("Type: FLOW-CREATION") == 1 and flow in out, out
    # Replay: a ping captured on both sides (the reply to the mapped address), two echo exchanges.
    cap_in, cap_out = tmp_path / "inside.pcap", tmp_path / "outside.pcap"
    with PcapWriter(cap_in) as w_in, PcapWriter(cap_out) as w_out:
        for seq in (1, 2):
            w_in.write(_ping(seq), float(seq))
            pong = IP(src="198.51.100.9", dst="203.0.113.1") / ICMP(type=0, id=77, seq=seq)
            w_out.write(bytes(pong), seq + 0.01)
    for cfg, forwarded in ((plain, 2), (inspected, 4)):
        summary = replay(
            parse(cfg.read_text(), str(cfg)), [("inside", cap_in), ("outside", cap_out)], tmp_path / cfg.stem
        )
        assert summary["forwarded"] == forwarded and summary["not_modelled"] == {}, cfg.name
        assert summary["dropped"] == 4 - forwarded, summary


def _traceroute_to_published_server(inspect_error: bool) -> bytes:
    """An outside host's probe to a published inside server expires at an inside router (10.1.1.254,
    itself published by a static): the time exceeded it sends back, as it leaves the ASA."""
    text = (
        ASA9 + "object network srv\n host 192.168.1.10\n nat (inside,outside) static 203.0.113.10\n"
        "object network rtr\n host 192.168.1.254\n nat (inside,outside) static 203.0.113.254\n"
        "access-list out extended permit udp any any\naccess-group out in interface outside\n"
        "policy-map global_policy\n class inspection_default\n"
        + ("  inspect icmp error\n" if inspect_error else "  inspect ftp\n")
        + "service-policy global_policy global\n"
    )
    fw = Firewall(parse(text, "t.cfg"))
    probe = fw.receive(
        "outside",
        bytes(IP(src="198.51.100.7", dst="203.0.113.10", ttl=3) / UDP(sport=40000, dport=33434)),
        1.0,
    )
    ((_, sent),) = probe.packets
    err = IP(src="192.168.1.254", dst="198.51.100.7") / ICMP(type=11, code=0) / bytes(sent)[:28]
    ((iface, out),) = fw.receive("inside", bytes(err), 1.1).packets
    assert iface == "outside"
    return out


def test_inspect_icmp_error_translates_the_intermediate_hop_by_the_nat_rules():
    out = IP(bytes(_traceroute_to_published_server(True)))
    # The hop appears as its own mapped address; the quoted probe as the outside host sent it.
    assert (out.src, out.dst) == ("203.0.113.254", "198.51.100.7")
    assert out[IPerror].dst == "203.0.113.10"
    # Without it the hop appears with the mapped address of the server the probe was for.
    out = IP(bytes(_traceroute_to_published_server(False)))
    assert (out.src, out.dst) == ("203.0.113.10", "198.51.100.7")


def test_the_8_0_form_inspect_dns_maximum_length_loads_prints_back_and_limits_both_ways():
    text = (
        ASA9.replace("9.12(4)", "8.0(4)")
        + "policy-map global_policy\n class inspection_default\n  inspect dns maximum-length 600\n"
        "service-policy global_policy global\n"
    )
    policy = parse(text, "d.cfg")
    assert "  inspect dns maximum-length 600" in render(policy).splitlines()
    assert "      Inspect: dns maximum-length 600, packet 0, drop 0, reset-drop 0" in (
        format_show_service_policy(policy).splitlines()
    )
    fw = Firewall(policy)
    fw.receive("inside", _dns_query(1), 1.0)
    d = _one_drop(fw.receive("outside", _dns_reply(1, size=600), 1.1))
    assert (d.reason, d.detail["limit"]) == (DropReason.INSPECT_DNS_TOO_LONG, 600)
    assert fw.receive("outside", _dns_reply(1, size=500), 1.2).packets
