"""The standard lab topology: hosts on each side of a firewall namespace that forwards through TUNs.

::

    inside host            firewall namespace                         outside host
    eth0 192.168.1.10 ---- v-inside   t-inside ==statewall== t-outside   v-outside ---- eth0 203.0.113.2
         gw 192.168.1.1    (proxy ARP)                                   (proxy ARP)

Owns how the hosts reach the firewall. Each firewall interface (ASA ``nameif``) gets a host namespace,
a veth pair ``eth0`` <-> ``v-<name>`` and a persistent TUN ``t-<name>`` in the firewall namespace,
which ``statewall run --bind <name>=t-<name>@<fw netns>`` attaches to. In the firewall namespace the
kernel only steers packets: a policy rule per interface sends everything that arrives on ``v-<name>``
into ``t-<name>`` (the engine sees it arriving on ``<name>``), and what the engine writes into a TUN
is routed by the main table out of the veth of the destination's side. The firewall's own addresses
(its interface addresses, PAT and static mappings) are not configured anywhere: proxy ARP on the
veths answers for every address whose route leads into a TUN, so hosts use the firewall's address
as their gateway as they would on a real segment. The veths carry a plumbing address (the highest
free host address of the side's network) only so that the namespace's kernel can resolve neighbours.
IPv6 (``Side.firewall6``/``host6``) works the same way with proxy NDP for the firewall's addresses.
"""

from __future__ import annotations

import ipaddress
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .netns import Lab, LabError, Namespace, terminate

FIRST_TABLE = 100

_NO_MLD_INTO_TUNS = """\
table ip6 sw_quiet {
  chain out { type filter hook output priority 0; policy accept;
    oifname "t-*" icmpv6 type { mld-listener-report, mld2-listener-report, nd-router-solicit } drop
  }
}
"""


@dataclass(slots=True)
class Side:
    """One firewall interface and the host behind it.

    ``firewall`` is the firewall's address with prefix (``192.168.1.1/24``, as in the configuration),
    ``host`` the host's address in the same network. ``mtu`` is the veth's; ``advmss`` is put on the
    host's routes (the MSS the host advertises in its SYN-ACKs); ``gateway`` makes the firewall the
    host's default route. ``firewall6``/``host6`` add IPv6 the same way (``2001:db8:1::1/64``); there
    proxy NDP answers for ``firewall6`` and for each address in ``proxy6`` (static mappings).
    """

    name: str
    firewall: str
    host: str
    mtu: int = 1500
    advmss: int | None = None
    gateway: bool = True
    firewall6: str | None = None
    host6: str | None = None
    proxy6: tuple[str, ...] = ()

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_interface(self.firewall).network

    @property
    def firewall_ip(self) -> str:
        return str(ipaddress.ip_interface(self.firewall).ip)

    @property
    def firewall6_ip(self) -> str | None:
        return str(ipaddress.ip_interface(self.firewall6).ip) if self.firewall6 else None

    @property
    def tun(self) -> str:
        return f"t-{self.name}"[:15]

    @property
    def veth(self) -> str:
        return f"v-{self.name}"[:15]


INSIDE = Side("inside", "192.168.1.1/24", "192.168.1.10")
OUTSIDE = Side("outside", "203.0.113.1/24", "203.0.113.2")


def asa_interface(number: int, side: Side, security_level: int) -> str:
    """``side`` as the PIX/ASA configuration's ``interface Ethernet<number>`` with its nameif,
    security level and address (the configuration that the lab's ``--bind <name>=...`` serves)."""
    address = ipaddress.ip_interface(side.firewall)
    return (
        f"interface Ethernet{number}\n nameif {side.name}\n security-level {security_level}\n"
        f" ip address {address.ip} {address.netmask}\n"
    )


# The standard two sides as a configuration's interfaces: outside (security 0) on Ethernet0, inside
# (security 100) on Ethernet1. The scenarios and the live tests build their configurations on it.
ASA_INTERFACES = asa_interface(0, OUTSIDE, 0) + asa_interface(1, INSIDE, 100)


