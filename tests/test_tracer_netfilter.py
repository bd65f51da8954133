"""packet-tracer on an iptables configuration: netfilter's stages report their phases, printed as the
kernel's ``nft monitor trace`` prints a traced packet (``trace id ID ip TABLE CHAIN rule RULE (verdict
accept)``, ``... policy drop``), then statewall's account of every stage with its configuration line,
and for a drop the reason, the line that decided and the fix; the command exits 1 on a drop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from statewall import cli, craft
from statewall.config import parse_policy
from statewall.engine import Firewall, nf_path
from statewall.packet import str_to_addr
from statewall.pcapio import PcapWriter
from statewall.tracer import netfilter_trace, netfilter_tracer, nf_stage_phases

CONFIGS = Path(__file__).parent / "configs"
SEED001 = CONFIGS / "seed001-sophos.rules"
SEED003 = CONFIGS / "seed003-pix.rules"
GATEWAY = CONFIGS / "nat-gateway.rules"
TRACE = re.compile(r"^trace id [0-9a-f]{8} (ip6?) (.*)$")


def policy(path: Path, text: str | None = None):
    return parse_policy(path.read_text() if text is None else text, path.name)


def kernel(text: str) -> list[str]:
    """The kernel-like lines, without their ``trace id ID ip`` heads (all one id, one family)."""
    found = [TRACE.match(line) for line in text.splitlines()]
    heads = {line.split()[2] for line in text.splitlines() if TRACE.match(line)}
    assert len(heads) == 1
    return [m.group(2) for m in found if m]


def stages(text: str) -> list[str]:
    """statewall's section: one line per report, ``PHASE RESULT text (file:line)``."""
    part = text.split("statewall: the packet's stages\n", 1)[1].split("\n\n", 1)[0]
    return [" ".join(line.split()) for line in part.splitlines()]


def run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Seed 001: the Sophos KB's TCPMSS rules


def test_seed001_a_syn_into_ipsec0_meets_the_tcpmss_rule_that_the_delete_left(capsys):
    """The KB's rule was typed twice and one copy deleted: the trace names the copy that is left (line
    13) and the MSS it wrote; a SYN to the internet meets no TCPMSS rule."""
    code, out = run(capsys, "packet-tracer", "-c", str(SEED001), "input", "Port1", "tcp", "192.168.1.10",
                    "40000", "10.9.0.5", "22")  # fmt: skip
    assert code == 0
    lines = kernel(out)
    assert (
        "mangle POSTROUTING rule iptables -t mangle -A POSTROUTING -o ipsec0 -p tcp -m tcp --tcp-flags "
        "SYN,RST SYN -j TCPMSS --set-mss 1347 (verdict continue)"
    ) in lines
    assert "mangle POSTROUTING policy accept" in lines
    assert 'mangle POSTROUTING packet: iif "Port1" oif "ipsec0"' in " ".join(lines)
    assert any(
        "TCPMSS: MSS 1460 -> 1347" in line and line.endswith(f"({SEED001}:13)") for line in stages(out)
    )
    assert "Action: allow" in out and "output-interface: ipsec0" in out

    text, allowed = netfilter_tracer(
        policy(SEED001), "lan", "tcp", "2001:db8:1::10", 40000, "2001:db8:9::5", 22
    )
    assert allowed and any(line.startswith("mangle POSTROUTING rule ip6tables") for line in kernel(text))
    assert all(m.group(1) == "ip6" for m in map(TRACE.match, text.splitlines()) if m)
    assert any(
        "TCPMSS: MSS 1440 -> 1327" in line and "seed001-sophos.rules:12" in line for line in stages(text)
    )

    text, allowed = netfilter_tracer(policy(SEED001), "lan", "tcp", "192.168.1.10", 40000, "203.0.113.9", 443)
    assert allowed and "TCPMSS" not in text and "output-interface: wan" in text


# --------------------------------------------------------------------------------------------------
# Seed 003: the PIX's unshifted SACK blocks and nf_conntrack_tcp_be_liberal

SERVER, REMOTE = str_to_addr("10.20.0.5")[1], str_to_addr("198.51.100.20")[1]
ISN, R_ISN, PIX_OFFSET = 0x1000_0000, 0x7000_0000, 0x2345_0000


