"""Given a configuration's ``logging`` and ``clock`` lines, expect the lines the ASA would write.

Fixtures are real ASA texts, each with its source beside it:
- [C19] Cisco, "ASA Q&A" support document 116149: ``Built outbound TCP connection 9 for
  outside:10.1.2.1/22 (10.1.2.1/22) to inside:10.1.1.2/53496 (10.1.1.2/53496)`` and its teardown.
- [SYSLOG-GUIDE] Cisco Secure Firewall ASA Series Syslog Messages, "What's New" (9.10(1) RFC 5424
  timestamps): ``<166>2018-06-27T12:17:46Z asa : %ASA-6-110002: ...`` - PRI 166 is facility 20
  (the default) at informational, the device id ``asa`` is followed by `` : ``.
- [C17] the same guide's 302014 (8.x: the reason ends the line; 9.x: ``from <interface>`` follows).
"""

from __future__ import annotations

import calendar

import pytest

from statewall.config import parse_policy
from statewall.dialects.errors import ConfigError
from statewall.events import ConnBuilt, ConnTeardown, Drop, DropReason, Endpoint
from statewall.logfmt.asalog import AsaLog
from statewall.policy import PROTO_TCP, Origin

BASE = """\
ASA Version {version}
hostname asa
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.1.1.1 255.255.255.0
access-list OUT extended deny tcp any any eq 23
access-group OUT in interface outside
"""

SUMMER = float(calendar.timegm((2018, 6, 27, 12, 17, 46)))  # the guide's RFC 5424 sample instant
WINTER = float(calendar.timegm((2018, 1, 15, 12, 17, 46)))


def asalog(lines: str, version: str = "9.12(4)") -> AsaLog:
    policy = parse_policy(BASE.format(version=version) + lines, "fw.cfg", "asa")
    return AsaLog(policy)


def built(t: float = SUMMER) -> ConnBuilt:
    # [C19]: outbound SSH from inside 10.1.1.2/53496 to outside 10.1.2.1/22, no NAT.
    return ConnBuilt(
        t,
        9,
        PROTO_TCP,
        "outbound",
        Endpoint("inside", "10.1.1.2", 53496, "10.1.1.2", 53496),
        Endpoint("outside", "10.1.2.1", 22, "10.1.2.1", 22),
    )


def teardown(reason: str = "TCP FINs", closed_by: str | None = "inside") -> ConnTeardown:
    return ConnTeardown(
        SUMMER,
        9,
        PROTO_TCP,
        "outbound",
        Endpoint("inside", "10.1.1.2", 53496, "10.1.1.2", 53496),
        Endpoint("outside", "10.1.2.1", 22, "10.1.2.1", 22),
        30.0,
        0,
        reason,
        closed_by,
    )


def acl_drop() -> Drop:
    return Drop(
        SUMMER,
        DropReason.ACL_DROP,
        "outside",
        PROTO_TCP,
        "198.51.100.7",
        40000,
        "10.1.1.2",
        23,
        tcp_flags=0x02,
        egress="inside",
        acl="OUT",
        origin=Origin("fw.cfg", 11, "access-list OUT extended deny tcp any any eq 23"),
    )


C19_BUILT = (
    "%ASA-6-302013: Built outbound TCP connection 9 for outside:10.1.2.1/22 (10.1.2.1/22) "
    "to inside:10.1.1.2/53496 (10.1.1.2/53496)"
)


def test_nothing_is_logged_without_logging_enable():
    log = asalog("logging timestamp\nlogging buffered debugging\n")
    assert log.lines(built()) == []


def test_without_logging_timestamp_the_line_starts_at_the_message():
    log = asalog("logging enable\nlogging buffered informational\n")
    assert log.lines(built()) == [C19_BUILT]


def test_timestamp_is_local_time_with_clock_timezone_and_summer_time():
    cfg = (
        "clock timezone CET 1\n"
        "clock summer-time CEST recurring last Sun Mar 2:00 last Sun Oct 3:00\n"
        "logging enable\nlogging timestamp\nlogging buffered informational\n"
    )
    log = asalog(cfg)
    # 12:17:46 UTC is 14:17:46 CEST in June and 13:17:46 CET in January.
    assert log.lines(built(SUMMER)) == [f"Jun 27 2018 14:17:46: {C19_BUILT}"]
    assert log.lines(built(WINTER)) == [f"Jan 15 2018 13:17:46: {C19_BUILT}"]


