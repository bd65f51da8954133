"""Given tables and counters, expect the ASA's show output of the configured release.

Fixtures are ASA output texts with their sources:
- [C24] Cisco TAC 113602 (8.4): ``TCP outside 10.23.232.217:443 inside 192.168.1.3:52427, idle 0:01:02,
  bytes 4504, flags UIO``.
- [CMDREF-8] Cisco ASA 8.x command reference, show conn detail: ``TCP outside:10.10.49.10/23
  inside:10.1.1.15/1026,`` / ``    flags UIO, idle 39s, uptime 1D19h, timeout 1h0m, bytes 1940435``;
  show xlate (8.2): ``PAT Global 192.150.49.1(1024) Local 10.1.1.15(1028)``.
- [CMDREF-9] Cisco ASA 9.x command reference, show conn count: ``54 in use, 123 most used``.
- [DEV-9] show conn detail of a 9.x device, kept as test data by a public parser of it:
  ``TCP FORTISIEM: 10.1.76.3/57798 beproxy: 10.1.19.90/8000,`` / ``    flags UIO N1, idle 8s, uptime
  2h39m, timeout 1h0m, bytes 14395, Rx-RingNum 61, Internal-Data0/1`` / ``  Initiator: 10.1.76.3,
  Responder: 10.1.19.90`` / ``  Connection lookup keyid: 1931784606``; a UDP entry has no Initiator
  line and prints ``flags -`` when it has none.
- [C16] Cisco 115992: ``TCP PAT from inside:10.20.33.2/54676 to outside:192.0.2.3/54676 flags ri idle
  1:48:12 timeout 0:00:30``.
- [ASP] Cisco ASA command reference, show asp drop command usage (the keyword list).
- [ASP-A] a real ASA's ``capture NAME type asp-drop ?`` list (keyword and description per line), kept in
  a public CCIE Security notebook: ``tcpnorm-win-variation  TCP unexpected window size variation``,
  ``tcpnorm-rexmit-bad  TCP bad retransmission``, ``tcp-syn-ooo  TCP SYN on established conn``,
  ``bad-tcp-flags  Bad TCP flags``, ``tcp-bad-option-list  TCP option list invalid``.
- [ASP-B] a 9.8(3) ``show asp drop`` kept as a network CLI simulator's fixture (lines quoted below).
"""

from __future__ import annotations

from statewall.events import DropReason
from statewall.logfmt.asa import (
    ConnRecord,
    XlateRecord,
    format_show_conn,
    format_show_conn_count,
    format_show_xlate,
    release_of,
)
from statewall.logfmt.counters import format_show_asp_drop
from statewall.policy import PROTO_TCP

NOW = 1_000_000.0


def telnet(**kw) -> ConnRecord:
    # [CMDREF-8/9]: inside 10.1.1.15/1026 to the outside telnet server 10.10.49.10/23.
    base = dict(
        protocol=PROTO_TCP,
        outside_if="outside",
        outside_ip="10.10.49.10",
        outside_port=23,
        inside_if="inside",
        inside_ip="10.1.1.15",
        inside_port=1026,
        last_activity=NOW - 39,
        bytes=1940435,
        flags="UIO",
        created=NOW - (86400 + 19 * 3600),
        timeout=3600,
    )
    base.update(kw)
    return ConnRecord(**base)


def test_show_conn_detail_8x_form():
    text = format_show_conn([telnet()], NOW, detail=True, release=release_of("8.2(1)")).splitlines()
    assert text[1].startswith("Flags: A - awaiting inside ACK to SYN")
    assert text[-2:] == [
        "TCP outside:10.10.49.10/23 inside:10.1.1.15/1026,",
        "    flags UIO, idle 39s, uptime 1D19h, timeout 1h0m, bytes 1940435",
    ]


