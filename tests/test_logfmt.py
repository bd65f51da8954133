"""Given events, expect the exact ASA log lines (reference A.4), JSON lines and counters."""

from __future__ import annotations

import calendar
import io
import json

import pytest

from statewall.events import (
    AclHit,
    ConnBuilt,
    ConnTeardown,
    Drop,
    DropReason,
    Endpoint,
    IcmpSent,
    XlateBuilt,
    XlateTeardown,
)
from statewall.logfmt import (
    MESSAGES,
    ConnRecord,
    Counters,
    XlateRecord,
    event_to_json,
    format_duration,
    format_event,
    format_events,
    format_show_asp_drop,
    format_show_conn,
    format_show_xlate,
    format_tcp_flags,
    write_jsonl,
)
from statewall.policy import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Origin

# Seed 000's log line time: Sep 19 2007 06:55:58 (UTC).
T = float(calendar.timegm((2007, 9, 19, 6, 55, 58)))

SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def ep(ifc: str, ip: str, port: int, mip: str | None = None, mport: int | None = None) -> Endpoint:
    return Endpoint(ifc, ip, port, mip or ip, port if mport is None else mport)


def line(event, **kw) -> str:
    (only,) = format_event(event, timestamp=False, **kw)
    return only


# --------------------------------------------------------------------------------------------------
# Small rules


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0:00:00"), (30, "0:00:30"), (62.9, "0:01:02"), (6492, "1:48:12"), (93789, "26:03:09")],
)
def test_duration_is_unpadded_hours(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "flags, text",
    [(SYN, "SYN "), (SYN | ACK, "SYN ACK "), (FIN | PSH | ACK, "FIN PSH ACK "), (RST | ACK, "RST ACK ")],
)
def test_tcp_flags_each_followed_by_a_space(flags, text):
    assert format_tcp_flags(flags) == text


def test_timestamp_prefix_and_hostname():
    drop = Drop(
        T, DropReason.TCP_NOT_SYN, "outside", PROTO_TCP, "1.2.3.4", 80, "5.6.7.8", 1025, tcp_flags=ACK
    )
    text = (
        "%ASA-6-106015: Deny TCP (no connection) from 1.2.3.4/80 to 5.6.7.8/1025 "
        "flags ACK  on interface outside"
    )
    assert format_event(drop) == [f"Sep 19 2007 06:55:58: {text}"]
    assert format_event(drop, hostname="pixfirewall") == [f"Sep 19 2007 06:55:58 pixfirewall : {text}"]
    assert format_event(drop, timestamp=False) == [text]
    assert format_event(drop, hostname="HQ-ASA5585", timestamp=False) == [f"HQ-ASA5585 : {text}"]


def test_timestamp_day_is_two_digits():
    t = float(calendar.timegm((2012, 3, 5, 11, 22, 38)))
    drop = Drop(t, DropReason.NO_ROUTE, "WAN", PROTO_ICMP, "2.2.2.2", 0, "1.1.1.1", 0)
    assert format_event(drop)[0].startswith("Mar 05 2012 11:22:38: %ASA-6-110003: ")


# --------------------------------------------------------------------------------------------------
# Connections


def outbound_ssh(**kw):
    return dict(
        conn_id=9,
        protocol=PROTO_TCP,
        direction="outbound",
        initiator=ep("inside", "10.1.1.2", 53496),
        responder=ep("outside", "10.1.2.1", 22),
        **kw,
    )


def test_302013_outbound_names_the_outside_responder_first():
    assert line(ConnBuilt(T, **outbound_ssh())) == (
        "%ASA-6-302013: Built outbound TCP connection 9 for outside:10.1.2.1/22 (10.1.2.1/22) "
        "to inside:10.1.1.2/53496 (10.1.1.2/53496)"
    )


def test_302014_teardown_syn_timeout():
    ev = ConnTeardown(T, **outbound_ssh(duration=30, bytes=0, reason="SYN Timeout"))
    assert line(ev) == (
        "%ASA-6-302014: Teardown TCP connection 9 for outside:10.1.2.1/22 to inside:10.1.1.2/53496 "
        "duration 0:00:30 bytes 0 SYN Timeout"
    )


