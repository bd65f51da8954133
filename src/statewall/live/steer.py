"""TUN queue steering for ``statewall run --workers N``: a BPF program per TUN that sends every packet
to the queue (worker) owning its inside host.

A multi-queue TUN (``IFF_MULTI_QUEUE``) has one queue per open file; a packet the kernel sends into the
TUN goes to the queue that ``TUNSETSTEERINGEBPF``'s program returns, modulo the number of queues
(``tun_ebpf_select_queue`` in ``drivers/net/tun.c``). Without a program the kernel hashes the 5-tuple
(``tun_automq_select_queue``), with a per-boot random seed: a host's connections would spread over
workers, and a reply after NAT could not be predicted (docs/scale.md). The program here decides from
the packet and the configuration only, so it needs no state and keeps working for idle connections:

1. An ICMP error is steered by the packet it quotes (its source, destination and ports), as
   ``scale/shardkey.py`` does.
2. A destination (then a source) that is a translated address seen on this interface names its real
   host: a PAT address by the port's block (``(port >> 9)``: worker ``block % N`` allocated it, see
   ``nat.port_owner`` and ``NatTable.port_share``), a dynamic NAT pool's ``i``-th address by ``i`` (the
   worker ``i % N`` hands it out), a static's mapped address by the hash of its real address.
3. Otherwise the inside host decides, as in the sharded replay: the end routed to the interface of the
   higher security level (the source when the destination's route has the lower level, the
   destination when it has the higher one, the source for the firewall's own addresses and for
   addresses without a route); between ends of equal level a symmetric hash of both addresses, so that
   both directions meet (the replay's initiator table needs state a BPF program does not keep).

The host's hash is ``host_hash`` (a multiplicative hash of the address, the upper 16 bits): the kernel
takes the returned value modulo the number of queues. IPv6 packets get the symmetric hash of both
addresses (no route lookup on 128-bit prefixes here, and no IPv6 translation); IP fragments after the
first are steered by their addresses alone (they carry no ports).

The program is written as eBPF instructions (``BPF_PROG_TYPE_SOCKET_FILTER``, ``BPF_LD_ABS``/``IND``
loads relative to the IP header, which is where a TUN's packet starts) and loaded with ``bpf(2)`` through
ctypes: no compiler or BPF library is needed. ``test_run`` runs it on a packet with
``BPF_PROG_TEST_RUN`` (the tests compare it with ``expected_queue``).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import struct
from typing import Any

from ..routing import RouteTable

# linux/if_tun.h
IFF_MULTI_QUEUE = 0x0100
TUNSETSTEERINGEBPF = 0x800454E0  # _IOR('T', 224, int)

# linux/bpf.h
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_TYPE_SOCKET_FILTER = 1
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}

# Instruction classes, sizes, modes, operations.
_LD, _LDX, _ST, _STX, _ALU, _JMP, _JMP32, _ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
_W, _H, _B = 0x00, 0x08, 0x10
_ABS, _IND, _MEM = 0x20, 0x40, 0x60
_K, _X = 0x00, 0x08
_ADD, _MUL, _AND, _LSH, _RSH, _XOR, _MOV = 0x00, 0x20, 0x50, 0x60, 0x70, 0xA0, 0xB0
_JA, _JEQ, _JGT, _JNE, _EXIT = 0x00, 0x10, 0x20, 0x50, 0x90

HASH_MULT = 0x9E3779B1  # Knuth's multiplicative constant (2^32 / golden ratio)
_ICMP4_ERRORS = (3, 4, 5, 11, 12)
PORT_SHIFT = 9  # nat.PORT_BLOCK_BITS


def host_hash(addr32: int) -> int:
    """The steering hash of a 32-bit key (an IPv4 address, or two XORed): the queue is this modulo the
    number of queues."""
    return ((addr32 * HASH_MULT) & 0xFFFFFFFF) >> 16


def fold6(addr: int) -> int:
    """A 128-bit address folded to 32 bits (the XOR of its words), as the program does."""
    return (addr ^ addr >> 32 ^ addr >> 64 ^ addr >> 96) & 0xFFFFFFFF


class _Asm:
    """A list of eBPF instructions with named labels for jumps."""

    def __init__(self) -> None:
        self.code: list[list] = []  # [opcode, dst, src, off or label, imm]
        self.labels: dict[str, int] = {}

    def op(self, code: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self.code.append([code, dst, src, off, imm])

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"label {name} twice")
        self.labels[name] = len(self.code)

    # The few forms the program uses.
    def ld_abs(self, size: int, off: int) -> None:
        self.op(_LD | _ABS | size, imm=off)

    def ld_ind(self, size: int, reg: int, off: int) -> None:
        self.op(_LD | _IND | size, src=reg, imm=off)

    def alu(self, op: int, dst: int, imm: int) -> None:  # 32-bit
        self.op(_ALU | op | _K, dst, imm=_s32(imm))

    def alu_r(self, op: int, dst: int, src: int) -> None:
        self.op(_ALU | op | _X, dst, src)

    def jeq(self, reg: int, imm: int, label: str) -> None:  # 32-bit compare
        self.op(_JMP32 | _JEQ | _K, reg, off=label, imm=_s32(imm))

    def jne(self, reg: int, imm: int, label: str) -> None:
        self.op(_JMP32 | _JNE | _K, reg, off=label, imm=_s32(imm))

    def jgt_r(self, dst: int, src: int, label: str) -> None:
        self.op(_JMP32 | _JGT | _X, dst, src, off=label)

    def ja(self, label: str) -> None:
        self.op(_JMP | _JA, off=label)

    def store(self, slot: int, reg: int) -> None:  # *(u32 *)(r10 - slot) = reg
        self.op(_STX | _MEM | _W, 10, reg, off=-slot)

    def store_imm(self, slot: int, imm: int) -> None:
        self.op(_ST | _MEM | _W, 10, off=-slot, imm=imm)

    def load(self, reg: int, slot: int) -> None:
        self.op(_LDX | _MEM | _W, reg, 10, off=-slot)

    def ret(self, imm: int) -> None:
        self.op(_ALU64 | _MOV | _K, 0, imm=imm)
        self.op(_JMP | _EXIT)

    def assemble(self) -> bytes:
        """The instructions as bytes, without those no path reaches (the verifier refuses them)."""
        code, labels = self.code, self.labels

        def target(i: int) -> int:
            off = code[i][3]
            return labels[off] if isinstance(off, str) else i + 1 + off

        seen: set[int] = set()
        todo = [0]
        while todo:
            i = todo.pop()
            if i in seen or i >= len(code):
                continue
            seen.add(i)
            op = code[i][0]
            if op & 0x07 in (_JMP, _JMP32):
                if op == _JMP | _EXIT:
                    continue
                todo.append(target(i))
                if op == _JMP | _JA:
                    continue
            todo.append(i + 1)
        index, n = {}, 0
        for i in range(len(code)):
            index[i] = n
            n += i in seen
        out = bytearray()
        for i, (op, dst, src, off, imm) in enumerate(code):
            if i not in seen:
                continue
            if op & 0x07 in (_JMP, _JMP32) and op != _JMP | _EXIT:
                off = index[target(i)] - index[i] - 1
            out += struct.pack("<BBhi", op, (src << 4) | dst, off, imm)
        return bytes(out)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


# Stack slots (bytes below r10): the protocol, and the ports of the two ends (0 when there are none).
_PROTO, _SPORT, _DPORT, _LOUT, _QUOTED = 4, 8, 12, 16, 20
_R0, _R1, _R6, _R7, _R8, _R9 = 0, 1, 6, 7, 8, 9


def _tables(fw: Any, iface: str) -> tuple[list, list, list, list, list]:
    """The IPv4 parts of the configuration the program of ``iface`` tests: (one-to-one pool addresses
    with their index, PAT addresses, static (mapped, real, protocol, mapped port) address pairs, local
    addresses, routes as (network, prefix length, security level) longest first)."""
    policy = fw.policy
    view = fw.nat.steering_view(list(policy.interfaces))
    one = [(a, i) for v, a, i, m in view["one_to_one"] if v == 4 and m in (None, iface)]
    pat = sorted({a for v, a, m in view["pat"] if v == 4 and m in (None, iface)})
    statics = []
    for v, mapped, real, proto, mport, m_iface, r_iface in view["static"]:
        if v != 4 or m_iface not in (None, iface) or r_iface == iface:
            continue
        for lo, hi in mapped.spans:
            if hi - lo >= 4096:
                continue  # a mapped network this large is steered as untranslated (docs/scale.md)
            for a in range(lo, hi + 1):
                statics.append((a, real.at(mapped.index(a)), proto, mport))
    local = []
    for itf in policy.interfaces.values():
        local += [int(a.ip) for a in itf.ipv4]
    levels = {n: i.security_level for n, i in policy.interfaces.items()}
    routes = [
        (e.network, e.prefixlen, levels.get(e.interface, 0))
        for e in RouteTable(policy).entries()
        if e.version == 4
    ]
    return one, pat, statics, local, routes


def program(fw: Any, iface: str) -> bytes:
    """The steering program of the TUN bound to ``iface``, for the engine ``fw`` (its compiled policy)."""
    one, pat, statics, local, routes = _tables(fw, iface)
    levels = {n: i.security_level for n, i in fw.policy.interfaces.items()}
    a = _Asm()
    a.op(_ALU64 | _MOV | _X, _R6, 1)  # ctx in r6, as LD_ABS/LD_IND require
    a.ld_abs(_B, 0)
    a.alu(_RSH, _R0, 4)
    a.jeq(_R0, 6, "v6")
    a.jne(_R0, 4, "zero")
    # IPv4: r7 source, r8 destination, r9 the transport header's offset.
    a.ld_abs(_W, 12)
    a.op(_ALU64 | _MOV | _X, _R7, _R0)
    a.ld_abs(_W, 16)
    a.op(_ALU64 | _MOV | _X, _R8, _R0)
    a.ld_abs(_B, 0)
    a.alu(_AND, _R0, 0xF)
    a.alu(_LSH, _R0, 2)
    a.op(_ALU64 | _MOV | _X, _R9, _R0)
    a.ld_abs(_B, 9)
    a.store(_PROTO, _R0)
    a.ld_abs(_H, 6)
    a.alu(_AND, _R0, 0x1FFF)
    a.jeq(_R0, 0, "first")
    a.store_imm(_PROTO, 0)  # a later fragment: no ports
    a.label("first")
    a.store_imm(_QUOTED, 0)
    # An ICMP error: the packet it quotes instead (at r9 + 8).
    a.load(_R0, _PROTO)
    a.jne(_R0, 1, "ports")
    a.ld_ind(_B, _R9, 0)
    for t in _ICMP4_ERRORS:
        a.jeq(_R0, t, "quoted")
    a.ja("ports")
    a.label("quoted")
    a.store_imm(_QUOTED, 1)
    a.ld_ind(_W, _R9, 8 + 12)
    a.op(_ALU64 | _MOV | _X, _R7, _R0)
    a.ld_ind(_W, _R9, 8 + 16)
    a.op(_ALU64 | _MOV | _X, _R8, _R0)
    a.ld_ind(_B, _R9, 8 + 9)
    a.store(_PROTO, _R0)
    a.ld_ind(_B, _R9, 8)
    a.alu(_AND, _R0, 0xF)
    a.alu(_LSH, _R0, 2)
    a.alu(_ADD, _R0, 8)
    a.alu_r(_ADD, _R0, _R9)
    a.op(_ALU64 | _MOV | _X, _R9, _R0)
    # Ports (an ICMP echo's identifier for both) into the stack.
    a.label("ports")
    a.store_imm(_SPORT, 0)
    a.store_imm(_DPORT, 0)
    a.load(_R0, _PROTO)
    a.jeq(_R0, 6, "tcpudp")
    a.jeq(_R0, 17, "tcpudp")
    a.jne(_R0, 1, "translated")
    a.ld_ind(_H, _R9, 4)
    a.store(_SPORT, _R0)
    a.store(_DPORT, _R0)
    a.ja("translated")
    a.label("tcpudp")
    a.ld_ind(_H, _R9, 0)
    a.store(_SPORT, _R0)
    a.ld_ind(_H, _R9, 2)
    a.store(_DPORT, _R0)
    # Translated addresses: the destination's, then the source's (a quoted packet's source).
    a.label("translated")
    for reg, port_slot, end in ((_R8, _DPORT, "d"), (_R7, _SPORT, "s")):
        for n, (addr, _index) in enumerate(one):
            a.jeq(reg, addr, f"one{end}{n}")
        for addr in pat:
            a.jeq(reg, addr, f"pat{end}")
        for n, (addr, _real, proto, mport) in enumerate(statics):
            skip = f"st{end}{n}"
            a.jne(reg, addr, skip)
            if proto is not None:
                a.load(_R0, _PROTO)
                a.jne(_R0, proto, skip)
                if mport is not None:
                    a.load(_R0, port_slot)
                    a.jne(_R0, mport, skip)
            a.op(_ALU64 | _MOV | _K, _R0, imm=_s32(host_hash(_real)))
            a.op(_JMP | _EXIT)
            a.label(skip)
    a.ja("levels")
    for end, port_slot in (("d", _DPORT), ("s", _SPORT)):
        for n, (_addr, index) in enumerate(one):
            a.label(f"one{end}{n}")
            a.ret(index & 0xFFFF)
        a.label(f"pat{end}")
        a.load(_R0, port_slot)
        a.alu(_RSH, _R0, PORT_SHIFT)
        a.op(_JMP | _EXIT)
    # The inside host by the security levels of the routes to both ends.
    a.label("levels")
    for addr in local:
        a.jeq(_R8, addr, "key_src")
    own = levels.get(iface, 0)
    lvls = sorted({lvl for _n, _p, lvl in routes} | {own})
    for end, reg in (("d", _R8), ("s", _R7)):
        if end == "s":
            # The source of a packet that arrived here is on this interface's side; a quoted packet's
            # went the other way: its route says where.
            a.op(_ALU64 | _MOV | _K, _R0, imm=own)
            a.load(_R1, _QUOTED)
            a.jeq(_R1, 0, "lvsdone")
        for net, plen, lvl in routes:
            a.op(_ALU64 | _MOV | _X, _R0, reg)
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
            a.alu(_AND, _R0, mask)
            a.jeq(_R0, net, f"lv{end}{lvl}")
        if end == "d":
            a.ja("key_src")  # no route to the destination: the source's
        else:
            a.ja(f"lv{end}{own}")  # no route back to a quoted source: this interface's side
        for lvl in lvls:
            a.label(f"lv{end}{lvl}")
            a.op(_ALU64 | _MOV | _K, _R0, imm=lvl)
            a.ja(f"lv{end}done")
        a.label(f"lv{end}done")
        if end == "d":
            a.store(_LOUT, _R0)
    a.load(_R1, _LOUT)  # r1 = level(dst), r0 = level(src)
    a.jgt_r(_R0, _R1, "key_src")
    a.jgt_r(_R1, _R0, "key_dst")
    a.op(_ALU64 | _MOV | _X, _R0, _R7)
    a.alu_r(_XOR, _R0, _R8)
    a.ja("hash")
    a.label("key_src")
    a.op(_ALU64 | _MOV | _X, _R0, _R7)
    a.ja("hash")
    a.label("key_dst")
    a.op(_ALU64 | _MOV | _X, _R0, _R8)
    a.ja("hash")
    # IPv6: the symmetric hash of both addresses folded to 32 bits.
    a.label("v6")
    a.op(_ALU64 | _MOV | _K, _R7, imm=0)
    for off in range(8, 40, 4):
        a.ld_abs(_W, off)
        a.alu_r(_XOR, _R7, _R0)
    a.op(_ALU64 | _MOV | _X, _R0, _R7)
    a.label("hash")
    a.alu(_MUL, _R0, HASH_MULT)
    a.alu(_RSH, _R0, 16)
    a.op(_JMP | _EXIT)
    a.label("zero")
    a.ret(0)
    return a.assemble()


# --------------------------------------------------------------------------------------------------
# bpf(2) through ctypes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(0, f"bpf(2): system call number unknown on {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err)}")
    return ret


def load(code: bytes, name: str = "statewall_steer") -> int:
    """Load a socket-filter program; its file descriptor. A refusal by the verifier raises OSError with
    the verifier's log."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "<IIQQIIQII16s",
        attr,
        0,
        BPF_PROG_TYPE_SOCKET_FILTER,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(lic),
        1,
        len(log),
        ctypes.addressof(log),
        0,
        0,
        name.encode()[:15],
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        text = log.value.decode(errors="replace").strip().splitlines()[-8:]
        raise OSError(exc.errno, f"{exc.strerror}: " + " | ".join(text)) from None


def attach(tun_fd: int, prog_fd: int) -> None:
    """Make ``prog_fd`` the steering program of the multi-queue TUN that ``tun_fd`` is a queue of."""
    fcntl.ioctl(tun_fd, TUNSETSTEERINGEBPF, struct.pack("i", prog_fd))


def test_run(prog_fd: int, packet: bytes) -> int:
    """Run the program on one IP packet (behind an Ethernet header, as ``BPF_PROG_TEST_RUN`` wants for
    a socket filter: it pulls the link header off before running it); its return value."""
    eth = b"\0" * 12 + (b"\x86\xdd" if packet[0] >> 4 == 6 else b"\x08\x00")
    data = ctypes.create_string_buffer(eth + packet, 14 + len(packet))
    attr = ctypes.create_string_buffer(80)
    struct.pack_into("<IIIIQQI", attr, 0, prog_fd, 0, len(data), 0, ctypes.addressof(data), 0, 1)
    _bpf(BPF_PROG_TEST_RUN, attr)
    return struct.unpack_from("<I", attr, 4)[0]
