"""The tests' one traffic driver: packets through a Firewall the way the tests tell their stories.

``Link`` is a Firewall, its clock and the record of what each wire carried. Tests hand it packets
(``send``: one packet in, what left out, decoded by scapy) and let time pass (``wait``); it also offers
the Firewall's own interface (``receive``, ``advance``, ``replay_rewrite``, ``ingress_for``), recording as
it goes, so that the replay adapter or the simulated hosts of ``sim_tcp`` can drive it in the firewall's
place and the test still sees both wires.

``Conversation`` is two hosts talking across a Link: ``a`` (the initiator, the client) and ``b`` (the
responder, the server), each with its address, port and interface, the address it sends to (the
peer's mapped address under NAT) and its own sequence numbers, talking TCP (``send``, or ``client`` /
``server``); UDP, ICMP and hand-made packets of any kind go through ``Link.send``. The hosts acknowledge
in one of two ways:

- ``acks="received"``: each host acknowledges what the firewall actually delivered to it, as a real TCP
  would; rewrites that change lengths (FTP) and sequence randomization are then seen by both ends.
- ``acks="capture"``: the hosts speak as a capture taken without the firewall would show them, and each
  packet goes through the firewall's replay hook (``replay_rewrite``), which carries it into the
  connection's coordinates (randomized numbers, mapped ports), as the replay adapter does.

Each ``send`` returns a ``Step``: the packets that left, decoded (a list), with ``packets`` (interface and
raw bytes) and the ``events`` of that step beside them.

Only the Firewall's public interface is used: ``Firewall(policy, ...)``, ``receive``, ``advance``,
``replay_rewrite``, ``ingress_for`` and public attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from statewall.engine import Firewall
from statewall.events import CtEvent, Drop, DropReason

__all__ = ["Conversation", "Host", "Link", "Step", "decode"]

M = 0xFFFFFFFF


def decode(data) -> IP | IPv6:
    """One packet's bytes as scapy reads them."""
    data = bytes(data)
    return (IPv6 if data[0] >> 4 == 6 else IP)(data)


class Step(list):
    """What one packet caused: the packets that left (decoded), their ``packets`` as (interface, raw
    bytes), their ``ifaces`` and the ``events``."""

    def __init__(self, packets, events) -> None:
        super().__init__(decode(p) for _, p in packets)
        self.packets = list(packets)
        self.ifaces = [i for i, _ in packets]
        self.events = list(events)

    def pairs(self) -> list[tuple[str, IP | IPv6]]:
        """(interface, decoded packet) of each packet that left."""
        return list(zip(self.ifaces, self))