def test_302014_names_the_interface_that_closed():
    ev = ConnTeardown(T, **outbound_ssh(duration=3725, bytes=4504, reason="TCP FINs", closed_by="INSIDE"))
    assert line(ev).endswith("duration 1:02:05 bytes 4504 TCP FINs from INSIDE")


def test_302013_inbound_names_the_outside_initiator_first_and_shows_mapped_tuples():
    ev = ConnBuilt(
        T,
        conn_id=1234567,
        protocol=PROTO_TCP,
        direction="inbound",
        initiator=ep("outside", "198.51.100.7", 40000),
        responder=ep("dmz", "10.0.1.15", 443, "203.0.113.15", 443),
    )
    assert line(ev) == (
        "%ASA-6-302013: Built inbound TCP connection 1234567 for outside:198.51.100.7/40000 "
        "(198.51.100.7/40000) to dmz:10.0.1.15/443 (203.0.113.15/443)"
    )


def test_302013_outbound_with_pat_seed_000():
    ev = ConnBuilt(
        T,
        conn_id=1,
        protocol=PROTO_TCP,
        direction="outbound",
        initiator=ep("inside", "10.0.0.2", 38003, "192.168.9.30", 38003),
        responder=ep("outside", "192.168.9.2", 21),
    )
    assert line(ev) == (
        "%ASA-6-302013: Built outbound TCP connection 1 for outside:192.168.9.2/21 (192.168.9.2/21) "
        "to inside:10.0.0.2/38003 (192.168.9.30/38003)"
    )


def test_302015_302016_udp():
    kw = dict(
        conn_id=77,
        protocol=PROTO_UDP,
        direction="outbound",
        initiator=ep("inside", "10.31.98.44", 56132, "192.0.2.10", 1024),
        responder=ep("outside", "192.0.2.32", 53),
    )
    assert line(ConnBuilt(T, **kw)) == (
        "%ASA-6-302015: Built outbound UDP connection 77 for outside:192.0.2.32/53 (192.0.2.32/53) "
        "to inside:10.31.98.44/56132 (192.0.2.10/1024)"
    )
    assert line(ConnTeardown(T, **kw, duration=120, bytes=312, reason="Idle Timeout")) == (
        "%ASA-6-302016: Teardown UDP connection 77 for outside:192.0.2.32/53 to inside:10.31.98.44/56132 "
        "duration 0:02:00 bytes 312"
    )


def test_302020_302021_outbound_icmp_id_on_the_inside_only():
    kw = dict(
        conn_id=5,
        protocol=PROTO_ICMP,
        direction="outbound",
        initiator=ep("inside", "172.16.12.44", 48756, "131.1.11.81", 48756),
        responder=ep("outside", "10.1.1.100", 48756),
    )
    assert line(ConnBuilt(T, **kw)) == (
        "%ASA-6-302020: Built outbound ICMP connection for faddr 10.1.1.100/0 gaddr 131.1.11.81/48756 "
        "laddr 172.16.12.44/48756"
    )
    assert line(ConnTeardown(T, **kw, duration=0, bytes=64, reason="")) == (
        "%ASA-6-302021: Teardown ICMP connection for faddr 10.1.1.100/0 gaddr 131.1.11.81/48756 "
        "laddr 172.16.12.44/48756"
    )


def test_302020_inbound_icmp_id_on_the_outside():
    ev = ConnBuilt(
        T,
        conn_id=6,
        protocol=PROTO_ICMP,
        direction="inbound",
        initiator=ep("outside", "10.137.200.251", 18425),
        responder=ep("inside", "10.137.10.10", 18425, "10.137.10.1", 18425),
    )
    assert line(ev) == (
        "%ASA-6-302020: Built inbound ICMP connection for faddr 10.137.200.251/18425 "
        "gaddr 10.137.10.1/0 laddr 10.137.10.10/0"
    )


def test_other_protocols_have_no_connection_message_yet():
    ev = ConnBuilt(T, 1, 47, "outbound", ep("inside", "10.0.0.1", 0), ep("outside", "192.0.2.1", 0))
    assert format_event(ev) == []


# --------------------------------------------------------------------------------------------------
# Translations


def pat(**kw):
    return dict(
        kind_="dynamic",
        protocol=PROTO_TCP,
        real_interface="inside",
        real_address="10.0.0.2",
        real_port=38003,
        mapped_interface="outside",
        mapped_address="192.168.9.30",
        mapped_port=38003,
        **kw,
    )


