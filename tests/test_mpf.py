"""The modular policy framework: class-map / policy-map / tcp-map / service-policy parsed as the ASA
reads them, printed back combined as its running-config shows them, and resolved per connection."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from fixtures import PIX_INTERFACES
from statewall.dialects.asa import ConfigError, parse, parse_file, render
from statewall.logfmt.mpf import format_running_config_policy_map, format_show_service_policy
from statewall.mpf import ServicePolicies
from statewall.policy import BUILTIN, PROTO_TCP, PROTO_UDP, Origin, Policy, PortMatch

CONFIGS = Path(__file__).parent / "configs"


def plain(value: object) -> object:
    """A model as plain data without origins (file, line, text)."""
    if isinstance(value, Origin):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name
            not in (
                "origin",
                "origins",
                "sysopt_origins",
                "warnings",
                "source_file",
                "passthrough",
                "fates",
                "col",
            )
        }
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set):
        return sorted(value)
    return value


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, "mpf.cfg")
    return str(info.value)


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


# --------------------------------------------------------------------------------------------------
# Seed 000, solution B: the transcript verbatim


def test_seed000_solution_b_is_modelled():
    policy = parse_file(CONFIGS / "seed000-solution-b.cfg")
    assert policy.warnings == []
    cm = policy.class_maps["ftp-map"]
    assert [(m.kind, m.acl) for m in cm.matches] == [("access-list", "ftp-list")]
    assert policy.tcp_maps["mss-map"].exceed_mss == "allow"
    assert policy.tcp_maps["mss-map"].origins["exceed_mss"].line == 26
    pm = policy.policy_maps["ftp-map"]
    assert [(pc.class_map, pc.connection.tcp_map) for pc in pm.classes] == [("ftp-map", "mss-map")]
    ours = [(sp.policy_map, sp.interface) for sp in policy.service_policies if sp.origin is not BUILTIN]
    assert ours == [("ftp-map", "outside")]
    # The device it was typed on has the factory global policy: class inspection_default, inspect ftp.
    assert [(sp.policy_map, sp.interface) for sp in policy.service_policies if sp.origin is BUILTIN] == [
        ("global_policy", None)
    ]
    assert "ftp" in [i.engine for i in policy.policy_maps["global_policy"].classes[0].inspects]


def test_factory_policy_is_not_printed_and_an_explicit_one_replaces_it():
    policy = parse_file(CONFIGS / "seed000-solution-b.cfg")
    text = render(policy)
    assert "global_policy" not in text and "inspection_default" not in text
    full = parse_file(CONFIGS / "asa-full.cfg")
    classes = full.policy_maps["global_policy"].classes
    assert [i.engine for i in classes[0].inspects] == ["dns", "ftp", "icmp"]
    assert classes[0].inspects[0].map == "preset_dns_map"
    assert full.service_policies[0].origin.text == "service-policy global_policy global"


def test_no_service_policy_removes_the_factory_policy():
    policy = parse(PIX_INTERFACES + "no service-policy global_policy global\n")
    assert policy.service_policies == []
    again = parse(render(policy))
    assert again.service_policies == []


# --------------------------------------------------------------------------------------------------
# Seed 002: set connection lines combined, every parameter


SEED002 = """hostname(config)# access-list CONNS extended permit ip any 10.1.1.1 255.255.255.255
hostname(config)# class-map CONNS
hostname(config-cmap)# match access-list CONNS
hostname(config-cmap)# policy-map CONNS
hostname(config-pmap)# class CONNS
hostname(config-pmap-c)# set connection conn-max 1000 embryonic-conn-max 3000
hostname(config-pmap-c)# set connection timeout tcp 2:0:0 embryonic 0:40:0 half-closed 0:20:0 dcd
hostname(config-pmap-c)# set connection conn-max 600
hostname(config-pmap-c)# set connection embryonic-conn-max 50
hostname(config-pmap-c)# set connection per-client-max 20 per-client-embryonic-max 5
hostname(config-pmap-c)# set connection random-sequence-number disable
hostname(config-pmap-c)# service-policy CONNS interface outside
"""


def test_seed002_set_connection_parameters_combine():
    policy = parse(PIX_INTERFACES + SEED002)
    cs = policy.policy_maps["CONNS"].classes[0].connection
    assert (cs.conn_max, cs.embryonic_conn_max, cs.per_client_max, cs.per_client_embryonic_max) == (
        600,
        50,
        20,
        5,
    )
    assert cs.random_sequence_number is False
    assert (cs.timeout_idle, cs.timeout_embryonic, cs.timeout_half_closed) == (7200, 2400, 1200)
    assert (cs.dcd, cs.dcd_retry_interval, cs.dcd_max_retries) == (True, 15, 5)
    assert format_running_config_policy_map(policy).splitlines()[:7] == [
        "!",
        "policy-map CONNS",
        " class CONNS",
        "  set connection conn-max 600 embryonic-conn-max 50 per-client-embryonic-max 5 per-client-max 20 "
        "random-sequence-number disable",
        "  set connection timeout embryonic 0:40:00 idle 2:00:00 half-closed 0:20:00 dcd",
        "policy-map global_policy",
        " class inspection_default",
    ]


def test_idle_timeout_is_printed_as_tcp_before_8_2():
    policy = parse("ASA Version 8.0(4)\n" + PIX_INTERFACES + SEED002)
    assert "  set connection timeout embryonic 0:40:00 tcp 2:00:00 half-closed 0:20:00 dcd" in (
        format_running_config_policy_map(policy).splitlines()
    )


def test_dcd_retry_interval_and_retries_and_idle_reset():
    text = PIX_INTERFACES + "class-map c\n match any\npolicy-map p\n class c\n"
    text += "  set connection timeout idle 1:00:00 reset dcd 0:00:30 3\n"
    cs = parse(text).policy_maps["p"].classes[0].connection
    assert (cs.timeout_idle, cs.idle_reset, cs.dcd_retry_interval, cs.dcd_max_retries) == (3600, True, 30, 3)
    assert "  set connection timeout idle 1:00:00 reset dcd 0:00:30 3" in render(parse(text)).splitlines()


_T = "set connection timeout "
_RANGE = " must be 0 or 0:05:00..1193:00:00"


@pytest.mark.parametrize(
    "line, token, message",
    [
        (_T + "idle 0:4:59", "0:4:59", _T + "idle" + _RANGE),
        (_T + "tcp 1193:0:1", "1193", _T + "tcp" + _RANGE),
        (_T + "embryonic 0:0:4", "0:0:4", _T + "embryonic must be 0 or 0:00:05..1193:00:00"),
        (_T + "half-closed 0:0:30", "0:0:30", _T + "half-closed" + _RANGE),
        (_T + "dcd 0:0:15 256", "256", "dcd max-retries must be 1..255"),
        (_T + "dcd 25:0:0", "25:", _T + "dcd retry-interval must be 0:00:01..24:00:00"),
        (_T + "idle 1:0:0 frob", "frob", "unknown set connection timeout parameter 'frob'"),
        ("set connection conn-max 70000", "70000", "conn-max must be 0..65535"),
        ("set connection per-client-max -1", "-1", "per-client-max must be 0..65535"),
        (
            "set connection random-sequence-number maybe",
            "maybe",
            "invalid random-sequence-number 'maybe' (expected enable or disable)",
        ),
        ("set connection frobnicate 1", "frobnicate", "unknown set connection parameter 'frobnicate'"),
        (
            "set connection advanced-options nosuch",
            "nosuch",
            "set connection advanced-options refers to unknown tcp-map 'nosuch'",
        ),
        ("inspect frobnicate", "frobnicate", "unknown inspection engine 'frobnicate'"),
    ],
)
def test_class_action_ranges_are_checked_at_the_offending_token(line: str, token: str, message: str):
    text = "ASA Version 8.2(1)\nclass-map c\n match any\npolicy-map p\n class c\n" + line + "\n"
    assert error_of(text) == f"mpf.cfg:6:{line.index(token) + 1}: {message}"


def test_an_indented_unknown_action_is_an_error_an_unindented_one_leaves_the_mode():
    text = "class-map c\n match any\npolicy-map p\n class c\n"
    assert error_of(text + "  frobnicate\n") == "mpf.cfg:5:3: unknown policy-map class action 'frobnicate'"
    assert [w.message for w in parse(text + "frobnicate\n").warnings] == [
        "unknown command 'frobnicate' ignored"
    ]


def test_zero_means_never_and_ranges_relax_with_the_release():
    text = "class-map c\n match any\npolicy-map p\n class c\n  set connection timeout idle 0 embryonic 0\n"
    cs = parse(text).policy_maps["p"].classes[0].connection
    assert (cs.timeout_idle, cs.timeout_embryonic) == (0, 0)
    newer = "ASA Version 9.1(2)\nclass-map c\n match any\npolicy-map p\n class c\n"
    newer += "  set connection conn-max 2000000 timeout half-closed 0:00:30\n"
    with pytest.raises(ConfigError):  # "timeout" is its own set connection form
        parse(newer)
    newer = (
        newer.replace(" timeout half-closed 0:00:30", "") + "  set connection timeout half-closed 0:0:30\n"
    )
    cs = parse(newer).policy_maps["p"].classes[0].connection
    assert (cs.conn_max, cs.timeout_half_closed) == (2000000, 30)


# --------------------------------------------------------------------------------------------------
# tcp-map


def test_tcp_map_every_option_round_trips():
    text = (
        PIX_INTERFACES
        + """tcp-map all-options
  check-retransmission
  checksum-verification
  exceed-mss drop
  invalid-ack allow
  queue-limit 10 timeout 8
  reserved-bits clear
  seq-past-window drop
  syn-data drop
  synack-data allow
  tcp-options selective-ack clear
  tcp-options timestamp clear
  tcp-options window-scale clear
  tcp-options range 6 7 allow
  tcp-options range 9 255 drop
  tcp-options md5 allow
  no ttl-evasion-protection
  urgent-flag allow
  window-variation drop
