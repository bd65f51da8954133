"""Given a capture request, expect the file to be created as the ASA's operator would want it from a
root process: 0600, never written through a symbolic or hard link, and only inside the capture
directory unless the firewall was started to allow any path; and ``capture NAME type asp-drop``
keeps the packets the engine dropped, each with its reason."""

from __future__ import annotations

import os
import stat

import pytest
from scapy.layers.inet import IP, TCP

from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.live.ctl import Commands, CtlError
from statewall.live.loop import Loop
from statewall.pcapio import open_private, read_comments

CONFIG = """\
ASA Version 9.12(4)
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 192.168.1.1 255.255.255.0
access-list OUT extended deny tcp any any eq 22
access-group OUT in interface outside
"""


def test_open_private_creates_0600(tmp_path):
    path = tmp_path / "c.pcap"
    with open_private(path) as f:
        f.write(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_open_private_refuses_a_symlink_and_leaves_its_target_alone(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("precious")
    (tmp_path / "c.pcap").symlink_to(target)
    with pytest.raises(OSError):
        open_private(tmp_path / "c.pcap")
    assert target.read_text() == "precious"


def test_open_private_refuses_a_symlinked_directory(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    with pytest.raises(OSError):
        open_private(tmp_path / "link" / "c.pcap")
    assert list(real.iterdir()) == []


def test_open_private_refuses_a_hard_link_and_makes_an_old_file_private(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("precious")
    os.link(target, tmp_path / "c.pcap")
    with pytest.raises(OSError, match="links"):
        open_private(tmp_path / "c.pcap")
    assert target.read_text() == "precious"
    old = tmp_path / "old.pcap"
    old.write_text("old")
    old.chmod(0o644)
    open_private(old).close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600 and old.read_bytes() == b""


def commands(tmp_path, **kw):
    fw = Firewall(parse_policy(CONFIG, "fw.cfg"))
    return fw, Commands(fw, Loop(fw, []), capture_dir=str(tmp_path / "caps"), **kw)


def test_capture_paths_stay_in_the_capture_directory(tmp_path):
    _fw, cmds = commands(tmp_path)
    with pytest.raises(CtlError, match="outside the capture directory"):
        cmds.execute(f"capture drops type asp-drop {tmp_path / 'elsewhere.pcap'}")
    with pytest.raises(CtlError, match="outside the capture directory"):
        cmds.execute("capture drops type asp-drop ../escape.pcap")
    assert "started" in cmds.execute("capture drops type asp-drop")
    assert stat.S_IMODE((tmp_path / "caps").stat().st_mode) == 0o700
    assert (tmp_path / "caps" / "drops.pcap").exists()
    cmds.execute("capture drops stop")
    _fw, anywhere = commands(tmp_path, capture_anywhere=True)
    assert "started" in anywhere.execute(f"capture d2 type asp-drop {tmp_path / 'elsewhere.pcap'}")
    anywhere.execute("capture d2 stop")


def test_asp_drop_capture_keeps_dropped_packets_with_their_reason(tmp_path):
    fw, cmds = commands(tmp_path)
    cmds.execute("capture drops type asp-drop acl-drop")
    cap = cmds.captures["drops"]
    denied = bytes(IP(src="198.51.100.7", dst="192.168.1.10") / TCP(sport=5555, dport=22, flags="S"))
    stray = bytes(IP(src="198.51.100.7", dst="192.168.1.10") / TCP(sport=5556, dport=80, flags="A"))
    for pkt in (denied, stray):  # as the loop does: the tap sees it, the engine judges, events follow
        cap.tap_for("outside")(bytearray(pkt))
        cmds.on_events(fw.receive("outside", bytearray(pkt), 1.0).events)
    assert "1 packets written" in cmds.execute("capture drops stop")
    ((_ts, packet, comment),) = read_comments(tmp_path / "caps" / "drops.pcap")
    assert packet == denied and comment == "Drop-reason: (acl-drop) Flow is denied by configured rule"


def test_asp_drop_capture_takes_the_asas_ipv6_slowpath_keyword(tmp_path):
    """``capture NAME type asp-drop ipv6-sp-security-failed``: the keyword as a real ASA's ``capture
    NAME type asp-drop ?`` list spells it (tests/test_show_formats.py, [ASP-A]); a link-local source
    leaving the box is dropped under it."""
    from scapy.layers.inet6 import IPv6

    v6 = CONFIG.replace(" ip address 203.0.113.1 255.255.255.0", " ip address 203.0.113.1 255.255.255.0\n"
                        " ipv6 address 2001:db8:1::1/64").replace(
        " ip address 192.168.1.1 255.255.255.0", " ip address 192.168.1.1 255.255.255.0\n"
        " ipv6 address 2001:db8:2::1/64")  # fmt: skip
    fw = Firewall(parse_policy(v6, "fw.cfg"))
    cmds = Commands(fw, Loop(fw, []), capture_dir=str(tmp_path / "caps"))
    assert "started" in cmds.execute("capture v6 type asp-drop ipv6-sp-security-failed")
    pkt = bytes(IPv6(src="fe80::1", dst="2001:db8:1::9") / TCP(sport=5555, dport=80, flags="S"))
    cmds.captures["v6"].tap_for("inside")(bytearray(pkt))
    cmds.on_events(fw.receive("inside", bytearray(pkt), 1.0).events)
    assert "1 packets written" in cmds.execute("capture v6 stop")
    ((_ts, packet, comment),) = read_comments(tmp_path / "caps" / "v6.pcap")
    assert packet == pkt
    assert comment == "Drop-reason: (ipv6-sp-security-failed) IPv6 slowpath security checks failed"