def test_305011_305012():
    assert line(XlateBuilt(T, **pat())) == (
        "%ASA-6-305011: Built dynamic TCP translation from inside:10.0.0.2/38003 "
        "to outside:192.168.9.30/38003"
    )
    assert line(XlateTeardown(T, **pat(duration=30))) == (
        "%ASA-6-305012: Teardown dynamic TCP translation from inside:10.0.0.2/38003 "
        "to outside:192.168.9.30/38003 duration 0:00:30"
    )


def test_whole_address_translation_uses_305009_305010():
    kw = pat()
    kw.update(protocol=0, real_port=0, mapped_port=0, kind_="static")
    assert line(XlateBuilt(T, **kw)) == (
        "%ASA-6-305009: Built static translation from inside:10.0.0.2 to outside:192.168.9.30"
    )
    assert line(XlateTeardown(T, **kw, duration=10800)).endswith("to outside:192.168.9.30 duration 3:00:00")


# --------------------------------------------------------------------------------------------------
# Drops


def test_419001_seed_000_exactly():
    drop = Drop(
        T,
        DropReason.TCP_MSS_EXCEEDED,
        "INSIDE",
        PROTO_TCP,
        "10.0.0.2",
        38003,
        "192.168.9.2",
        21,
        egress="OUTSIDE",
        detail={"mss": 1390, "data": 1460},
    )
    assert format_event(drop) == [
        "Sep 19 2007 06:55:58: %ASA-4-419001: Dropping TCP packet from INSIDE:10.0.0.2/38003 to "
        "OUTSIDE:192.168.9.2/21, reason: MSS exceeded, MSS 1390, data 1460"
    ]


def test_106015_no_connection_flags_double_space():
    drop = Drop(
        T,
        DropReason.TCP_NOT_SYN,
        "inside",
        PROTO_TCP,
        "172.16.200.32",
        46636,
        "119.23.80.62",
        8443,
        tcp_flags=PSH | ACK,
    )
    assert line(drop) == (
        "%ASA-6-106015: Deny TCP (no connection) from 172.16.200.32/46636 to 119.23.80.62/8443 "
        "flags PSH ACK  on interface inside"
    )


def test_106023_named_access_list():
    drop = Drop(
        T,
        DropReason.ACL_DROP,
        "outside",
        PROTO_TCP,
        "192.168.1.1",
        50240,
        "192.168.1.2",
        23,
        egress="inside",
        acl="S_OUTSIDE_TO_INSIDE",
    )
    assert line(drop) == (
        "%ASA-4-106023: Deny tcp src outside:192.168.1.1/50240 dst inside:192.168.1.2/23 "
        'by access-group "S_OUTSIDE_TO_INSIDE" [0x0, 0x0]'
    )


def test_106023_icmp_prints_type_and_code():
    drop = Drop(
        T,
        DropReason.ACL_DROP,
        "outside",
        PROTO_ICMP,
        "1.2.3.4",
        0,
        "5.6.7.8",
        0,
        icmp_type=8,
        icmp_code=0,
        egress="inside",
        acl="outside_in",
    )
    assert line(drop) == (
        "%ASA-4-106023: Deny icmp src outside:1.2.3.4 dst inside:5.6.7.8 (type 8, code 0) "
        'by access-group "outside_in" [0x0, 0x0]'
    )


def test_106023_other_protocol_by_name_or_number():
    gre = Drop(T, DropReason.ACL_DROP, "outside", 47, "1.2.3.4", 0, "5.6.7.8", 0, egress="inside", acl="A")
    assert (
        line(gre)
        == '%ASA-4-106023: Deny gre src outside:1.2.3.4 dst inside:5.6.7.8 by access-group "A" [0x0, 0x0]'
    )
    odd = Drop(T, DropReason.ACL_DROP, "outside", 103, "1.2.3.4", 0, "5.6.7.8", 0, egress="inside", acl="A")
    assert line(odd).startswith("%ASA-4-106023: Deny protocol 103 src outside:1.2.3.4 dst inside:5.6.7.8 ")


