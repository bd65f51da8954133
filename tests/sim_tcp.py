"""Simulated hosts around one engine: minimal TCP ends that answer what the firewall sends them.

For the connection-limit, TCP Intercept, timeout and DCD tests, which need ends that react (a server
answering SYNs, a client answering a cookie, both answering keep-alives) rather than scripted packets.
A ``Net`` feeds packets to the firewall and delivers what it emits to the host owning the destination
address on that interface; packets for addresses no host owns (spoofed sources) vanish, as they would.
Each TCP end keeps RFC 793's SND.NXT / RCV.NXT and answers:

* a SYN (listening) with a SYN-ACK; a SYN-ACK with the ACK;
* data in order with an ACK (a server also sends its ``response`` once a request arrived);
* a segment left of the window, e.g. a keep-alive (seq = RCV.NXT - 1), with an ACK for RCV.NXT;
* a FIN with an ACK; a RST by forgetting the connection.

Ends do not retransmit: the tests drive time with ``Net.advance`` and look at what happened.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable

from statewall import craft
from statewall.packet import decode

SYN, RST, ACK, FIN, PSH = 0x02, 0x04, 0x10, 0x01, 0x08
M = 0xFFFFFFFF


def str_to_addr(text: str) -> int:
    return int(ipaddress.ip_address(text))


class Conn:
    """One end's view of a TCP connection."""

    __slots__ = ("state", "snd_nxt", "rcv_nxt", "peer_window", "received", "pending", "established")

    def __init__(self, state: str, snd_nxt: int, rcv_nxt: int) -> None:
        self.state = state
        self.snd_nxt = snd_nxt
        self.rcv_nxt = rcv_nxt
        self.peer_window = 0
        self.received = bytearray()
        self.pending = bytearray()  # data waiting for a window
        self.established = False


class TcpHost:
    """A host with one address on one firewall interface; ``listen`` makes it a server on a port."""

    def __init__(self, iface: str, addr: str, *, isn: int = 1_000_000, window: int = 64240) -> None:
        self.iface = iface
        self.addr = addr
        self.a = str_to_addr(addr)
        self.v = 6 if ":" in addr else 4
        self.isn = isn
        self.window = window
        self.ports: dict[int, bytes] = {}  # listening port -> response sent after the first request
        self.conns: dict[tuple[int, int, int], Conn] = {}  # (local port, peer address, peer port)
        self.syns = Counter()  # peer address -> SYNs received
        self.answers = 0  # ACKs sent for segments left of the window (keep-alives)
        self.alive = True  # False: the host is gone, it answers nothing

    def listen(self, port: int, response: bytes = b"") -> None:
        self.ports[port] = response

    def _seg(self, lport, peer, pport, seq, ack, flags, payload=b"", options=b"") -> bytearray:
        return craft.tcp_packet(
            self.v, self.a, peer, lport, pport, seq, ack, flags, self.window, options, payload
        )

    def connect(self, dst: str, dport: int, sport: int, *, mss: int = 1460) -> bytearray:
        peer = str_to_addr(dst)
        self.isn += 100_000
        c = Conn("SYN_SENT", (self.isn + 1) & M, 0)
        self.conns[(sport, peer, dport)] = c
        return self._seg(sport, peer, dport, self.isn, 0, SYN, options=craft.tcp_option_mss(mss))

    def conn(self, sport: int, dst: str, dport: int) -> Conn:
        return self.conns[(sport, str_to_addr(dst), dport)]

    def send(self, sport: int, dst: str, dport: int, data: bytes) -> list[bytearray]:
        """Queue data on a connection; it goes out at once if the peer's window allows."""
        c = self.conn(sport, dst, dport)
        c.pending += data
        return self._flush(sport, str_to_addr(dst), dport, c)

    def close(self, sport: int, dst: str, dport: int) -> bytearray:
        c = self.conn(sport, dst, dport)
        c.state = "FIN_WAIT"
        seg = self._seg(sport, str_to_addr(dst), dport, c.snd_nxt, c.rcv_nxt, FIN | ACK)
        c.snd_nxt = (c.snd_nxt + 1) & M
        return seg

    def _flush(self, lport, peer, pport, c: Conn) -> list[bytearray]:
        if not c.pending or not c.established or c.peer_window == 0:
            return []
        data = bytes(c.pending[: c.peer_window])
        del c.pending[: len(data)]
        seg = self._seg(lport, peer, pport, c.snd_nxt, c.rcv_nxt, ACK | PSH, data)
        c.snd_nxt = (c.snd_nxt + len(data)) & M
        return [seg]

    def deliver(self, data: bytes | bytearray) -> list[bytearray]:
        """A packet for this host; returns what it sends in answer."""
        if not self.alive:
            return []
        p = decode(bytearray(data))
        if p.proto != 6:
            return []
        key = (p.dport, p.src, p.sport)
        c = self.conns.get(key)
        flags = p.flags
        if flags & RST:
            self.conns.pop(key, None)
            return []
        if c is None:
            if flags & (SYN | ACK) == SYN and p.dport in self.ports:
                self.syns[p.src] += 1
                self.isn += 100_000
                c = Conn("SYN_RCVD", (self.isn + 1) & M, (p.seq + 1) & M)
                c.peer_window = p.window
                self.conns[key] = c
                return [self._seg(p.dport, p.src, p.sport, self.isn, c.rcv_nxt, SYN | ACK,
                                  options=craft.tcp_option_mss(1460))]  # fmt: skip
            if flags & ACK:
                return [self._seg(p.dport, p.src, p.sport, p.ack, 0, RST)]
            if flags & SYN:  # a closed port
                return [self._seg(p.dport, p.src, p.sport, 0, (p.seq + 1) & M, RST | ACK)]
            return []
        if flags & SYN:
            if c.state == "SYN_SENT" and flags & ACK and p.ack == c.snd_nxt:
                c.rcv_nxt = (p.seq + 1) & M
                c.state = "ESTABLISHED"
                c.established = True
                c.peer_window = p.window
                return [self._seg(p.dport, p.src, p.sport, c.snd_nxt, c.rcv_nxt, ACK)]
            if c.state == "SYN_RCVD" and not flags & ACK:
                self.syns[p.src] += 1  # a retransmitted SYN
            if c.established and flags & ACK:
                # A retransmitted SYN-ACK: its ACK was lost, say again what we expect (RFC 793).
                return [self._seg(p.dport, p.src, p.sport, c.snd_nxt, c.rcv_nxt, ACK)]
            return []
        out: list[bytearray] = []
        if c.state == "SYN_RCVD" and flags & ACK and p.ack == c.snd_nxt:
            c.state = "ESTABLISHED"
            c.established = True
        if flags & ACK:
            c.peer_window = p.window
        plen = p.payload_len
        if (p.seq - c.rcv_nxt) & M > 0x7FFFFFFF:
            # Left of the window (a keep-alive, a duplicate): say what we expect.
            self.answers += 1
            return [self._seg(p.dport, p.src, p.sport, c.snd_nxt, c.rcv_nxt, ACK)]
        if plen and p.seq == c.rcv_nxt:
            c.received += p.payload()
            c.rcv_nxt = (c.rcv_nxt + plen) & M
            response = self.ports.get(p.dport)
            if response and len(c.received) == plen:
                c.pending += response  # the first request of the connection gets the response
            sent = self._flush(p.dport, p.src, p.sport, c)
            out += sent or [self._seg(p.dport, p.src, p.sport, c.snd_nxt, c.rcv_nxt, ACK)]
        if flags & FIN:
            c.rcv_nxt = (c.rcv_nxt + 1) & M
            c.state = "CLOSE_WAIT" if c.state == "ESTABLISHED" else "TIME_WAIT"
            out.append(self._seg(p.dport, p.src, p.sport, c.snd_nxt, c.rcv_nxt, ACK))
        if not plen and not flags & FIN:
            out += self._flush(p.dport, p.src, p.sport, c)
        return out

    def half_open(self) -> int:
        return sum(1 for c in self.conns.values() if c.state == "SYN_RCVD")