class Link:
    """A Firewall and a clock; records what each wire carried.

    ``record`` holds (time, "in" or "out", interface, bytes) for every packet that arrived at an
    interface or left by one, in order; ``events`` every event. With ``replay=True`` each ``send`` first
    goes through the firewall's replay hook (``replay_rewrite``)."""

    def __init__(self, fw: Firewall, now: float = 1000.0, *, replay: bool = False) -> None:
        self.fw = fw
        self.now = now
        self.replay = replay
        self.events: list = []
        self.record: list[tuple[float, str, str, bytes]] = []

    @classmethod
    def asa(cls, text: str, filename: str = "fw.cfg", *, now: float = 1000.0, replay=False, **fw) -> Link:
        """A Link to a Firewall running the ASA configuration ``text``."""
        from statewall.dialects.asa import parse

        return cls(Firewall(parse(text, filename), **fw), now, replay=replay)

    @classmethod
    def iptables(cls, rules: str, filename: str = "t.rules", *, now=1000.0, replay=False, **fw) -> Link:
        """A Link to a Firewall running the iptables ruleset ``rules``."""
        from statewall.dialects.iptables import parse

        return cls(Firewall(parse(rules, filename), **fw), now, replay=replay)

    # -- the Firewall's interface, recorded ----------------------------------------------------------

    def receive(self, iface: str, data, now: float):
        self.record.append((now, "in", iface, bytes(data)))
        res = self.fw.receive(iface, data, now)
        self._left(res, now)
        return res

    def advance(self, now: float):
        res = self.fw.advance(now)
        self._left(res, now)
        return res

    def next_deadline(self):
        return self.fw.next_deadline()

    def replay_rewrite(self, iface: str, data, now: float):
        return self.fw.replay_rewrite(iface, data, now)

    def ingress_for(self, data):
        return self.fw.ingress_for(data)

    def _left(self, res, now: float) -> None:
        for out_iface, pkt in res.packets:
            self.record.append((now, "out", out_iface, bytes(pkt)))

    # -- driving it ----------------------------------------------------------------------------------

    def send(self, iface: str, data, dt: float = 0.01) -> Step:
        """``data`` arrives at ``iface`` ``dt`` seconds later; what left, decoded."""
        self.now += dt
        if self.replay:
            data = self.fw.replay_rewrite(iface, bytes(data), self.now)
        res = self.receive(iface, data, self.now)
        self.events += res.events
        return Step(res.packets, res.events)

    def wait(self, dt: float) -> Step:
        """Let ``dt`` seconds pass; what the firewall sent and reported meanwhile."""
        self.now += dt
        res = self.advance(self.now)
        self.events += res.events
        return Step(res.packets, res.events)

    # -- reading what happened -----------------------------------------------------------------------

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def drops(self, reason: DropReason | None = None) -> list[Drop]:
        return [e for e in self.of(Drop) if reason is None or e.reason is reason]

    def carried(self, iface: str, way: str | None = None) -> list[bytes]:
        """The packets ``iface`` carried (``way``: "in" arriving, "out" leaving, None both), in order."""
        return [p for _, w, i, p in self.record if i == iface and (way is None or w == way)]

    def left(self, iface: str) -> list[tuple[float, IP | IPv6]]:
        """(time, decoded packet) of each packet that left by ``iface``."""
        return [(t, decode(p)) for t, w, i, p in self.record if i == iface and w == "out"]

    def emitted(self) -> list[tuple[float, str, IP | IPv6]]:
        """(time, interface, decoded packet) of each packet that left, in order."""
        return [(t, i, decode(p)) for t, w, i, p in self.record if w == "out"]

    def forget(self) -> None:
        """Start the record of the wires afresh."""
        self.record.clear()

    def ct_lines(self) -> list[str]:
        """``conntrack -E``'s lines for what happened so far."""
        from statewall.logfmt.linux import conntrack_line

        return [conntrack_line(e) for e in self.of(CtEvent)]

    def listing(self) -> list[str]:
        """``conntrack -L``'s lines now."""
        from statewall.logfmt.linux import conntrack_listing

        return conntrack_listing(self.fw.conntrack_entries(self.now)).splitlines()


@dataclass
class Host:
    """One end of a conversation: where it is, where it sends to, and its sequence numbers.

    ``to``/``to_port`` are the address and port it sends to (the peer's mapped ones under NAT; the
    peer's own by default). ``nxt`` is its next sequence number in its own numbering, ``rcv`` the next
    byte it expects (``acks="received"``), ``shift`` what the firewall added to its numbers on the way
    (randomization, read from its SYN), ``sent`` what a script remembers of its segments (sequence
    number, payload) to retransmit them. An address may be given as text or as an integer (IPv4)."""

    addr: str | int
    port: int
    iface: str
    to: str | None = None
    to_port: int | None = None
    isn: int = 1000
    window: int | None = None

    def __post_init__(self) -> None:
        self.nxt = self.isn
        self.rcv = 0
        self.shift = 0
        self.sent: list[tuple[int, bytes]] = []


