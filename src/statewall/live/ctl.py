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

    show conn [detail|count]  show xlate        show service-policy     show asp drop
    show local-host           show access-list [NAME]  show nat         show route
    show log [N]              show interface    show capture            show iptables [TABLE]
    capture IFACE start FILE  capture NAME type asp-drop [REASON] [FILE]  capture NAME stop
    reload

The ASA's tables print as the configuration's release does (``statewall.showtables``). Capture files
go to the capture directory (``statewall run --capture-dir``), are created 0600 and never through a
link.

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
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..events import ConnBuilt, Drop, XlateBuilt

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
        # Translations built per NAT rule since the start (show nat's translate_hits), and drops of
        # the packets each interface received (show interface).
        self._log_policy: Any = None
        self._log_config: Any = None
        self.xlate_hits: Counter = Counter()
        self.untranslate_hits: Counter = Counter()  # connections opened through UN-NAT, per rule
        self.drops_by_interface: Counter = Counter()

    def add(self, events: list) -> None:
        self.events.extend(events)
        self.total += len(events)
        for ev in events:
            kind = type(ev)
            if kind is XlateBuilt and ev.origin is not None:
                self.xlate_hits[ev.origin] += 1
            elif kind is Drop:
                self.drops_by_interface[ev.interface] += 1
            elif kind is ConnBuilt and ev.untranslated_by is not None:
                self.untranslate_hits[ev.untranslated_by] += 1

    def lines(
        self, hostname: str | None, last: int | None = None, *, linux: bool = False, policy: Any = None
    ) -> list[str]:
        """ASA syslog lines, or with ``linux`` what a Linux box logs (LOG lines, conntrack -E). With the
        running ``policy`` the ASA's lines follow its logging configuration as log.txt does (levels,
        lists, disabled messages, timestamp, device id: ``statewall.logfmt.asalog``); the
        configuration in force when a line is shown decides, so a ``reload`` applies to the lines
        shown after it."""
        if linux:
            from ..logfmt.linux import format_event
        elif policy is not None:
            format_event = self._asalog(policy).format_event
        else:
            from ..logfmt.asa import format_event

        out = [line for ev in self.events for line in format_event(ev, hostname=hostname)]
        return out[-last:] if last else out

    def _asalog(self, policy: Any):
        """The logging configuration of ``policy`` (built again when the policy changed: a reload)."""
        if self._log_policy is not policy:
            from ..logfmt.asalog import AsaLog

            self._log_config = AsaLog(policy)
            self._log_policy = policy
        return self._log_config


# Where captures go unless the operator allows any path (statewall run --capture-dir/--capture-anywhere).
CAPTURE_DIR = "/var/lib/statewall/captures"


class Capture:
    """One interface's traffic to a pcap file (raw IP): what arrived before the engine, what left.

    Super-packets are written as the single large IP packets they are (as tcpdump on a TSO interface
    shows them), and packets from local stacks carry partial TCP/UDP checksums, which Wireshark
    reports as wrong. The file is created 0600 and never through a link (``pcapio.open_private``).
    """

    def __init__(self, iface: str, path: str) -> None:
        from ..pcapio import PcapWriter, open_private

        self.iface = iface
        self.path = path
        self.writer = PcapWriter(path, opener=open_private)
        self.started = time.time()

    def __call__(self, pkt: bytearray) -> None:
        self.writer.write(pkt, time.time())

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.writer._f.flush()

    def close(self) -> int:
        self.writer.close()
        return self.writer.count


