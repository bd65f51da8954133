"""pcapio: captures written by scapy, dpkt and by hand come back as the IP packets that went in."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import dpkt.pcapng as ng
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import (
    ARP,
    CookedLinux,
    CookedLinuxV2,
    Dot1Q,
    Ether,
    Loopback,
    LoopbackOpenBSD,
)
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapReader, rdpcap, wrpcap

from statewall.pcapio import (
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
    CaptureError,
    CaptureReader,
    PcapWriter,
    ReadStats,
    read_packets,
    strip_link_layer,
)

V4 = IP(src="10.0.0.2", dst="192.168.9.2") / TCP(sport=38003, dport=21, flags="S", options=[("MSS", 1460)])
V4_DATA = IP(src="192.168.9.2", dst="10.0.0.2") / TCP(sport=21, dport=38003, flags="PA") / Raw(b"220 hi\r\n")
V6 = IPv6(src="2001:db8::2", dst="2001:db8:1::9") / UDP(sport=5353, dport=53) / Raw(b"q" * 30)
PACKETS = [bytes(V4), bytes(V4_DATA), bytes(V6)]
TIMES = [1329843161.968492, 1329843162.024025, 1329843163.5]


def stamped(frames):
    out = []
    for ts, frame in zip(TIMES, frames):
        frame.time = ts
        out.append(frame)
    return out


def read_all(path: Path) -> tuple[list[tuple[float, bytes]], ReadStats]:
    stats = ReadStats()
    got = list(read_packets(path, stats))
    return got, stats


def assert_same(got: list[tuple[float, bytes]], want: list[bytes] = PACKETS) -> None:
    assert [p for _, p in got] == want
    assert [ts for ts, _ in got] == pytest.approx(TIMES[: len(want)], abs=1e-6)


# --------------------------------------------------------------------------------------------------
# Link layers in classic pcap (written by scapy)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(lambda ip: Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip, id="ethernet"),
        pytest.param(lambda ip: Ether() / Dot1Q(vlan=7) / ip, id="802.1q"),
        pytest.param(lambda ip: Ether(type=0x88A8) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / ip, id="qinq"),
        pytest.param(lambda ip: CookedLinux(proto=0x0800 if ip.version == 4 else 0x86DD) / ip, id="sll"),
        pytest.param(lambda ip: CookedLinuxV2(proto=0x0800 if ip.version == 4 else 0x86DD) / ip, id="sll2"),
        pytest.param(lambda ip: Loopback(type=2 if ip.version == 4 else 24) / ip, id="null"),
        pytest.param(lambda ip: LoopbackOpenBSD(type=2 if ip.version == 4 else 24) / ip, id="loop"),
        pytest.param(lambda ip: ip, id="raw"),
    ],
)
def test_pcap_link_layers_are_stripped(tmp_path: Path, frame) -> None:
    path = tmp_path / "c.pcap"
    frames = stamped([frame(IP(p) if p[0] >> 4 == 4 else IPv6(p)) for p in PACKETS])
    wrpcap(str(path), frames)
    got, stats = read_all(path)
    assert_same(got)
    assert stats.frames == 3 and stats.ip == 3 and stats.non_ip == 0


@pytest.mark.parametrize("linktype,family", [(LINKTYPE_IPV4, 4), (LINKTYPE_IPV6, 6)])
def test_ip_only_linktypes(tmp_path: Path, linktype: int, family: int) -> None:
    path = tmp_path / "c.pcap"
    want = [p for p in PACKETS if p[0] >> 4 == family]
    with PcapWriter(path, linktype=linktype) as w:
        for ts, p in zip(TIMES, want):
            w.write(p, ts)
    got, _ = read_all(path)
    assert [p for _, p in got] == want


def test_non_ip_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    frames = [
        Ether() / ARP(pdst="10.0.0.1"),
        Ether() / IP(PACKETS[0]),
        Ether(type=0x88CC) / Raw(b"\x00" * 20),  # LLDP
        Ether() / Dot1Q(vlan=3, type=0x0806) / ARP(),
    ]
    wrpcap(str(path), frames)
    got, stats = read_all(path)
    assert [p for _, p in got] == [PACKETS[0]]
    assert (stats.frames, stats.ip, stats.non_ip) == (4, 1, 3)


def test_ethernet_padding_and_fcs_are_cut_at_the_ip_length(tmp_path: Path) -> None:
    # A 40-byte SYN is padded to a 60-byte Ethernet frame on the wire; a capture with the FCS adds 4.
    syn = bytes(IP(src="10.0.0.2", dst="192.168.9.2") / TCP(flags="S"))
    assert len(syn) == 40
    path = tmp_path / "c.pcap"
    wrpcap(str(path), [Ether(type=0x0800) / Raw(syn + b"\x00" * 6 + b"\xde\xad\xbe\xef")])
    got, _ = read_all(path)
    assert got[0][1] == syn


def test_a_lying_ip_length_is_left_for_the_engine(tmp_path: Path) -> None:
    # total length larger than the frame: not trimmed, not padded; the engine will drop it.
    bad = bytearray(bytes(IP(src="10.0.0.2", dst="192.168.9.2") / UDP()))
    bad[2:4] = (200).to_bytes(2, "big")
    assert strip_link_layer(1, bytes(Ether(type=0x0800)) + bytes(bad)) == bytes(bad)
    # raw IP is handed over unchanged even when it is not IP at all.
    assert strip_link_layer(LINKTYPE_RAW, b"\x00\x01") == b"\x00\x01"


# --------------------------------------------------------------------------------------------------
# Timestamps and byte orders


def test_nanosecond_pcap(tmp_path: Path) -> None:
    from scapy.utils import PcapWriter as ScapyWriter

    path = tmp_path / "nano.pcap"
    w = ScapyWriter(str(path), nano=True, linktype=LINKTYPE_RAW)
    pkt = IP(PACKETS[0])
    pkt.time = 1700000000.123456789
    w.write(pkt)
    w.close()
    got, _ = read_all(path)
    assert got[0][0] == pytest.approx(1700000000.123456789, abs=1e-8)


def test_big_endian_pcap(tmp_path: Path) -> None:
    path = tmp_path / "be.pcap"
    body = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    for ts, p in zip(TIMES, PACKETS):
        sec, usec = divmod(round(ts * 1_000_000), 1_000_000)
        body += struct.pack(">IIII", sec, usec, len(p), len(p)) + p
    path.write_bytes(body)
    got, _ = read_all(path)
    assert_same(got)


def test_snap_length_cut_packets_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    big = bytes(IP(src="10.0.0.2", dst="192.168.9.2") / UDP() / Raw(b"x" * 200))
    # scapy writes whole packets whatever the snap length: write the cut record by hand.
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 96, LINKTYPE_RAW)
    path.write_bytes(header + struct.pack("<IIII", 1, 0, 96, len(big)) + big[:96])
    reader = CaptureReader(path)
    got = list(reader)
    reader.close()
    assert len(got[0][1]) == 96
    assert reader.stats.snapped == 1


def test_truncated_file_keeps_the_complete_records(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    with PcapWriter(path) as w:
        for ts, p in zip(TIMES, PACKETS):
            w.write(p, ts)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    got, stats = read_all(path)
    assert [p for _, p in got] == PACKETS[:2]
    assert stats.truncated_file


def test_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"hello world, not a capture")
    with pytest.raises(CaptureError, match="not a pcap or pcapng"):
        CaptureReader(path)


def test_unsupported_linktype_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "wifi.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 105))
    with pytest.raises(CaptureError, match="unsupported link type 105"):
        list(read_packets(path))


# --------------------------------------------------------------------------------------------------
# pcapng


def test_pcapng_from_scapy(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    w = PcapNgWriter(str(path))
    for f in stamped([Ether() / IP(PACKETS[0]), Ether() / IP(PACKETS[1]), Ether() / IPv6(PACKETS[2])]):
        w.write(f)
    w.close()
    reader = CaptureReader(path)
    assert reader.format == "pcapng"
    got = list(reader)
    reader.close()
    assert_same(got)


def _idb(linktype: int, tsresol: int | None = None, tsoffset: int | None = None, le: bool = True):
    opt = ng.PcapngOptionLE if le else ng.PcapngOption
    opts = []
    if tsresol is not None:
        opts.append(opt(code=ng.PCAPNG_OPT_IF_TSRESOL, data=bytes([tsresol])))
    if tsoffset is not None:
        opts.append(opt(code=ng.PCAPNG_OPT_IF_TSOFFSET, data=tsoffset.to_bytes(8, "little" if le else "big")))
    if opts:
        opts.append(opt(code=ng.PCAPNG_OPT_ENDOFOPT))
    cls = ng.InterfaceDescriptionBlockLE if le else ng.InterfaceDescriptionBlock
    return cls(linktype=linktype, snaplen=65535, opts=opts)


def _epb(iface: int, ticks: int, data: bytes, le: bool = True):
    cls = ng.EnhancedPacketBlockLE if le else ng.EnhancedPacketBlock
    return cls(iface_id=iface, ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF, pkt_data=data)


@pytest.mark.parametrize("le", [True, False], ids=["little-endian", "big-endian"])
def test_pcapng_interfaces_with_their_own_linktype_and_resolution(tmp_path: Path, le: bool) -> None:
    # Interface 0: Ethernet in microseconds; 1: raw IP in nanoseconds; 2: SLL in 1/1024 s with an
    # offset. dpkt's own pcapng reader would apply interface 0's settings to all three.
    shb = ng.SectionHeaderBlockLE() if le else ng.SectionHeaderBlock()
    blocks = [
        shb,
        _idb(1, le=le),
        _idb(LINKTYPE_RAW, tsresol=9, le=le),
        _idb(113, tsresol=0x80 | 10, tsoffset=1000, le=le),
        _epb(0, round(TIMES[0] * 1e6), bytes(Ether() / IP(PACKETS[0])), le),
        _epb(1, round(TIMES[1] * 1e9), PACKETS[1], le),
        _epb(2, round((TIMES[2] - 1000) * 1024), bytes(CookedLinux(proto=0x86DD) / IPv6(PACKETS[2])), le),
    ]
    path = tmp_path / "multi.pcapng"
    path.write_bytes(b"".join(bytes(b) for b in blocks))
    got, stats = read_all(path)
    assert_same(got)
    assert stats.linktypes == {1, 101, 113}


def test_pcapng_second_section_resets_interfaces(tmp_path: Path) -> None:
    first = [
        ng.SectionHeaderBlockLE(),
        _idb(1),
        _epb(0, round(TIMES[0] * 1e6), bytes(Ether() / IP(PACKETS[0]))),
    ]
    second = [
        ng.SectionHeaderBlock(),
        _idb(LINKTYPE_RAW, le=False),
        _epb(0, round(TIMES[1] * 1e6), PACKETS[1], False),
    ]
    path = tmp_path / "two.pcapng"
    path.write_bytes(b"".join(bytes(b) for b in first + second))
    got, _ = read_all(path)
    assert_same(got, PACKETS[:2])


def test_pcapng_simple_packet_block_takes_the_previous_time(tmp_path: Path) -> None:
    p = PACKETS[1]
    pad = (-len(p)) % 4
    spb = (
        struct.pack("<III", 3, 16 + len(p) + pad, len(p))
        + p
        + b"\x00" * pad
        + struct.pack("<I", 16 + len(p) + pad)
    )
    blocks = [
        bytes(ng.SectionHeaderBlockLE()),
        bytes(_idb(LINKTYPE_RAW)),
        bytes(_epb(0, round(TIMES[0] * 1e6), PACKETS[0])),
        spb,
    ]
    path = tmp_path / "spb.pcapng"
    path.write_bytes(b"".join(blocks))
    got, _ = read_all(path)
    assert [x for _, x in got] == PACKETS[:2]
    assert got[1][0] == got[0][0]


# --------------------------------------------------------------------------------------------------
# Writing: readable by dpkt, scapy and tcpdump


def test_writer_output_is_read_by_dpkt_scapy_and_us(tmp_path: Path) -> None:
    path = tmp_path / "out.pcap"
    with PcapWriter(path) as w:
        for ts, p in zip(TIMES, PACKETS):
            w.write(bytearray(p), ts)
        assert w.count == 3
    with open(path, "rb") as f:
        r = dpkt.pcap.Reader(f)
        assert r.datalink() == LINKTYPE_RAW
        assert [bytes(b) for _, b in r] == PACKETS
    scapy_pkts = rdpcap(str(path))
    assert [bytes(p) for p in scapy_pkts] == PACKETS
    assert [float(p.time) for p in scapy_pkts] == pytest.approx(TIMES, abs=1e-6)
    assert_same(read_all(path)[0])


def test_writer_rounds_timestamps_near_the_next_second(tmp_path: Path) -> None:
    path = tmp_path / "edge.pcap"
    with PcapWriter(path) as w:
        w.write(PACKETS[0], 1000.9999997)
    with PcapReader(str(path)) as r:
        (pkt,) = list(r)
    assert float(pkt.time) == pytest.approx(1001.0, abs=1e-6)
    # The record's microseconds field must stay below one million for tcpdump and libpcap.
    usec = struct.unpack_from(
        "<I" if path.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1" else ">I", path.read_bytes(), 28
    )[0]
    assert usec < 1_000_000


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_writer_output_is_read_by_tcpdump(tmp_path: Path) -> None:
    path = tmp_path / "out.pcap"
    with PcapWriter(path) as w:
        for ts, p in zip(TIMES, PACKETS):
            w.write(p, ts)
    out = subprocess.run(
        ["tcpdump", "-nn", "-tt", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(out) == 3
    assert out[0].startswith("1329843161.968492 IP 10.0.0.2.38003 > 192.168.9.2.21: Flags [S]")
    assert "IP6 2001:db8::2.5353 > 2001:db8:1::9.53" in out[2]


@settings(max_examples=50, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=4e9, allow_nan=False),
            st.binary(min_size=0, max_size=300),
        ),
        max_size=10,
    )
)
def test_any_bytes_round_trip_through_raw_pcap(tmp_path_factory, records) -> None:
    path = tmp_path_factory.mktemp("rt") / "rt.pcap"
    with PcapWriter(path) as w:
        for ts, data in records:
            w.write(data, ts)
    got = list(read_packets(path))
    assert [d for _, d in got] == [d for _, d in records]
    assert [t for t, _ in got] == pytest.approx([t for t, _ in records], abs=1e-6)


def test_real_capture_reads_completely(zeek_ftp_ipv4: Path) -> None:
    got, stats = read_all(zeek_ftp_ipv4)
    assert len(got) == 95 and stats.non_ip == 0 and not stats.truncated_file
    # Every packet is a whole IPv4 datagram: its total length matches after stripping Ethernet.
    assert all(p[0] >> 4 == 4 and int.from_bytes(p[2:4], "big") == len(p) for _, p in got)
    assert [t for t, _ in got] == sorted(t for t, _ in got)
