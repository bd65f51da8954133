"""The control channel of a running firewall: ``statewall ctl`` talks to ``statewall run`` here.

Owns the Unix socket ``<dir>/<name>.sock`` (default ``/run/statewall/<name>.sock``), the commands it
answers, the in-memory log buffer behind ``show log``, the interface captures (the ASA's ``capture``)
and ``reload``, which swaps the compiled policy under the running engine while keeping its state.

The socket is served from the forwarding loop's own epoll (``Loop.watch``): a command runs in the loop
thread between two drains, so it reads the engine's tables between packets and never races the data
path; socket reads and writes are non-blocking and a long answer is written as the socket takes it
(``EPOLLOUT``), so a slow or stuck client never holds the packets up. One request per connection:
the client sends one line, the server answers ``OK`` or ``ERROR`` on the first line, the text after,
and closes.

Commands (each keyword may be abbreviated, as on the ASA: ``sh conn det``)::

    show conn [detail]      show xlate          show service-policy     show asp drop
    show log [N]            show interface      show capture            show iptables [TABLE]
    capture IFACE start FILE                    capture IFACE stop      reload

For an iptables policy ``show conn`` is ``conntrack -L`` and ``show log`` has the kernel's LOG lines
and ``conntrack -E`` events; ``show iptables`` lists a table with the live counters.

``reload`` (what survives is the contract, see ``reload_firewall``): the configuration file is parsed
again; access lists, NAT rules, routes, interfaces, timeouts, service policies, inspections and faults
are compiled anew; connections, translations, expectations, timers and counters are kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CTL_DIR = "/run/statewall"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_REQUEST = 4096
MAX_CLIENTS = 32
CLIENT_IDLE = 10.0  # seconds a client may take to send its line
CLIENT_STUCK = 60.0  # seconds a client may take to read its answer
LOG_LINES = 2000  # events kept for ``show log``


class CtlError(Exception):
    """A command that cannot be done (its message is the answer, after ``ERROR``)."""


def socket_path(name: str, directory: str = CTL_DIR) -> str:
    if not NAME_RE.match(name):
        raise CtlError(f"invalid name {name!r}: letters, digits, '.', '_' and '-', at most 64")
    return os.path.join(directory, f"{name}.sock")


def running(directory: str = CTL_DIR) -> list[str]:
    """Names with a socket in ``directory`` (a stale one from a killed firewall included)."""
    try:
        return sorted(f[:-5] for f in os.listdir(directory) if f.endswith(".sock"))
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------------------------------
# reload: a new policy under a running engine


@dataclass(slots=True)
class ReloadReport:
    connections: int
    xlates: int
    expectations: int
    statics_dropped: int
    warnings: list[str]
    unclassified: list[str]

    def text(self, source: str) -> str:
        lines = [
            f"reloaded {source}",
            f"kept: {self.connections} connections, {self.xlates} translations, {self.expectations} "
            "expectations, timers, drop and service-policy counters",
            "rebuilt: interfaces, routes, access lists, NAT rules, timeouts, service policies "
            "(class-maps, policy-maps, tcp-maps, sysopt), inspections, faults",
            "existing connections keep their egress, translation, TCP state, class settings (tcp-map, "
            "randomization, limits), normalizer state and inspector; they are not checked against the "
            "new access lists (as on the ASA: clear conn for that) and take the new timeouts at their "
            "next packet",
        ]
        if self.statics_dropped:
            lines.append(
                f"removed {self.statics_dropped} unused static translations (re-made from the new rules)"
            )
        if self.unclassified:
            lines.append(
                "not reloaded (engine attributes Firewall.reload does not know, kept as they were): "
                + ", ".join(self.unclassified)
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"


def reload_firewall(fw: Any, policy: Any) -> ReloadReport:
    """Put ``policy`` under the running ``fw`` (a ``statewall.engine.Firewall``) with its ``reload``,
    which keeps the state and rebuilds what is compiled (what moves how: ``statewall.engine.compiled``).
    Raises ``CtlError`` (and changes nothing) when the new policy cannot run here: a different dialect,
    or an interface the loop has bound is gone.
    """
    if policy.dialect != fw.policy.dialect:
        raise CtlError(
            f"reload: the configuration is {policy.dialect}, the firewall runs {fw.policy.dialect}"
        )
    gone = sorted(n for n in fw.interfaces if n not in policy.interfaces or policy.interfaces[n].shutdown)
    if gone:
        raise CtlError(
            f"reload: interface(s) {', '.join(gone)} missing or shut down in the new configuration; "
            "restart statewall run to change interfaces"
        )
    try:
        dropped, unclassified = fw.reload(policy)
    except ValueError as exc:
        raise CtlError(f"reload: {exc}") from None
    return ReloadReport(
        len(fw.conns), len(fw.nat.xlates), len(fw.expect), dropped, list(policy.warnings), unclassified
    )


# --------------------------------------------------------------------------------------------------
# show log, capture


class EventLog:
    """The last ``size`` events, formatted only when shown (the loop hands them over as objects)."""

    def __init__(self, size: int = LOG_LINES) -> None:
        self.events: deque = deque(maxlen=size)
        self.total = 0

    def add(self, events: list) -> None:
        self.events.extend(events)
        self.total += len(events)

    def lines(self, hostname: str | None, last: int | None = None, *, linux: bool = False) -> list[str]:
        """ASA syslog lines, or with ``linux`` what a Linux box logs (LOG lines, conntrack -E)."""
        if linux:
            from ..logfmt.linux import format_event
        else:
            from ..logfmt.asa import format_event

        out = [line for ev in self.events for line in format_event(ev, hostname=hostname)]
        return out[-last:] if last else out


class Capture:
    """One interface's traffic to a pcap file (raw IP): what arrived before the engine, what left.

    Super-packets are written as the single large IP packets they are (as tcpdump on a TSO interface
    shows them), and packets from local stacks carry partial TCP/UDP checksums, which Wireshark
    reports as wrong.
    """

    def __init__(self, iface: str, path: str) -> None:
        from ..pcapio import PcapWriter

        self.iface = iface
        self.path = path
        self.writer = PcapWriter(path)
        self.started = time.time()

    def __call__(self, pkt: bytearray) -> None:
        self.writer.write(pkt, time.time())

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.writer._f.flush()

    def close(self) -> int:
        self.writer.close()
        return self.writer.count


# --------------------------------------------------------------------------------------------------
# show conn detail


def _dur(seconds: float) -> str:
    """The ASA's short duration form in ``show conn detail``: ``0s``, ``1m2s``, ``1h0m``, ``2D3h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s // 60 % 60}m"
    return f"{s // 86400}D{s // 3600 % 24}h"


