"""The iptables dialect: seeds 001, 003 and 004, every refusal located, round trips, and the listing and
iptables-save text compared with what iptables-legacy prints for the same rules."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest

import iptables_kernel
from statewall.config import load_policy
from statewall.dialects.errors import ConfigError
from statewall.dialects.iptables import format_listing, parse, parse_file, render
from statewall.policy import PROTO_TCP, PortMatch

CONFIGS = Path(__file__).parent / "configs"


def without_origins(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: without_origins(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in ("origin", "origins", "warnings", "source_file", "passthrough")
        }
    if isinstance(value, dict):
        return {k: without_origins(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_origins(v) for v in value]
    return value


def error_of(text: str, name: str = "t.rules") -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, name)
    return str(info.value)


def squeeze(line: str) -> str:
    return " ".join(line.split())


# --------------------------------------------------------------------------------------------------
# Seed 001: Sophos MSS clamping


def test_seed001_rules_parse_and_delete_removes_one_of_two_duplicates():
    policy = parse_file(CONFIGS / "seed001-sophos.rules")
    assert policy.dialect == "iptables" and policy.hostname == "XGS116_XN02"
    post = policy.netfilter["mangle"].chains["POSTROUTING"].rules
    # Added twice, deleted once: exactly one is left.
    assert len(post) == 1
    rule = post[0]
    assert rule.target == "TCPMSS" and rule.target_args == {"mss": 1347}
    assert rule.match.out_interface == "ipsec0" and rule.match.protocol == PROTO_TCP
    assert rule.match.tcp_flags == (0x06, 0x02)
    assert rule.origin.line == 13  # the survivor is the second -A (line 13); -D took the first (11)
    v6 = policy.ip6_netfilter["mangle"].chains["POSTROUTING"].rules
    assert [(r.target, r.target_args) for r in v6] == [("TCPMSS", {"mss": 1327})]
    # The pasted listing command changes nothing and is no warning; the prompt is not in the origin.
    assert policy.warnings == []
    assert rule.origin.text.startswith("iptables -t mangle -A POSTROUTING")
    assert set(policy.netfilter) == {"mangle"} and set(policy.ip6_netfilter) == {"mangle"}


def test_seed001_listing_has_the_seeds_columns_and_lines(shared_dir):
    seed_text = (shared_dir / "seeds" / "001_cb51892351e001a2.txt").read_text()
    seed_lines = [squeeze(ln) for ln in seed_text.splitlines() if "TCPMSS tcp" in ln]
    assert len(seed_lines) == 4
    # The four rules of the forum post's listing: FORWARD (iptables -L lists chains in order) then
    # POSTROUTING. Sophos' listing has an extra "-" column after the destination that stock iptables
    # does not print.
    clamp = "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss"
    policy = parse(
        f"iptables -t mangle -A FORWARD -o ipsec0 {clamp} 1320\n"
        f"iptables -t mangle -A FORWARD -o ipsec0 {clamp} 1320\n"
        f"iptables -t mangle -A FORWARD -i ipsec0 {clamp} 1327\n"
        f"iptables -t mangle -A POSTROUTING -o ipsec0 {clamp} 1327\n",
        "sophos.rules",
    )
    listing = format_listing(policy, "mangle")
    assert (
        "    pkts      bytes target     prot opt in     out     source               destination" in listing
    )
    grepped = [squeeze(ln) for ln in listing.splitlines() if "ipsec" in ln]
    assert grepped == [ln.replace(" 0.0.0.0/0 - tcp", " 0.0.0.0/0 tcp") for ln in seed_lines]
    assert (
        "       0        0 TCPMSS     tcp  --  *      ipsec0  0.0.0.0/0            0.0.0.0/0            "
        "tcp flags:0x06/0x02 TCPMSS set 1327"
    ) in listing.splitlines()


def test_seed001_ip6tables_listing():
    policy = parse_file(CONFIGS / "seed001-sophos.rules")
    lines = format_listing(policy, "mangle", family=6).splitlines()
    assert (
        "       0        0 TCPMSS     tcp  --  *      ipsec0  ::/0                 ::/0                 "
        "tcp flags:0x06/0x02 TCPMSS set 1327"
    ) in lines


# --------------------------------------------------------------------------------------------------
# Seed 003: INVALID dropped, be_liberal in every spelling


def test_seed003_invalid_drop_rule_and_be_liberal():
    policy = parse_file(CONFIGS / "seed003-pix.rules")
    forward = policy.netfilter["filter"].chains["FORWARD"]
    assert forward.policy == "DROP"
    first = forward.rules[0]
    assert first.match.ctstates == frozenset({"INVALID"}) and first.target == "DROP"
    assert first.modules == ("state",)
    assert policy.conntrack.tcp_be_liberal is True
    # The last line that set it is the one quoted.
    assert policy.conntrack.origins["tcp_be_liberal"].text == "net.netfilter.nf_conntrack_tcp_be_liberal = 1"
    assert [str(i) for i in policy.interfaces] == ["dmz", "pix"]
    assert policy.interfaces["dmz"].hardware == "eth1"


@pytest.mark.parametrize(
    "line",
    [
        "echo 1 > /proc/sys/net/ipv4/netfilter/ip_conntrack_tcp_be_liberal",
        "echo 1 >/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal",
        "net.netfilter.nf_conntrack_tcp_be_liberal = 1",
        "net.ipv4.netfilter.ip_conntrack_tcp_be_liberal=1",
        "sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=1",
        "sysctl net/netfilter/nf_conntrack_tcp_be_liberal=1",
        "sudo sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=1 >/dev/null",
        "#@statewall sysctl net.netfilter.nf_conntrack_tcp_be_liberal=1",
        "root@fw:~# echo 1 > /proc/sys/net/ipv4/netfilter/ip_conntrack_tcp_be_liberal",
    ],
)
def test_be_liberal_sysctl_forms(line):
    policy = parse(line + "\n", "s.conf")
    assert policy.conntrack.tcp_be_liberal is True
    assert policy.conntrack.origins["tcp_be_liberal"].line == 1


def test_sysctl_timeouts_and_unmodelled_names():
    policy = parse(
        "net.netfilter.nf_conntrack_tcp_timeout_established = 7440\n"
        "net.netfilter.nf_conntrack_udp_timeout=60\n"
        "net.ipv4.ip_forward = 1\n"
        "net.netfilter.nf_conntrack_helper = 1\n",
        "sysctl.conf",
    )
    ct = policy.conntrack
    assert ct.tcp_timeout_established == 7440.0 and ct.udp_timeout == 60.0 and ct.helper is True
    assert [w.origin.line for w in policy.warnings] == [3]
    assert [text for _, text in policy.passthrough] == ["sysctl net.ipv4.ip_forward=1"]
    # nf_conntrack_helper = 1: the FTP helper is attached on port 21 without a CT rule.
    assert [(i.protocol, i.ports) for i in policy.inspections] == [("ftp", (21,))]


def test_accept_local_is_kept_and_named_not_modelled():
    # The box's own address as a source stays a martian source (engine.nf_path: ip-local-source).
    policy = parse("net.ipv4.conf.eth0.accept_local = 1\nnet.ipv4.conf.all.rp_filter = 1\n", "sysctl.conf")
    texts = [w.message for w in policy.warnings]
    assert "not modelled" in texts[0] and "ip-local-source" in texts[0]
    assert "not a setting statewall models" in texts[1]
    assert [text for _, text in policy.passthrough][0] == "sysctl net.ipv4.conf.eth0.accept_local=1"


# --------------------------------------------------------------------------------------------------
# Seed 004: ipchains masquerading timeouts


def test_seed004_ipchains_timeouts():
    policy = parse_file(CONFIGS / "seed004-netmax.rules")
    ct = policy.conntrack
    assert ct.tcp_timeout_established == 7200.0
    for name in (
        "tcp_timeout_fin_wait",
        "tcp_timeout_close_wait",
        "tcp_timeout_last_ack",
        "tcp_timeout_time_wait",
    ):
        assert getattr(ct, name) == 10.0
    assert ct.udp_timeout == 160.0 and ct.udp_timeout_stream == 160.0
    assert ct.origins["udp_timeout"].text == "ipchains -M -S 7200 10 160"
    # Untouched: what ipchains has no timeout for.
    assert ct.tcp_timeout_syn_sent == 120.0 and ct.icmp_timeout == 30.0
    assert [(i.ports, i.origin.line) for i in policy.inspections] == [((21,), 7)]


def test_ipchains_zero_keeps_the_timeout():
    ct = parse("ipchains -M -S 0 30 0\n", "x").conntrack
    assert (
        ct.tcp_timeout_established == 432000.0 and ct.tcp_timeout_fin_wait == 30.0 and ct.udp_timeout == 30.0
    )


def test_ipchains_errors():
    assert (
        error_of("ipchains -M -S 7200 10\n")
        == "t.rules:1:21: ipchains -M -S needs three timeouts: tcp tcpfin udp"
    )
    assert error_of("ipchains -M -S 7200 ten 160\n").startswith(
        "t.rules:1:21: ipchains -M -S: invalid timeout"
    )
    policy = parse("ipchains -A input -p tcp -j ACCEPT\n", "x")
    assert "ipchains rules are not read" in policy.warnings[0].message


# --------------------------------------------------------------------------------------------------
# Refusals: every one located


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        # TCPMSS needs a SYN match (xt_TCPMSS checkentry).
        (
            "iptables -t mangle -A POSTROUTING -p tcp -j TCPMSS --set-mss 1300",
            "1:45",
            "Only works on TCP SYN",
        ),
        ("iptables -A FORWARD -p tcp ! --syn -j TCPMSS --set-mss 1300", "1:39", "Only works on TCP SYN"),
        ("iptables -A FORWARD -j TCPMSS --set-mss 1300", "1:24", "only valid for protocol 6"),
        # --clamp-mss-to-pmtu only in FORWARD, OUTPUT, POSTROUTING.
        ("iptables -t mangle -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", "1:50", "PREROUTING"),
        ("iptables -t mangle -A INPUT -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", "1:45", "INPUT"),
        # NAT targets: nat table, their hooks.
        ("iptables -A FORWARD -j MASQUERADE", "1:24", "only valid in the nat table"),
        ("iptables -t nat -A INPUT -j MASQUERADE", "1:29", "would be reached from INPUT"),
        ("iptables -t nat -A PREROUTING -j MASQUERADE", "1:34", "would be reached from PREROUTING"),
        ("iptables -t nat -A OUTPUT -j SNAT --to-source 1.2.3.4", "1:30", "would be reached from OUTPUT"),
        ("iptables -t nat -A POSTROUTING -j DNAT --to-destination 1.2.3.4", "1:35", "POSTROUTING"),
        ("iptables -t nat -A INPUT -j REDIRECT", "1:29", "would be reached from INPUT"),
        ("iptables -t nat -A POSTROUTING -j SNAT", "1:35", "--to-source' must be specified"),
        ("iptables -t nat -A POSTROUTING -j SNAT --to-source 1.2.3.4:80", "1:35", "Need TCP, UDP"),
        ("iptables -t nat -A PREROUTING -j DROP", "1:34", '"nat" table is not intended for filtering'),
        ("iptables -t nat -P PREROUTING DROP", "1:31", '"nat" table is not intended for filtering'),
        # Unknown match, target, option.
        ("iptables -A FORWARD -m nosuch -j ACCEPT", "1:24", "Couldn't load match `nosuch'"),
        ("iptables -A FORWARD -j NOSUCH", "1:24", "Couldn't load target `NOSUCH'"),
        ("iptables -A FORWARD --dport 80 -j ACCEPT", "1:21", 'unknown option "--dport"'),
        ("iptables -A FORWARD -p tcp --bogus -j ACCEPT", "1:28", 'unknown option "--bogus"'),
        # Bad addresses, ports, masks, names.
        ("iptables -A FORWARD -s 10.0.0.300 -j ACCEPT", "1:24", "host/network '10.0.0.300' not found"),
        ("iptables -A FORWARD -s 10.0.0.1/33 -j ACCEPT", "1:24", "invalid mask '33'"),
        ("iptables -A FORWARD -d 2001:db8::1 -j ACCEPT", "1:24", "not an IPv4 address"),
        ("iptables -A FORWARD -p tcp --dport 70000 -j ACCEPT", "1:36", "invalid port/service '70000'"),
        ("iptables -A FORWARD -p tcp --dport 80:20 -j ACCEPT", "1:36", "invalid portrange (min > max)"),
        ("iptables -A FORWARD -p tcp --tcp-flags SYN,FOO SYN -j ACCEPT", "1:40", "Unknown TCP flag 'FOO'"),
        ("iptables -A FORWARD -m state --state FOO -j ACCEPT", "1:38", "Bad state 'FOO'"),
        ("iptables -A FORWARD -p nosuch -j ACCEPT", "1:24", "unknown protocol 'nosuch'"),
        ("iptables -A FORWARD -i abcdefghijklmnop -j ACCEPT", "1:24", "shorter than IFNAMSIZ"),
        ("iptables -A FORWARD -m multiport --dports 1,2 -j ACCEPT", "1:24", "multiport needs `-p tcp'"),
        (
            "iptables -A FORWARD -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j DROP",
            "1:50",
            "too many ports",
        ),
        (
            "iptables -A FORWARD -m tcp --dport 22 -j ACCEPT",
            "1:24",
            "the tcp match is only valid with -p tcp",
        ),
        ("iptables -A FORWARD -m limit --limit 20000/sec -j ACCEPT", "1:38", "Rate too fast"),
        ("iptables -A FORWARD -m limit --limit 1/day -j ACCEPT", "1:24", "Numerical result out of range"),
        ("iptables -A FORWARD -p icmp --icmp-type 300 -j ACCEPT", "1:41", "Invalid ICMP type '300'"),
        ("iptables -A FORWARD -p tcp --syn --tcp-flags ALL SYN -j ACCEPT", "1:34", "Only one of `--syn'"),
        ("iptables -A FORWARD -j REJECT --reject-with tcp-reset", "1:24", "only valid with -p tcp"),
        ("iptables -A FORWARD -j REJECT --reject-with bogus", "1:45", "unknown reject type 'bogus'"),
        ("iptables -t mangle -A FORWARD -j REJECT", "1:34", "only valid in the filter table"),
        ("iptables -A FORWARD -j CT --notrack", "1:24", "only valid in the raw table"),
        ("iptables -t raw -A PREROUTING -j CT --helper nosuch", "1:46", "no conntrack helper named 'nosuch'"),
        ("iptables -A OUTPUT -p tcp -j SYNPROXY", "1:30", "would be reached from OUTPUT"),
        ("iptables -A FORWARD -j SYNPROXY", "1:24", "only valid for protocol 6"),
        ("iptables -A INPUT -o eth0 -j ACCEPT", "1:19", "Can't use -o with INPUT"),
        ("iptables -A OUTPUT -i eth0 -j ACCEPT", "1:20", "Can't use -i with OUTPUT"),
        ("iptables -A FORWARD -j ACCEPT -j DROP", "1:31", "multiple -j flags not allowed"),
        ("iptables -A FORWARD -p tcp -p udp -j ACCEPT", "1:28", "multiple -p flags not allowed"),
        ("iptables -A FORWARD ! -m tcp -j ACCEPT", "1:21", "cannot have ! before '-m'"),
        # Chains and policies.
        ("iptables -A NOSUCH -j ACCEPT", "1:13", "chain 'NOSUCH' does not exist"),
        ("iptables -A FORWARD -j UNDEFINED", "1:24", "Couldn't load target `UNDEFINED'"),
        ("iptables -A FORWARD -g INPUT", "1:24", "-g needs a user-defined chain"),
        ("iptables -N X\niptables -N X", "2:13", "Chain already exists"),
        ("iptables -P FORWARD RETURN", "1:21", "Bad policy name 'RETURN'"),
        ("iptables -N X\niptables -P X DROP", "2:13", "Bad built-in chain name 'X'"),
        ("iptables -X FORWARD", "1:13", "cannot delete built-in chain"),
        ("iptables -N X\niptables -A FORWARD -j X\niptables -X X", "3:13", "Too many links"),
        ("iptables -N X\niptables -A X -j DROP\niptables -X X", "3:13", "Directory not empty"),
        ("iptables -N ACCEPT", "1:13", "invalid chain name"),
        ("iptables -N " + "C" * 29, "1:13", "too long"),
        ("iptables -D FORWARD 1", "1:21", "Index of deletion too big"),
        ("iptables -I FORWARD 3 -j ACCEPT", "1:21", "Index of insertion too big"),
        (
            "iptables -D FORWARD -p tcp -j ACCEPT",
            "1:10",
            "Bad rule (does a matching rule exist in that chain?)",
        ),
        ("iptables -t bogus -A FORWARD -j ACCEPT", "1:13", "Table does not exist"),
        ("iptables -p tcp", "1:10", "no command specified"),
        # Loops between chains (ELOOP), found when the closing jump is added.
        (
            "iptables -N A\niptables -N B\niptables -A A -j B\niptables -A B -j A\niptables -A FORWARD -j A",
            "5:24",
            "chains jump in a loop: A -> B -> A",
        ),
        # A user chain reached later: the jump that makes the table invalid is the one refused.
        (
            "iptables -t mangle -N C\niptables -t mangle -A C -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu\n"
            "iptables -t mangle -A PREROUTING -j C",
            "3:37",
            "clamp-mss-to-pmtu (chain C, line 2) would be reached from PREROUTING",
        ),
        # Shell quoting.
        ('iptables -A FORWARD -m comment --comment "unterminated -j ACCEPT', "1:42", "unterminated quote"),
        # statewall's header.
        ("#@statewall interface inside address 10.0.0.1", "1:38", "needs a /prefix"),
        ("#@statewall interface inside colour blue", "1:30", "unknown interface option 'colour'"),
        ("#@statewall route 0.0.0.0/0 dev nowhere", "1:33", "route via unknown interface 'nowhere'"),
        ("#@statewall bogus", "1:13", "unknown directive 'bogus'"),
        (
            "#@statewall interface a dev eth0\n#@statewall interface b dev eth0",
            "2:29",
            "device eth0 already belongs",
        ),
        # Sysctls.
        ("net.netfilter.nf_conntrack_tcp_be_liberal = 2", "1:45", "(0 or 1)"),
        (
            "sysctl -w net.netfilter.nf_conntrack_tcp_timeout_established=five",
            "1:62",
            "invalid argument 'five'",
        ),
    ],
)
def test_refusals_are_located(text, where, message):
    err = error_of(text + "\n")
    assert err.startswith(f"t.rules:{where}: "), err
    assert message in err, err


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", "1:1", "COMMIT expected"),
        ("*filter\n-A INPUT -j ACCEPT\n*nat\nCOMMIT\n", "3:1", "COMMIT expected before *nat"),
        ("COMMIT\n", "1:1", "COMMIT without a *table block"),
        ("*bogus\nCOMMIT\n", "1:1", "table 'bogus' does not exist"),
        ("*filter\n:INPUT RETURN [0:0]\nCOMMIT\n", "2:8", "Bad policy name 'RETURN'"),
        ("*filter\n:X ACCEPT [0:0]\nCOMMIT\n", "2:4", "a user-defined chain has no policy"),
        ("*filter\n:X - [0:0]\n:X - [0:0]\nCOMMIT\n", "3:1", "chain X already exists"),
        ("*filter\n:INPUT ACCEPT [x:0]\nCOMMIT\n", "2:15", "bad counters"),
        (
            "*filter\n-t nat -A INPUT -j ACCEPT\nCOMMIT\n",
            "2:1",
            "-t option cannot be used in iptables-restore",
        ),
        ("*filter\n-A INPUT -j Y\n:Y - [0:0]\nCOMMIT\n", "2:13", "Couldn't load target `Y'"),
        # The kernel refuses the table at COMMIT; the offending rule is named.
        (
            "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j DNAT --to-destination 10.0.0.1\nCOMMIT\n",
            "3:19",
            "DNAT would be reached from POSTROUTING",
        ),
        ("*filter\n:A - [0:0]\n-A A -j A\n-A INPUT -j A\nCOMMIT\n", "5:1", "loop"),
        ("*filter\niptables -A INPUT -j ACCEPT\nCOMMIT\n", "2:1", "inside a *filter block"),
    ],
)
def test_restore_refusals_are_located(text, where, message):
    err = error_of(text)
    assert err.startswith(f"t.rules:{where}: "), err
    assert message in err, err


def test_nothing_is_applied_when_a_later_line_is_refused():
    with pytest.raises(ConfigError):
        parse("iptables -A FORWARD -j ACCEPT\niptables -A FORWARD -j NOSUCH\n", "x")


def test_load_policy_reports_config_errors_with_the_path(tmp_path):
    path = tmp_path / "bad.rules"
    path.write_text("iptables -t nat -A PREROUTING -j MASQUERADE\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}:1:34: ")


# --------------------------------------------------------------------------------------------------
# Commands


def test_insert_replace_delete_by_number_rename_flush():
    policy = parse(
        "iptables -A FORWARD -p tcp --dport 1 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 2 -j ACCEPT\n"
        "iptables -I FORWARD -p tcp --dport 0 -j ACCEPT\n"
        "iptables -I FORWARD 3 -p tcp --dport 15 -j ACCEPT\n"
        "iptables -R FORWARD 4 -p tcp --dport 20 -j DROP\n"
        "iptables -D FORWARD 1\n"
        "iptables -N OLD\n"
        "iptables -A FORWARD -j OLD\n"
        "iptables -E OLD NEW\n"
        "iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE\n"
        "iptables -t nat -F\n",
        "x",
    )
    rules = policy.netfilter["filter"].chains["FORWARD"].rules
    assert [(r.match.destination_ports, r.target) for r in rules] == [
        ((PortMatch("eq", 1),), "ACCEPT"),
        ((PortMatch("eq", 15),), "ACCEPT"),
        ((PortMatch("eq", 20),), "DROP"),
        ((), "NEW"),
    ]
    assert "OLD" not in policy.netfilter["filter"].chains
    assert policy.netfilter["nat"].chains["POSTROUTING"].rules == []


def test_multiple_addresses_expand_into_rules_and_delete_together():
    policy = parse("iptables -A FORWARD -s 10.0.0.0/8,192.168.0.0/16 -d 1.1.1.1,2.2.2.2 -j ACCEPT\n", "x")
    rules = policy.netfilter["filter"].chains["FORWARD"].rules
    assert [(str(r.match.sources[0]), str(r.match.destinations[0])) for r in rules] == [
        ("10.0.0.0/8", "1.1.1.1/32"),
        ("10.0.0.0/8", "2.2.2.2/32"),
        ("192.168.0.0/16", "1.1.1.1/32"),
        ("192.168.0.0/16", "2.2.2.2/32"),
    ]
    again = parse(
        "iptables -A FORWARD -s 10.0.0.0/8,192.168.0.0/16 -j ACCEPT\n"
        "iptables -D FORWARD -s 10.0.0.0/8,192.168.0.0/16 -j ACCEPT\n",
        "x",
    )
    assert again.netfilter["filter"].chains["FORWARD"].rules == []


def test_delete_by_spec_matches_the_rule_whatever_its_spelling():
    policy = parse(
        "iptables -A INPUT -p tcp --syn --dport 22 -j ACCEPT\n"
        "iptables -D INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN --destination-port ssh -j ACCEPT\n",
        "x",
    )
    assert policy.netfilter["filter"].chains["INPUT"].rules == []


def test_shell_forms():
    policy = parse(
        "#!/bin/sh\n"
        "set -e\n"
        "IPT=/sbin/iptables\n"
        "/sbin/iptables -A INPUT -p tcp \\\n"
        "    --dport 22 -j ACCEPT  # ssh\n"
        "iptables -A INPUT -p udp --dport 53 -j ACCEPT 2>/dev/null; iptables -A INPUT -j DROP\n"
        "iptables -w 5 -A OUTPUT -j ACCEPT && echo done\n"
        "[ -x /sbin/iptables ] && iptables -A OUTPUT -p icmp -j ACCEPT\n"
        "iptables -L -n -v | grep ACCEPT\n"
        "iptables -nvL\n"
        "$ iptables -A OUTPUT -o lo -j ACCEPT\n"
        "modprobe ip_conntrack_ftp\n",
        "fw.sh",
    )
    inp = policy.netfilter["filter"].chains["INPUT"].rules
    assert [r.origin.line for r in inp] == [4, 6, 6]
    assert inp[0].match.destination_ports == (PortMatch("eq", 22),)
    out = policy.netfilter["filter"].chains["OUTPUT"].rules
    assert [r.origin.line for r in out] == [7, 8, 11]
    warned = {w.origin.line: w.message for w in policy.warnings}
    assert set(warned) == {1 + 1, 3, 7, 8, 12}  # set -e, IPT=, echo, "[ -x", modprobe
    assert "CT --helper ftp" in warned[12]


def test_restore_file_with_counters_and_both_families():
    policy = parse_file(CONFIGS / "restore.rules")
    flt = policy.netfilter["filter"]
    assert flt.chains["INPUT"].policy == "DROP" and flt.chains["INPUT"].counters == (12, 1400)
    assert [r.counters for r in flt.chains["TCPIN"].rules] == [(1, 60), (1, 60)]
    assert flt.chains["LOGDROP"].rules[0].matches_extra[0].args == {"avg": 120000, "burst": 5}
    assert policy.ip6_netfilter["filter"].chains["FORWARD"].rules[1].match.icmp_type == 128
    listing = format_listing(policy, "filter")
    assert "Chain INPUT (policy DROP 12 packets, 1400 bytes)" in listing
    assert "Chain TCPIN (1 references)" in listing
    assert (
        "     100    80000 ACCEPT     all  --  *      *       0.0.0.0/0            0.0.0.0/0            "
        "ctstate RELATED,ESTABLISHED" in listing
    )


def test_interfaces_and_routes_from_the_header():
    policy = parse(
        "#@statewall interface inside dev eth1 address 10.0.0.1/24 address 2001:db8::1/64 "
        "security-level 100\n"
        "#@statewall interface outside dev eth0 address 192.0.2.1/24 mtu 1400\n"
        "#@statewall route 0.0.0.0/0 via 192.0.2.254 dev eth0\n"
        "#@statewall route 10.1.0.0/16 via 10.0.0.254 dev inside distance 5\n",
        "h",
    )
    inside = policy.interfaces["inside"]
    assert inside.hardware == "eth1" and inside.security_level == 100
    assert inside.ipv4 == [ipaddress.IPv4Interface("10.0.0.1/24")] and inside.ipv6 == [
        ipaddress.IPv6Interface("2001:db8::1/64")
    ]
    assert policy.interfaces["outside"].mtu == 1400
    # Routes name the interface by its logical name, whichever name the header used.
    assert [(str(r.network), r.interface, str(r.gateway), r.distance) for r in policy.routes] == [
        ("0.0.0.0/0", "outside", "192.0.2.254", 1),
        ("10.1.0.0/16", "inside", "10.0.0.254", 5),
    ]


def test_log_prefix_longer_than_29_is_truncated_with_a_warning():
    policy = parse('iptables -A INPUT -j LOG --log-prefix "012345678901234567890123456789"\n', "x")
    rule = policy.netfilter["filter"].chains["INPUT"].rules[0]
    assert rule.target_args["prefix"] == "01234567890123456789012345678"
    assert "truncated" in policy.warnings[0].message


def test_multiport_and_tcp_ports_together_keep_both_conditions():
    policy = parse(
        "iptables -A FORWARD -p tcp -m tcp --dport 80 -m multiport --dports 80,81 -j ACCEPT\n", "x"
    )
    rule = policy.netfilter["filter"].chains["FORWARD"].rules[0]
    assert rule.match.destination_ports == (PortMatch("eq", 80),)
    assert rule.matches_extra[0].name == "multiport"
    assert rule.matches_extra[0].args["ports"] == (PortMatch("eq", 80), PortMatch("eq", 81))
    alone = parse("iptables -A FORWARD -p udp -m multiport --dports 53,5353:5360 -j ACCEPT\n", "x")
    m = alone.netfilter["filter"].chains["FORWARD"].rules[0].match
    assert m.destination_ports == (PortMatch("eq", 53), PortMatch("range", 5353, 5360))


# --------------------------------------------------------------------------------------------------
# Round trips and the reference output


@pytest.mark.parametrize(
    "name",
    [
        "iptables-listing.rules",
        "seed001-sophos.rules",
        "seed003-pix.rules",
        "seed004-netmax.rules",
        "restore.rules",
    ],
)
def test_render_parses_back_to_the_same_policy(name):
    first = parse_file(CONFIGS / name)
    text = render(first)
    second = parse(text, "rendered")
    assert without_origins(second) == without_origins(first)
    assert render(second) == text


def test_render_prints_counters_as_iptables_save_c():
    text = render(parse_file(CONFIGS / "restore.rules"))
    assert ":INPUT DROP [12:1400]" in text
    assert "[100:80000] -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" in text
    assert '[0:0] -A LOGDROP -m limit --limit 5/min -j LOG --log-prefix "INVALID: "' in text


GOLDEN = iptables_kernel.read_golden((CONFIGS / "iptables-listing.golden").read_text())


def _ours(policy, key: str) -> str:
    kind, family, *rest = key.split()
    fam = int(family)
    if kind == "save":
        text = render(policy)
        at = text.find("# Generated by ip6tables-save")
        if at < 0:
            return text if fam == 4 else ""
        return text[at:] if fam == 6 else text[:at]
    kw = dict(next(k[2] for k in iptables_kernel.KINDS if k[0] == kind))
    return format_listing(policy, rest[0], family=fam, **kw)


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_listing_and_save_match_what_iptables_printed(key):
    policy = parse_file(CONFIGS / "iptables-listing.rules")
    ours = _ours(policy, key)
    if key.startswith("save"):
        assert iptables_kernel.save_tables(ours) == iptables_kernel.save_tables(GOLDEN[key])
    else:
        assert ours == GOLDEN[key]


@pytest.mark.root
@pytest.mark.skipif(not iptables_kernel.available(), reason="needs root, unshare and iptables-legacy")
def test_listing_and_save_match_iptables_on_this_machine():
    script = (CONFIGS / "iptables-listing.rules").read_text()
    kernel = iptables_kernel.kernel_sections(script)
    policy = parse(script, "listing.rules")
    assert set(kernel) == set(GOLDEN)
    for key, text in kernel.items():
        ours = _ours(policy, key)
        if key.startswith("save"):
            assert iptables_kernel.save_tables(ours) == iptables_kernel.save_tables(text), key
        else:
            assert ours == text, key


@pytest.mark.root
@pytest.mark.skipif(not iptables_kernel.available(), reason="needs root, unshare and iptables-legacy")
@pytest.mark.parametrize(
    "rule",
    [
        "-t mangle -A POSTROUTING -p tcp -j TCPMSS --set-mss 1300",
        "-t mangle -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu",
        "-t mangle -A INPUT -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu",
        "-A FORWARD -p tcp ! --syn -j TCPMSS --set-mss 1300",
        "-t nat -A INPUT -j MASQUERADE",
        "-t nat -A OUTPUT -j SNAT --to-source 1.2.3.4",
        "-t nat -A POSTROUTING -j DNAT --to-destination 1.2.3.4",
        "-t nat -A INPUT -j REDIRECT",
        "-A FORWARD -j MASQUERADE",
        "-t mangle -A FORWARD -j REJECT",
        "-A FORWARD -j REJECT --reject-with tcp-reset",
        "-A FORWARD -j CT --notrack",
        "-A OUTPUT -p tcp -j SYNPROXY --mss 1460",
        "-t nat -A PREROUTING -j DROP",
        "-A FORWARD -m limit --limit 1/d -j ACCEPT",
        "-A FORWARD -j NOSUCH",
        "-A FORWARD -s 10.0.0.300 -j ACCEPT",
        # and some the kernel accepts
        "-t mangle -A PREROUTING -p tcp --syn -j TCPMSS --set-mss 1300",
        "-t raw -A OUTPUT -p tcp --tcp-flags SYN SYN -j TCPMSS --set-mss 100",
        "-t nat -A INPUT -j SNAT --to-source 1.2.3.4",
        "-t nat -A OUTPUT -j DNAT --to-destination 1.2.3.4",
        "-t mangle -A FORWARD -p tcp -j SYNPROXY",
    ],
)
def test_refusals_agree_with_the_kernel(rule):
    import subprocess

    kernel = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"iptables-legacy {rule}"], capture_output=True, check=False
    )
    try:
        parse(f"iptables {rule}\n", "k")
        ours = True
    except ConfigError:
        ours = False
    assert ours == (kernel.returncode == 0)


def test_golden_keeps_the_prot_column_as_names():
    # The reference was rewritten from iptables 1.8.9's numbers to names; check the rewrite kept the
    # columns (a row is as wide as before).
    row = next(ln for ln in GOLDEN["listing 4 filter"].splitlines() if "udplite" in ln)
    assert re.match(r"^ +0 +0 ACCEPT     udplite--  \*      \*       0\.0\.0\.0/0 ", row)


# --------------------------------------------------------------------------------------------------
# Every error of a file in one pass (issue 14 item 4 for the iptables dialect)

EVERY_ERROR = """\
#@statewall interface lan dev eth0 address 10.0.0.1/24
#@statewall route 0.0.0.0/0 via 10.0.0.254 dev wan0
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp --dport 99999 -j ACCEPT
-A FORWARD -m conntrack --ctstate BOGUS -j ACCEPT
-A FORWARD -p tcp --dport 22 -j ACCEPT
-A FORWARD -j NOSUCHCHAIN
COMMIT
*bogus
:INPUT ACCEPT [0:0]
-A INPUT -j ACCEPT
COMMIT
*nat
:PREROUTING DROP [0:0]
COMMIT
iptables -A FORWARD -s "unterminated -j ACCEPT
iptables -A FORWARD -p udp --dport 70000 -j ACCEPT
"""


def test_every_error_of_an_iptables_file_is_reported_in_one_pass_in_file_order():
    with pytest.raises(ConfigError) as info:
        parse(EVERY_ERROR, "e.rules")
    assert [str(e) for e in info.value.errors] == [
        "e.rules:2:48: route via unknown interface 'wan0' (declare it with #@statewall interface)",
        "e.rules:7:27: invalid port/service '99999' specified",
        "e.rules:8:35: Bad state 'BOGUS'",
        "e.rules:10:15: Couldn't load target `NOSUCHCHAIN': no such chain or target",
        # The lines of a block whose *table line failed are skipped up to its COMMIT.
        "e.rules:12:1: table 'bogus' does not exist",
        'e.rules:17:13: The "nat" table is not intended for filtering, the use of DROP is therefore '
        "inhibited.",
        "e.rules:19:24: unterminated quote",
        "e.rules:20:36: invalid port/service '70000' specified",
    ]
    # A file with errors applies nothing; the first error is what the exception reads as.
    assert str(info.value).splitlines()[0] == info.value.errors[0].__str__()


def test_check_lists_every_iptables_error(tmp_path: Path, capsys):
    from statewall.cli import main

    cfg = tmp_path / "e.rules"
    cfg.write_text(EVERY_ERROR)
    assert main(["check", "-c", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert err.count(f"{cfg}:") == 8
    assert "FAILED: 8 errors" in out + err


def test_a_block_never_committed_is_an_error_and_the_next_block_is_still_checked():
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
        "-A POSTROUTING -j MASQUERADE\n-A POSTROUTING -j BOGUS\nCOMMIT\n"
    )
    with pytest.raises(ConfigError) as info:
        parse(text, "u.rules")
    assert [str(e) for e in info.value.errors] == [
        "u.rules:5:1: COMMIT expected before *nat (table filter is open)",
        "u.rules:9:19: Couldn't load target `BOGUS': no such chain or target",
    ]