def test_106001_implicit_deny_by_security_level():
    drop = Drop(
        T,
        DropReason.SECURITY_LEVEL,
        "outside",
        PROTO_TCP,
        "192.168.9.2",
        40000,
        "10.0.0.2",
        22,
        tcp_flags=SYN,
        egress="inside",
    )
    assert format_event(drop, hostname="pixfirewall") == [
        "Sep 19 2007 06:55:58 pixfirewall : %ASA-2-106001: Inbound TCP connection denied from "
        "192.168.9.2/40000 to 10.0.0.2/22 flags SYN  on interface outside"
    ]


def test_acl_drop_without_access_list_is_the_implicit_deny():
    drop = Drop(
        T,
        DropReason.ACL_DROP,
        "outside",
        PROTO_TCP,
        "197.215.28.166",
        443,
        "7.179.94.19",
        60247,
        tcp_flags=FIN | PSH | ACK,
    )
    assert line(drop) == (
        "%ASA-2-106001: Inbound TCP connection denied from 197.215.28.166/443 to 7.179.94.19/60247 "
        "flags FIN PSH ACK  on interface outside"
    )


def test_106006_udp_and_106014_icmp_implicit_deny():
    udp = Drop(T, DropReason.SECURITY_LEVEL, "outside", PROTO_UDP, "192.0.2.1", 1234, "10.0.1.50", 4321)
    assert (
        line(udp)
        == "%ASA-2-106006: Deny inbound UDP from 192.0.2.1/1234 to 10.0.1.50/4321 on interface outside"
    )
    icmp = Drop(
        T,
        DropReason.SECURITY_LEVEL,
        "outside",
        PROTO_ICMP,
        "151.80.47.231",
        0,
        "116.6.127.112",
        0,
        icmp_type=3,
        icmp_code=2,
    )
    assert line(icmp) == (
        "%ASA-3-106014: Deny inbound icmp src outside:151.80.47.231 dst outside:116.6.127.112 "
        "(type 3, code 2)"
    )


def test_110003_no_route_icmp_ports_are_zero():
    drop = Drop(T, DropReason.NO_ROUTE, "WAN", PROTO_ICMP, "2.2.2.2", 7, "1.1.1.1", 0, icmp_type=8)
    assert (
        line(drop)
        == "%ASA-6-110003: Routing failed to locate next hop for icmp from WAN:2.2.2.2/0 to WAN:1.1.1.1/0"
    )


def test_106021_reverse_path():
    drop = Drop(T, DropReason.RPF_VIOLATED, "Outside", PROTO_TCP, "192.168.34.73", 1, "212.156.67.62", 2)
    assert line(drop) == (
        "%ASA-1-106021: Deny TCP reverse path check from 192.168.34.73 to 212.156.67.62 on interface Outside"
    )


def test_106011_no_xlate():
    drop = Drop(
        T,
        DropReason.NAT_NO_XLATE,
        "outside",
        PROTO_ICMP,
        "10.249.118.254",
        0,
        "10.96.160.84",
        0,
        icmp_type=8,
        icmp_code=0,
    )
    assert line(drop) == (
        "%ASA-3-106011: Deny inbound (No xlate) icmp src outside:10.249.118.254 dst outside:10.96.160.84 "
        "(type 8, code 0)"
    )


def test_305006_pat_exhausted():
    drop = Drop(
        T, DropReason.NAT_FAILED, "inside", PROTO_TCP, "10.0.0.2", 1025, "192.0.2.1", 80, egress="outside"
    )
    assert line(drop) == (
        "%ASA-3-305006: portmap translation creation failed for tcp src inside:10.0.0.2/1025 "
        "dst outside:192.0.2.1/80"
    )


@pytest.mark.parametrize(
    "kind, prefix",
    [
        ("embryonic", "%ASA-6-201010: Embryonic connection limit exceeded"),
        ("conn", "%ASA-3-201011: Connection limit exceeded"),
        ("per-client-embryonic", "%ASA-6-201012: Per-client embryonic connection limit exceeded"),
        ("per-client", "%ASA-3-201013: Per-client connection limit exceeded"),
    ],
)
def test_201010_to_201013_connection_limits(kind, prefix):
    drop = Drop(
        T,
        DropReason.CONN_LIMIT,
        "outside",
        PROTO_TCP,
        "198.51.100.9",
        4000,
        "10.0.1.15",
        80,
        detail={"kind": kind, "count": 101, "limit": 100},
    )
    assert (
        line(drop)
        == f"{prefix} 101/100 for input packet from 198.51.100.9/4000 to 10.0.1.15/80 on interface outside"
    )