def test_show_conn_detail_9x_form_as_a_device_prints_it():
    # [DEV-9] without what statewall has no counterpart for: the Snort flag N1, the platform's
    # Rx-RingNum / Internal-Data0/1 and the lookup key id.
    now = 5_000_000.0
    tcp = ConnRecord(
        PROTO_TCP, "FORTISIEM", "10.1.76.3", 57798, "beproxy", "10.1.19.90", 8000, now - 8, 14395,
        "UIO", now - (2 * 3600 + 39 * 60), 3600, 1, "10.1.76.3", "10.1.19.90",
    )  # fmt: skip
    udp = ConnRecord(
        17, "FORTISIEM", "10.1.76.4", 45879, "dc2", "10.1.5.101", 53, now - 21, 28, "", now - 21, 120
    )
    text = format_show_conn([udp, tcp], now, detail=True, release=release_of("9.16(3)")).splitlines()
    assert text[text.index("UDP FORTISIEM: 10.1.76.4/45879 dc2: 10.1.5.101/53,") :] == [
        "UDP FORTISIEM: 10.1.76.4/45879 dc2: 10.1.5.101/53,",
        "    flags - , idle 21s, uptime 21s, timeout 2m0s, bytes 28",
        "",
        "TCP FORTISIEM: 10.1.76.3/57798 beproxy: 10.1.19.90/8000,",
        "    flags UIO , idle 8s, uptime 2h39m, timeout 1h0m, bytes 14395",
        "  Initiator: 10.1.76.3, Responder: 10.1.19.90",
    ]


def test_show_conn_detail_9x_form_with_initiator_and_statewall_notes_apart():
    conn = telnet(initiator="10.1.1.15", responder="10.10.49.10", notes=("tcp ESTABLISHED",))
    text = format_show_conn([conn], NOW, detail=True, release=release_of("9.12(4)")).splitlines()
    assert text[1].startswith("Flags: A - awaiting responder ACK to SYN")
    assert text[-4:] == [
        "TCP outside: 10.10.49.10/23 inside: 10.1.1.15/1026,",
        "    flags UIO , idle 39s, uptime 1D19h, timeout 1h0m, bytes 1940435",
        "  Initiator: 10.1.1.15, Responder: 10.10.49.10",
        "  statewall: tcp ESTABLISHED",
    ]


def test_show_conn_line_and_count():
    conn = telnet(
        outside_ip="10.23.232.217", outside_port=443, inside_ip="192.168.1.3", inside_port=52427,
        last_activity=NOW - 62, bytes=4504,
    )  # fmt: skip
    assert format_show_conn([conn], NOW, most_used=5589).splitlines()[1] == (
        "TCP outside 10.23.232.217:443 inside 192.168.1.3:52427, idle 0:01:02, bytes 4504, flags UIO"
    )
    assert format_show_conn_count(54, 123) == "54 in use, 123 most used\n"


def pat(**kw) -> XlateRecord:
    base = dict(
        protocol=PROTO_TCP, real_if="inside", real_ip="10.1.1.15", real_port=1028, mapped_if="outside",
        mapped_ip="192.150.49.1", mapped_port=1024, last_activity=NOW - 6492, timeout=30,
    )  # fmt: skip
    base.update(kw)
    return XlateRecord(**base)


def test_show_xlate_8_2_and_8_3_forms():
    old = format_show_xlate([pat()], NOW, most_used=180, release=release_of("8.2(1)"))
    assert old == "1 in use, 180 most used\nPAT Global 192.150.49.1(1024) Local 10.1.1.15(1028)\n"
    new = format_show_xlate(
        [pat(real_ip="10.20.33.2", real_port=54676, mapped_ip="192.0.2.3", mapped_port=54676)],
        NOW,
        release=release_of("9.1(2)"),
    )
    assert new.splitlines()[-1] == (
        "TCP PAT from inside:10.20.33.2/54676 to outside:192.0.2.3/54676 flags ri idle 1:48:12 "
        "timeout 0:00:30"
    )