def test_summer_time_recurring_without_dates_is_the_us_rule_and_negative_zones():
    cfg = "clock timezone PST -8\nclock summer-time PDT recurring\nlogging enable\nlogging timestamp\n"
    cfg += "logging buffered debugging\n"
    log = asalog(cfg)
    assert log.utc_offset(SUMMER) == (-7 * 60, "PDT")
    assert log.utc_offset(WINTER) == (-8 * 60, "PST")
    # 2018: second Sunday of March is the 11th; at 01:59 PST not yet, at 02:00 PST summer time.
    before = calendar.timegm((2018, 3, 11, 9, 59, 0))
    assert log.utc_offset(before)[1] == "PST"
    assert log.utc_offset(before + 60)[1] == "PDT"


def test_rfc5424_timestamp_with_device_id_as_the_syslog_guide_prints_it():
    cfg = (
        "logging enable\nlogging timestamp rfc5424\nlogging device-id hostname\nlogging trap informational\n"
    )
    cfg += "logging host inside 10.1.1.9\nclock timezone CET 1\n"
    log = asalog(cfg)
    # [SYSLOG-GUIDE]: "<166>2018-06-27T12:17:46Z asa : %ASA-6-..." (UTC whatever the time zone).
    assert log.frames(built(), log.settings.hosts[0].emblem) == [
        (6, f"<166>2018-06-27T12:17:46Z asa : {C19_BUILT}")
    ]


def test_trap_level_filters_by_severity():
    log = asalog("logging enable\nlogging trap warnings\nlogging host inside 10.1.1.9\n")
    assert log.frames(built()) == []
    ((sev, text),) = log.frames(acl_drop())
    assert sev == 4 and text.startswith("<164>%ASA-4-106023: Deny tcp src outside:198.51.100.7/40000 ")


def test_logging_message_level_changes_the_severity_and_no_logging_message_silences():
    cfg = "logging enable\nlogging buffered notifications\nlogging message 302013 level 5\n"
    cfg += "no logging message 106023\n"
    log = asalog(cfg)
    assert log.lines(built()) == [C19_BUILT.replace("%ASA-6-", "%ASA-5-")]
    assert log.lines(acl_drop()) == []


def test_logging_list_by_class_and_by_message_range():
    cfg = "logging enable\nlogging list DENIES message 106015-106023\nlogging buffered DENIES\n"
    log = asalog(cfg)
    assert log.lines(built()) == []
    assert len(log.lines(acl_drop())) == 1
    cfg = "logging enable\nlogging list S level warnings class session\nlogging buffered S\n"
    log = asalog(cfg)
    assert log.lines(built()) == []  # session class, but level 6 > 4
    assert len(log.lines(acl_drop())) == 1


@pytest.mark.parametrize(
    "device_id, prefix",
    [("hostname", "asa : "), ("string FW-EDGE", "FW-EDGE : "), ("ipaddress inside", "10.1.1.1 : ")],
)
def test_device_id(device_id, prefix):
    log = asalog(f"logging enable\nlogging buffered debugging\nlogging device-id {device_id}\n")
    assert log.lines(built()) == [prefix + C19_BUILT]


def test_facility_sets_the_pri():
    log = asalog(
        "logging enable\nlogging trap debugging\nlogging facility 16\nlogging host inside 10.1.1.9\n"
    )
    assert log.frames(built()) == [(6, f"<134>{C19_BUILT}")]  # local0: 16 * 8 + 6


def test_emblem_format_has_the_class_and_no_device_id():
    cfg = "logging enable\nlogging timestamp\nlogging trap debugging\nlogging device-id hostname\n"
    cfg += "logging host inside 10.1.1.9 format emblem\n"
    log = asalog(cfg)
    assert log.frames(built(), log.settings.hosts[0].emblem) == [
        (6, "<166>:Jun 27 12:17:46 UTC: %ASA-session-6-302013: " + C19_BUILT.split(": ", 1)[1])
    ]


def test_302014_release_forms():
    # [C17]: 9.x names the side that closed; 8.x ends at the reason.
    new = asalog("logging enable\nlogging buffered debugging\n", "9.12(4)")
    old = asalog("logging enable\nlogging buffered debugging\n", "8.2(1)")
    head = "%ASA-6-302014: Teardown TCP connection 9 for outside:10.1.2.1/22 to inside:10.1.1.2/53496 "
    assert new.lines(teardown()) == [head + "duration 0:00:30 bytes 0 TCP FINs from inside"]
    assert old.lines(teardown()) == [head + "duration 0:00:30 bytes 0 TCP FINs"]


def test_106023_carries_a_stable_hash_pair_per_ace():
    log = asalog("logging enable\nlogging buffered debugging\n")
    (a,) = log.lines(acl_drop())
    (b,) = log.lines(acl_drop())
    assert a == b and a.endswith("]") and "[0x0, 0x0]" not in a
    assert a.split('by access-group "OUT" ')[1].endswith(", 0x0]")


