"""The ``statewall`` command line: commands, their output, exit codes (0 ok, 1 failure, 2 config/usage)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from statewall import cli, commands
from statewall.config import detect_dialect, dialect_module, parse_policy
from statewall.dialects.errors import ConfigError
from zeek_ftp import NO_FTP_INSPECTION, PAT, asa_front

SEED000 = Path(__file__).parent / "configs" / "seed000.cfg"

# Zeek's ftp/ipv4.pcap client network behind PAT, FTP not inspected.
ZEEK_FTP_CONFIG = asa_front() + PAT + NO_FTP_INSPECTION


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------
# Commands and discovery


def test_help_lists_every_command_on_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "statewall.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("check", "show", "replay", "packet-tracer", "demo"):
        (line,) = [ln for ln in proc.stdout.splitlines() if ln.split()[:1] == [command]]
        assert len(line.split()) > 2, f"{command} has no one-line help: {line!r}"
    assert proc.stderr == ""


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "statewall"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (package not installed in this venv)")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("statewall ")


def test_a_new_module_in_the_commands_package_is_a_command(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "zz_hello.py").write_text(
        "def register(sub):\n"
        "    p = sub.add_parser('hello', help='say hello')\n"
        "    p.set_defaults(func=lambda args: print('hello') or 0)\n"
    )
    (tmp_path / "zz_broken.py").write_text("raise ImportError('half-written command')\n")
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(tmp_path)])
    for name in ("zz_hello", "zz_broken"):
        monkeypatch.delitem(sys.modules, f"statewall.commands.{name}", raising=False)
    code, out, err = run(capsys, "hello")
    assert (code, out) == (0, "hello\n")
    # A command module that fails to import is reported, and the others keep working.
    assert "command module 'zz_broken' failed to load: half-written command" in err


def test_no_command_is_a_usage_error(capsys) -> None:
    code, _, err = run(capsys)
    assert code == 2 and "usage: statewall" in err


def test_unknown_command_is_a_usage_error(capsys) -> None:
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err


# --------------------------------------------------------------------------------------------------
# check / show


def test_check_counts_what_the_configuration_defines(capsys) -> None:
    code, out, err = run(capsys, "check", "-c", str(SEED000))
    assert code == 0 and err == ""
    assert out.splitlines()[0] + "\n" == (
        "OK: 2 interfaces, 0 access rules, 0 access lists, 0 access groups, 1 NAT rule, 1 route, 0 warnings\n"
    )


def test_check_counts_rules_per_table_and_chain_for_iptables_and_nftables(capsys) -> None:
    configs = SEED000.parent
    code, out, _ = run(capsys, "check", "-c", str(configs / "docker-20-default.rules"))
    assert code == 0
    assert out.splitlines()[0] == (
        "OK: 2 interfaces, nat: 6 rules in 5 chains, filter: 12 rules in 7 chains, 1 route, 0 warnings"
    )
    code, out, _ = run(capsys, "check", "-v", "-c", str(configs / "nft-host.nft"))
    assert code == 0
    lines = out.splitlines()
    assert "table inet filter chain input (filter hook input priority 0, policy DROP): 7 rules" in lines
    assert "table inet filter chain lan_out (regular chain): 4 rules" in lines
    assert lines[-1] == (
        "OK: 2 interfaces, table inet filter: 15 rules in 3 chains, table ip nat: 2 rules in 2 chains, "
        "1 set, 1 route, 0 warnings"
    )
    code, out, _ = run(capsys, "check", "-c", str(configs / "kube-proxy-nftables.nft"))
    assert out.splitlines()[-1] == (
        "OK: 2 interfaces, table ip kube-proxy: 22 rules in 15 chains, 1 set, 2 verdict maps, 1 route, "
        "0 warnings"
    )
    code, out, _ = run(capsys, "check", "--json", "-c", str(configs / "nft-host.nft"))
    assert json.loads(out)["tables"]["table ip nat"] == {"prerouting": 1, "postrouting": 1}


def test_check_prints_warnings_for_unknown_commands(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "w.cfg"
    cfg.write_text(SEED000.read_text() + "frobnicate the widgets\n")
    code, out, err = run(capsys, "check", "-c", str(cfg))
    assert code == 0
    lines = len(SEED000.read_text().splitlines())
    assert err.startswith(f"{cfg}:{lines + 1}:1: warning: ")
    assert out.splitlines()[0].endswith(", 1 warning")


def test_check_malformed_command_is_exit_2_with_location(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("interface Ethernet0\n nameif outside\n ip address 192.168.9.300 255.255.255.0\n")
    code, out, err = run(capsys, "check", "-c", str(cfg))
    assert code == 2 and out == ""
    assert re.fullmatch(rf"{re.escape(str(cfg))}:3:\d+: .+\nFAILED: 1 error, 0 warnings; .+\n", err), err


def test_check_survives_a_stray_latin1_byte(tmp_path: Path, capsys) -> None:
    # Configurations pasted from old consoles carry Latin-1 in descriptions; that must not stop a parse.
    cfg = tmp_path / "latin1.cfg"
    cfg.write_bytes(b"interface Ethernet0\n nameif outside\n description caf\xe9 link\n security-level 0\n")
    code, out, _ = run(capsys, "check", "-c", str(cfg))
    assert code == 0 and out.startswith("OK: 1 interface,")


def test_check_missing_file_is_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "check", "-c", str(tmp_path / "nope.cfg"))
    assert code == 2 and "cannot read configuration" in err


@pytest.mark.parametrize("word", ["running-config", "run"])
def test_show_running_config_parses_back_to_the_same_policy(capsys, word: str) -> None:
    code, out, err = run(capsys, "show", word, "-c", str(SEED000))
    assert code == 0 and err == ""
    original = parse_policy(SEED000.read_text(), "seed000.cfg")
    again = parse_policy(out, "running-config")
    assert again.warnings == []
    for name, itf in original.interfaces.items():
        back = again.interfaces[name]
        assert (back.hardware, back.security_level, back.ipv4) == (itf.hardware, itf.security_level, itf.ipv4)
    assert [(r.interface, r.network, r.gateway) for r in again.routes] == [
        (r.interface, r.network, r.gateway) for r in original.routes
    ]
    assert [(n.kind, n.real_interface, n.real) for n in again.nat_rules] == [
        (n.kind, n.real_interface, n.real) for n in original.nat_rules
    ]


def test_show_unknown_target_is_a_usage_error(capsys) -> None:
    code, _, err = run(capsys, "show", "version", "-c", str(SEED000))
    assert code == 2 and "unknown show target" in err


# --------------------------------------------------------------------------------------------------
# packet-tracer


def test_packet_tracer_allows_the_ftp_client_through_pat(capsys) -> None:
    code, out, _ = run(
        capsys, "packet-tracer", "-c", str(SEED000), "input", "inside", "tcp", "10.0.0.2", "38003",
        "192.168.9.2", "21",
    )  # fmt: skip
    assert code == 0
    assert "nat (inside) 1 10.0.0.0 255.0.0.0" in out
    assert re.search(r"^Result: ALLOW$", out, re.M) and not re.search(r"^Result: DROP$", out, re.M)
    asa, _, statewall = out.partition("\n\nstatewall: ")
    assert asa.rstrip().splitlines()[-1] == "Action: allow"
    # The security-level sentence is statewall's, after the ASA's text: the ASA prints Implicit Rule.
    assert "security-level" not in asa and "security-level 100 to 0" in statewall
    assert "Config:\nImplicit Rule\nAdditional Information:\n\n" in asa


def test_packet_tracer_drop_names_the_reason_and_exits_1(capsys) -> None:
    code, out, _ = run(
        capsys, "packet-tracer", "-c", str(SEED000), "input", "outside", "tcp", "192.168.9.2", "40000",
        "10.0.0.2", "ssh", "detailed",
    )  # fmt: skip
    assert code == 1  # the verdict, for scripts
    assert re.search(r"^Result: DROP$", out, re.M)
    assert "Action: drop" in out
    assert re.search(r"^Drop-reason: \(\S+\) .+", out, re.M)


@pytest.mark.parametrize(
    "words,message",
    [
        (["input", "inside", "tcp", "10.0.0.999", "1", "192.168.9.2", "21"], "not an IP address"),
        (["input", "inside", "tcp", "10.0.0.2", "nosuchport", "192.168.9.2", "21"], "neither a number"),
        (["input", "inside", "tcp", "10.0.0.2", "70000", "192.168.9.2", "21"], "out of range"),
        (["input", "inside", "tcp", "10.0.0.2", "1", "192.168.9.2"], "SRC SPORT DST DPORT"),
        (["input", "dmz", "tcp", "10.0.0.2", "1", "192.168.9.2", "21"], "no interface named 'dmz'"),
        (["output", "inside", "tcp", "10.0.0.2", "1", "192.168.9.2", "21"], "expected: input"),
        (["input", "inside", "gre", "10.0.0.2", "192.168.9.2"], "not supported"),
    ],
)
def test_packet_tracer_bad_arguments_are_exit_2(capsys, words: list[str], message: str) -> None:
    code, _, err = run(capsys, "packet-tracer", "-c", str(SEED000), *words)
    assert code == 2 and message in err


# --------------------------------------------------------------------------------------------------
# replay


@pytest.fixture
def zeek_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "zeek.cfg"
    cfg.write_text(ZEEK_FTP_CONFIG)
    return cfg


def test_replay_json_summary_matches_the_file(
    tmp_path: Path, capsys, zeek_config: Path, zeek_ftp_ipv4
) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run(
        capsys, "replay", "-c", str(zeek_config), "-o", str(out), str(zeek_ftp_ipv4), "--json"
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["packets_in"] == 95
    assert summary["forwarded"] + summary["dropped"] == 95
    assert {p.name for p in out.iterdir()} == {
        "inside.pcap",
        "outside.pcap",
        "asp-drop.pcap",
        "log.txt",
        "events.jsonl",
        "summary.json",
        "arrived",
        "report.html",
    }


def test_replay_prints_the_log_and_a_summary(
    tmp_path: Path, capsys, zeek_config: Path, zeek_ftp_ipv4
) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run(
        capsys, "replay", "-c", str(zeek_config), "--ingress", "auto", "-o", str(out), str(zeek_ftp_ipv4),
        "--max-log", "3",
    )  # fmt: skip
    assert code == 0
    log = (out / "log.txt").read_text().splitlines()
    assert stdout.splitlines()[:3] == log[:3]
    assert f"... {len(log) - 3} more lines in {out / 'log.txt'}" in stdout
    assert "replay summary" in stdout and "show asp drop" in stdout


def test_replay_pinned_ingress(tmp_path: Path, capsys, zeek_config: Path, zeek_ftp_ipv4) -> None:
    # The whole capture pinned to outside: the client's own packets then arrive on the wrong side.
    code, stdout, _ = run(
        capsys, "replay", "-c", str(zeek_config), "--ingress", f"outside={zeek_ftp_ipv4}",
        "-o", str(tmp_path / "out"), "--json",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(stdout)
    assert summary["captures"][0]["ingress"] == "outside"
    assert summary["forwarded"] < 95


@pytest.mark.parametrize(
    "extra,code,message",
    [
        (["--ingress", "bogus"], 2, "--ingress takes 'auto' or IFACE=CAPTURE"),
        (["--ingress", "wan=CAP"], 2, "no interface named 'wan'"),
        ([], 2, "no capture given"),
        (["MISSING"], 1, "No such file"),
        (["--drain", "-5", "CAP"], 2, "must not be negative"),
    ],
)
def test_replay_errors(
    tmp_path: Path, capsys, zeek_config: Path, zeek_ftp_ipv4, extra, code, message
) -> None:
    missing = tmp_path / "missing.pcap"
    extra = [x.replace("CAP", str(zeek_ftp_ipv4)).replace("MISSING", str(missing)) for x in extra]
    got, _, err = run(capsys, "replay", "-c", str(zeek_config), "-o", str(tmp_path / "out"), *extra)
    assert got == code and message in err


def test_replay_of_a_file_that_is_not_a_capture_is_exit_1(tmp_path: Path, capsys, zeek_config: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_text("not a capture\n")
    code, _, err = run(capsys, "replay", "-c", str(zeek_config), "-o", str(tmp_path / "out"), str(junk))
    assert code == 1 and "not a pcap or pcapng file" in err


def test_replay_with_a_malformed_config_is_exit_2(tmp_path: Path, capsys, zeek_ftp_ipv4) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("route outside 0.0.0.0 0.0.0.0 not-an-address\n")
    code, _, err = run(capsys, "replay", "-c", str(cfg), "-o", str(tmp_path / "out"), str(zeek_ftp_ipv4))
    assert code == 2 and err.startswith(f"{cfg}:1:")


# --------------------------------------------------------------------------------------------------
# demo


def test_demo_tells_the_seed000_story(tmp_path: Path, capsys) -> None:
    # --replay: as root, plain ``statewall demo`` runs the live lab scenarios instead.
    code, out, _ = run(capsys, "demo", "--replay", "-o", str(tmp_path))
    assert code == 0
    for asa_id in ("305011", "302013", "302014", "305012"):
        assert f"%ASA-6-{asa_id}:" in out
    assert "Frame drop:" in out and "What happened:" in out
    assert "appears on outside as 192.168.9.30/38003" in out
    kept = tmp_path / "seed000-ftp" / "replay"
    assert {"inside.pcap", "outside.pcap", "log.txt", "events.jsonl", "summary.json"} <= {
        p.name for p in kept.iterdir()
    }
    # Each seed scenario's report, written and its path printed.
    for name in ("seed000-ftp", "seed000-upload"):
        report = tmp_path / name / "replay" / "report.html"
        assert f"report: {report}\n" in out and report.is_file()


def test_demo_list_and_unknown_scenario(capsys) -> None:
    code, out, _ = run(capsys, "demo", "--list")
    assert code == 0 and out.startswith("seed000-ftp ")
    code, _, err = run(capsys, "demo", "nosuch")
    assert code == 2 and "unknown scenario(s): nosuch" in err


# --------------------------------------------------------------------------------------------------
# Which dialect a file is in


@pytest.mark.parametrize(
    "text,dialect",
    [
        (SEED000.read_text(), "asa"),
        (": Saved\n:\nhostname fw\n: end\n", "asa"),
        ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n", "iptables"),
        ("#!/bin/sh\niptables -P FORWARD DROP\n", "iptables"),
    ],
)
def test_dialect_is_detected_from_content(text: str, dialect: str) -> None:
    assert detect_dialect(text) == dialect


def test_unknown_dialect_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="x.cfg:1:1: unknown configuration dialect 'junos'"):
        dialect_module("junos", "x.cfg")


def test_show_iptables_is_the_iptables_command(capsys):
    """The issue's spelling: ``statewall show iptables -c FILE -t TABLE -L -n -v -x``."""
    from statewall.cli import main

    config = str(Path(__file__).parent / "configs" / "seed001-sophos.rules")
    assert main(["show", "iptables", "-c", config, "-t", "mangle", "-L", "-n", "-v", "-x"]) == 0
    shown = capsys.readouterr().out
    assert main(["iptables", "-c", config, "-t", "mangle", "-L", "-n", "-v", "-x"]) == 0
    assert capsys.readouterr().out == shown
    assert "TCPMSS set 1347" in shown


