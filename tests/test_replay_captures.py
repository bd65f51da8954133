"""Given a replay, expect its captures as an engineer reads them in Wireshark: every output packet
commented with its connection id and verdict (pcapng ``opt_comment``), and every dropped packet in
asp-drop.pcap with the ASA's ``Drop-reason: (keyword) description`` (as ``show capture NAME detail``
prints an asp-drop capture's packets)."""

from __future__ import annotations

import json
from pathlib import Path

from statewall import cli
from statewall.pcapio import read_comments
from test_show_offline import CONFIG, capture


def test_outputs_carry_conn_and_verdict_and_drops_go_to_asp_drop(tmp_path: Path, capsys):
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert (
        cli.main(["replay", "-c", str(cfg), "-o", str(out), "--json", str(capture(tmp_path / "c.pcap"))]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["outputs"]["asp_drop"] == "asp-drop.pcap"
    sent = read_comments(out / "outside.pcap")
    assert [c for _, _, c in sent] == ["conn 1; forwarded", "conn 2; forwarded"]
    ((ts, packet, comment),) = read_comments(out / "asp-drop.pcap")
    assert comment == "Drop-reason: (acl-drop) Flow is denied by configured rule; ingress outside"
    assert packet[12:16] == bytes([198, 51, 100, 7])  # the denied SYN as it arrived
