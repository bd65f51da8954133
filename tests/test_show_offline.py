"""Given a configuration and a capture, ``statewall show CMD --after-replay`` (and ``replay --show``)
print the ASA's tables as they stood after the last packet, in the configuration's release form.

Layouts from the Cisco ASA command references (show access-list: ``access-list OUT line 1 extended
permit tcp any host 10.1.1.5 eq www (hitcnt=12) 0x...`` with object-group elements indented below;
show nat 8.3+: ``Auto NAT Policies (Section 2)`` / ``1 (inside) to (outside) source dynamic OBJ
interface`` / ``    translate_hits = N, untranslate_hits = 0``; show route 9.x with ``L`` routes).
"""

from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP

from fixtures import ASA_INTERFACES
from statewall import cli
from statewall.pcapio import PcapWriter

CONFIG = (
    "ASA Version 9.12(4)\nhostname fw\n"
    + ASA_INTERFACES
    + """\
object network WEB1
 host 192.168.1.10
object network INSIDE-NET
 subnet 192.168.1.0 255.255.255.0
 nat (inside,outside) dynamic interface
object-group network WEBS
 network-object host 192.168.1.10
 network-object host 192.168.1.11
access-list OUTSIDE_IN extended permit tcp any object-group WEBS eq www
access-list OUTSIDE_IN extended deny ip any any
access-group OUTSIDE_IN in interface outside
route outside 0.0.0.0 0.0.0.0 203.0.113.254 1
"""
)


def capture(path: Path) -> Path:
    """An inside client opening two connections out, and one outside host denied."""
    t = 1_700_000_000.0
    with PcapWriter(path) as w:
        for i, sport in enumerate((40001, 40002)):
            w.write(
                bytes(IP(src="192.168.1.20", dst="198.51.100.9") / TCP(sport=sport, dport=443, flags="S")),
                t + i,
            )
        w.write(
            bytes(IP(src="198.51.100.7", dst="192.168.1.99") / TCP(sport=5555, dport=22, flags="S")), t + 3
        )
    return path


def show(tmp_path: Path, capsys, *words: str) -> str:
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    cap = capture(tmp_path / "c.pcap")
    assert cli.main(["show", *words, "-c", str(cfg), "--after-replay", str(cap)]) == 0
    return capsys.readouterr().out


def test_show_access_list_with_hit_counts_and_object_group_elements(tmp_path, capsys):
    lines = show(tmp_path, capsys, "access-list").splitlines()
    assert lines[0] == "access-list cached ACL log flows: total 0, denied 0 (deny-flow-max 4096)"
    assert lines[2].startswith("access-list OUTSIDE_IN; 3 elements; name hash: 0x")
    assert lines[3].startswith(
        "access-list OUTSIDE_IN line 1 extended permit tcp any object-group WEBS eq www (hitcnt=0) 0x"
    )
    # Each element with its own hit count (itecnotes.com, "What do the parentheses after objects mean
    # in Cisco ASA ACLs": expanded lines end "(hitcnt=324165) 0xa2669c62").
    assert lines[4].startswith(
        "  access-list OUTSIDE_IN line 1 extended permit tcp any host 192.168.1.10 eq www (hitcnt=0) 0x"
    )
    assert lines[5].startswith(
        "  access-list OUTSIDE_IN line 1 extended permit tcp any host 192.168.1.11 eq www (hitcnt=0) 0x"
    )
    deny = lines[6]
    assert deny.startswith("access-list OUTSIDE_IN line 2 extended deny ip any any (hitcnt=1) 0x")
    # The hash the deny's 106023 prints is the one show access-list prints for that ACE.
    ace_hash = deny.rsplit(" ", 1)[1]
    out = tmp_path / "replay"
    cfg, cap = tmp_path / "fw.cfg", tmp_path / "c.pcap"
    assert cli.main(["replay", "-c", str(cfg), "-o", str(out), "--json", str(cap)]) == 0
    capsys.readouterr()
    (deny_log,) = [x for x in (out / "log.txt").read_text().splitlines() if "106023" in x]
    assert deny_log.endswith(f'by access-group "OUTSIDE_IN" [{ace_hash}, 0x0]')


def test_show_nat_counts_translations_per_rule(tmp_path, capsys):
    text = show(tmp_path, capsys, "nat")
    assert text == (
        "Auto NAT Policies (Section 2)\n"
        "1 (inside) to (outside) source dynamic INSIDE-NET interface\n"
        "    translate_hits = 2, untranslate_hits = 0\n"
    )


def test_show_route_9x_has_local_routes(tmp_path, capsys):
    lines = show(tmp_path, capsys, "route").splitlines()
    assert lines[0].startswith("Codes: L - local, C - connected, S - static")
    assert "Gateway of last resort is 203.0.113.254 to network 0.0.0.0" in lines
    assert "S*       0.0.0.0 0.0.0.0 [1/0] via 203.0.113.254, outside" in lines
    assert "C        192.168.1.0 255.255.255.0 is directly connected, inside" in lines
    assert "L        192.168.1.1 255.255.255.255 is directly connected, inside" in lines


