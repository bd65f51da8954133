"""The iptables loader at scale: large and deep generated files load whole, loops and (for
iptables-nft) depth are refused with a located error, and no Python recursion limit is reached.

Facts checked against the kernel on this machine (iptables 1.8.9): iptables-legacy-restore accepts a
chain 30 jumps deep and refuses a loop at its COMMIT line ("Too many levels of symbolic links");
iptables-nft-restore refuses the rule that jumps from a chain 15 jumps below INPUT ("RULE_APPEND
failed (Too many links): rule in chain C14") and refuses loops the same way.
"""

from __future__ import annotations

import pytest

from statewall import craft
from statewall.dialects.errors import ConfigError
from statewall.dialects.iptables import parse
from statewall.dialects.iptables import tables as tb
from statewall.netfilter import Context, Netfilter
from statewall.packet import decode, str_to_addr


def _script(chains: int, per_chain: int) -> str:
    lines = ["iptables -P FORWARD DROP"]
    for i in range(chains):
        lines.append(f"iptables -N U{i}")
        lines.append(f"iptables -A FORWARD -s 10.{i // 256}.{i % 256}.0/24 -j U{i}")
        lines += [
            f"iptables -A U{i} -p tcp --dport {1000 + j} -d 192.168.{j % 256}.1 -j ACCEPT"
            for j in range(per_chain)
        ]
    return "\n".join(lines)


def _restore(chains: int, per_chain: int) -> str:
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":U{i} - [0:0]" for i in range(chains)]
    for i in range(chains):
        lines.append(f"-A FORWARD -s 10.{i // 256}.{i % 256}.0/24 -j U{i}")
        lines += [
            f"-A U{i} -p tcp --dport {1000 + j} -d 192.168.{j % 256}.1 -j ACCEPT" for j in range(per_chain)
        ]
    lines.append("COMMIT")
    return "\n".join(lines)


def _chain_of(n: int, commands: bool, header: str = "", last: str = "-j DROP") -> str:
    if commands:
        prog = "iptables-nft" if header else "iptables"
        lines = [f"{prog} -N C{i}" for i in range(n)]
        lines += [f"{prog} -A C{i} -j C{i + 1}" for i in range(n - 1)]
        lines += [f"{prog} -A C{n - 1} {last}", f"{prog} -A FORWARD -j C0"]
        return "\n".join(lines)
    lines = [header] if header else []
    lines += ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":C{i} - [0:0]" for i in range(n)]
    lines += ["-A FORWARD -j C0"] + [f"-A C{i} -j C{i + 1}" for i in range(n - 1)]
    lines += [f"-A C{n - 1} {last}", "COMMIT"]
    return "\n".join(lines)


def _forward(policy, src: str, dst: str, dport: int):
    nf = Netfilter(policy)
    v, s = str_to_addr(src)
    _, d = str_to_addr(dst)
    pkt = decode(craft.tcp_packet(v, s, d, 40000, dport, 1000, 0, 0x02, 64240))
    return nf.traverse("FORWARD", pkt, Context("eth0", "eth1", "NEW"))


@pytest.fixture
def full_walks(monkeypatch):
    """How many times the loader walked a whole table (the check that used to run per command)."""
    calls = []
    real = tb.Reach.full

    def counting(self, ctx):
        calls.append(self.table.name)
        return real(self, ctx)

    monkeypatch.setattr(tb.Reach, "full", counting)
    return calls


def test_a_large_command_script_is_checked_incrementally(full_walks):
    # 200 user chains of 100 rules: 20 401 commands. Each command is checked as the kernel would
    # check it, but the table is walked whole once (the first rule), not once per command.
    policy = parse(_script(200, 100), "big.sh")
    chains = policy.netfilter["filter"].chains
    assert len(chains) == 3 + 200 and sum(len(c.rules) for c in chains.values()) == 200 * 101
    assert full_walks == ["filter"]
    d = _forward(policy, "10.0.199.7", "192.168.57.1", 1057)
    assert d.verdict == "ACCEPT" and d.chain == "U199"
    assert d.rule.origin.line == 1 + 199 * 102 + 2 + 58  # -P, 199 chains before, -N and -A, the 58th rule
    assert _forward(policy, "10.0.199.7", "192.168.57.1", 1058).verdict == "DROP"


def test_a_large_restore_file_loads_whole(full_walks):
    policy = parse(_restore(200, 100), "big.rules")
    assert sum(len(c.rules) for c in policy.netfilter["filter"].chains.values()) == 200 * 101
    assert full_walks == ["filter"]  # at COMMIT
    assert _forward(policy, "10.0.3.1", "192.168.9.1", 1009).chain == "U3"


@pytest.mark.parametrize("commands", [False, True], ids=["restore", "commands"])
def test_a_thousand_chained_user_chains_load_and_traverse(commands):
    # iptables-legacy takes any depth; the packet walks all 1 000 chains to the DROP at the bottom.
    policy = parse(_chain_of(1000, commands), "deep")
    d = _forward(policy, "10.0.0.1", "10.0.0.2", 80)
    assert d.verdict == "DROP" and d.chain == "C999"
    assert any("iptables-nft refuses more than 15" in w.message for w in policy.warnings)


@pytest.mark.parametrize("commands", [False, True], ids=["restore", "commands"])
def test_a_loop_at_the_bottom_of_a_deep_chain_is_refused_where_it_is_made(commands):
    with pytest.raises(ConfigError) as e:
        parse(_chain_of(1000, commands, last="-j C500"), "loop")
    assert "chains jump in a loop: " in str(e.value) and "(Too many levels of symbolic links)" in str(e.value)
    assert "C500 -> C501 -> C502 -> C503 -> ... (500 chains) ... -> C997 -> C998 -> C999 -> C500" in str(
        e.value
    )
    # Restore: the COMMIT line, as iptables-restore names it; commands: the jump that makes the loop
    # reachable from FORWARD, the last command.
    assert str(e.value).startswith("loop:2006:1:" if not commands else "loop:2001:24:")


def test_iptables_nft_refuses_the_jump_past_sixteen_levels():
    text = _chain_of(30, False, header="# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sun Dec  6")
    with pytest.raises(ConfigError) as e:
        parse(text, "nft.rules")
    # Line 51 is "-A C14 -j C15", as iptables-nft-restore reported it (line 50 without our header).
    assert str(e.value).startswith("nft.rules:51:")
    assert "chain C15 is 16 jumps below its built-in chain" in str(e.value)
    assert "Too many links" in str(e.value)
    with pytest.raises(ConfigError, match="Too many links"):
        parse(_chain_of(30, True, header="nft"), "nft.sh")
    parse(_chain_of(15, False, header="# Generated by iptables-nft-save v1.8.9"), "ok.rules")


def test_removals_then_additions_still_check_what_the_hooks_reach():
    # -D makes the table walk whole again on the next rule: a chain that FORWARD no longer reaches
    # may hold a DNAT (nat only) ... and one reached again from PREROUTING is fine.
    text = "\n".join(
        [
            "iptables -t nat -N D",
            "iptables -t nat -A D -p tcp -j DNAT --to-destination 10.0.0.9",
            "iptables -t nat -A PREROUTING -j D",
            "iptables -t nat -D PREROUTING -j D",
            "iptables -t nat -A POSTROUTING -j D",
        ]
    )
    with pytest.raises(ConfigError) as e:
        parse(text, "nat.sh")
    assert str(e.value).startswith(
        "nat.sh:5:"
    ) and "DNAT (chain D, line 2) would be reached from POSTROUTING" in (str(e.value))
