"""pcap and pcapng files: reading captures as bare IP packets, writing raw-IP captures.

This module owns the file side of replay: telling pcap from pcapng by the magic number, timestamps
(pcap micro- and nanosecond files, pcapng per-interface ``if_tsresol`` / ``if_tsoffset``), and
stripping the link layer so the engine only ever sees IP packets (its contract takes no L2 header).
dpkt provides the file and block structures; the loops over them are ours because dpkt's pcapng
reader only honours the first interface of a file, and we need the per-record original length to
count packets cut short by the capture's snap length. A well-formed Enhanced Packet Block is read
with struct (``_epb``), as dpkt would read it, at a fifth of the cost.

Frames that carry no IP packet (ARP, LLDP, ...) are skipped and counted in ``ReadStats``; packets that
are malformed *as IP* are passed on unchanged, because judging them is the engine's job (it drops
and counts them under a reason).
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, Self

import dpkt
import dpkt.pcap
import dpkt.pcapng

# Link types as they appear in files (LINKTYPE_*, tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108  # OpenBSD loopback: same header in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW's platform values (12 on most, 14 on OpenBSD) still turn up in files written by old tools.
_LINKTYPES_RAW = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})

SUPPORTED_LINKTYPES = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2}
    | _LINKTYPES_RAW
)

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
# 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100: each adds a 4-byte tag before the real type.
_ETH_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
# Address-family values for IPv6 differ between BSDs (24 NetBSD/OpenBSD, 28 FreeBSD, 30 Darwin) and
# Linux uses 10; IPv4 is 2 everywhere.
_AF_IP = frozenset({2, 10, 24, 28, 30})

_PCAPNG_MAGIC = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
_PCAP_NANO_MAGICS = frozenset({dpkt.pcap.TCPDUMP_MAGIC_NANO, dpkt.pcap.PMUDPCT_MAGIC_NANO})
# A record claiming more than this is a corrupt file, not a packet (libpcap rejects > 256 KiB too).
_MAX_RECORD = 16 * 1024 * 1024


class CaptureError(Exception):
    """The file is not a capture we can read (unknown format, unsupported link type, corrupt)."""


@dataclass(slots=True)
class ReadStats:
    """What reading a capture found, for the replay summary.

    ``frames``: records read; ``ip``: IP packets yielded; ``non_ip``: frames skipped because they
    carry no IP packet; ``unsupported_linktype``: frames skipped because their interface's link type
    is not one we strip; ``snapped``: IP packets yielded shorter than on the wire (snap length);
    ``truncated_file``: the file ended inside a record.
    """

    frames: int = 0
    ip: int = 0
    non_ip: int = 0
    unsupported_linktype: int = 0
    snapped: int = 0
    truncated_file: bool = False
    linktypes: set[int] = field(default_factory=set)

    def to_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "ip": self.ip,
            "non_ip": self.non_ip,
            "unsupported_linktype": self.unsupported_linktype,
            "snapped": self.snapped,
            "truncated_file": self.truncated_file,
            "linktypes": sorted(self.linktypes),
        }


# --------------------------------------------------------------------------------------------------
# Link layers


def _trim_to_ip_length(ip: bytes) -> bytes:
    """Cut link-layer trailers (Ethernet padding to 60 bytes, an FCS) past the IP datagram's end.

    A receiving host does the same (Linux ``ip_rcv`` trims the skb to ``tot_len``). Only a length
    that is plausible and shorter than the buffer is applied; anything else is left for the engine
    to judge.
    """
    n = len(ip)
    if n < 4:
        return ip
    version = ip[0] >> 4
    if version == 4:
        total = (ip[2] << 8) | ip[3]
        if 20 <= total < n:
            return ip[:total]
    elif version == 6 and n >= 6:
        payload = (ip[4] << 8) | ip[5]
        # payload length 0 means a jumbogram (length in a hop-by-hop option): leave it whole.
        if payload and 40 + payload < n:
            return ip[: 40 + payload]
    return ip


def _ethertype_payload(frame: bytes, type_offset: int) -> bytes | None:
    """The IP packet after an EtherType at ``type_offset``, skipping VLAN tags; None if not IP."""
    off = type_offset
    while True:
        if len(frame) < off + 2:
            return None
        ethertype = (frame[off] << 8) | frame[off + 1]
        if ethertype in _ETH_VLAN:
            off += 4
            continue
        if ethertype in (_ETH_IPV4, _ETH_IPV6):
            return _trim_to_ip_length(frame[off + 2 :])
        return None


def strip_link_layer(linktype: int, frame: bytes) -> bytes | None:
    """Return the IP packet carried by ``frame`` of link type ``linktype``, or None if it is not IP.

    Raw-IP link types are returned unchanged (even if the version nibble is wrong: that is a
    malformed IP packet, which the engine drops and counts).
    """
    if linktype in _LINKTYPES_RAW:
        return frame
    if linktype == LINKTYPE_ETHERNET:
        return _ethertype_payload(frame, 12)
    if linktype == LINKTYPE_LINUX_SLL:
        # 16-byte cooked header: packet type, ARPHRD type, address length, 8-byte address, protocol.
        return _ethertype_payload(frame, 14)
    if linktype == LINKTYPE_LINUX_SLL2:
        # 20-byte cooked header starting with the protocol type; the payload starts at 20.
        if len(frame) < 20:
            return None
        proto = (frame[0] << 8) | frame[1]
        if proto in _ETH_VLAN:
            return _ethertype_payload(frame, 20 + 2)
        if proto in (_ETH_IPV4, _ETH_IPV6):
            return _trim_to_ip_length(frame[20:])
        return None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return None
        # DLT_NULL is in the writer's byte order, which the file does not record: accept either.
        family_le = int.from_bytes(frame[:4], "little")
        family_be = int.from_bytes(frame[:4], "big")
        if family_le in _AF_IP or family_be in _AF_IP:
            return _trim_to_ip_length(frame[4:])
        return None
    raise CaptureError(f"unsupported link type {linktype}")


# --------------------------------------------------------------------------------------------------
# Reading


@dataclass(slots=True)
class _PcapngInterface:
    linktype: int
    divisor: float
    offset: float
    snaplen: int


class CaptureReader:
    """A pcap or pcapng file read as ``(timestamp, ip_bytes)`` in file order.

    ``format`` is ``"pcap"`` or ``"pcapng"``; ``stats`` fills in while iterating; ``position`` and
    ``size`` (bytes) let a caller show progress without counting packets first.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.stats = ReadStats()
        # The capture's snap length (pcap file header, pcapng interface: 0 there means none), and
        # whether the packet just yielded was cut short by it.
        self.snaplen: int | None = None
        self.last_snapped = False
        # The opt_comment of the pcapng packet block just read (None without one).
        self.last_comment: str | None = None
        self._f: BinaryIO = open(self.path, "rb")  # noqa: SIM115 -- closed by close()/__exit__
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            head = self._f.read(4)
            self._f.seek(0)
            if len(head) < 4:
                raise CaptureError(f"{self.path}: not a pcap or pcapng file (too short)")
            magic_be = int.from_bytes(head, "big")
            if magic_be == _PCAPNG_MAGIC:
                self.format = "pcapng"
            elif magic_be in dpkt.pcap.MAGIC_TO_PKT_HDR:
                self.format = "pcap"
            else:
                raise CaptureError(f"{self.path}: not a pcap or pcapng file (magic 0x{magic_be:08x})")
        except BaseException:
            self._f.close()
            raise

    @property
    def position(self) -> int:
        return self._f.tell() if not self._f.closed else self.size

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        stats = self.stats
        for ts, linktype, frame, wire_len in self.frames():
            if linktype not in SUPPORTED_LINKTYPES:
                stats.unsupported_linktype += 1
                continue
            ip = strip_link_layer(linktype, frame)
            if ip is None:
                stats.non_ip += 1
                continue
            stats.ip += 1
            snapped = self.last_snapped = len(frame) < wire_len
            if snapped:
                stats.snapped += 1
            yield ts, ip

    def frames(self) -> Iterator[tuple[float, int, bytes, int]]:
        """Every record as ``(timestamp, linktype, frame bytes, original length on the wire)``."""
        if self.format == "pcap":
            return self._pcap_frames()
        return self._pcapng_frames()

    def _read(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes, or None (and a note in stats) when the file ends inside a record."""
        buf = self._f.read(n)
        if len(buf) < n:
            if buf:
                self.stats.truncated_file = True
            return None
        return buf

    def _pcap_frames(self) -> Iterator[tuple[float, int, bytes, int]]:
        head = self._read(dpkt.pcap.FileHdr.__hdr_len__)
        if head is None:
            raise CaptureError(f"{self.path}: truncated pcap file header")
        magic = int.from_bytes(head[:4], "big")
        # The magic read big-endian tells the byte order the writer used.
        little = magic in (dpkt.pcap.PMUDPCT_MAGIC, dpkt.pcap.PMUDPCT_MAGIC_NANO, dpkt.pcap.PACPDOM_MAGIC)
        fh = dpkt.pcap.LEFileHdr(head) if little else dpkt.pcap.FileHdr(head)
        # The upper 16 bits of the link-type field carry FCS flags, not the link type.
        linktype = fh.linktype & 0xFFFF
        self.stats.linktypes.add(linktype)
        self.snaplen = fh.snaplen or None
        if linktype not in SUPPORTED_LINKTYPES:
            raise CaptureError(f"{self.path}: unsupported link type {linktype}")
        # dpkt keys record-header classes (byte order, Kuznetzov's longer header) by the magic read
        # big-endian; we take the record length from it but unpack the four common fields with one
        # precompiled struct, since building a dpkt header object per record costs more than
        # everything else the reader does.
        hdr_len = dpkt.pcap.MAGIC_TO_PKT_HDR[magic].__hdr_len__
        unpack = struct.Struct("<IIII" if little else ">IIII").unpack_from
        divisor = 1e9 if magic in _PCAP_NANO_MAGICS else 1e6
        stats = self.stats
        read = self._read
        while True:
            raw = read(hdr_len)
            if raw is None:
                return
            sec, frac, caplen, wire_len = unpack(raw)
            if caplen > _MAX_RECORD:
                raise CaptureError(f"{self.path}: corrupt record (caplen {caplen}) at {self._f.tell()}")
            frame = read(caplen)
            if frame is None:
                return
            stats.frames += 1
            yield sec + frac / divisor, linktype, frame, max(wire_len, caplen)

    def _pcapng_frames(self) -> Iterator[tuple[float, int, bytes, int]]:
        ng = dpkt.pcapng
        little = True
        interfaces: list[_PcapngInterface] = []
        last_ts = 0.0
        stats = self.stats
        while True:
            head = self._read(8)
            if head is None:
                return
            block_type = int.from_bytes(head[:4], "little" if little else "big")
            if block_type == _PCAPNG_MAGIC:
                # A new section may change byte order and always starts a new interface list.
                bom = self._read(4)
                if bom is None:
                    return
                little = int.from_bytes(bom, "little") == _PCAPNG_BOM
                if not little and int.from_bytes(bom, "big") != _PCAPNG_BOM:
                    raise CaptureError(f"{self.path}: bad pcapng byte-order magic")
                head += bom
                interfaces = []
            order = "little" if little else "big"
            block_len = int.from_bytes(head[4:8], order)
            if block_len < 12 or block_len % 4 or block_len > _MAX_RECORD:
                raise CaptureError(f"{self.path}: corrupt pcapng block (length {block_len})")
            rest = self._read(block_len - len(head))
            if rest is None:
                return
            buf = head + rest
            if block_type == ng.PCAPNG_BT_IDB:
                idb = ng.InterfaceDescriptionBlockLE(buf) if little else ng.InterfaceDescriptionBlock(buf)
                interfaces.append(_idb_interface(idb, order))
                self.snaplen = idb.snaplen or self.snaplen
                stats.linktypes.add(idb.linktype)
            elif block_type == ng.PCAPNG_BT_EPB or block_type == ng.PCAPNG_BT_PB:
                epb = _epb(buf, little) if block_type == ng.PCAPNG_BT_EPB else None
                if epb is not None:
                    iface_id, ts_high, ts_low, caplen, pkt_len, pkt_data, self.last_comment = epb
                else:
                    if block_type == ng.PCAPNG_BT_EPB:
                        blk = ng.EnhancedPacketBlockLE(buf) if little else ng.EnhancedPacketBlock(buf)
                    else:
                        blk = ng.PacketBlockLE(buf) if little else ng.PacketBlock(buf)
                    iface_id, ts_high, ts_low = blk.iface_id, blk.ts_high, blk.ts_low
                    caplen, pkt_len, pkt_data = blk.caplen, blk.pkt_len, bytes(blk.pkt_data)
                    self.last_comment = _comment(blk.opts)
                if iface_id >= len(interfaces):
                    raise CaptureError(f"{self.path}: packet for undeclared interface {iface_id}")
                itf = interfaces[iface_id]
                last_ts = itf.offset + ((ts_high << 32) | ts_low) / itf.divisor
                stats.frames += 1
                yield last_ts, itf.linktype, pkt_data, max(pkt_len, caplen)
            elif block_type == ng.PCAPNG_BT_SPB:
                # Simple Packet Block: interface 0, no timestamp (keep the previous one's time).
                if not interfaces:
                    raise CaptureError(f"{self.path}: simple packet block before any interface")
                itf = interfaces[0]
                wire_len = int.from_bytes(buf[8:12], order)
                caplen = min(wire_len, block_len - 16, itf.snaplen or wire_len)
                stats.frames += 1
                self.last_comment = None
                yield last_ts, itf.linktype, bytes(buf[12 : 12 + caplen]), wire_len
            # Other blocks (name resolution, statistics, custom) carry nothing we replay.


_EPB_FIELDS = {True: struct.Struct("<IIIII"), False: struct.Struct(">IIIII")}
_OPT_FIELDS = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}
_BLOCK_LENGTH = {True: struct.Struct("<I"), False: struct.Struct(">I")}


def _epb(buf: bytes, little: bool) -> tuple[int, int, int, int, int, bytes, str | None] | None:
    """An Enhanced Packet Block's (interface, timestamp high and low, captured and original length,
    packet data, first opt_comment) read with struct (pcapng spec, section 4.3), as dpkt reads it; None
    for a block dpkt should read itself: one whose data overruns its options, whose lengths disagree
    or whose options end inside an option header or hold a comment that is not UTF-8 (dpkt's
    answers there, errors included, stay the reader's). A dpkt block object per packet costs more
    than everything else of reading it."""
    n = len(buf)
    if n < 32:
        return None
    iface_id, ts_high, ts_low, caplen, pkt_len = _EPB_FIELDS[little].unpack_from(buf, 8)
    opts = 28 + ((caplen + 3) & ~3)
    stop = n - 4
    if opts > stop or _BLOCK_LENGTH[little].unpack_from(buf, stop)[0] != n:
        return None
    comment = None
    pos = opts
    unpack_opt = _OPT_FIELDS[little].unpack_from
    while pos < stop:
        if stop - pos < 4:
            return None
        code, length = unpack_opt(buf, pos)
        if code == dpkt.pcapng.PCAPNG_OPT_COMMENT and comment is None:
            try:
                comment = buf[pos + 4 : min(pos + 4 + length, stop)].decode()
            except UnicodeDecodeError:
                return None
        pos += 4 + length + (-length % 4)
        if code == dpkt.pcapng.PCAPNG_OPT_ENDOFOPT:
            break
    return iface_id, ts_high, ts_low, caplen, pkt_len, buf[28 : 28 + caplen], comment


def _comment(opts) -> str | None:
    """The first opt_comment of a block dpkt read."""
    text = next((o.text for o in opts if o.code == dpkt.pcapng.PCAPNG_OPT_COMMENT), None)
    return text.decode() if isinstance(text, bytes) else text


def _idb_interface(idb: dpkt.pcapng.InterfaceDescriptionBlock, order: str) -> _PcapngInterface:
    divisor = 1e6  # pcapng's default resolution is microseconds
    offset = 0.0
    for opt in idb.opts:
        if opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            v = opt.data[0]
            # MSB clear: negative power of 10; set: negative power of 2.
            divisor = float(2 ** (v & 0x7F)) if v & 0x80 else float(10 ** (v & 0x7F))
        elif opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) >= 8:
            offset = float(int.from_bytes(opt.data[:8], order, signed=True))
    return _PcapngInterface(idb.linktype, divisor, offset, idb.snaplen)


def read_packets(
    path: str | os.PathLike[str], stats: ReadStats | None = None
) -> Iterator[tuple[float, bytes]]:
    """Yield ``(timestamp, ip_bytes)`` for every IP packet of a pcap/pcapng file, in file order.

    ``stats``, when given, is filled in with what was read and skipped.
    """
    with CaptureReader(path) as reader:
        if stats is not None:
            reader.stats = stats
        yield from reader


# --------------------------------------------------------------------------------------------------
# Writing


class _Writer:
    """What both capture writers share: the open file, its packet count, closing it (also as a context
    manager)."""

    _f: BinaryIO
    count: int

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def flush(self) -> None:
        """What was written, on disk for a reader (a live view reading a recording)."""
        if not self._f.closed:
            self._f.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PcapWriter(_Writer):
    """Write packets to a classic pcap file (microsecond timestamps), by default as raw IP.

    Classic pcap rather than pcapng because every tool reads it (tcpdump, Wireshark, scapy, dpkt), and
    raw IP (LINKTYPE_RAW) because the firewall works at layer 3: there are no MAC addresses to invent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        linktype: int = LINKTYPE_RAW,
        snaplen: int = 262144,
        *,
        opener=None,
    ) -> None:
        self.path = os.fspath(path)
        self.count = 0
        # ``opener(path)``: how to open the file (``open_private`` for captures the firewall writes).
        self._f: BinaryIO = opener(self.path) if opener is not None else open(self.path, "wb")  # noqa: SIM115
        self._w = dpkt.pcap.Writer(self._f, snaplen=snaplen, linktype=linktype)

    def write(self, data: bytes | bytearray | memoryview, ts: float) -> None:
        # dpkt computes microseconds as round(frac * 1e6), which gives 1000000 for a fraction above
        # .9999995; rounding to the microsecond first keeps the record valid.
        self._w.writepkt(bytes(data), ts=round(ts, 6))
        self.count += 1