def seed003_upload(fw: Firewall | None) -> list[tuple[str, bytearray]]:
    """The application server opens scp to the peer beyond the PIX and sends four segments (through
    ``fw`` when given), then the peer's duplicate ACK whose SACK block the PIX left in its shifted
    numbering: every packet with the interface it arrives on, the ACK last (not sent through ``fw``)."""
    syn = craft.tcp_options(
        craft.tcp_option_mss(1460), craft.tcp_option_sack_permitted(), craft.tcp_option_wscale(7)
    )

    def seg(src, dst, sport, dport, flags, seq, ack, payload=b"", options=b""):
        return craft.tcp_packet(4, src, dst, sport, dport, seq, ack, flags,
                                window=64240 if flags & 0x02 else 502, options=options,
                                payload=payload)  # fmt: skip

    t = 1.0
    upload = [
        ("dmz", seg(SERVER, REMOTE, 40022, 22, 0x02, ISN, 0, options=syn)),
        ("pix", seg(REMOTE, SERVER, 22, 40022, 0x12, R_ISN, ISN + 1, options=syn)),
        ("dmz", seg(SERVER, REMOTE, 40022, 22, 0x10, ISN + 1, R_ISN + 1)),
        *[
            ("dmz", seg(SERVER, REMOTE, 40022, 22, 0x18, ISN + 1 + i * 1000, R_ISN + 1, b"x" * 1000))
            for i in range(4)
        ],
    ]
    for iface, pkt in upload if fw is not None else ():
        t += 0.01
        res = fw.receive(iface, pkt, t)
        assert res.packets, res.events
    sack = craft.tcp_option_sack([(ISN + 2001 + PIX_OFFSET, ISN + 3001 + PIX_OFFSET)])
    ack = seg(REMOTE, SERVER, 22, 40022, 0x10, R_ISN + 1, ISN + 1001, options=craft.tcp_options(sack))
    return [*upload, ("pix", ack)]


def test_seed003_the_unshifted_sack_is_invalid_and_the_trace_names_be_liberal():
    strict = "".join(ln for ln in SEED003.read_text().splitlines(keepends=True) if "be_liberal" not in ln)
    fw = Firewall(policy(SEED003, strict), fast_path=False)
    text, allowed = netfilter_trace(fw, "eth0", seed003_upload(fw)[-1][1], 2.0)
    assert not allowed
    assert kernel(text) == [
        "filter FORWARD conntrack: ct state invalid",
        'filter FORWARD packet: iif "eth0" oif "eth1" ip saddr 198.51.100.20 ip daddr 10.20.0.5 ip ttl 63 '
        "ip length 52 tcp sport 22 tcp dport 40022 tcp flags == ack",
        "filter FORWARD rule iptables -A FORWARD -m state --state INVALID -j DROP (verdict drop)",
    ]
    assert stages(text)[0].startswith("CONNTRACK ALLOW ct state invalid (INVALID: ACK is over upper bound")
    assert stages(text)[-1] == (
        "FORWARD DROP filter FORWARD rule 1: iptables -A FORWARD -m state --state INVALID -j DROP "
        "(verdict drop) (seed003-pix.rules:8)"
    )
    tail = text.split("Action: drop\n", 1)[1]
    assert (
        "statewall: decided by seed003-pix.rules:8: iptables -A FORWARD -m state --state INVALID -j DROP"
        in tail
    )
    assert "statewall: to let it through: net.netfilter.nf_conntrack_tcp_be_liberal = 1" in tail


def test_seed003_with_be_liberal_the_same_ack_is_established_and_accepted():
    fw = Firewall(policy(SEED003), fast_path=False)
    text, allowed = netfilter_trace(fw, "pix", seed003_upload(fw)[-1][1], 2.0)
    assert allowed
    assert kernel(text)[0] == "filter FORWARD conntrack: ct direction reply ct state established ct id 1"
    assert kernel(text)[-1] == (
        "filter FORWARD rule iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT "
        "(verdict accept)"
    )
    assert "EMIT ALLOW out dmz as 198.51.100.20:22 -> 10.20.0.5:40022" in stages(text)