class AspDropCapture:
    """``capture NAME type asp-drop [REASON]``: every packet the engine drops (or those of one reason,
    by its ``show asp drop`` keyword), as it arrived, to a pcapng file whose packet comments say
    ``Drop-reason: (keyword) description`` as the ASA's ``show capture NAME detail`` does.

    A tap on every port keeps a copy of the packet being handled; the Drop event that follows names
    its interface and addresses, and the copy is written when they match (a drop made by a timer,
    with no packet in hand, is not captured).
    """

    def __init__(self, name: str, path: str, reason: str | None) -> None:
        from ..pcapio import PcapngWriter, open_private

        self.iface = name
        self.path = path
        self.reason = reason
        self.writer = PcapngWriter(path, opener=open_private)
        self.last: dict[str, bytes] = {}

    def tap_for(self, port: str) -> Callable[[bytearray], None]:
        def tap(pkt: bytearray) -> None:
            self.last[port] = bytes(pkt)

        return tap

    def events(self, events: list) -> None:
        from ..events import Drop
        from ..logfmt.counters import ASA_NEAREST, NOT_ASA
        from ..packet import DecodeError, addr_to_str, decode

        for ev in events:
            if type(ev) is not Drop:
                continue
            shown = ASA_NEAREST.get(ev.reason, ev.reason)
            if self.reason is not None and self.reason not in (ev.reason.keyword, shown.keyword):
                continue
            data = self.last.pop(ev.interface, None)
            if data is None:
                continue
            try:
                pkt = decode(bytearray(data))
            except DecodeError:
                pkt = None
            if (
                pkt is not None
                and ev.src
                and (addr_to_str(pkt.version, pkt.src), addr_to_str(pkt.version, pkt.dst))
                != (
                    ev.src,
                    ev.dst,
                )
            ):
                continue
            head = "statewall-reason" if shown in NOT_ASA else "Drop-reason"  # no ASA counter has it
            self.writer.write(data, time.time(), f"{head}: ({shown.keyword}) {shown.description}")

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.writer._f.flush()

    def close(self) -> int:
        self.writer.close()
        return self.writer.count


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
show conn [detail|count]    connections (detail: the ASA's lines, then statewall's: translation,
                            TCP state, MSS, class, offsets)
show xlate                  translation slots
show local-host             hosts per interface with their connections and translations
show access-list [NAME]     access lists with hit counts and object-group elements
show nat                    NAT rules with translate_hits
show route                  the routing table
show service-policy         service policies with their per-class counters
show asp drop               drop counters by reason
show log [N]                the last N log lines (all kept when N is omitted)
show interface              the ASA's show interface with each bound port's counters, then the fast path's
show iptables [TABLE]       an iptables policy's rules with their counters (iptables -t TABLE -nvxL)
show capture                running captures
capture IFACE start FILE    write IFACE's traffic (both directions) to FILE (pcap, raw IP)
capture NAME type asp-drop [REASON] [FILE]
                            write every dropped packet (or those of one show asp drop keyword) to
                            FILE (default NAME.pcap; pcapng, each packet commented with its reason)