def test_without_any_logging_command_every_message_is_written_in_utc():
    log = AsaLog(parse_policy(BASE.format(version="9.12(4)"), "fw.cfg", "asa"))
    assert log.format_event(built()) == [f"Jun 27 2018 12:17:46: {C19_BUILT}"]


@pytest.mark.parametrize(
    "line, col, message",
    [
        ("logging trap NOLIST", 14, "logging list 'NOLIST' is not defined"),
        ("logging host inside 10.1.1.9 tcp/80", 30, "invalid syslog port"),
        ("logging facility 7", 18, "logging facility must be 16..23"),
        ("clock timezone CET 30", 20, "hours offset must be -23..23"),
    ],
)
def test_bad_logging_lines_are_located(line, col, message):
    text = BASE.format(version="9.12(4)") + line + "\n"
    with pytest.raises(ConfigError) as exc:
        parse_policy(text, "fw.cfg", "asa")
    err = exc.value
    assert (err.line, err.col) == (text.count("\n"), col) and message in err.message


def test_logging_lines_print_back_as_written():
    cfg = "logging enable\nlogging timestamp\nlogging trap warnings\nno logging message 106023\n"
    from statewall.config import render_policy

    text = render_policy(parse_policy(BASE.format(version="9.12(4)") + cfg, "fw.cfg", "asa"))
    assert cfg in text


def test_run_sends_to_the_configured_logging_host_over_udp():
    # statewall run's event callback, with the configuration's "logging host": a datagram per message
    # to a server on this machine's loopback.
    import io
    import socket

    from statewall.commands.run import _event_writer

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        cfg = f"logging enable\nlogging trap informational\nlogging host inside 127.0.0.1 udp/{port}\n"
        policy = parse_policy(BASE.format(version="9.12(4)") + cfg, "fw.cfg", "asa")
        log = io.StringIO()
        write, sender = _event_writer("asa", log, policy, [])
        try:
            write([built()])
            assert server.recv(2048) == f"<166>{C19_BUILT}".encode()
        finally:
            sender.close()
        # No buffered level: the log holds what the syslog servers get (never silently empty).
        assert log.getvalue() == C19_BUILT + "\n"


def test_emblem_prefix_as_real_asa_messages_read():
    # Real EMBLEM messages (public parser test suites): "<164>:Jan 15 01:34:00 MSK: %ASA-session-4-
    # 106023: Deny protocol 115 src ... [0x0, 0x0]" and, without a timestamp, "<34>:%ASA-session-6-106100:".
    cfg = "clock timezone MSK 3\nlogging enable\nlogging timestamp\nlogging trap debugging\n"
    cfg += "logging host inside 10.1.1.9 format emblem\n"
    log = asalog(cfg)
    drop = acl_drop()
    drop.time = float(calendar.timegm((2018, 1, 14, 22, 34, 0)))  # 01:34 in Moscow
    ((sev, text),) = log.frames(drop, emblem=True)
    assert text.startswith("<164>:Jan 15 01:34:00 MSK: %ASA-session-4-106023: Deny tcp src outside:")
    bare = asalog("logging enable\nlogging trap debugging\nlogging host inside 10.1.1.9 format emblem\n")
    assert bare.frames(drop, emblem=True)[0][1].startswith("<164>:%ASA-session-4-106023: Deny tcp ")


BATFISH = "batfish/projects/batfish/src/test/resources/org/batfish/grammar/cisco_asa/testconfigs"
FOUR_INTERFACES = "".join(
    f"interface GigabitEthernet0/{i}\n nameif {name}\n security-level {lvl}\n ip address {ip} 255.255.255.0\n"
    for i, (name, lvl, ip) in enumerate(
        (("outside", 0, "10.0.0.254"), ("inside", 100, "10.0.1.254"), ("dmz", 50, "192.168.1.254"),
         ("mgmt", 100, "172.16.0.254"))
    )
)  # fmt: skip


def _batfish(corpus_dir, name: str) -> str:
    # Batfish's ASA logging grammar tests, given the interfaces they name and a release statewall reads
    # ("9.9" without a build number is not one).
    text = (corpus_dir / BATFISH / name).read_text()
    return text.replace("ASA Version 9.9\n", "ASA Version 9.9(1)\n" + FOUR_INTERFACES)


def test_batfish_logging_config_parses_to_the_hosts_and_levels_it_names(corpus_dir):
    s = parse_policy(_batfish(corpus_dir, "asa-logging"), "asa-logging", "asa").logging
    assert s.enabled and s.facility == 21 and s.trap == 3 and s.buffered == 4
    assert [(h.interface, str(h.address), h.transport, h.port) for h in s.hosts] == [
        ("inside", "10.0.0.1", "tcp", 1500),
        ("dmz", "192.168.1.5", "udp", 1026),
        ("mgmt", "172.16.0.9", "udp", 514),
        ("outside", "10.0.0.4", "tcp", 1470),
        ("dmz", "192.168.1.7", "udp", 514),
        ("inside", "2001::1:1", "udp", 2020),
    ]