def test_seed003_from_a_capture_the_tracer_replays_what_came_before_and_traces_packet_n(tmp_path, capsys):
    """``--capture CAPTURE --packet N``: the connection the earlier packets built is there when the
    eighth packet, the peer's duplicate ACK, is traced."""
    cap = tmp_path / "dmz-side.pcap"
    with PcapWriter(cap) as w:
        for n, (_iface, pkt) in enumerate(seed003_upload(None)):
            w.write(bytes(pkt), 100.0 + n * 0.01)
    strict = tmp_path / "seed003-strict.rules"
    strict.write_text("".join(ln for ln in SEED003.read_text().splitlines(True) if "be_liberal" not in ln))
    code, out = run(capsys, "packet-tracer", "-c", str(strict), "--capture", str(cap), "--packet", "8")
    assert code == 1
    assert (
        kernel(out)[-1]
        == "filter FORWARD rule iptables -A FORWARD -m state --state INVALID -j DROP (verdict drop)"
    )
    assert out.endswith("statewall: to let it through: net.netfilter.nf_conntrack_tcp_be_liberal = 1\n")
    code, out = run(capsys, "packet-tracer", "-c", str(SEED003), "--capture", str(cap), "--packet", "8")
    assert code == 0 and "ct direction reply ct state established ct id 1" in kernel(out)[0]
    # The first packet, traced in an empty table: the SYN that opens the connection.
    code, out = run(capsys, "packet-tracer", "-c", str(SEED003), "--capture", f"dmz={cap}", "--packet", "1")
    assert code == 0 and kernel(out)[0] == "filter FORWARD conntrack: ct state new"
    assert cli.main(["packet-tracer", "-c", str(SEED003), "--capture", str(cap), "--packet", "9"]) == 2
    assert "fewer than 9 packets" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# NAT: a gateway that masquerades its office and publishes one server


def test_masquerade_the_binding_and_the_reply_tuple():
    text, allowed = netfilter_tracer(policy(GATEWAY), "eth1", "tcp", "10.0.0.2", 40000, "198.51.100.7", 443)
    assert allowed
    assert [line for line in kernel(text) if " rule " in line or " policy " in line] == [
        "nat PREROUTING policy accept",
        "filter FORWARD rule -A FORWARD -i eth1 -o eth0 -j ACCEPT (verdict accept)",
        "nat POSTROUTING rule -A POSTROUTING -o eth0 -j MASQUERADE (verdict accept)",
    ]
    assert (
        "CONFIRM ALLOW new connection id 1, reply 198.51.100.7:443 -> 192.0.2.1:40000 (SNAT) "
        "(nat-gateway.rules:13)"
    ) in stages(text)
    assert "EMIT ALLOW out uplink as 192.0.2.1:40000 -> 198.51.100.7:443" in stages(text)


def test_a_published_port_is_translated_before_forward_sees_it():
    text, allowed = netfilter_tracer(policy(GATEWAY), "eth0", "tcp", "198.51.100.7", 40000, "192.0.2.1", 8080)
    assert allowed
    lines = kernel(text)
    assert lines[2] == (
        "nat PREROUTING rule -A PREROUTING -i eth0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
        "10.0.0.5:80 (verdict accept)"
    )
    assert "ip daddr 10.0.0.5" in lines[4] and "tcp dport 80" in lines[4]  # filter FORWARD's packet
    assert lines[5].startswith("filter FORWARD rule -A FORWARD -d 10.0.0.5/32 -i eth0") and "DNAT" in lines[5]
    assert "PREROUTING ALLOW DNAT 192.0.2.1:8080 -> 10.0.0.5:80 (nat-gateway.rules:12)" in stages(text)


def test_a_drop_through_a_user_chain_exits_1_with_statewalls_explanation_apart(capsys):
    code, out = run(capsys, "packet-tracer", "-c", str(GATEWAY), "input", "uplink", "udp", "198.51.100.7",
                    "5353", "10.0.0.9", "53")  # fmt: skip
    assert code == 1
    assert [line for line in kernel(out) if " rule " in line or " policy " in line] == [
        "nat PREROUTING policy accept",
        "filter FORWARD rule -A FORWARD -j LOGDROP (verdict jump LOGDROP)",
        'filter LOGDROP rule -A LOGDROP -j LOG --log-prefix "FWD-DROP: " (verdict continue)',
        "filter LOGDROP rule -A LOGDROP -j DROP (verdict drop)",
    ]
    kernel_part, ours = out.split("\n\nstatewall: the packet's stages\n", 1)
    assert all(TRACE.match(line) for line in kernel_part.splitlines())
    assert ours.endswith(
        "Action: drop\n"
        "statewall: dropped: (acl-drop) Flow is denied by configured rule\n"
        "statewall: why: dropped by filter/LOGDROP rule 2\n"
        f"statewall: decided by {GATEWAY}:25: -A LOGDROP -j DROP\n"
        "statewall: to let it through: an ACCEPT rule for this flow before filter/LOGDROP rule 2\n"
    )