"""
    )
    policy = parse(text)
    tm = policy.tcp_maps["all-options"]
    assert (tm.check_retransmission, tm.checksum_verification, tm.exceed_mss) == (True, True, "drop")
    assert (tm.invalid_ack, tm.queue_limit, tm.queue_timeout, tm.reserved_bits) == ("allow", 10, 8, "clear")
    assert (tm.syn_data, tm.synack_data, tm.urgent_flag, tm.window_variation) == (
        "drop",
        "allow",
        "allow",
        "drop",
    )
    assert (tm.selective_ack, tm.timestamp, tm.window_scale, tm.md5) == ("clear", "clear", "clear", "allow")
    assert tm.option_ranges == [(6, 7, "allow"), (9, 255, "drop")]
    assert tm.ttl_evasion_protection is False
    assert plain(parse(render(policy))) == plain(policy)


def test_tcp_map_defaults_are_the_asa_defaults():
    tm = parse("tcp-map t\n").tcp_maps["t"]
    assert tm.exceed_mss is None  # the release decides (statewall.normalizer.exceed_mss_default)
    assert (tm.invalid_ack, tm.seq_past_window, tm.synack_data, tm.syn_data) == (
        "drop",
        "drop",
        "drop",
        "allow",
    )
    assert (tm.reserved_bits, tm.urgent_flag, tm.window_variation, tm.queue_limit) == (
        "allow",
        "clear",
        "allow",
        0,
    )
    assert tm.ttl_evasion_protection and not tm.check_retransmission and not tm.checksum_verification


@pytest.mark.parametrize(
    "line, message",
    [
        ("queue-limit 251", "mpf.cfg:2:14: queue-limit must be 0..250"),
        ("queue-limit 5 timeout 21", "mpf.cfg:2:24: queue-limit timeout must be 1..20"),
        ("queue-limit 0 timeout 5", "mpf.cfg:2:24: queue-limit timeout needs a queue limit of 1 or more"),
        (
            "tcp-options range 8 8 allow",
            "mpf.cfg:2:20: option 8 is the timestamp (use tcp-options timestamp)",
        ),
        ("tcp-options range 5 7 allow", "mpf.cfg:2:20: tcp-options range lower bound must be 6..255"),
        ("tcp-options range 20 10 allow", "mpf.cfg:2:23: tcp-options range 20 10 is empty"),
        ("exceed-mss maybe", "mpf.cfg:2:13: invalid exceed-mss 'maybe' (expected allow or drop)"),
        ("urgent-flag drop", "mpf.cfg:2:14: invalid urgent-flag 'drop' (expected allow or clear)"),
        ("frobnicate", "mpf.cfg:2:2: unknown tcp-map command 'frobnicate'"),
    ],
)
def test_tcp_map_errors(line: str, message: str):
    assert error_of(f"tcp-map t\n {line}\n") == message


def test_seq_past_window_allow_needs_queue_limit_zero():
    assert error_of("tcp-map t\n queue-limit 5\n seq-past-window allow\n") == (
        "mpf.cfg:3:1: tcp-map t: seq-past-window allow needs queue-limit 0"
    )


# --------------------------------------------------------------------------------------------------
# class-map, service-policy, sysopt, references


def test_class_map_matches_and_their_errors():
    policy = parse("class-map a\n match port tcp eq ftp\nclass-map b\n match port udp range 5000 5010\n")
    assert policy.class_maps["a"].matches[0].ports == PortMatch("eq", 21)
    assert policy.class_maps["b"].matches[0].protocol == PROTO_UDP
    assert "match port udp range 5000 5010" in render(policy)
    assert error_of("class-map a\n match any\n match port tcp eq 80\n") == (
        "mpf.cfg:3:8: class-map a already has a match criterion"
    )
    dscp = parse("class-map a\n match dscp ef\n", "mpf.cfg")
    assert dscp.class_maps["a"].matches == []  # selects nothing in statewall, and says so
    assert [str(w) for w in dscp.warnings if w.gap] == [
        "mpf.cfg:2:8: warning: match dscp is not modelled: class a selects no traffic in statewall; kept as "
        "written"
    ]
    assert "class-map a\n match dscp ef\n" in render(dscp)
    assert error_of("class-map a\n match nonsense\n").startswith("mpf.cfg:2:8: invalid match 'nonsense'")
    assert error_of("class-map a\n match access-list nosuch\n") == (
        "mpf.cfg:2:20: class-map a refers to unknown access-list 'nosuch'"
    )
    assert (
        error_of("policy-map p\n class nosuch\n")
        == "mpf.cfg:2:8: policy-map p refers to unknown class-map 'nosuch'"
    )


def test_service_policy_scope_and_uniqueness():
    text = PIX_INTERFACES + "policy-map p\npolicy-map q\nservice-policy p global\n"
    assert error_of(text + "service-policy q global\n") == (
        "mpf.cfg:12:16: policy-map p is already the global service-policy (only one per device; remove it "
        "with no service-policy first)"
    )
    assert error_of(PIX_INTERFACES + "policy-map p\nservice-policy p interface dmz\n") == (
        "mpf.cfg:10:28: service-policy refers to unknown interface 'dmz'"
    )
    policy = parse(text + "no service-policy p global\nservice-policy q global\n")
    assert [(s.policy_map, s.interface) for s in policy.service_policies] == [("q", None)]


def test_sysopt_tcpmss_maximum_and_minimum():
    policy = parse("sysopt connection tcpmss 1300\nsysopt connection tcpmss minimum 1460\n")
    assert (policy.sysopt_tcpmss, policy.sysopt_tcpmss_minimum) == (1300, 1460)
    bare = parse("hostname fw\n")
    assert bare.sysopt_tcpmss == 1380 and bare.sysopt_tcpmss_minimum == 0
    assert (
        error_of("sysopt connection tcpmss 47\n")
        == "mpf.cfg:1:26: sysopt connection tcpmss must be 0 or 48..65535"
    )
    again = parse(render(policy))
    assert (again.sysopt_tcpmss, again.sysopt_tcpmss_minimum) == (1300, 1460)
    assert parse("sysopt connection tcpmss 1300\nno sysopt connection tcpmss 1300\n").sysopt_tcpmss == 1380
    other = parse("sysopt connection timewait\n")
    assert [str(w).split("warning: ")[1] for w in other.warnings] == [
        "sysopt connection is not modelled yet (a real ASA would apply it to traffic); kept as written"
    ]


def test_statewall_fault_is_a_named_config_knob():
    policy = parse("statewall fault pix-sack-bug\n")
    assert policy.faults == {"pix-sack-bug"}
    assert "statewall fault pix-sack-bug" in render(policy)
    assert (
        error_of("statewall fault nosuch\n") == "mpf.cfg:1:17: unknown fault 'nosuch' (known: pix-sack-bug)"
    )


def test_every_feature_round_trips(tmp_path):
    text = (
        "ASA Version 8.2(1)\n"
        + PIX_INTERFACES
        + SEED002.replace("hostname(config-pmap-c)# service", "service")
    )
    text += "tcp-map strict\n exceed-mss drop\n"
    text += "class-map web\n match port tcp eq www\n"
    text += "policy-map global_policy\n class inspection_default\n  inspect ftp strict\n  inspect dns\n"
    text += " class web\n  set connection advanced-options strict\n  police output 56000 10500\n"
    text += "service-policy global_policy global\nsysopt connection tcpmss minimum 1460\n"
    policy = parse(text)
    again = parse(render(policy))
    assert plain(again) == plain(policy)


# --------------------------------------------------------------------------------------------------
# Resolution: which settings a connection gets


RESOLVE = (
    PIX_INTERFACES
    + """access-list to-server extended permit tcp host 10.0.0.2 host 192.168.9.2