def test_show_conn_count_interface_and_replay_show(tmp_path, capsys):
    assert show(tmp_path, capsys, "conn", "count") == "2 in use, 2 most used\n"
    text = show(tmp_path, capsys, "interface")
    assert 'Traffic Statistics for "inside":\n        2 packets input, 80 bytes\n' in text
    assert "        1 packets dropped\n" in text.split('"outside":')[-1]
    out = tmp_path / "replay"
    args = ["replay", "-c", str(tmp_path / "fw.cfg"), "-o", str(out), "--json"]
    args += ["--show", "conn-detail", "--show", "nat", str(tmp_path / "c.pcap")]
    assert cli.main(args) == 0
    shown = json.loads(capsys.readouterr().out)["show"]
    assert "TCP outside: 198.51.100.9/443 inside: 192.168.1.20/40001," in shown["conn-detail"]
    assert "  Initiator: 192.168.1.20, Responder: 198.51.100.9" in shown["conn-detail"]
    assert "translate_hits = 2" in shown["nat"]


class _Tun:
    def describe(self) -> str:
        return "tun0"


class _Port:
    def __init__(self, name: str, rx: int, tx: int) -> None:
        self.name, self.tun, self.rx, self.tx = name, _Tun(), rx, tx

    def counters(self) -> dict:
        return dict(
            rx_packets=self.rx, rx_bytes=self.rx * 100, rx_super=0, rx_errors=0,
            tx_packets=self.tx, tx_bytes=self.tx * 100, tx_segmented=0, tx_errors=0,
        )  # fmt: skip


class _Loop:
    def __init__(self, ports) -> None:
        self.ports = ports
        self.by_name = {p.name: p for p in ports}


def test_ctl_show_interface_is_the_asa_form_with_the_ports_counters():
    from statewall.config import parse_policy
    from statewall.engine import Firewall
    from statewall.events import Drop, DropReason
    from statewall.live.ctl import Commands

    fw = Firewall(parse_policy(CONFIG, "fw.cfg"))
    cmds = Commands(fw, _Loop([_Port("outside", 5, 7), _Port("inside", 9, 4)]))
    cmds.log.add([Drop(1.0, DropReason.ACL_DROP, "outside", 6, "198.51.100.7", 1, "192.168.1.99", 22)])
    text = cmds.execute("show interface")
    assert 'Interface GigabitEthernet0/0 "outside", is up, line protocol is up' in text
    assert '        Traffic Statistics for "outside":\n        5 packets input, 500 bytes\n' in text
    assert "        7 packets output, 700 bytes\n        1 packets dropped\n" in text
    assert "statewall: outside (tun0): 0 super-packets in" in text


def test_106023_names_the_object_group_element_show_access_list_prints(tmp_path, capsys):
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(
        CONFIG.replace(
            "access-list OUTSIDE_IN extended deny ip any any",
            "access-list OUTSIDE_IN extended deny tcp any object-group WEBS eq ssh\n"
            "access-list OUTSIDE_IN extended deny ip any any",
        )
    )
    cap = tmp_path / "ssh.pcap"
    with PcapWriter(cap) as w:
        w.write(bytes(IP(src="198.51.100.7", dst="192.168.1.11") / TCP(sport=5555, dport=22, flags="S")), 1.0)
    assert cli.main(["show", "access-list", "-c", str(cfg), "--after-replay", str(cap)]) == 0
    lines = capsys.readouterr().out.splitlines()
    ace = next(x for x in lines if x.startswith("access-list OUTSIDE_IN line 2 "))
    element = next(
        x for x in lines if x.startswith("  access-list OUTSIDE_IN line 2 ") and "192.168.1.11" in x
    )
    assert "(hitcnt=1)" in ace
    # The element that matched carries the hit, its sibling none.
    assert "(hitcnt=1) 0x" in element
    other = next(x for x in lines if x.startswith("  access-list OUTSIDE_IN line 2 ") and "192.168.1.10" in x)
    assert "(hitcnt=0) 0x" in other
    out = tmp_path / "out"
    assert cli.main(["replay", "-c", str(cfg), "-o", str(out), "--json", str(cap)]) == 0
    capsys.readouterr()
    (deny,) = [x for x in (out / "log.txt").read_text().splitlines() if "106023" in x]
    assert deny.endswith(f"[{ace.rsplit(' ', 1)[1]}, {element.rsplit(' ', 1)[1]}]")


def test_show_nat_counts_untranslate_hits_of_a_static(tmp_path, capsys):
    """Two outside clients opening connections to a static's mapped address: the static's
    untranslate_hits counts them (the reverse direction, one per connection: ``show nat detail``'s twice
    NAT samples count 2/2 and 1/1 for one connection each way); no translation was made from the
    inside, so translate_hits stays 0; the dynamic rule is untouched in that direction."""
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(
        CONFIG.replace(
            "object network WEB1\n host 192.168.1.10\n",
            "object network WEB1\n host 192.168.1.10\n nat (inside,outside) static 203.0.113.10\n",
        ).replace(
            "access-list OUTSIDE_IN extended deny ip any any",
            "access-list OUTSIDE_IN extended permit tcp any host 192.168.1.10 eq www\n"
            "access-list OUTSIDE_IN extended deny ip any any",
        )
    )
    cap = tmp_path / "in.pcap"
    with PcapWriter(cap) as w:
        for i, src in enumerate(("198.51.100.7", "198.51.100.8")):
            pkt = IP(src=src, dst="203.0.113.10") / TCP(sport=5555, dport=80, flags="S")
            w.write(bytes(pkt), 1.0 + i)
    assert cli.main(["show", "nat", "-c", str(cfg), "--after-replay", str(cap)]) == 0
    text = capsys.readouterr().out
    assert (
        "1 (inside) to (outside) source static WEB1 203.0.113.10\n"
        "    translate_hits = 0, untranslate_hits = 2\n" in text
    )
    assert "source dynamic INSIDE-NET interface\n    translate_hits = 0, untranslate_hits = 0\n" in text
