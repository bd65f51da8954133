"""TUN devices for the live firewall: opening one inside a network namespace, with offloads.

A TUN is created in (or attached from) the network namespace of the thread that opens
``/dev/net/tun``, and the file descriptor keeps working after the thread switches back, so the
firewall process stays in its own namespace and reaches into others only for the ``open`` and the
ioctls (``enter_netns``). Python 3.11 has no ``os.setns``; ``setns(2)`` is called through ctypes and,
like the system call, affects only the calling thread.

Offloads (packet-io.md, recommendation 1): ``IFF_VNET_HDR`` prefixes every packet with a
``virtio_net_hdr`` and ``TUNSETOFFLOAD(CSUM|TSO4|TSO6|TSO_ECN[|USO4|USO6])`` lets the kernel hand over
64 KB super-packets with partial checksums instead of cutting them first. USO is asked for and
dropped when the kernel refuses it (Linux < 6.2). Without offloads the device is plain
``IFF_TUN|IFF_NO_PI``, and ``TUNSETOFFLOAD(0)`` is still issued because a persistent device keeps the
offloads a previous owner set, which would otherwise hand super-packets to a reader without a header.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .vnet import VNET_HDR_LEN

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/var/run/netns"

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_MULTI_QUEUE = 0x0100  # one queue per open file (statewall run --workers: statewall.live.workers)
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
OFFLOAD_TSO = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
OFFLOAD_USO = TUN_F_USO4 | TUN_F_USO6

# linux/sockios.h
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCSIFTXQLEN = 0x8943
IFF_UP = 0x1

IFNAMSIZ = 16
_IFREQ = struct.Struct("16sH22x")  # struct ifreq with ifr_flags (short)
_IFREQ_INT = struct.Struct("16si20x")  # struct ifreq with ifr_mtu / ifr_qlen (int)

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(netns: str) -> str:
    """``/var/run/netns/NAME`` for a name as ``ip netns`` knows it; a path is returned unchanged."""
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def enter_netns(netns: str | None) -> Iterator[None]:
    """Run the body with the calling thread in network namespace ``netns`` (None: stay where we are).

    The thread's own namespace is saved from ``/proc/thread-self`` (not ``/proc/self``, which is the
    main thread's) and restored even when the body raises.
    """
    if netns is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(own)


@dataclass(slots=True)
class Tun:
    """An open TUN device. ``offloads`` holds the TUN_F_* flags the kernel accepted (0 without)."""

    fd: int
    name: str
    netns: str | None
    vnet_hdr: bool
    offloads: int
    mtu: int

    @property
    def header_len(self) -> int:
        return VNET_HDR_LEN if self.vnet_hdr else 0

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def describe(self) -> str:
        where = f"{self.name}@{self.netns}" if self.netns else self.name
        return f"{where} mtu {self.mtu} {describe_offloads(self.offloads) if self.vnet_hdr else 'no-offload'}"


def describe_offloads(offloads: int) -> str:
    names = [
        (TUN_F_CSUM, "csum"), (TUN_F_TSO4, "tso4"), (TUN_F_TSO6, "tso6"), (TUN_F_TSO_ECN, "tso-ecn"),
        (TUN_F_USO4, "uso4"), (TUN_F_USO6, "uso6"),
    ]  # fmt: skip
    return "offload " + ("+".join(n for bit, n in names if offloads & bit) or "none")


def open_tun(
    name: str,
    netns: str | None = None,
    *,
    offload: bool = True,
    up: bool = True,
    mtu: int | None = None,
    txqueuelen: int | None = None,
    persist: bool | None = None,
    nonblocking: bool = True,
    multi_queue: bool = False,
) -> Tun:
    """Open (creating if needed) TUN device ``name`` in namespace ``netns``.

    ``offload`` selects ``IFF_VNET_HDR`` with TSO/USO; otherwise plain ``IFF_TUN|IFF_NO_PI``.
    ``persist`` True/False sets or clears ``TUNSETPERSIST`` (None leaves it as it is); ``up``, ``mtu``
    and ``txqueuelen`` configure the link from inside its namespace. ``multi_queue`` opens one more
    queue of a multi-queue device (``IFF_MULTI_QUEUE``; each open is a queue, numbered in the order
    they were attached); a device is multi-queue or not from its creation on.
    """
    if not name or len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"bad interface name {name!r} (1 to {IFNAMSIZ - 1} bytes)")
    flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0) | (IFF_MULTI_QUEUE if multi_queue else 0)
    with enter_netns(netns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if nonblocking else 0))
        try:
            ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
            actual = _IFREQ.unpack(ifr)[0].rstrip(b"\0").decode()
            accepted = _set_offloads(fd, offload)
            if persist is not None:
                fcntl.ioctl(fd, TUNSETPERSIST, int(persist))
            # The socket belongs to the namespace it was created in, so the link ioctls reach the TUN.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                if mtu is not None:
                    fcntl.ioctl(s, SIOCSIFMTU, _IFREQ_INT.pack(actual.encode(), mtu))
                if txqueuelen is not None:
                    fcntl.ioctl(s, SIOCSIFTXQLEN, _IFREQ_INT.pack(actual.encode(), txqueuelen))
                if up:
                    cur = _IFREQ.unpack(fcntl.ioctl(s, SIOCGIFFLAGS, _IFREQ.pack(actual.encode(), 0)))[1]
                    if not cur & IFF_UP:
                        fcntl.ioctl(s, SIOCSIFFLAGS, _IFREQ.pack(actual.encode(), cur | IFF_UP))
                cur_mtu = _IFREQ_INT.unpack(fcntl.ioctl(s, SIOCGIFMTU, _IFREQ_INT.pack(actual.encode(), 0)))[
                    1
                ]
        except BaseException:
            os.close(fd)
            raise
    return Tun(fd, actual, netns, offload, accepted, cur_mtu)


def _set_offloads(fd: int, offload: bool) -> int:
    if not offload:
        fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        return 0
    for want in (OFFLOAD_TSO | OFFLOAD_USO, OFFLOAD_TSO):
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, want)
            return want
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    return TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6


def create_persistent(
    name: str,
    netns: str | None = None,
    *,
    mtu: int | None = None,
    txqueuelen: int | None = None,
    up: bool = True,
    multi_queue: bool = False,
) -> None:
    """Create a persistent TUN (as ``ip tuntap add mode tun [multi_queue]``) that ``statewall run``
    attaches to later, so that routes can point at it before the firewall starts."""
    tun = open_tun(
        name,
        netns,
        offload=False,
        up=up,
        mtu=mtu,
        txqueuelen=txqueuelen,
        persist=True,
        multi_queue=multi_queue,
    )
    tun.close()