access-list to-server extended deny tcp any any
tcp-map global-map
 exceed-mss drop
tcp-map iface-map
 exceed-mss allow
class-map all
 match any
class-map server
 match access-list to-server
policy-map global_policy
 class inspection_default
  inspect ftp
  inspect dns
 class all
  set connection conn-max 100
  set connection advanced-options global-map
  set connection timeout dcd 0:00:30 2
policy-map outside-policy
 class server
  set connection advanced-options iface-map
service-policy global_policy global
service-policy outside-policy interface outside
"""
)


def resolve(policy: Policy, src: str, dst: str, proto: int = PROTO_TCP, dport: int = 21, ingress="inside"):
    sp = ServicePolicies(policy)
    egress = "outside" if ingress == "inside" else "inside"
    return sp.resolve(ingress, egress, 4, proto, ip(src), 40000, ip(dst), dport)


def test_interface_policy_takes_precedence_for_what_it_sets():
    policy = parse(RESOLVE)
    eff = resolve(policy, "10.0.0.2", "192.168.9.2")
    assert eff.tcp_map.name == "iface-map"  # the outside interface's class wins for advanced-options
    assert eff.conn_max == 100  # ... and the global class still sets what the interface one does not
    assert (eff.dcd, eff.dcd_retry_interval, eff.dcd_max_retries) == (True, 30, 2)
    assert [i.engine for i, _ in eff.inspects] == ["ftp"]
    other = resolve(policy, "10.0.0.3", "192.168.9.2")  # the ACL's deny entry excludes it from "server"
    assert other.tcp_map.name == "global-map"
    assert eff.origins["conn_max"].text == "set connection conn-max 100"


def test_default_inspection_traffic_inspects_each_engine_on_its_own_ports():
    policy = parse(RESOLVE)
    assert [i.engine for i, _ in resolve(policy, "10.0.0.5", "192.0.2.1", PROTO_UDP, 53).inspects] == ["dns"]
    assert resolve(policy, "10.0.0.5", "192.0.2.1", PROTO_TCP, 80).inspects == ()
    assert resolve(policy, "10.0.0.5", "192.0.2.1", PROTO_TCP, 53).inspects == ()


def test_no_policy_means_the_default_normalizer_and_randomization():
    policy = parse(PIX_INTERFACES + "no service-policy global_policy global\n")
    eff = resolve(policy, "10.0.0.2", "192.168.9.2")
    assert eff.tcp_map.name == "default" and eff.random_sequence_number and eff.inspects == ()


def test_random_sequence_number_disable_reaches_the_connection():
    eff = resolve(parse(PIX_INTERFACES + SEED002), "10.0.0.5", "10.1.1.1", ingress="outside")
    assert eff.random_sequence_number is False


def test_resolve_shares_one_answer_per_key_and_counts_every_connection():
    """Class settings are cached per (interfaces, protocol, port, access-list outcomes): connections
    that resolve alike share one frozen Effective, and each still counts in its classes."""
    sp = ServicePolicies(parse(RESOLVE))
    args = ("inside", "outside", 4, PROTO_TCP)
    server, other, dst = ip("10.0.0.2"), ip("10.0.0.3"), ip("192.168.9.2")
    first = sp.resolve(*args, server, 40000, dst, 21)
    assert sp.resolve(*args, server, 40001, dst, 21) is first  # another client port: the same key
    assert sp.resolve(*args, server, 40002, dst, 21, count=False) is first
    assert sp.resolve(*args, other, 40000, dst, 21).tcp_map.name == "global-map"  # the ACL says no
    assert sp.resolve(*args, server, 40003, dst, 21) is first
    web = sp.resolve(*args, server, 40000, dst, 80)  # not FTP's port: no inspection
    assert web.inspects == () and [i.engine for i, _ in first.inspects] == ["ftp"]
    counts = {k[2]: u.connections for k, u in sp.uses.items()}
    assert counts == {"inspection_default": 4, "all": 5, "server": 4}
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.conn_max = 1  # type: ignore[misc]
    # A reload carries the counters over by replacing ``uses``: nothing cached may point at the old ones.
    sp.uses = {}
    again = sp.resolve(*args, server, 40000, dst, 21)
    assert again is not first and again.tcp_map_use is sp.uses[("outside", "outside-policy", "server")]
    assert sp.uses[("outside", "outside-policy", "server")].connections == 1


def test_show_service_policy_lists_each_scope_and_class():
    policy = parse(RESOLVE)
    sp = ServicePolicies(policy)
    eff = sp.resolve("inside", "outside", 4, PROTO_TCP, ip("10.0.0.2"), 40000, ip("192.168.9.2"), 21)
    eff.tcp_map_use.counters["exceed_mss_drops"] += 2
    text = format_show_service_policy(policy, sp.uses)
    assert text.splitlines()[:6] == [
        "Global policy:",
        "  Service-policy: global_policy",
        "    Class-map: inspection_default",
        "      Inspect: ftp, packet 0, drop 0, reset-drop 0",
        "      Inspect: dns, packet 0, drop 0, reset-drop 0",
        "    Class-map: all",
    ]
    assert "Interface outside:" in text
    assert "        Exceeded MSS drops: 2                  SYN with data drops: 0" in text.splitlines()


def test_show_commands_from_the_cli(capsys):
    from statewall import cli

    path = str(CONFIGS / "seed000-solution-b.cfg")
    assert cli.main(["show", "running-config", "policy-map", "-c", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        "!",
        "policy-map ftp-map",
        " class ftp-map",
        "  set connection advanced-options mss-map",
    ]
    assert cli.main(["show", "service-policy", "-c", path]) == 0
    out = capsys.readouterr().out
    assert "Interface outside:\n  Service-policy: ftp-map\n    Class-map: ftp-map\n" in out
    assert cli.main(["show", "service-policy", "policy-map", "-c", path]) == 2
