"""Test-only helpers: three network namespaces a <-> fw <-> b joined by veth pairs, and AF_PACKET I/O.

Used by the kernel differential tests (tests/test_tcptrack_kernel.py) to let the real kernel's conntrack
judge the same packets as statewall. Nothing here is product code: the product's lab lives in
``statewall.lab``. Every namespace name is unique to the process (``sw-<pid>-<rand>-a``), so parallel
runs do not collide, and ``Lab.close`` removes them (their veths go with them).

Sockets are opened *inside* a namespace (``setns`` on the calling thread) and stay bound to it after
the thread switches back, so one test process can inject in ``a``/``b`` and capture in ``fw``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import shutil
import socket
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_HOST = 0
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33

_libc = ctypes.CDLL(None, use_errno=True)


def missing_prerequisites() -> str | None:
    """Why the namespace lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"needs the `{tool}` command"
    return None


def sh(*args: str, check: bool = True, timeout: float = 20.0, input: str | None = None) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {res.returncode}: {res.stderr.strip()}")
    return res.stdout


@contextlib.contextmanager
def in_netns(name: str):
    """Run the body with the calling thread inside network namespace ``name``."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(there, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns(back): {os.strerror(err)}")
    finally:
        os.close(here)
        os.close(there)


class Lab:
    """a (10.77.1.1) -- a0|fa (10.77.1.254) -- fw -- fb (10.77.2.254)|b0 -- b (10.77.2.1).

    ``fw`` forwards and runs the kernel's conntrack with an nftables ruleset that counts and drops
    ``ct state invalid`` in FORWARD. ``ghost_a``/``ghost_b`` are addresses no stack owns; ``fw`` has
    permanent neighbour entries for them, so crafted packets to them are forwarded and then silently
    discarded by the end namespace (not forwarding, not local) without any RST perturbing the test.
    """

    A_NET, B_NET = "10.77.1", "10.77.2"
    a_ip, fa_ip, fb_ip, b_ip = "10.77.1.1", "10.77.1.254", "10.77.2.254", "10.77.2.1"
    ghost_a, ghost_b = "10.77.1.100", "10.77.2.100"
    MACS = {
        "a0": "02:77:00:00:01:01",
        "fa": "02:77:00:00:01:fe",
        "fb": "02:77:00:00:02:fe",
        "b0": "02:77:00:00:02:01",
    }

    def __init__(self) -> None:
        tag = f"sw-{os.getpid()}-{secrets.token_hex(3)}"
        self.a, self.fw, self.b = f"{tag}-a", f"{tag}-fw", f"{tag}-b"
        self._made: list[str] = []

    # -- building and tearing down -----------------------------------------------------------------

    def open(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        for ns in (self.a, self.fw, self.b):
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
        sh("ip", "-n", self.a, "link", "add", "a0", "type", "veth", "peer", "name", "fa", "netns", self.fw)
        sh("ip", "-n", self.b, "link", "add", "b0", "type", "veth", "peer", "name", "fb", "netns", self.fw)
        for ns, dev, addr in (
            (self.a, "a0", f"{self.a_ip}/24"),
            (self.fw, "fa", f"{self.fa_ip}/24"),
            (self.fw, "fb", f"{self.fb_ip}/24"),
            (self.b, "b0", f"{self.b_ip}/24"),
        ):
            sh("ip", "-n", ns, "link", "set", dev, "address", self.MACS[dev])
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            # Real checksums on the wire, so captured packets are what a replay would see.
            if shutil.which("ethtool"):
                sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", check=False)
        for ns in (self.a, self.fw, self.b):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
            self.sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")
            self.sysctl(ns, "net.ipv4.conf.default.rp_filter", "0")
        self.sysctl(self.a, "net.ipv4.ip_forward", "0")
        self.sysctl(self.b, "net.ipv4.ip_forward", "0")
        self.sysctl(self.fw, "net.ipv4.ip_forward", "1")
        self.sysctl(self.fw, "net.ipv4.conf.all.send_redirects", "0")
        sh("ip", "-n", self.a, "route", "add", "default", "via", self.fa_ip)
        sh("ip", "-n", self.b, "route", "add", "default", "via", self.fb_ip)
        for ip, dev, mac in (
            (self.ghost_a, "fa", self.MACS["a0"]),
            (self.a_ip, "fa", self.MACS["a0"]),
            (self.ghost_b, "fb", self.MACS["b0"]),
            (self.b_ip, "fb", self.MACS["b0"]),
        ):
            sh("ip", "-n", self.fw, "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent")
        sh("ip", "-n", self.a, "neigh", "replace", self.fa_ip, "lladdr", self.MACS["fa"], "dev", "a0")
        sh("ip", "-n", self.b, "neigh", "replace", self.fb_ip, "lladdr", self.MACS["fb"], "dev", "b0")
        self.nft(
            self.fw,
            """
            table inet sw {
                chain guard {
                    type filter hook forward priority 0; policy accept;
                    meta l4proto tcp ct state invalid counter drop
                }
            }
            """,
        )

    def close(self) -> None:
        for ns in reversed(self._made):
            sh("ip", "netns", "del", ns, check=False)
        self._made.clear()

    def __enter__(self) -> Lab:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- knobs ---------------------------------------------------------------------------------------

    @staticmethod
    def sysctl(ns: str, key: str, value: str) -> None:
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}")

    @staticmethod
    def nft(ns: str, ruleset: str) -> None:
        sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=ruleset)

    def conntrack_settings(self, **values: int) -> None:
        """Set ``net.netfilter.nf_conntrack_<name>`` in fw (e.g. ``tcp_be_liberal=1``)."""
        for name, value in values.items():
            self.sysctl(self.fw, f"net.netfilter.nf_conntrack_{name}", str(int(value)))

    def invalid_drops(self) -> int:
        out = sh("ip", "netns", "exec", self.fw, "nft", "list", "chain", "inet", "sw", "guard")
        for line in out.splitlines():
            if "ct state invalid" in line and "packets" in line:
                words = line.split()
                return int(words[words.index("packets") + 1])
        raise RuntimeError(f"invalid-drop counter not found in:\n{out}")

    def conntrack_table(self) -> list[dict]:
        """fw's TCP conntrack entries from /proc/net/nf_conntrack: tuple, state, timeout, flags."""
        out = sh("ip", "netns", "exec", self.fw, "cat", "/proc/net/nf_conntrack")
        rows = []
        for line in out.splitlines():
            w = line.split()
            if len(w) < 6 or w[2] != "tcp":
                continue
            kv = [x.split("=", 1) for x in w if "=" in x]
            rows.append(
                {
                    "timeout": int(w[4]),
                    "state": w[5],
                    "src": kv[0][1],
                    "dst": kv[1][1],
                    "sport": int(kv[2][1]),
                    "dport": int(kv[3][1]),
                    "assured": "[ASSURED]" in w,
                }
            )
        return rows

    # -- packet I/O ----------------------------------------------------------------------------------

    def injector(self, side: str) -> socket.socket:
        """An AF_PACKET socket on a0 (``side='a'``) or b0 that sends whole Ethernet frames to fw."""
        ns, dev = (self.a, "a0") if side == "a" else (self.b, "b0")
        with in_netns(ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((dev, 0))
        return s

    def eth_header(self, side: str) -> bytes:
        src, dst = (self.MACS["a0"], self.MACS["fa"]) if side == "a" else (self.MACS["b0"], self.MACS["fb"])
        return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00"


class Capture:
    """Every IPv4 TCP/ICMP frame on fw's interfaces, in the order the kernel handled them.

    One AF_PACKET socket for all of fw's interfaces: packets received on fa/fb (PACKET_HOST) are what
    entered fw, packets sent on them (PACKET_OUTGOING) what left. A single socket keeps one order.
    """

    def __init__(self, lab: Lab) -> None:
        with in_netns(lab.fw):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self.records: list[tuple[str, int, bytes]] = []  # (ifname, pkttype, IP packet)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fw-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self.sock
        while not self._stop.is_set():
            r, _, _ = select.select([sock], [], [], 0.05)
            if not r:
                continue
            while True:
                try:
                    data, addr = sock.recvfrom(70000, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                ifname, proto, pkttype = addr[0], addr[1], addr[2]
                if ifname not in ("fa", "fb") or proto != ETH_P_IP:
                    continue
                ip = data[14:]
                if len(ip) < 28 or ip[9] not in (1, 6):  # TCP, and ICMP for the tests' markers
                    continue
                with self._lock:
                    self.records.append((ifname, pkttype, ip))

    def snapshot(self) -> list[tuple[str, int, bytes]]:
        with self._lock:
            return list(self.records)

    def wait_for(self, pred, timeout: float) -> bool:
        """Wait (bounded) until ``pred(records)`` is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if pred(self.records):
                    return True
            time.sleep(0.002)
        with self._lock:
            return pred(self.records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def packet_key(ip: bytes) -> bytes:
    """What identifies one IPv4 packet on both sides of fw: everything forwarding does not change.

    TTL and the IP header checksum change; addresses, IP id and the whole TCP segment do not (no NAT).
    """
    ihl = (ip[0] & 15) * 4
    tot = int.from_bytes(ip[2:4], "big")
    return ip[4:6] + ip[12:20] + ip[ihl:tot]