capture NAME stop           stop a capture; says how many packets were written
                            (FILE: in the capture directory; 0600, never through a link)
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
        on_reload: list[Callable[[Any], None]] | None = None,
        source: str = "",
        log: EventLog | None = None,
        capture_dir: str = CAPTURE_DIR,
        capture_anywhere: bool = False,
    ) -> None:
        self.fw = fw
        self.capture_dir = capture_dir
        self.capture_anywhere = capture_anywhere
        self.loop = loop
        self._reload = reload
        # Called with the new policy after a reload: the loop's log and syslog follow its logging lines.
        self._on_reload = on_reload or []
        self.source = source
        self.log = log if log is not None else EventLog()
        self.captures: dict[str, Capture | AspDropCapture] = {}
        self.reloads = 0

    @property
    def xlate_hits(self) -> Counter:
        return self.log.xlate_hits

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
        targets = (
            "conn",
            "xlate",
            "service-policy",
            "asp",
            "log",
            "interface",
            "capture",
            "iptables",
            "local-host",
            "access-list",
            "nat",
            "route",
        )
        if not args:
            raise CtlError(f"% show what? ({', '.join(targets)})")
        what = _word(args[0], targets, "show target")
        rest = args[1:]
        fw = self.fw
        nf = fw.nf_path
        if what == "conn" and not rest and nf is not None:
            from ..logfmt.linux import conntrack_listing

            return conntrack_listing(fw.conntrack_entries())  # an iptables policy: conntrack -L
        if what in ("conn", "xlate", "local-host", "access-list", "nat", "route"):
            # The ASA's tables, in the configured release's form (statewall.showtables).
            from ..showtables import ShowError
            from ..showtables import show as show_table

            if nf is not None and what != "conn":
                raise CtlError(f"% show {what}: this firewall runs an iptables policy")
            try:
                return show_table(
                    fw, [what, *rest], fw.now, xlate_hits=self.xlate_hits,
                    untranslate_hits=self.log.untranslate_hits,
                )  # fmt: skip
            except ShowError as exc:
                raise CtlError(f"% {exc}") from None
        self._no_args(rest, f"show {what}", allow=what in ("asp", "log", "iptables"))
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
            lines = self.log.lines(fw.policy.hostname, last, linux=nf is not None, policy=fw.policy)
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
        """The ASA's show interface (``statewall.logfmt.show``) with the TUN ports' counters and the
        drops of packets each received, then statewall's own port and fast-path counters apart."""
        if self.loop is None:
            raise CtlError("% no forwarding loop")
        from ..logfmt.show import format_show_interface
        from ..showtables import InterfaceCounts

        counts = {}
        lines = []
        for port in self.loop.ports:
            c = port.counters()
            counts[port.name] = InterfaceCounts(
                c["rx_packets"],
                c["rx_bytes"],
                c["tx_packets"],
                c["tx_bytes"],
                self.log.drops_by_interface[port.name],
            )
            lines.append(
                f"statewall: {port.name} ({port.tun.describe()}): {c['rx_super']} super-packets in, "
                f"{c['rx_errors']} read errors, {c['tx_segmented']} segmented out, "
                f"{c['tx_errors']} write errors"
            )
        fast = self.loop.fast_path_counters() if hasattr(self.loop, "fast_path_counters") else None
        if fast is not None:
            lines.append(
                f"statewall: fast path: {fast['connections']} connections, {fast['packets']} packets "
                f"forwarded, {fast['handed_back']} handed to the Python path, {fast['offloads']} offloads "
                f"({fast['syns']} at a SYN built from its class's template), {fast['returns']} returns "
                f"({_loop_kind(fast)})"
            )
        policy = self.fw.policy
        if getattr(policy, "dialect", "asa") != "asa":
            # An iptables policy has no ASA interfaces: the ports by their names.
            from ..policy import Interface, Policy

            policy = Policy(interfaces={p.name: Interface(p.name) for p in self.loop.ports})
        return format_show_interface(policy, counts) + "\n".join(lines) + "\n"

    def _captures(self) -> str:
        if not self.captures:
            return "no capture running\n"
        return "".join(
            f"capture {c.iface} to {c.path}: {c.writer.count} packets\n" for c in self.captures.values()
        )

    # ---- capture ---------------------------------------------------------------------------------

    def _capture_path(self, path: str) -> str:
        """``path`` as a capture may write it: relative paths are in the capture directory, and an
        absolute one must be there too unless the firewall was started with --capture-anywhere."""
        base = self.capture_dir
        if not os.path.isabs(path):
            os.makedirs(base, mode=0o700, exist_ok=True)
            path = os.path.join(base, path)
        if not self.capture_anywhere:
            where = os.path.realpath(os.path.dirname(os.path.abspath(path)))
            if os.path.commonpath([where, os.path.realpath(base)]) != os.path.realpath(base):
                raise CtlError(
                    f"% capture: {path!r} is outside the capture directory {base} "
                    "(statewall run --capture-dir DIR, or --capture-anywhere)"
                )
        return path

    def _retap(self) -> None:
        """Each port's tap: every capture that wants its packets (interface captures, asp-drop ones)."""
        for port in self.loop.ports:
            taps = [c for c in self.captures.values() if isinstance(c, Capture) and c.iface == port.name]
            taps += [c.tap_for(port.name) for c in self.captures.values() if isinstance(c, AspDropCapture)]
            if not taps:
                port.tap = None
            elif len(taps) == 1:
                port.tap = taps[0]
            else:

                def both(pkt: bytearray, taps: list = taps) -> None:
                    for t in taps:
                        t(pkt)

                port.tap = both

    def on_events(self, events: list) -> None:
        """Events of the loop: asp-drop captures write the packets they drop."""
        for cap in self.captures.values():
            if isinstance(cap, AspDropCapture):
                cap.events(events)

    def capture(self, args: list[str]) -> str:
        if self.loop is None:
            raise CtlError("% capture needs the forwarding loop")
        if len(args) < 2:
            raise CtlError(
                "% capture IFACE start FILE | capture NAME type asp-drop [REASON] [FILE] | capture NAME stop"
            )
        name = args[0]
        action = _word(args[1], ("start", "stop", "type"), "capture action")
        if action == "stop":
            if len(args) > 2:
                raise CtlError("% capture NAME stop")
            cap = self.captures.pop(name, None)
            if cap is None:
                raise CtlError(f"% no capture running on {name}")
            self._retap()
            n = cap.close()
            return f"capture {name} stopped: {n} packets written to {cap.path}\n"
        if name in self.captures:
            raise CtlError(f"% capture {name} already running (to {self.captures[name].path})")
        if action == "type":
            if len(args) < 3 or _word(args[2], ("asp-drop",), "capture type") != "asp-drop":
                raise CtlError("% capture NAME type asp-drop [REASON] [FILE]")
            rest = args[3:]
            reason = None
            if rest and not ("/" in rest[0] or rest[0].endswith((".pcap", ".pcapng"))):
                reason = None if rest[0] == "all" else rest.pop(0)
                if rest and rest[0] == "all":
                    rest.pop(0)
            if reason is not None:
                from ..events import DropReason

                known = {r.keyword for r in DropReason}
                if reason not in known:
                    raise CtlError(f"% capture: unknown drop reason {reason!r} (a show asp drop keyword)")
            if len(rest) > 1:
                raise CtlError("% capture NAME type asp-drop [REASON] [FILE]")
            path = self._capture_path(rest[0] if rest else f"{name}.pcap")
            try:
                cap: Capture | AspDropCapture = AspDropCapture(name, path, reason)
            except OSError as exc:
                raise CtlError(f"% capture: cannot write {path}: {exc.strerror or exc}") from None
            self.captures[name] = cap
            self._retap()
            return f"capture {name} type asp-drop{' ' + reason if reason else ''} started: {path}\n"
        port = self.loop.by_name.get(name)
        if port is None:
            known = ", ".join(p.name for p in self.loop.ports)
            raise CtlError(f"% capture: no interface {name!r} (bound: {known})")
        if len(args) != 3:
            raise CtlError("% capture IFACE start FILE")
        path = self._capture_path(args[2])
        try:
            cap = Capture(name, path)
        except OSError as exc:
            raise CtlError(f"% capture: cannot write {path}: {exc.strerror or exc}") from None
        self.captures[name] = cap
        self._retap()
        return f"capture {name} started: {path}\n"

    def flush(self) -> None:
        for cap in self.captures.values():
            cap.flush()

    def stop_captures(self) -> None:
        for cap in list(self.captures.values()):
            cap.close()
        self.captures.clear()
        if self.loop is not None:
            for port in self.loop.ports:
                port.tap = None

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
        for hook in self._on_reload:
            hook(policy)
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
            if self.commands.captures:
                self.commands.on_events(events)
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


def _loop_kind(fast: dict) -> str:
    """How the live loop reads the TUNs, for ``show`` lines: the compiled loop (its C wait and pump),
    the C pump under a Python wait, or the Python loop alone."""
    if not fast.get("pump"):
        return "Python loop"
    kind = "compiled loop" if fast.get("compiled_loop") else "C pump"
    return f"{kind}, io_uring writes by {fast['uring']}" if fast.get("uring") else kind