def _side(ep: Any) -> str:
    return f"{ep.interface}:{ep.address}/{ep.port}"


def format_conn_detail(fw: Any) -> str:
    """``show conn detail``: the ASA's two lines per connection, then what statewall knows besides
    (translation, TCP state, the MSS each side is held to, class settings, sequence offsets)."""
    from ..conntrack import ORIGINAL, REPLY
    from ..engine import asa_conn_flags
    from ..logfmt.asa import protocol_upper

    now = fw.now
    conns = sorted(fw.conns, key=lambda c: c.id)
    lines = [f"{len(conns)} in use, {max(len(conns), fw.conns.most_used)} most used"]
    for c in conns:
        ini, res = c.initiator, c.responder
        outside, inside = (res, ini) if c.inside_is_initiator else (ini, res)
        lines.append(f"{protocol_upper(c.proto)} {_side(outside)} {_side(inside)}, conn {c.id},")
        timeout = _dur(c.timeout) if c.timeout > 0 else "never"
        lines.append(
            f"    flags {asa_conn_flags(c)}, idle {_dur(now - c.last)}, uptime {_dur(now - c.created)}, "
            f"timeout {timeout} ({c.timeout_kind}), bytes {c.bytes}"
        )
        for ep in (ini, res):
            if (ep.mapped_address, ep.mapped_port) != (ep.address, ep.port):
                lines.append(f"    translated {_side(ep)} to {ep.mapped_address}/{ep.mapped_port}")
        if c.tcp is not None:
            facts = [f"tcp {c.tcp.state.name}"]
            norm = c.norm
            if norm is not None:
                held = [
                    f"{ep.interface} {norm.mss_limit[d]}"
                    for d, ep in ((ORIGINAL, ini), (REPLY, res))
                    if norm.mss_limit[d] is not None
                ]
                if held:
                    facts.append("segments held to mss " + ", ".join(held))
            lines.append("    " + "; ".join(facts))
        eff = c.mpf
        if eff is not None:
            classes = ", ".join(
                f"{u.class_map} ({'global' if u.scope == 'global' else 'interface ' + u.scope})"
                for u in eff.uses
            )
            tcp_map = eff.tcp_map.name if eff.tcp_map is not None else "default"
            parts = [f"class {classes}" if classes else "no class", f"tcp-map {tcp_map}"]
            parts += [f"inspect {ins.engine}" for ins, _ in eff.inspects]
            lines.append("    " + ", ".join(parts))
        shift = c.seqrand
        if shift is not None:
            offs = [
                f"{ep.interface} +{shift.offsets[d]:#010x}"
                for d, ep in ((ORIGINAL, ini), (REPLY, res))
                if shift.offsets[d]
            ]
            if offs:
                note = ", SACK blocks untranslated (pix-sack-bug)" if shift.sack_untranslated else ""
                lines.append("    sequence numbers randomized: " + ", ".join(offs) + note)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Commands