def test_packet_tracer_xml_and_json(capsys) -> None:
    words = ["input", "outside", "tcp", "192.168.9.2", "40000", "10.0.0.2", "ssh"]
    code, out, _ = run(capsys, "packet-tracer", "-c", str(SEED000), *words, "xml")
    assert code == 1 and out.startswith("<Phase>\n<id>1</id>\n")
    assert "<action>drop</action>\n<drop-reason>(" in out and "statewall" not in out
    code, out, _ = run(capsys, "packet-tracer", "-c", str(SEED000), *words, "--json")
    data = json.loads(out)
    assert code == 1 and data["result"]["action"] == "drop" and data["statewall"]


def test_check_json_for_an_iptables_ruleset_goes_through_the_same_records(tmp_path: Path, capsys) -> None:
    import json

    rules = tmp_path / "bad.rules"
    rules.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    code, out, _ = run(capsys, "check", "--json", "-c", str(rules))
    doc = json.loads(out)
    assert code == 2 and doc["ok"] is False
    assert [(p["severity"], p["line"], p["col"]) for p in doc["problems"]] == [("error", 3, 25)]
    good = tmp_path / "good.rules"
    good.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
    code, out, _ = run(capsys, "check", "--json", "-c", str(good))
    doc = json.loads(out)
    assert code == 0 and doc["dialect"] == "iptables" and doc["lines"] is None