def test_show_asp_drop_uses_only_asa_keywords():
    text = format_show_asp_drop(
        {
            DropReason.TO_THE_BOX: 2,
            DropReason.NAT_NO_XLATE: 1,
            DropReason.ACL_DROP: 4,
            DropReason.BAD_IP_CHECKSUM: 1,
            DropReason.INTERNAL_ERROR: 1,
        }
    )
    asa_part, _, statewall_part = text.partition("statewall:")
    assert "(acl-drop)" in asa_part and asa_part.split("(acl-drop)")[1].split("\n")[0].strip() == "7"
    assert "(invalid-ip-header)" in asa_part
    for keyword in ("to-the-box", "no-xlate", "bad-ip-cksum", "internal-error"):
        assert f"({keyword})" not in asa_part
    assert "(internal-error) 1" in statewall_part


def test_show_asp_drop_lines_as_a_98_asa_prints_them():
    """Keywords and descriptions the ASA uses, laid out as [ASP-B] (a 9.8(3) ``show asp drop`` kept as a
    network CLI simulator's fixture): ``  Bad TCP flags (bad-tcp-flags)`` with the count ending at
    column 80; reasons with no ASA counter apart, as statewall's."""
    text = format_show_asp_drop(
        {
            DropReason.INVALID_TCP_FLAGS: 50,
            DropReason.TTL_EXPIRED: 3,
            DropReason.INVALID_IP_OPTION: 3,
            DropReason.INVALID_TCP_OPTIONS: 2,
            DropReason.INVALID_IP_VERSION: 111,
            DropReason.FRAGMENT_TIMEOUT: 2,
        }
    )
    lines = text.splitlines()
    # The exact lines of [ASP-B].
    for line in (
        "  Bad TCP flags (bad-tcp-flags)                                               50",
        "  ttl exceeded (ttl-exceeded)                                                  3",
        "  IP option drop (invalid-ip-option)                                           3",
        "  TCP option list invalid (tcp-bad-option-list)                                2",
        "  Unsupported IP version (unsupported-ip-version)                            111",
    ):
        assert line in lines
    asa_part, _, statewall_part = text.partition("statewall:")
    assert "fragment-reassembly-timeout" not in asa_part
    assert "(fragment-reassembly-timeout) 2" in statewall_part


def test_every_drop_reason_is_the_asas_mapped_to_its_nearest_or_listed_apart():
    from statewall.logfmt.counters import ASA_NEAREST, ASA_VERIFIED, NOT_ASA

    for reason in DropReason:
        assert (reason in ASA_VERIFIED) + (reason in ASA_NEAREST) + (reason in NOT_ASA) == 1, reason
    # The renames to the ASA's own words ([ASP-A]: capture ... type asp-drop ?).
    assert DropReason.TCP_WINDOW_VARIATION.value == (
        "tcpnorm-win-variation",
        "TCP unexpected window size variation",
    )
    assert DropReason.TCP_BAD_RETRANSMISSION.value == ("tcpnorm-rexmit-bad", "TCP bad retransmission")
    assert DropReason.TCP_SYN_ON_CONN.value == ("tcp-syn-ooo", "TCP SYN on established conn")


def test_ipv6_slowpath_keyword_is_spelled_as_the_asas_asp_drop_list():
    """[ASP-A]'s ``capture NAME type asp-drop ?`` list has ``ipv6-sp-security-failed  IPv6 slowpath
    security checks failed`` (hyphens, like every other keyword of the list); statewall once spelled it
    with underscores, which no ASA accepts after ``type asp-drop``."""
    reason = DropReason.IPV6_SP_SECURITY_FAILED
    assert reason.value == ("ipv6-sp-security-failed", "IPv6 slowpath security checks failed")
    assert all("_" not in r.keyword for r in DropReason)
    text = format_show_asp_drop({reason: 3})
    assert "  IPv6 slowpath security checks failed (ipv6-sp-security-failed)" in text.splitlines()[1]