def _word(token: str, choices: tuple[str, ...], what: str) -> str:
    """The ASA's abbreviations: a unique prefix (or an exact word) selects the keyword."""
    t = token.lower()
    if t in choices:
        return t
    found = [c for c in choices if c.startswith(t)]
    if len(found) != 1:
        raise CtlError(
            f"% {'Ambiguous' if found else 'Invalid'} {what} '{token}' (one of: {', '.join(choices)})"
        )
    return found[0]


HELP = """\
show conn [detail]          connections (detail: translation, TCP state, MSS, class, offsets)
show xlate                  translation slots
show service-policy         service policies with their per-class counters
show asp drop               drop counters by reason
show log [N]                the last N log lines (all kept when N is omitted)
show interface              packet counters of each bound interface, and of the fast path
show iptables [TABLE]       an iptables policy's rules with their counters (iptables -t TABLE -nvxL)
show capture                running captures
capture IFACE start FILE    write IFACE's traffic (both directions) to FILE (pcap, raw IP)
capture IFACE stop          stop it; says how many packets were written
reload                      parse the configuration file again, keep connections and translations
"""


class Commands:
    """What ``statewall ctl`` can ask, answered from the live engine and loop (in the loop thread)."""

    def __init__(
        self,
        fw: Any,
        loop: Any = None,
        *,
        reload: Callable[[], Any] | None = None,
        source: str = "",
        log: EventLog | None = None,
    ) -> None:
        self.fw = fw
        self.loop = loop
        self._reload = reload
        self.source = source
        self.log = log if log is not None else EventLog()
        self.captures: dict[str, Capture] = {}
        self.reloads = 0

    def execute(self, line: str) -> str:
        """The answer to one command line; ``CtlError`` for a refused one."""
        words = line.split()
        if not words:
            raise CtlError("% empty command (try: help)")
        verb = _word(words[0], ("show", "capture", "reload", "help"), "command")
        if verb == "help":
            return HELP
        if verb == "reload":
            if len(words) > 1:
                raise CtlError("% reload takes no arguments")
            return self.reload()
        if verb == "capture":
            return self.capture(words[1:])
        return self.show(words[1:])

    # ---- show ------------------------------------------------------------------------------------

    def show(self, args: list[str]) -> str:
        targets = ("conn", "xlate", "service-policy", "asp", "log", "interface", "capture", "iptables")
        if not args:
            raise CtlError(f"% show what? ({', '.join(targets)})")
        what = _word(args[0], targets, "show target")
        rest = args[1:]
        fw = self.fw
        nf = fw.nf_path
        if what == "conn":
            if rest and _word(rest[0], ("detail",), "show conn option") == "detail" and len(rest) == 1:
                return format_conn_detail(fw)
            if rest:
                raise CtlError("% show conn [detail]")
            if nf is not None:
                from ..logfmt.linux import conntrack_listing

                return conntrack_listing(fw.conntrack_entries())  # an iptables policy: conntrack -L
            from ..logfmt.tables import show_conn

            return show_conn(fw)
        self._no_args(rest, f"show {what}", allow=what in ("asp", "log", "iptables"))
        if what == "xlate":
            from ..logfmt.tables import show_xlate

            return show_xlate(fw)
        if what == "service-policy":
            if fw.service_policies is None:
                raise CtlError("% show service-policy: this firewall runs no modular policy framework")
            from ..logfmt.mpf import format_show_service_policy

            return format_show_service_policy(fw.policy, fw.service_policies.uses)
        if what == "asp":
            if len(rest) != 1 or _word(rest[0], ("drop",), "show asp option") != "drop":
                raise CtlError("% show asp drop")
            from ..logfmt.counters import format_show_asp_drop

            return format_show_asp_drop(fw.drops)
        if what == "log":
            last = None
            if rest:
                if len(rest) != 1 or not rest[0].isdigit():
                    raise CtlError("% show log [N]")
                last = int(rest[0])
            lines = self.log.lines(fw.policy.hostname, last, linux=nf is not None)
            return "".join(line + "\n" for line in lines)
        if what == "iptables":
            return self._iptables(rest)
        if what == "interface":
            return self._interfaces()
        return self._captures()

    def _iptables(self, rest: list[str]) -> str:
        """``iptables -t TABLE -nvxL`` with the running engine's counters (an iptables policy)."""
        fw = self.fw
        if getattr(fw, "netfilter", None) is None:
            raise CtlError("% show iptables: this firewall runs no iptables policy")
        from ..dialects.iptables import format_listing
        from ..dialects.iptables.tables import BUILTIN_CHAINS

        table = rest[0] if rest else "filter"
        if len(rest) > 1 or table not in BUILTIN_CHAINS:
            raise CtlError(f"% show iptables [{'|'.join(BUILTIN_CHAINS)}]")
        return format_listing(fw.policy, table, fw.netfilter.counters(table, 4))

    @staticmethod
    def _no_args(rest: list[str], what: str, *, allow: bool = False) -> None:
        if rest and not allow:
            raise CtlError(f"% {what} takes no arguments")

    def _interfaces(self) -> str:
        if self.loop is None:
            raise CtlError("% no forwarding loop")
        lines = []
        for port in self.loop.ports:
            c = port.counters()
            lines.append(f"Interface {port.name} ({port.tun.describe()}):")
            lines.append(
                f"  {c['rx_packets']} packets input, {c['rx_bytes']} bytes, {c['rx_super']} super-packets, "
                f"{c['rx_errors']} errors"
            )
            lines.append(
                f"  {c['tx_packets']} packets output, {c['tx_bytes']} bytes, {c['tx_segmented']} segmented, "
                f"{c['tx_errors']} errors"
            )
        fast = self.loop.fast_path_counters() if hasattr(self.loop, "fast_path_counters") else None
        if fast is not None:
            lines.append(
                f"Fast path: {fast['connections']} connections, {fast['packets']} packets forwarded, "
                f"{fast['handed_back']} handed to the Python path, {fast['offloads']} offloads, "
                f"{fast['returns']} returns ({'C pump' if fast['pump'] else 'Python loop'})"
            )
        return "\n".join(lines) + "\n"

    def _captures(self) -> str:
        if not self.captures:
            return "no capture running\n"
        return "".join(
            f"capture {c.iface} to {c.path}: {c.writer.count} packets\n" for c in self.captures.values()
        )

    # ---- capture ---------------------------------------------------------------------------------

    def capture(self, args: list[str]) -> str:
        if self.loop is None:
            raise CtlError("% capture needs the forwarding loop")
        if len(args) < 2:
            raise CtlError("% capture IFACE start FILE | capture IFACE stop")
        iface, action = args[0], _word(args[1], ("start", "stop"), "capture action")
        port = self.loop.by_name.get(iface)
        if port is None:
            known = ", ".join(p.name for p in self.loop.ports)
            raise CtlError(f"% capture: no interface {iface!r} (bound: {known})")
        if action == "start":
            if len(args) != 3:
                raise CtlError("% capture IFACE start FILE")
            path = args[2]
            if not os.path.isabs(path):
                raise CtlError(f"% capture: {path!r} is not an absolute path")
            if iface in self.captures:
                raise CtlError(f"% capture on {iface} already running (to {self.captures[iface].path})")
            try:
                cap = Capture(iface, path)
            except OSError as exc:
                raise CtlError(f"% capture: cannot write {path}: {exc.strerror or exc}") from None
            self.captures[iface] = cap
            port.tap = cap
            return f"capture {iface} started: {path}\n"
        if len(args) > 3:
            raise CtlError("% capture IFACE stop")
        cap = self.captures.pop(iface, None)
        if cap is None:
            raise CtlError(f"% no capture running on {iface}")
        port.tap = None
        n = cap.close()
        return f"capture {iface} stopped: {n} packets written to {cap.path}\n"

    def flush(self) -> None:
        for cap in self.captures.values():
            cap.flush()

    def stop_captures(self) -> None:
        for iface, cap in list(self.captures.items()):
            port = self.loop.by_name.get(iface) if self.loop is not None else None
            if port is not None:
                port.tap = None
            cap.close()
        self.captures.clear()

    # ---- reload ----------------------------------------------------------------------------------

    def reload(self) -> str:
        if self._reload is None:
            raise CtlError("% reload: this firewall was not started from a configuration file")
        try:
            policy = self._reload()
        except CtlError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a ConfigError or an unreadable file: nothing changes
            raise CtlError(f"% reload refused, the running configuration is unchanged: {exc}") from None
        report = reload_firewall(self.fw, policy)
        self.reloads += 1
        return report.text(self.source or "the configuration")