def test_format_events_keeps_order_and_skips_silent_events():
    evs = [
        XlateBuilt(T, **pat()),
        IcmpSent(T, "inside", 11, 0, "10.0.0.1", "10.0.0.2"),
        ConnBuilt(T, **outbound_ssh()),
    ]
    out = format_events(evs, timestamp=False)
    assert [x.split(":")[0] for x in out] == ["%ASA-6-305011", "%ASA-6-302013"]


def test_jsonl_file_one_object_per_line():
    buf = io.StringIO()
    assert write_jsonl(buf, [XlateBuilt(T, **pat()), ConnBuilt(T, **outbound_ssh())]) == 2
    rows = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [r["asa_id"] for r in rows] == [305011, 302013]


def test_drop_without_asa_message_is_only_counted():
    drop = Drop(T, DropReason.BAD_TCP_CHECKSUM, "inside", PROTO_TCP, "10.0.0.2", 1, "10.0.0.3", 2)
    assert format_event(drop) == []
    assert DropReason.BAD_TCP_CHECKSUM not in MESSAGES
    c = Counters()
    c.feed([drop])
    assert c.to_summary()["drops_by_reason"] == {"bad-tcp-cksum": 1}


def test_drop_missing_a_detail_its_message_needs_is_counted_not_logged():
    drop = Drop(T, DropReason.TCP_MSS_EXCEEDED, "inside", PROTO_TCP, "10.0.0.2", 1, "10.0.0.3", 2)
    assert format_event(drop) == []


def test_drop_of_an_undecoded_packet_has_no_line():
    assert format_event(Drop(T, DropReason.NO_ROUTE, "inside")) == []


def test_313005_icmp_error_without_connection():
    drop = Drop(
        T,
        DropReason.ICMP_NO_SESSION,
        "OUTSIDE",
        PROTO_ICMP,
        "10.10.10.10",
        0,
        "10.20.20.20",
        0,
        icmp_type=3,
        icmp_code=3,
        egress="INSIDE",
        detail={
            "inner_proto": "udp",
            "inner_src": "10.20.20.20",
            "inner_sport": 53,
            "inner_dst": "10.10.10.10",
            "inner_dport": 24750,
        },
    )
    assert line(drop) == (
        "%ASA-4-313005: No matching connection for ICMP error message: icmp src OUTSIDE:10.10.10.10 "
        "dst INSIDE:10.20.20.20 (type 3, code 3) on OUTSIDE interface.  Original IP payload: "
        "udp src 10.20.20.20/53 dst 10.10.10.10/24750."
    )


def test_every_message_row_formats_with_full_fields():
    # Guards against typos in templates: each row must format from a drop that carries the details.
    detail = {"mss": 1, "data": 2, "count": 3, "limit": 4, "inner_proto": "udp", "inner_src": "3.3.3.3"}
    detail.update(inner_sport=3, inner_dst="4.4.4.4", inner_dport=4)
    detail.update(id=5, proto_name="UDP", elements=6, size=7, max=8)  # fragment messages (209xxx)
    detail.update(dns_kind="reply", length=9)  # 410001
    for reason, rows in MESSAGES.items():
        for row in rows:
            when = dict(row.when)
            proto = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP}.get(when.get("l4"), PROTO_TCP)
            drop = Drop(
                T,
                reason,
                "a",
                proto,
                "1.1.1.1",
                1,
                "2.2.2.2",
                2,
                tcp_flags=SYN,
                icmp_type=0,
                icmp_code=0,
                acl="x" if when.get("has_acl") else None,
                detail={**detail, **when},
            )
            assert format_event(drop), (reason, row.asa_id)


# --------------------------------------------------------------------------------------------------
# ACL hits