class Net:
    """The firewall and the hosts around it, on a simulated clock."""

    def __init__(self, fw, hosts: list[TcpHost], now: float = 1000.0) -> None:
        self.fw = fw
        self.now = now
        self.hosts = {(h.iface, h.a): h for h in hosts}
        self.events: list = []
        self.keep_events = True
        self.tap: Callable[[str, bytearray], None] | None = None  # sees every packet the firewall emits

    def _emit(self, packets) -> None:
        queue = list(packets)
        while queue:
            iface, data = queue.pop(0)
            if self.tap is not None:
                self.tap(iface, data)
            host = self.hosts.get((iface, decode(bytearray(data)).dst))
            if host is None:
                continue  # nobody at that address (a spoofed source): the packet is lost
            for reply in host.deliver(data):
                res = self.fw.receive(host.iface, reply, self.now)
                if self.keep_events:
                    self.events += res.events
                queue += res.packets

    def send(self, host_or_iface, data: bytes | bytearray) -> None:
        """``data`` enters the firewall from a host (or from an interface, for spoofed packets)."""
        iface = host_or_iface if isinstance(host_or_iface, str) else host_or_iface.iface
        res = self.fw.receive(iface, data, self.now)
        if self.keep_events:
            self.events += res.events
        self._emit(res.packets)

    def sendall(self, host: TcpHost, segments: list[bytearray]) -> None:
        for s in segments:
            self.send(host, s)

    def advance(self, seconds: float) -> None:
        """Let time pass, running the firewall's timers at each deadline on the way."""
        end = self.now + seconds
        while True:
            due = self.fw.next_deadline()
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            res = self.fw.advance(self.now)
            if self.keep_events:
                self.events += res.events
            self._emit(res.packets)
        self.now = end
        res = self.fw.advance(end)
        if self.keep_events:
            self.events += res.events
        self._emit(res.packets)

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]