class FirewallTopology:
    """Builds the standard topology in ``lab`` and runs ``statewall run`` on it."""

    def __init__(
        self,
        lab: Lab,
        sides: Sequence[Side] = (INSIDE, OUTSIDE),
        *,
        tun_mtu: int = 1500,
        txqueuelen: int = 10000,
        multi_queue: bool = False,
    ) -> None:
        if len({s.name for s in sides}) != len(sides):
            raise ValueError("two sides with the same name")
        self.lab = lab
        self.sides = {s.name: s for s in sides}
        self.tun_mtu = tun_mtu
        self.txqueuelen = txqueuelen
        # Multi-queue TUNs, for statewall run --workers N (one queue per worker).
        self.multi_queue = multi_queue
        self.fw: Namespace | None = None
        self.hosts: dict[str, Namespace] = {}
        self.firewall: subprocess.Popen | None = None
        self.firewall_output: list[str] = []
        self._reader: threading.Thread | None = None

    def build(self) -> FirewallTopology:
        lab = self.lab
        fw = self.fw = lab.netns("fw")
        fw.sysctl("net.ipv4.ip_forward", 1)
        # The kernel here only steers; it must not filter by source or redirect hosts around us.
        for key in ("all", "default"):
            fw.sysctl(f"net.ipv4.conf.{key}.rp_filter", 0)
            fw.sysctl(f"net.ipv4.conf.{key}.send_redirects", 0)
        if any(side.firewall6 for side in self.sides.values()):
            # Before the TUNs exist: writing all.forwarding resets every device's own setting.
            fw.sysctl("net.ipv6.conf.all.forwarding", 1)
            # The namespace's kernel reports its multicast groups (MLD, from ::) on every link that has
            # IPv6, the TUNs included; the engine would see and drop them. Only locally generated
            # packets pass the output hook, so forwarded traffic is untouched.
            fw.run(["nft", "-f", "-"], input=_NO_MLD_INTO_TUNS, timeout=10)
        for i, side in enumerate(self.sides.values()):
            host = self.hosts[side.name] = lab.netns(side.name)
            lab.veth(host, "eth0", fw, side.veth, mtu=side.mtu)
            prefix = side.network.prefixlen
            host.addr("eth0", f"{side.host}/{prefix}")
            if side.gateway:
                host.route("default", via=side.firewall_ip, advmss=side.advmss)
            elif side.advmss is not None:
                host.route(str(side.network), dev="eth0", advmss=side.advmss)
            fw.addr(side.veth, f"{self._plumbing_address(side)}/{prefix}")
            fw.sysctl(f"net.ipv4.conf.{side.veth}.proxy_arp", 1)
            # Proxy ARP replies are otherwise delayed by up to 0.8 s (proxy_delay), which loses the
            # first packets of a short test to a host that gives up early.
            fw.sysctl(f"net.ipv4.neigh.{side.veth}.proxy_delay", 0)
            fw.sysctl(f"net.ipv4.conf.{side.veth}.rp_filter", 0)
            fw.tun(
                side.tun,
                mtu=self.tun_mtu,
                txqueuelen=self.txqueuelen,
                ipv6=side.firewall6 is not None,
                multi_queue=self.multi_queue,
            )
            fw.sysctl(f"net.ipv4.conf.{side.tun}.rp_filter", 0)
            fw.route("default", dev=side.tun, table=FIRST_TABLE + i)
            fw.rule(iif=side.veth, table=FIRST_TABLE + i, priority=1000 + i)
            if side.firewall6:
                self._build_ipv6(i, side, host)
        return self

    def _build_ipv6(self, i: int, side: Side, host: Namespace) -> None:
        fw = self.fw
        assert fw is not None and side.firewall6 and side.host6
        net6 = ipaddress.ip_interface(side.firewall6).network
        # Addresses must be usable at once: no duplicate address detection on a two-ended link.
        host.sysctl("net.ipv6.conf.eth0.accept_dad", 0)
        fw.sysctl(f"net.ipv6.conf.{side.veth}.accept_dad", 0)
        host.addr("eth0", f"{side.host6}/{net6.prefixlen}")
        if side.gateway:
            host.route("default", via=side.firewall6_ip, advmss=side.advmss, family=6)
        taken = {ipaddress.ip_address(side.firewall6_ip), ipaddress.ip_address(side.host6)}
        plumbing = next(a for a in (net6[-2], net6[-3]) if a not in taken)
        fw.addr(side.veth, f"{plumbing}/{net6.prefixlen}")
        fw.sysctl(f"net.ipv6.conf.{side.veth}.proxy_ndp", 1)
        for addr in (side.firewall6_ip, *side.proxy6):
            fw.run(["ip", "-6", "neigh", "add", "proxy", addr, "dev", side.veth])
        fw.route("default", dev=side.tun, table=FIRST_TABLE + i, family=6)
        fw.rule(iif=side.veth, table=FIRST_TABLE + i, priority=1000 + i, family=6)

    @staticmethod
    def _plumbing_address(side: Side) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        taken = {ipaddress.ip_address(side.firewall_ip), ipaddress.ip_address(side.host)}
        net = side.network
        candidate = net.broadcast_address - 1 if net.version == 4 else net[-2]
        while candidate in taken:
            candidate -= 1
        if candidate not in net or candidate == net.network_address:
            raise LabError(f"no free address for the firewall namespace in {net}")
        return candidate

    def host(self, name: str) -> Namespace:
        return self.hosts[name]

    def binds(self) -> list[str]:
        """``--bind`` arguments for ``statewall run``."""
        assert self.fw is not None, "build() first"
        return [f"{s.name}={s.tun}@{self.fw.name}" for s in self.sides.values()]

    # ---- the firewall process ------------------------------------------------------------------

    def start_firewall(
        self,
        config: str,
        *,
        offload: bool = True,
        extra: Sequence[str] = (),
        log_file: str | None = None,
        log_format: str = "asa",
        timeout: float = 20,
    ) -> subprocess.Popen:
        """Start ``statewall run`` on this topology and wait until it forwards.

        It runs in the lab's own namespace (it reaches into the firewall namespace only to open the
        TUNs). Its stdout is collected in ``firewall_output``; events go to ``log_file``.
        """
        argv = [sys.executable, "-m", "statewall.cli", "run", "-c", config]
        for b in self.binds():
            argv += ["--bind", b]
        if not offload:
            argv.append("--no-offload")
        if log_file is not None:
            argv += ["--log", log_file, "--log-format", log_format]
        # Captures the scenarios take (statewall ctl capture) go to the lab's own directory.
        argv += ["--capture-dir", self.lab.workdir()]
        argv += list(extra)
        proc = self.firewall = self.lab.popen(
            None, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.firewall_output = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.firewall_output.append(line.rstrip("\n"))
                if line.startswith("statewall run: forwarding"):
                    ready.set()

        self._reader = threading.Thread(target=read, name="firewall-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                terminate(proc)
                self._reader.join(2)
                out = "\n".join(self.firewall_output[-20:])
                raise LabError(f"statewall run did not start (exit {proc.returncode}):\n{out}")
        return proc

    def stop_firewall(self, timeout: float = 10) -> int:
        """SIGTERM the firewall, wait for its clean exit and its last output; returns the exit code."""
        proc = self.firewall
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                terminate(proc)
        if self._reader is not None:
            self._reader.join(5)
        self.firewall = None
        return proc.returncode


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """One line of ``proc``'s stdout (a pipe, text mode, unbuffered reads), or LabError on timeout."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    chunks = b""
    while not chunks.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise LabError(f"no output from {proc.args!r} within {timeout}s")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        chunks += chunk
    return chunks.decode(errors="replace").rstrip("\n")