# --------------------------------------------------------------------------------------------------
# The tracer and the stages


def test_the_phases_come_in_stage_order():
    text, _ = netfilter_tracer(policy(GATEWAY), "eth1", "tcp", "10.0.0.2", 40000, "198.51.100.7", 443)
    order = nf_stage_phases(Firewall(policy(GATEWAY)))
    seen = [line.split()[0] for line in stages(text)]
    assert seen == ["CONNTRACK", "PREROUTING", "ROUTE-LOOKUP", "IP-FORWARD", "FORWARD", "POSTROUTING",
                    "CONFIRM", "EMIT"]  # fmt: skip
    assert [order.index(p) for p in seen] == sorted(order.index(p) for p in seen)


def test_a_netfilter_stage_reporting_a_phase_it_does_not_declare_is_refused(monkeypatch):
    monkeypatch.setattr(nf_path.route, "phases", ("ROUTE",))
    with pytest.raises(RuntimeError, match="ROUTE-LOOKUP reported by no stage"):
        netfilter_tracer(policy(GATEWAY), "eth1", "tcp", "10.0.0.2", 40000, "198.51.100.7", 443)


JUMPS = """\
#@statewall interface a dev eth1 address 10.1.0.1/24
#@statewall interface b dev eth2 address 10.2.0.1/24
*filter
:FORWARD ACCEPT [0:0]
:CHK - [0:0]
:G - [0:0]
-A FORWARD -p udp -j CHK
-A FORWARD -p udp -j ACCEPT
-A FORWARD -p tcp -g G
-A FORWARD -j DROP
-A CHK -p udp --dport 53 -j RETURN
-A CHK -j DROP
-A G -p tcp --dport 22 -j DROP
COMMIT
"""


def test_returns_and_gotos_are_walked_as_ipt_do_table_walks_them():
    """RETURN goes back to the rule after the jump; the end of a chain entered by -g returns to the
    caller of the chain that went there, here the built-in chain's policy (iptables-extensions(8))."""
    jumps = parse_policy(JUMPS, "jumps.rules")
    text, allowed = netfilter_tracer(jumps, "a", "udp", "10.1.0.2", 5000, "10.2.0.2", 53)
    assert allowed and [line for line in kernel(text) if " rule " in line or " policy " in line] == [
        "filter FORWARD rule -A FORWARD -p udp -j CHK (verdict jump CHK)",
        "filter CHK rule -A CHK -p udp --dport 53 -j RETURN (verdict return)",
        "filter FORWARD rule -A FORWARD -p udp -j ACCEPT (verdict accept)",
    ]
    text, allowed = netfilter_tracer(jumps, "a", "tcp", "10.1.0.2", 5000, "10.2.0.2", 80)
    assert allowed and [line for line in kernel(text) if " rule " in line or " policy " in line] == [
        "filter FORWARD rule -A FORWARD -p tcp -g G (verdict goto G)",
        "filter FORWARD policy accept",
    ]
    text, allowed = netfilter_tracer(jumps, "a", "tcp", "10.1.0.2", 5000, "10.2.0.2", 22)
    assert not allowed and kernel(text)[-1] == "filter G rule -A G -p tcp --dport 22 -j DROP (verdict drop)"


def test_a_packet_for_the_box_is_decided_by_input():
    text, allowed = netfilter_tracer(policy(GATEWAY), "lan", "tcp", "10.0.0.2", 40000, "10.0.0.1", 22)
    assert allowed and "output: the box itself (INPUT)" in text
    assert [line.split()[0] for line in stages(text)] == ["CONNTRACK", "PREROUTING", "ROUTE-LOOKUP", "INPUT",
                                                          "INPUT"]  # fmt: skip
    assert "filter INPUT policy accept" in kernel(text)


def test_nothing_is_recorded_when_no_tracer_listens():
    fw = Firewall(policy(GATEWAY))
    syn = craft.tcp_packet(
        4, str_to_addr("10.0.0.2")[1], str_to_addr("198.51.100.7")[1], 40000, 443, 1, 0, 0x02
    )
    assert fw.receive("lan", syn, 1.0).packets and fw.trace_log is None