def test_106100_first_hit_and_interval():
    kw = dict(
        acl="inside_access_in",
        action="permitted",
        protocol=PROTO_TCP,
        in_interface="inside",
        src="10.0.0.2",
        sport=38003,
        out_interface="outside",
        dst="192.168.9.2",
        dport=21,
    )
    assert line(AclHit(T, **kw, hits=1)) == (
        "%ASA-6-106100: access-list inside_access_in permitted tcp inside/10.0.0.2(38003) -> "
        "outside/192.168.9.2(21) hit-cnt 1 first hit [0x0, 0x0]"
    )
    assert line(AclHit(T, **kw, hits=7, level=4, interval=60)) == (
        "%ASA-4-106100: access-list inside_access_in permitted tcp inside/10.0.0.2(38003) -> "
        "outside/192.168.9.2(21) hit-cnt 7 60-second interval [0x0, 0x0]"
    )


def test_icmp_sent_has_no_syslog():
    assert format_event(IcmpSent(T, "inside", 11, 0, "10.0.0.1", "10.0.0.2")) == []


# --------------------------------------------------------------------------------------------------
# JSON lines


def test_json_round_trip_carries_the_syslog_facts():
    origin = Origin("seed000.txt", 12, "access-list outside_in extended deny tcp any any")
    drop = Drop(
        T,
        DropReason.ACL_DROP,
        "outside",
        PROTO_TCP,
        "192.168.1.1",
        50240,
        "192.168.1.2",
        23,
        tcp_flags=SYN,
        egress="inside",
        acl="outside_in",
        origin=origin,
        detail={"mss": 1390},
    )
    text = event_to_json(drop)
    assert "\n" not in text
    d = json.loads(text)
    assert list(d)[:5] == ["@timestamp", "event", "time", "asa_id", "asa_severity"]
    assert d["@timestamp"] == "2007-09-19T06:55:58.000000+00:00"  # ISO 8601 with its zone
    assert d["event"] == "Drop" and d["asa_id"] == 106023 and d["asa_severity"] == 4
    assert d["time"] == T
    assert d["reason"] == "acl-drop"
    assert (d["interface"], d["src"], d["sport"], d["egress"], d["dst"], d["dport"]) == (
        "outside",
        "192.168.1.1",
        50240,
        "inside",
        "192.168.1.2",
        23,
    )
    assert d["acl"] == "outside_in" and d["tcp_flags"] == SYN
    assert d["origin"] == {"file": "seed000.txt", "line": 12, "text": origin.text}
    assert d["detail"] == {"mss": 1390}


def test_json_connection_endpoints_and_float_time():
    ev = ConnBuilt(T + 0.25, **outbound_ssh())
    d = json.loads(event_to_json(ev))
    assert d["asa_id"] == 302013 and d["time"] == T + 0.25
    assert d["initiator"] == {
        "interface": "inside",
        "address": "10.1.1.2",
        "port": 53496,
        "mapped_address": "10.1.1.2",
        "mapped_port": 53496,
    }


def test_json_without_asa_message_has_no_id():
    d = json.loads(event_to_json(IcmpSent(T, "inside", 11, 0, "10.0.0.1", "10.0.0.2", "ttl")))
    assert "asa_id" not in d and d["event"] == "IcmpSent" and d["icmp_type"] == 11


# --------------------------------------------------------------------------------------------------
# Counters and show commands


def test_counters_summary():
    c = Counters()
    c.feed(
        [
            XlateBuilt(T, **pat()),
            ConnBuilt(T, **outbound_ssh()),
            Drop(T, DropReason.TCP_NOT_SYN, "outside", PROTO_TCP, "1.1.1.1", 1, "2.2.2.2", 2, tcp_flags=ACK),
            Drop(T, DropReason.TCP_NOT_SYN, "outside", PROTO_TCP, "1.1.1.1", 1, "2.2.2.2", 2, tcp_flags=ACK),
            Drop(T, DropReason.INVALID_IP_HEADER, "inside"),
            ConnTeardown(T, **outbound_ssh(duration=1, bytes=0, reason="TCP FINs")),
            XlateTeardown(T, **pat(duration=30)),
        ]
    )
    s = c.to_summary()
    assert s["dropped"] == 3
    # DropReason order, not insertion order
    assert list(s["drops_by_reason"].items()) == [("invalid-ip-header", 1), ("tcp-not-syn", 2)]
    assert s["connections_built"] == {"tcp": 1} and s["connections_torn_down"] == {"tcp": 1}
    assert s["teardown_reasons"] == {"TCP FINs": 1}
    assert (s["xlates_built"], s["xlates_torn_down"]) == (1, 1)
    json.dumps(s)