# --------------------------------------------------------------------------------------------------
# The server (in the loop's epoll)


class _Client:
    __slots__ = ("sock", "fd", "inbuf", "out", "since")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = b""
        self.out: memoryview | None = None
        self.since = now


class CtlServer:
    """Listens on ``<directory>/<name>.sock`` and answers ``Commands`` from ``loop``'s epoll.

    ``start()`` before ``loop.run()`` (it taps the loop's events for ``show log`` and its tick for
    flushing captures and dropping clients that never finish their line); ``close()`` after.
    """

    def __init__(self, loop: Any, commands: Commands, name: str, *, directory: str = CTL_DIR) -> None:
        self.loop = loop
        self.commands = commands
        self.name = name
        self.directory = directory
        self.path = socket_path(name, directory)
        self.sock: socket.socket | None = None
        self.clients: dict[int, _Client] = {}
        self.served = 0

    def start(self) -> None:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(1)
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)  # left by a firewall that was killed: nobody answers on it
            else:
                raise CtlError(f"{self.path}: a firewall named {self.name!r} is already running")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)  # the firewall's owner only: reload and capture write files
            sock.listen(16)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        loop = self.loop
        loop.watch(sock.fileno(), select.EPOLLIN, self._accept)
        prev_events, prev_tick = loop.on_events, loop.on_tick
        log = self.commands.log

        def on_events(events: list) -> None:
            log.add(events)
            if prev_events is not None:
                prev_events(events)

        def on_tick() -> None:
            if prev_tick is not None:
                prev_tick()
            self.commands.flush()
            self._expire_clients()

        loop.on_events = on_events
        loop.on_tick = on_tick

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        if self.sock is not None:
            self.loop.unwatch(self.sock.fileno())
            self.sock.close()
            self.sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self.commands.stop_captures()

    # ---- callbacks (loop thread) ------------------------------------------------------------------

    def _accept(self, _events: int) -> None:
        assert self.sock is not None
        for _ in range(16):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self.clients) >= MAX_CLIENTS:
                conn.close()
                continue
            conn.setblocking(False)
            client = _Client(conn, time.monotonic())
            self.clients[client.fd] = client
            self.loop.watch(client.fd, select.EPOLLIN, lambda ev, c=client: self._readable(c, ev))

    def _readable(self, client: _Client, events: int) -> None:
        try:
            chunk = client.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.inbuf += chunk
        if b"\n" not in client.inbuf and chunk and len(client.inbuf) < MAX_REQUEST:
            return
        if b"\n" not in client.inbuf and len(client.inbuf) >= MAX_REQUEST:
            self._answer(client, False, "% command too long\n")
            return
        if not client.inbuf.strip() and not chunk:
            self._drop(client)  # connected and left without asking
            return
        line = client.inbuf.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
        try:
            text = self.commands.execute(line)
            ok = True
        except CtlError as exc:
            text, ok = str(exc) + "\n", False
        except Exception as exc:  # noqa: BLE001 -- a bug in a command must not end the firewall
            text, ok = f"% internal error: {type(exc).__name__}: {exc}\n", False
        self.served += 1
        self._answer(client, ok, text)

    def _answer(self, client: _Client, ok: bool, text: str) -> None:
        client.out = memoryview((("OK" if ok else "ERROR") + "\n" + text).encode())
        self.loop.watch(client.fd, select.EPOLLOUT, lambda ev, c=client: self._writable(c))
        self._writable(client)

    def _writable(self, client: _Client) -> None:
        out = client.out
        while out is not None and len(out):
            try:
                n = client.sock.send(out)
            except (BlockingIOError, InterruptedError):
                client.out = out
                return
            except OSError:  # the client left (EPIPE, ECONNRESET): nothing more to say to it
                self._drop(client)
                return
            out = out[n:]
        self._drop(client)

    def _drop(self, client: _Client) -> None:
        if self.clients.pop(client.fd, None) is None:
            return
        self.loop.unwatch(client.fd)
        client.sock.close()

    def _expire_clients(self) -> None:
        now = time.monotonic()
        for client in list(self.clients.values()):
            waited = now - client.since
            if (client.out is None and waited > CLIENT_IDLE) or waited > CLIENT_STUCK:
                self._drop(client)


