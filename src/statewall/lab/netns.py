"""Building blocks of lab topologies: network namespaces, links, addresses, routes, and cleanup.

Owns everything the lab creates on the machine. A ``Lab`` is a context manager; every namespace it
makes is named ``sw-<pid>-<random>-<role>`` so that concurrent labs (and test runs) never collide and
leftovers are recognisable, and on exit (normal, exception, or SIGTERM, which is turned into
``SystemExit`` while the lab is open) it ends the processes it started, closes its netlink sockets
and deletes its namespaces, which takes every veth and TUN inside them along. Links are only ever
created inside the lab's own namespaces, never in the namespace the lab runs in.

Namespaces are made and deleted with ``ip netns`` (so they are the ones ``ip netns list`` shows);
configuration goes through pyroute2 (links, addresses, routes with ``advmss``/``mtu`` metrics, policy
rules, qdiscs); sysctls are written from a thread that has entered the namespace (``/proc/sys/net``
follows the calling thread's namespace); commands run under ``ip netns exec`` so that they also see
the namespace's ``/sys``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..live.tun import NETNS_RUN_DIR, create_persistent, enter_netns

PREFIX = "sw-"


class LabError(RuntimeError):
    """The lab could not build what was asked (names the step and the namespace)."""


def our_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing network namespaces that start with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


class Namespace:
    """One network namespace of a lab; configuration helpers act inside it."""

    def __init__(self, lab: Lab, role: str, name: str) -> None:
        self.lab = lab
        self.role = role
        self.name = name
        self._ipr: IPRoute | None = None

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute(netns=self.name, flags=0)
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None

    def index(self, ifname: str) -> int:
        found = self.ipr.link_lookup(ifname=ifname)
        if not found:
            raise LabError(f"{self.name}: no interface {ifname!r}")
        return found[0]

    # ---- links and addresses --------------------------------------------------------------------

    def link_up(self, ifname: str, *, mtu: int | None = None) -> None:
        kw: dict[str, Any] = {"state": "up"}
        if mtu is not None:
            kw["mtu"] = mtu
        self.ipr.link("set", index=self.index(ifname), **kw)

    def set_mtu(self, ifname: str, mtu: int) -> None:
        self.ipr.link("set", index=self.index(ifname), mtu=mtu)

    def addr(self, ifname: str, cidr: str) -> None:
        """Add ``address/prefix`` (IPv4 or IPv6) to ``ifname``."""
        itf = ipaddress.ip_interface(cidr)
        self.ipr.addr("add", index=self.index(ifname), address=str(itf.ip), prefixlen=itf.network.prefixlen)

    def route(
        self,
        dst: str,
        *,
        via: str | None = None,
        dev: str | None = None,
        advmss: int | None = None,
        mtu: int | None = None,
        table: int | None = None,
        onlink: bool = False,
        family: int | None = None,
    ) -> None:
        """Add a route (``dst`` may be ``default``); ``advmss``/``mtu`` become route metrics, as in
        ``ip route add ... advmss N``, which is what a server's SYN-ACK then advertises."""
        if family is None:
            family = 6 if ":" in (dst + (via or "")) else 4
        kw: dict[str, Any] = {"dst": ("::/0" if family == 6 else "0.0.0.0/0") if dst == "default" else dst}
        kw["family"] = 10 if family == 6 else 2
        if via is not None:
            kw["gateway"] = via
        if dev is not None:
            kw["oif"] = self.index(dev)
        metrics = {}
        if advmss is not None:
            metrics["RTAX_ADVMSS"] = advmss
        if mtu is not None:
            metrics["RTAX_MTU"] = mtu
        if metrics:
            kw["metrics"] = metrics
        if table is not None:
            kw["table"] = table
        if onlink:
            kw["flags"] = 4  # RTNH_F_ONLINK
        try:
            self.ipr.route("add", **kw)
        except NetlinkError as exc:
            raise LabError(f"{self.name}: route {dst} via {via} dev {dev}: {exc}") from None

    def rule(self, *, iif: str | None = None, table: int, priority: int, family: int = 4) -> None:
        """A policy-routing rule (``ip rule add iif IF lookup TABLE pref PRIORITY``)."""
        kw: dict[str, Any] = {"table": table, "priority": priority, "family": 10 if family == 6 else 2}
        if iif is not None:
            kw["iifname"] = iif
        self.ipr.rule("add", **kw)

    def tun(
        self,
        name: str,
        *,
        mtu: int | None = None,
        txqueuelen: int | None = 10000,
        ipv6: bool = False,
        multi_queue: bool = False,
    ) -> None:
        """A persistent TUN device in this namespace, up, for ``statewall run`` to attach to later.

        The kernel must not talk into the firewall by itself (router solicitations, MLD reports): without
        ``ipv6`` IPv6 is off on the device; with it, the device gets no link-local address but can carry
        routed IPv6 (``FirewallTopology`` also filters the MLD reports the kernel still sends).
        """
        create_persistent(name, self.name, mtu=mtu, txqueuelen=txqueuelen, up=False, multi_queue=multi_queue)
        if ipv6:
            self.sysctl(f"net.ipv6.conf.{name}.addr_gen_mode", 1)
        else:
            self.sysctl(f"net.ipv6.conf.{name}.disable_ipv6", 1)
        self.link_up(name)

    # ---- kernel settings and link impairments ---------------------------------------------------

    def sysctl(self, key: str, value: int | str) -> None:
        """Set a ``net.*`` sysctl of this namespace: ``net.ipv4.ip_forward`` style, or a path below
        ``/proc/sys`` (``net/ipv4/conf/eth0.100/rp_filter``) for interface names with dots."""
        path = _sysctl_path(key)

        def write() -> None:
            with open(path, "w") as f:
                f.write(f"{value}\n")

        self.call(write)

    def read_sysctl(self, key: str) -> str:
        path = _sysctl_path(key)

        def read() -> str:
            with open(path) as f:
                return f.read().strip()

        return self.call(read)

    def netem(
        self, ifname: str, *, delay_ms: float = 0, jitter_ms: float = 0, loss: float = 0, limit: int = 1000
    ) -> None:
        """A netem qdisc on ``ifname`` (egress). Needs a kernel with ``sch_netem``; where it is missing,
        use ``random_loss`` for loss."""
        try:
            self.ipr.tc(
                "add",
                "netem",
                index=self.index(ifname),
                handle="1:",
                delay=int(delay_ms * 1000),
                jitter=int(jitter_ms * 1000),
                loss=loss,
                limit=limit,
            )
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:
                raise LabError(
                    f"{self.name}: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM)"
                ) from None
            raise

    def random_loss(self, ifname: str, percent: float, *, direction: str = "egress") -> None:
        """Drop ``percent`` % of the packets leaving (or entering) ``ifname`` with nftables ``numgen``.

        Works without netem. A GSO super-packet is one packet to nftables: dropping it loses every
        segment it stands for, as a burst.
        """
        if direction not in ("egress", "ingress"):
            raise ValueError("direction is egress or ingress")
        hook, match = ("postrouting", "oifname") if direction == "egress" else ("prerouting", "iifname")
        threshold = int(round(percent * 100))
        table = f"sw_loss_{direction}_{ifname}".replace("-", "_").replace(".", "_")
        script = (
            f"table inet {table} {{\n"
            f"  chain c {{ type filter hook {hook} priority -300; policy accept;\n"
            f'    {match} "{ifname}" numgen random mod 10000 < {threshold} counter drop\n'
            "  }\n}\n"
        )
        self.run(["nft", "-f", "-"], input=script, timeout=10)

    # ---- running things inside ------------------------------------------------------------------

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        return self.lab.run(self, argv, **kw)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        return self.lab.popen(self, argv, **kw)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = 60, **kw: Any) -> Any:
        return self.lab.call(self, fn, *args, timeout=timeout, **kw)

    def start(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> concurrent.futures.Future:
        return self.lab.start(self, fn, *args, **kw)


class Lab:
    """A set of namespaces, links and processes that is removed as a whole.

    ``with Lab() as lab: ns = lab.netns("fw") ...``; ``keep=True`` leaves everything in place on exit
    (``statewall lab run --keep``) and ``describe()`` says how to remove it by hand.
    """

    def __init__(self, *, prefix: str | None = None, keep: bool = False) -> None:
        self.prefix = prefix or f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        # Forked children (pyroute2 forks helpers, and SIGTERMs them) inherit this object and the
        # SIGTERM handler; only the process that built the lab may tear it down.
        self.owner = os.getpid()
        self.keep = keep
        self.namespaces: dict[str, Namespace] = {}
        self.processes: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        self._workdir: str | None = None
        self._closed = False
        self._old_sigterm: Any = None
        self._lock = threading.Lock()

    # ---- lifetime -------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        if os.getpid() != self.owner:
            return
        try:
            if not self.keep:
                self.close()
            else:
                self.release()
        finally:
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    def _on_sigterm(self, signum: int, _frame: object) -> None:
        if os.getpid() != self.owner:
            os._exit(128 + signum)  # a forked helper: die quietly, unwinding would run our cleanup
        # Unwinds the stack like Ctrl-C would, so __exit__ cleans up.
        raise SystemExit(128 + signum)

    def release(self) -> None:
        """Keep namespaces and processes but drop our sockets to them (``--keep``)."""
        for ns in self.namespaces.values():
            ns.close()

    def close(self) -> None:
        """End our processes, close our sockets, delete our namespaces. Safe to call twice."""
        if os.getpid() != self.owner:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
        errors: list[str] = []
        for proc in reversed(self.processes):
            terminate(proc)
        for ns in self.namespaces.values():
            ns.close()
        for ns in reversed(list(self.namespaces.values())):
            if not os.path.exists(os.path.join(NETNS_RUN_DIR, ns.name)):
                continue
            try:
                self.run(None, ["ip", "netns", "del", ns.name], timeout=30)
            except LabError as exc:
                errors.append(str(exc))
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if errors:
            raise LabError("could not remove: " + "; ".join(errors))

    def workdir(self) -> str:
        """A private directory for configurations, logs and captures; removed with the lab."""
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        return self._workdir

    def describe(self) -> str:
        lines = [f"namespaces: {' '.join(ns.name for ns in self.namespaces.values())}"]
        if self._workdir is not None:
            lines.append(f"files: {self._workdir}")
        pids = [str(p.pid) for p in self.processes if p.poll() is None]
        if pids:
            lines.append(f"processes: {' '.join(pids)}")
        cleanup = " ".join(f"ip netns del {ns.name};" for ns in self.namespaces.values())
        if pids:
            cleanup = f"kill {' '.join(pids)}; " + cleanup
        if self._workdir is not None:
            cleanup += f" rm -r {self._workdir}"
        lines.append(f"remove with: {cleanup}")
        return "\n".join(lines)

    # ---- building -------------------------------------------------------------------------------

    def netns(self, role: str) -> Namespace:
        """A new namespace ``<prefix>-<role>``; loopback up."""
        if self._closed:
            raise LabError("lab is closed")
        if role in self.namespaces:
            raise LabError(f"namespace role {role!r} already exists")
        name = f"{self.prefix}-{role}"
        if os.path.exists(os.path.join(NETNS_RUN_DIR, name)):
            raise LabError(f"namespace {name} already exists")
        # `ip netns add` rather than pyroute2's netns.create: the latter forks a helper that it kills
        # after a timeout, and under load that left no namespace behind and no error either.
        self.run(None, ["ip", "netns", "add", name], timeout=30)
        ns = Namespace(self, role, name)
        self.namespaces[role] = ns
        ns.link_up("lo")
        return ns

    def veth(
        self, a: Namespace, a_if: str, b: Namespace, b_if: str, *, mtu: int | None = None, up: bool = True
    ) -> None:
        """A veth pair with end ``a_if`` in ``a`` and ``b_if`` in ``b``; both up."""
        kw: dict[str, Any] = {}
        if mtu is not None:
            kw["mtu"] = mtu
        try:
            a.ipr.link(
                "add", ifname=a_if, kind="veth", peer={"ifname": b_if, "net_ns_fd": b.name, **kw}, **kw
            )
        except NetlinkError as exc:
            raise LabError(f"veth {a.name}:{a_if} -- {b.name}:{b_if}: {exc}") from None
        if up:
            a.link_up(a_if)
            b.link_up(b_if)

    # ---- running --------------------------------------------------------------------------------

    def popen(self, ns: Namespace | None, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in ``ns`` (None: where the lab runs), in its own process group; ended on close."""
        cmd = ["ip", "netns", "exec", ns.name, *argv] if ns is not None else list(argv)
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, **kw)
        self.processes.append(proc)
        return proc

    def run(
        self,
        ns: Namespace | None,
        argv: Sequence[str],
        *,
        timeout: float = 60,
        check: bool = True,
        input: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in ``ns`` to completion (bounded by ``timeout``); output captured as text."""
        cmd = ["ip", "netns", "exec", ns.name, *argv] if ns is not None else list(argv)
        try:
            res = subprocess.run(
                cmd, input=input, capture_output=capture, text=True, timeout=timeout, start_new_session=True
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(
                f"{' '.join(argv)} in {ns.name if ns else 'root'}: timed out after {timeout}s"
            ) from exc
        if check and res.returncode != 0:
            where = ns.name if ns else "root"
            raise LabError(
                f"{' '.join(argv)} in {where} exited {res.returncode}: {(res.stderr or '').strip()}"
            )
        return res

    def call(
        self, ns: Namespace, fn: Callable[..., Any], *args: Any, timeout: float | None = 60, **kw: Any
    ) -> Any:
        """Run ``fn(*args, **kw)`` in a thread inside ``ns`` and return its result (or raise its error)."""
        fut = self.start(ns, fn, *args, **kw)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise LabError(
                f"{getattr(fn, '__name__', fn)} in {ns.name}: timed out after {timeout}s"
            ) from None

    def start(
        self, ns: Namespace, fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> concurrent.futures.Future:
        """Like ``call`` but returns at once with a Future (a server thread, say)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def target() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                with enter_netns(ns.name):
                    fut.set_result(fn(*args, **kw))
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller through the future
                fut.set_exception(exc)

        t = threading.Thread(target=target, name=f"lab:{ns.role}", daemon=True)
        self._threads.append(t)
        t.start()
        return fut


def terminate(proc: subprocess.Popen, *, grace: float = 3.0) -> None:
    """End a process we started, and its process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        leader = os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        leader = False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            if leader:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if leader:
        # Children that outlived the leader are still in its group (a server's workers, say).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true; LabError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