def test_show_asp_drop_layout():
    counts = {DropReason.TCP_NOT_SYN: 12, DropReason.INVALID_IP_HEADER: 3, DropReason.ACL_DROP: 0}
    assert format_show_asp_drop(counts) == (
        "Frame drop:\n"
        "  Invalid IP header (invalid-ip-header)                                        3\n"
        "  First TCP packet not SYN (tcp-not-syn)                                      12\n"
        "\n"
        "Last clearing: Never\n"
        "\n"
        "Flow drop:\n"
        "\n"
        "Last clearing: Never\n"
    )


def test_show_asp_drop_splits_flow_drops_and_right_aligns():
    c = Counters()
    c.feed([Drop(T, DropReason.INTERCEPT, "outside"), Drop(T, DropReason.ACL_DROP, "outside")])
    c.drops[DropReason.ACL_DROP] = 29307676  # a long-running box's count, from a real listing
    text = format_show_asp_drop(c.drops)
    frame, flow = text.split("\n\nFlow drop:\n")
    assert "  Flow is denied by configured rule (acl-drop)                          29307676" in frame
    assert "tcp-intercept" in flow and "tcp-intercept" not in frame
    assert all(len(x) == 80 for x in text.splitlines() if x.startswith("  "))


def test_show_conn():
    now = 1000.0
    conns = [
        ConnRecord(
            PROTO_TCP, "outside", "10.23.232.217", 443, "inside", "192.168.1.3", 52427, now - 62, 4504, "UIO"
        )
    ]
    assert format_show_conn(conns, now, most_used=5) == (
        "1 in use, 5 most used\n"
        "TCP outside 10.23.232.217:443 inside 192.168.1.3:52427, idle 0:01:02, bytes 4504, flags UIO\n"
    )
    udp = ConnRecord(PROTO_UDP, "outside", "8.8.8.8", 53, "inside", "10.0.0.2", 5353, now, 40)
    assert format_show_conn([udp], now).splitlines() == [
        "1 in use, 1 most used",
        "UDP outside 8.8.8.8:53 inside 10.0.0.2:5353, idle 0:00:00, bytes 40, flags -",
    ]


def test_show_xlate():
    now = 10000.0
    x = XlateRecord(PROTO_TCP, "inside", "10.20.33.2", 54676, "outside", "192.0.2.3", 54676, now - 6492, 30)
    lines = format_show_xlate([x], now, most_used=5).splitlines()
    assert lines[0] == "1 in use, 5 most used"
    assert lines[1].startswith("Flags: D - DNS")
    assert lines[-1] == (
        "TCP PAT from inside:10.20.33.2/54676 to outside:192.0.2.3/54676 "
        "flags ri idle 1:48:12 timeout 0:00:30"
    )


def test_303002_ftp_transfer_audit():
    from statewall.events import FtpTransfer

    ev = FtpTransfer(
        0.0,
        3,
        Endpoint("inside", "10.0.0.2", 38003, "192.168.9.30", 38003),
        Endpoint("outside", "192.168.9.2", 21, "192.168.9.2", 21),
        "anonymous",
        "Retrieved",
        "robots.txt",
    )
    assert format_event(ev, timestamp=False) == [
        "%ASA-6-303002: FTP connection from inside:10.0.0.2/38003 to outside:192.168.9.2/21, "
        "user anonymous Retrieved file robots.txt"
    ]


def test_addresses_given_as_version_and_integer_read_and_format_as_text():
    """The engine hands addresses over as (version, int); they read, compare and format as text."""
    lazy = Endpoint("inside", (4, 0x0A000002), 40000, (6, 0x20010DB8 << 96 | 1), 1024)
    text = Endpoint("inside", "10.0.0.2", 40000, "2001:db8::1", 1024)
    assert lazy == text and repr(lazy) == repr(text) and lazy.address == "10.0.0.2"
    built = [
        XlateBuilt(1.0, "dynamic", PROTO_TCP, "inside", a, 40000, "outside", m, 1024)
        for a, m in (((4, 0x0A000002), (4, 0xC0000201)), ("10.0.0.2", "192.0.2.1"))
    ]
    assert format_event(built[0]) == format_event(built[1])
    assert event_to_json(built[0]) == event_to_json(built[1])