class Conversation:
    """Two hosts talking through a Link; see the module's description."""

    def __init__(
        self,
        link: Link,
        a: Host,
        b: Host,
        *,
        acks: str = "received",
        ttl: int = 64,
        fin_counts: bool = True,
        syn_options=(),
    ) -> None:
        assert acks in ("received", "capture")
        self.link = link
        self.a, self.b = a, b
        if a.to is None:
            a.to = b.addr
        if b.to is None:
            b.to = a.addr
        if a.to_port is None:
            a.to_port = b.port
        if b.to_port is None:
            b.to_port = a.port
        self.acks = acks
        self.ttl = ttl
        self.fin_counts = fin_counts
        self.syn_options = list(syn_options)  # the handshake's options unless ``open`` is told others
        self.out: list[tuple[str, IP | IPv6]] = []  # every packet that left, decoded, in order
        if acks == "capture":
            link.replay = True

    # Shortcuts to the link's clock and record.
    @property
    def fw(self) -> Firewall:
        return self.link.fw

    @property
    def now(self) -> float:
        return self.link.now

    @now.setter
    def now(self, value: float) -> None:
        self.link.now = value

    @property
    def events(self) -> list:
        return self.link.events

    def drops(self, reason: DropReason | None = None) -> list[Drop]:
        return self.link.drops(reason)

    def host(self, who: str) -> Host:
        return self.a if who in ("a", "c", "client") else self.b

    def peer(self, who: str) -> Host:
        return self.b if who in ("a", "c", "client") else self.a

    # -- TCP ------------------------------------------------------------------------------------------

    def segment(self, who: str, flags: str, payload: bytes = b"", *, seq=None, ack=None, ttl=None, **tcp):
        """``who``'s segment as it leaves the host (not sent)."""
        me, other = self.host(who), self.peer(who)
        if ack is None:
            ack = other.nxt if self.acks == "capture" else me.rcv
        if "A" not in flags and self.acks == "capture":
            ack = 0
        sack = tcp.pop("sack", None)
        if sack:
            tcp["options"] = [*tcp.get("options", []), ("SAck", sack)]
        if me.window is not None:
            tcp.setdefault("window", me.window)
        ttl = self.ttl if ttl is None else ttl
        v6 = ":" in me.addr
        l3 = IPv6(src=me.addr, dst=me.to, hlim=ttl) if v6 else IP(src=me.addr, dst=me.to, ttl=ttl)
        pkt = l3 / TCP(
            sport=me.port, dport=me.to_port, flags=flags, seq=me.nxt if seq is None else seq, ack=ack, **tcp
        )
        return pkt / Raw(payload) if payload else pkt

    def send(self, who: str, flags: str, payload: bytes = b"", *, seq=None, advance=True, **kw) -> Step:
        """``who`` ("a"/"c"/"client" or "b"/"s"/"server") sends one TCP segment; what left."""
        me, other = self.host(who), self.peer(who)
        pkt = self.segment(who, flags, payload, seq=seq, **kw)
        sent_seq = pkt[TCP].seq
        if advance and (seq is None or seq == me.nxt):
            grown = len(payload) + ("S" in flags) + (self.fin_counts and "F" in flags)
            me.nxt = (me.nxt + grown) & M
        step = self.link.send(me.iface, bytes(pkt))
        for oif, p in step.pairs():
            self.out.append((oif, p))
            if self.acks != "received" or TCP not in p:
                continue
            t = p[TCP]
            if t.flags & 0x02:
                me.shift = (t.seq - sent_seq) & M
            end = t.seq + len(bytes(t.payload)) + (1 if t.flags & 0x03 else 0)
            if t.flags & 0x02 or ((end - other.rcv) & M) < 0x80000000:
                other.rcv = end & M
        return step

    def client(self, flags: str, payload: bytes = b"", **kw) -> Step:
        return self.send("a", flags, payload, **kw)

    def server(self, flags: str, payload: bytes = b"", **kw) -> Step:
        return self.send("b", flags, payload, **kw)

    def open(self, syn=None, synack=None) -> None:
        """The three-way handshake; each step must pass (``syn``/``synack``: their TCP options, the
        conversation's ``syn_options`` when not given)."""
        syn = self.syn_options if syn is None else list(syn)
        synack = self.syn_options if synack is None else list(synack)
        assert self.send("a", "S", options=syn), "the SYN was not forwarded"
        assert self.send("b", "SA", options=synack), "the SYN-ACK was not forwarded"
        assert self.send("a", "A"), "the handshake's ACK was not forwarded"

    def wire(self, who: str, seq: int) -> int:
        """``who``'s sequence number ``seq`` as it appears beyond the firewall (randomization only)."""
        return (seq + self.host(who).shift) & M

    def stream(self, iface: str) -> bytes:
        """The TCP payload that left by ``iface``, reassembled by sequence number."""
        segs = sorted(
            {(p[TCP].seq, bytes(p[TCP].payload)) for oif, p in self.out if oif == iface and p[TCP].payload}
        )
        data = b""
        start = segs[0][0] if segs else 0
        for seq, payload in segs:
            off = seq - start
            if off > len(data):
                raise AssertionError(f"gap before {seq}")
            data = data[:off] + payload + data[off + len(payload) :]
        return data