# --------------------------------------------------------------------------------------------------
# The client side


def request(name: str, command: str, *, directory: str = CTL_DIR, timeout: float = 10.0) -> tuple[bool, str]:
    """Send one command to the firewall ``name``; (ok, text). ``OSError`` when it cannot be reached,
    ``TimeoutError`` when it does not answer within ``timeout`` seconds."""
    path = socket_path(name, directory)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.strip().encode() + b"\n")
        chunks = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{path}: no complete answer within {timeout}s")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks).decode("utf-8", errors="replace")
    status, _, text = data.partition("\n")
    if status not in ("OK", "ERROR"):
        raise OSError(f"{path}: not a statewall control socket (answered {status[:40]!r})")
    return status == "OK", text


# --------------------------------------------------------------------------------------------------
# The configuration as ``statewall run`` loads it (again, for ``reload``)


@dataclass(slots=True)
class PolicySource:
    """The configuration file and the overrides ``statewall run`` applies after every parse.

    ``timeouts`` (``Policy.timeouts`` field -> seconds) go beyond what a dialect accepts: the ASA's
    ``timeout conn`` cannot be under 0:05:00, and a lab scenario about an idle control connection
    should not take five minutes. ``data_refreshes_control`` is the FTP inspection switch of seed 004
    (``statewall.inspect.set_data_refreshes_control``); None leaves the inspection as configured.
    """

    path: str
    timeouts: dict[str, float]
    data_refreshes_control: bool | None = None

    def load(self, *, show_warnings: bool = False) -> Any:
        from ..config import load_config

        policy = load_config(self.path, show_warnings=show_warnings)
        self.apply(policy)
        return policy

    def apply(self, policy: Any) -> None:
        from ..inspect import set_data_refreshes_control

        for name, seconds in self.timeouts.items():
            setattr(policy.timeouts, name, float(seconds))
        if self.data_refreshes_control is not None:
            set_data_refreshes_control(policy, self.data_refreshes_control)


def parse_timeout_override(text: str) -> tuple[str, float]:
    """``conn=8`` or ``pat-xlate=5`` -> (``Timeouts`` field, seconds)."""
    from ..policy import Timeouts

    name, sep, value = text.partition("=")
    field_name = name.strip().replace("-", "_")
    known = [f for f in Timeouts.__dataclass_fields__ if f not in ("origins", "extra")]
    if not sep or field_name not in known:
        raise ValueError(f"{text!r}: expected NAME=SECONDS with NAME one of {', '.join(known)}")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"{text!r}: a timeout cannot be negative")
    return field_name, seconds