_EPB_HEAD = struct.Struct("<IIIIIII")
_OPT_HEAD = struct.Struct("<HH")
_BLOCK_TAIL = struct.Struct("<I")


class PcapngWriter(_Writer):
    """Write packets to a pcapng file (raw IP, microsecond timestamps), each with an optional comment.

    The comment is the packet's ``opt_comment`` option, which Wireshark shows as the packet's comment
    (``pkt_comment`` in its filters): replay writes the connection id and the verdict there.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        linktype: int = LINKTYPE_RAW,
        snaplen: int = 262144,
        *,
        opener=None,
    ) -> None:
        self.path = os.fspath(path)
        self.count = 0
        self._f: BinaryIO = opener(self.path) if opener is not None else open(self.path, "wb")  # noqa: SIM115
        idb = dpkt.pcapng.InterfaceDescriptionBlockLE(snaplen=snaplen, linktype=linktype)
        # dpkt writes the section header and the interface (microsecond timestamps, the default).
        dpkt.pcapng.Writer(self._f, shb=dpkt.pcapng.SectionHeaderBlockLE(), idb=[idb])

    def write(self, data: bytes | bytearray | memoryview, ts: float, comment: str | None = None) -> None:
        # The Enhanced Packet Block packed here (pcapng spec, section 4.3; dpkt's block objects cost
        # several times the packet's own handling): interface 0, microseconds, data padded to 32 bits,
        # then opt_comment and opt_endofopt.
        us = round(ts * 1_000_000)
        n = len(data)
        pad = -n % 4
        opts = b""
        if comment:
            text = comment.encode()
            opts = _OPT_HEAD.pack(1, len(text)) + text + b"\0" * (-len(text) % 4) + b"\0\0\0\0"
        total = 32 + n + pad + len(opts)
        f = self._f
        f.write(_EPB_HEAD.pack(6, total, 0, us >> 32, us & 0xFFFFFFFF, n, n))
        f.write(data)
        f.write(b"\0" * pad + opts + _BLOCK_TAIL.pack(total))
        self.count += 1


def read_comments(path: str | os.PathLike[str]) -> list[tuple[float, bytes, str | None]]:
    """(time, packet, comment) for each packet of a pcapng file written by ``PcapngWriter``."""
    with CaptureReader(path) as reader:
        return [(ts, frame, reader.last_comment) for ts, _linktype, frame, _wire in reader.frames()]


def open_private(path: str | os.PathLike[str]) -> BinaryIO:
    """Create (or truncate) ``path`` for writing as its owner only (0600), never through a symbolic link.

    The last component is opened with ``O_NOFOLLOW`` inside its directory, itself opened with
    ``O_NOFOLLOW | O_DIRECTORY``, so a link planted at either place makes the open fail instead of
    writing through it; an existing file must be a regular file with one link (a hard link to another
    file is refused too), and is set to 0600 whatever it was. Used for captures the firewall writes as
    root on an operator's request.
    """
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(name, flags, 0o600, dir_fd=dfd)
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        if st.st_nlink != 1:
            raise OSError(f"{path}: has {st.st_nlink} links; refusing to write through a hard link")
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise
