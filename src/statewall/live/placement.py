"""CPU placement: where the firewall and the kernel's work for its packets run (``statewall run --cpu``
and ``--steer-cpus``; not the ``--workers`` queue steering of ``statewall.live.steer``).

A packet ``statewall run`` writes into a TUN is received by the kernel in that ``write()``: the
TUN's receive path hands it to the stack at once, and the stack forwards it to the next hop — and on
a veth into a host namespace goes on into that host's TCP (a SYN's listener lookup and SYN-ACK, a
FIN's close) — all on the firewall's CPU, charged to the firewall's process. Where the kernel
forwards by itself, the same work runs in the sending host's context, on the sender's CPU.

Receive Packet Steering (RPS, Documentation/networking/scaling.rst) moves it: with a CPU mask in
``/sys/class/net/<tun>/queues/rx-<n>/rps_cpus`` the TUN's receive path queues the packet to the
backlog of a CPU of the mask (chosen by the flow's hash, so one flow stays in order on one CPU) and
that CPU does the rest in its softirq. ``--steer-cpus`` sets that mask on every queue of every bound
TUN and puts the previous one back when the firewall stops (a persistent TUN keeps it otherwise);
``--cpu`` pins the firewall's process to one CPU, so that the two do not share one.

The sysfs of a TUN in another network namespace is that namespace's: a helper process enters it,
mounts its own sysfs in a mount namespace of its own, and reads and writes the masks there.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
from collections.abc import Iterable

from .tun import CLONE_NEWNET, netns_path

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)


def parse_cpus(text: str) -> frozenset[int]:
    """A CPU list as the kernel writes them (``0``, ``0,2-3``) as a set; ValueError if malformed."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"{text!r} is not a CPU list (such as 0 or 0,2-3)")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"{part!r}: the range ends before it starts")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def rps_mask(cpus: Iterable[int]) -> str:
    """The hexadecimal mask ``rps_cpus`` takes: 32-bit groups separated by commas, as the kernel
    prints it (``bitmap_parse``)."""
    bits = 0
    for cpu in cpus:
        bits |= 1 << cpu
    digits = f"{bits:x}"
    groups = []
    while len(digits) > 8:
        groups.append(digits[-8:])
        digits = digits[:-8]
    groups.append(digits)
    return ",".join(reversed(groups))


def check_cpus(cpus: frozenset[int], what: str) -> None:
    """ValueError unless every CPU of ``cpus`` is one this process may run on."""
    allowed = os.sched_getaffinity(0)
    if not cpus:
        raise ValueError(f"{what}: no CPU given")
    missing = sorted(cpus - allowed)
    if missing:
        have = ",".join(str(c) for c in sorted(allowed))
        raise ValueError(f"{what}: no CPU {','.join(map(str, missing))} here (this process may use {have})")


def pin(cpu: int) -> None:
    """Run the calling thread, and the threads it starts from now on, on ``cpu`` only."""
    os.sched_setaffinity(0, {cpu})


def set_rps(device: str, netns: str | None, mask: str | None) -> dict[str, str]:
    """Set ``rps_cpus`` of every receive queue of ``device`` (in ``netns``) to ``mask`` (None: only
    read them); the masks they had, by queue. OSError when the device or its sysfs cannot be reached."""
    return _in_sysfs(netns, device, {} if mask is None else {"*": mask})


def restore_rps(device: str, netns: str | None, previous: dict[str, str]) -> None:
    """Put back the masks ``set_rps`` returned."""
    _in_sysfs(netns, device, previous)


def _queues_dir(device: str) -> str:
    if not device or "/" in device or device in (".", ".."):
        raise ValueError(f"bad interface name {device!r}")
    return f"/sys/class/net/{device}/queues"


def _apply(device: str, writes: dict[str, str]) -> dict[str, str]:
    """In the sysfs of the current namespace: each rx queue's mask before, after writing ``writes``
    (``*``: every queue)."""
    base = _queues_dir(device)
    before = {}
    for q in sorted(os.listdir(base)):
        if not q.startswith("rx-"):
            continue
        path = f"{base}/{q}/rps_cpus"
        with open(path) as f:
            before[q] = f.read().strip()
        mask = writes.get(q, writes.get("*"))
        if mask is not None:
            with open(path, "w") as f:
                f.write(mask)
    return before


def _in_sysfs(netns: str | None, device: str, writes: dict[str, str]) -> dict[str, str]:
    _queues_dir(device)  # the name checked before anything runs
    if netns is None:
        return _apply(device, writes)
    target = netns_path(netns)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper: never returns
        code = 1
        try:
            os.close(r)
            out = _child(target, device, writes)
            os.write(w, out.encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            with contextlib.suppress(OSError):
                os.write(w, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    try:
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    data = json.loads(b"".join(chunks) or b'{"error": "the helper said nothing"}')
    if "error" in data:
        raise OSError(f"{device}@{netns}: {data['error']}")
    return data["before"]


def _child(target: str, device: str, writes: dict[str, str]) -> str:
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    # Our mounts stay ours: nothing propagates back to the namespace the firewall runs in.
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if _libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount sysfs")
    return json.dumps({"before": _apply(device, writes)})