def test_batfish_bad_syslog_port_is_refused_where_it_is(corpus_dir):
    text = _batfish(corpus_dir, "asa-logging-bad-port")
    with pytest.raises(ConfigError) as exc:
        parse_policy(text, "asa-logging-bad-port", "asa")
    line = text.splitlines().index("logging host inside 10.0.0.2 udp/500") + 1
    assert (exc.value.line, exc.value.col) == (line, 30) and "invalid syslog port" in exc.value.message


def test_302020_and_302021_carry_type_and_code_from_9_0(tmp_path, capsys):
    # 9.x: "Built outbound ICMP connection for faddr 10.10.10.10/0 gaddr 10.10.9.9/17411 laddr
    # 10.10.9.9/17411 type 8 code 0" (device samples kept by public parsers); 8.x ends at laddr.
    from scapy.layers.inet import ICMP, IP

    from statewall import cli
    from statewall.pcapio import PcapWriter

    cap = tmp_path / "ping.pcap"
    with PcapWriter(cap) as w:
        w.write(bytes(IP(src="10.1.1.2", dst="10.1.2.1") / ICMP(type=8, id=7, seq=1)), 1.0)
    lines = {}
    for version in ("9.12(4)", "8.2(1)"):
        cfg = tmp_path / f"{version[0]}.cfg"
        # ICMP connections (302020/302021) exist where ICMP is inspected.
        inspect = (
            "policy-map global_policy\n class inspection_default\n  inspect icmp\n"
            "service-policy global_policy global\n"
        )
        cfg.write_text(BASE.format(version=version) + "route outside 0.0.0.0 0.0.0.0 192.0.2.254\n" + inspect)
        out = tmp_path / version[0]
        assert cli.main(["replay", "-c", str(cfg), "-o", str(out), "--drain", "10", "--json", str(cap)]) == 0
        capsys.readouterr()
        lines[version[0]] = [x.split(": ", 1)[1] for x in (out / "log.txt").read_text().splitlines()]
    addrs = "faddr 10.1.2.1/0 gaddr 10.1.1.2/7 laddr 10.1.1.2/7"
    assert f"%ASA-6-302020: Built outbound ICMP connection for {addrs} type 8 code 0" in lines["9"]
    assert f"%ASA-6-302021: Teardown ICMP connection for {addrs} type 8 code 0" in lines["9"]
    assert f"%ASA-6-302020: Built outbound ICMP connection for {addrs}" in lines["8"]
    assert f"%ASA-6-302021: Teardown ICMP connection for {addrs}" in lines["8"]


def test_a_logging_host_on_an_unknown_interface_is_a_located_warning_and_gets_nothing():
    # An excerpt that names an interface it does not declare still loads (Batfish's asa-logging does);
    # the host is dropped from the model, so nothing is sent to it, and check says why, where.
    text = BASE.format(version="9.12(4)") + "logging host dmz 10.1.1.9\n"
    policy = parse_policy(text, "fw.cfg", "asa")
    assert policy.logging.hosts == []
    [w] = [w for w in policy.warnings if "unknown interface 'dmz'" in w.message]
    assert (w.origin.line, w.col) == (text.count("\n"), 14)


def test_run_log_and_syslog_follow_a_reload():
    # statewall run's event callback after "ctl reload": the new logging lines decide (here 302013
    # disabled, then a device id and a new logging host), for the log and for the syslog servers.
    import io
    import socket

    from statewall.commands.run import _event_writer

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        first = parse_policy(BASE.format(version="9.12(4)") + "logging enable\nlogging trap informational\n"
                             "no logging message 302013\n", "fw.cfg", "asa")  # fmt: skip
        cfg = "logging enable\nlogging trap informational\nlogging device-id string EDGE1\n"
        cfg += f"logging host inside 127.0.0.1 udp/{port}\n"
        second = parse_policy(BASE.format(version="9.12(4)") + cfg, "fw.cfg", "asa")
        log = io.StringIO()
        relog: list = []
        write, sender = _event_writer("asa", log, first, [], relog)
        try:
            write([built()])
            assert log.getvalue() == ""  # disabled, and no server configured yet
            (reloaded,) = relog
            reloaded(second)
            write([built()])
            assert server.recv(2048) == f"<166>EDGE1 : {C19_BUILT}".encode()
        finally:
            sender.close()
        assert log.getvalue() == f"EDGE1 : {C19_BUILT}\n"
