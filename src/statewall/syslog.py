"""Remote syslog: the adapter that sends the ASA's messages to syslog servers (``logging host``,
``statewall replay --syslog``), as the ASA frames them.

The text of each message (``<PRI>`` and the line, or the EMBLEM form) is ``logfmt.asalog.AsaLog``'s;
this module owns only the sockets. UDP sends one datagram per message (port 514 by default); TCP
(port 1470 by default) keeps one connection per server and ends each message with a line feed,
RFC 6587's non-transparent framing, which is what rsyslog and syslog-ng read on a plain TCP input.
A server that cannot be reached loses its messages and is tried again after ``RETRY`` seconds; the
firewall never waits for it. (With a TCP server down an ASA without ``logging permit-hostdown``
refuses new connections through the box; statewall does not model that.)

Messages leave from the host's own stack, not out of the interface ``logging host`` names.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .events import Event
from .logfmt.asalog import AsaLog
from .policy import LoggingHost

RETRY = 5.0  # seconds between attempts to reach a TCP server that refused or went away
_TCP_TIMEOUT = 2.0


@dataclass(slots=True)
class Target:
    address: str
    port: int
    transport: str = "udp"
    emblem: bool = False
    host: LoggingHost | None = None  # the configuration line, when it came from one


def parse_target(text: str) -> Target:
    """``HOST[:PORT]`` or ``[V6ADDR]:PORT`` (UDP, port 514 by default): ``replay --syslog``'s value."""
    host, port = text, 514
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    if not host or not 0 < port < 65536:
        raise ValueError(f"invalid syslog server {text!r} (HOST[:PORT])")
    return Target(host, port)


def targets_of(hosts: Iterable[LoggingHost]) -> list[Target]:
    return [Target(str(h.address), h.port, h.transport, h.emblem, h) for h in hosts]


class SyslogSender:
    """Send every message ``log`` has for an event to each target."""

    def __init__(self, log: AsaLog, targets: Iterable[Target]) -> None:
        self.log = log
        self.targets = list(targets)
        self._udp: dict[int, socket.socket] = {}
        self._tcp: dict[int, socket.socket] = {}
        self._retry_at: dict[int, float] = {}
        self.sent = 0
        self.lost = 0

    def send_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            for i, target in enumerate(self.targets):
                for _sev, message in self.log.frames(ev, target.emblem):
                    self._send(i, target, message.encode("utf-8", "replace"))

    def _send(self, i: int, target: Target, data: bytes) -> None:
        try:
            if target.transport == "tcp":
                sock = self._tcp.get(i)
                if sock is None:
                    if time.monotonic() < self._retry_at.get(i, 0.0):
                        self.lost += 1
                        return
                    sock = socket.create_connection((target.address, target.port), timeout=_TCP_TIMEOUT)
                    self._tcp[i] = sock
                sock.sendall(data + b"\n")
            else:
                sock = self._udp.get(i)
                if sock is None:
                    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    self._udp[i] = sock
                sock.sendto(data, (target.address, target.port))
            self.sent += 1
        except OSError:
            self.lost += 1
            if target.transport == "tcp":
                old = self._tcp.pop(i, None)
                if old is not None:
                    old.close()
                self._retry_at[i] = time.monotonic() + RETRY

    def close(self) -> None:
        for sock in [*self._udp.values(), *self._tcp.values()]:
            sock.close()
        self._udp.clear()
        self._tcp.clear()

    def __enter__(self) -> SyslogSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
