"""Expectations: data connections an inspection announced, allowed in before their first packet.

Owns the expectation table (netfilter's ``nf_conntrack_expect``, the ASA's pinholes). When the FTP
inspector reads ``PORT``/``EPRT`` from the client or ``227``/``229`` from the server, it asks
``announce`` for exactly that data connection: from the peer's address (any source port) to the
announced address and port, as the packets will arrive at the firewall. A new flow that matches is
RELATED: it is let in without the access rules and goes where the expectation says, and its
connection is linked to the control connection (its master).

NAT follows the master (``nf_nat_follow_master``). When the announcing side is translated, the
announced port gets a translation of its own toward the peer -- a PAT slot for the client's data port,
keeping the port when it is free as PAT does, else another; the static mapping for a statically
translated server -- and the payload must carry the mapped address and port (the caller rewrites it).
When no translation rule covers the port (a port-only static for 21, say), the master's mapped address
is announced with the same port, as Linux does. If another master already expects that exact
connection, the next free port above is taken (Linux since 2023 draws random ports above instead;
statewall stays sequential so that replays are reproducible); without NAT to move the port, the
announcement fails as Linux's ``nf_ct_expect_related`` does with -EBUSY.

Lifetime. An expectation is used once: the first matching connection takes it (and takes over its
translation slot). Unused, it expires after ``EXPECT_TIMEOUT`` (5 minutes: the FTP helper's expectation
policy in Linux, ``ftp_exp_policy.timeout``; the ASA documents no figure for an unused FTP pinhole, so
both dialects use Linux's), when its master goes, or when the master announces another one: at most
``MAX_EXPECTED`` per master (Linux's ``max_expected = 1``: ``nf_ct_expect_related`` evicts the oldest,
``evict_oldest_expect`` in nf_conntrack_expect.c). A control connection announcing a port every few
milliseconds therefore holds one pinhole, never more, and the table's memory for it stays flat: the
expectation it replaces is reused in place, so its timer entry (queued at the earlier deadline) serves
the new one too, as the lazy timers do for connections. A translation slot held only by an expectation
starts its idle timer when the expectation goes.

Data activity refreshes the master's idle timer (``DataChannel``) unless the inspection's
``data_refreshes_control`` is off: the 2.2 kernel's ip_masq_ftp did it so that a long transfer does not
lose its control connection (seed 004); Linux conntrack does not, which is the failure the lab shows.
"""

from __future__ import annotations

from .acl import AclDecision
from .events import xlate_built
from .nat import NatFailure
from .packet import addr_to_str
from .policy import PROTO_TCP, Origin

__all__ = ["EXPECT_TIMEOUT", "MAX_EXPECTED", "DataChannel", "ExpectFailure", "ExpectTable", "Expectation"]

EXPECT_TIMEOUT = 300.0
MAX_EXPECTED = 1


class ExpectFailure(Exception):
    """No expectation could be set up (no port free, NAT pool exhausted)."""


class Expectation:
    """One announced data connection.

    Matching: a TCP SYN arriving on ``in_iface`` from ``src`` (any port) to ``dst``/``dport``. It is
    forwarded out of ``out_iface`` to ``real_dst``/``real_dport``. ``xlate`` is the translation slot
    reserved for the announced port (None when the announcing side is not translated by a rule).
    """

    __slots__ = (
        "version",
        "proto",
        "in_iface",
        "src",
        "dst",
        "dport",
        "out_iface",
        "real_dst",
        "real_dport",
        "master",
        "direction",
        "created",
        "expires",
        "xlate",
        "kind",
        "origin",
        "data_refreshes_control",
        "live",
        "queued",
    )

    def __init__(
        self, version, in_iface, src, dst, dport, out_iface, real_dst, real_dport, master, direction
    ):
        self.version = version
        self.proto = PROTO_TCP
        self.in_iface = in_iface
        self.src = src
        self.dst = dst
        self.dport = dport
        self.out_iface = out_iface
        self.real_dst = real_dst
        self.real_dport = real_dport
        self.master = master
        self.direction = direction  # the master direction whose payload announced it
        self.created = 0.0
        self.expires = 0.0
        self.xlate = None
        self.kind = ""
        self.origin: Origin | None = None
        self.data_refreshes_control = True
        self.live = True
        self.queued = False  # it has an entry in the timer queue (at or before ``expires``)

    @property
    def key(self) -> tuple:
        return (self.version, self.proto, self.in_iface, self.src, self.dst, self.dport)

    @property
    def unnat(self) -> tuple:
        """The engine's UN-NAT result for a matching flow: (real_dst, real_dport, egress, static)."""
        return (self.real_dst, self.real_dport, self.out_iface, None)

    @property
    def decision(self) -> AclDecision:
        """The access decision for a matching flow: RELATED, permitted without the access rules."""
        return AclDecision(
            True,
            None,
            None,
            f"RELATED: data connection announced by {self.kind} on connection {self.master.id}",
            [],
        )

    def __repr__(self) -> str:
        v = self.version
        return (
            f"Expectation({self.kind} {self.in_iface}:{addr_to_str(v, self.src)} -> "
            f"{addr_to_str(v, self.dst)}/{self.dport} => {self.out_iface}:"
            f"{addr_to_str(v, self.real_dst)}/{self.real_dport}, master {self.master.id})"
        )


class DataChannel:
    """The helper of a connection an expectation let in: it keeps its master alive.

    It offers the inspector's interface to the engine (``inspect``, ``seqadj``, ``closed``,
    ``to_live``) so that the forwarding path treats both alike; a data connection carries no commands.
    """

    __slots__ = ("master", "refresh")

    class _NoSeqAdj:
        active = False

    seqadj = _NoSeqAdj()

    def __init__(self, master, refresh: bool) -> None:
        self.master = master
        self.refresh = refresh

    def inspect(self, half, pkt, now: float, ev: list):
        master = self.master
        if self.refresh and not master.closed and now > master.last:
            # The engine's timers are lazy (deadline = last + timeout), so stamping is the refresh.
            master.last = now
        return None

    def closed(self, now: float) -> None:
        return None

    def to_live(self, direction: int, pkt) -> None:
        return None


class ExpectTable:
    """Expectations by how their first packet arrives, by where it will go (for replay), by master."""

    __slots__ = ("nat", "timers", "timeout", "by_key", "by_real", "by_master", "announced", "used")

    def __init__(self, nat, timers, timeout: float = EXPECT_TIMEOUT) -> None:
        self.nat = nat
        self.timers = timers
        self.timeout = timeout
        self.by_key: dict[tuple, Expectation] = {}
        self.by_real: dict[tuple, Expectation] = {}
        self.by_master: dict[int, list[Expectation]] = {}
        self.announced = 0
        self.used = 0

    def __len__(self) -> int:
        return len(self.by_key)

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def __iter__(self):
        return iter(list(self.by_key.values()))

    # ---------------------------------------------------------------------------------------------
    # Announcing

    def announce(
        self,
        master,
        direction: int,
        port: int,
        now: float,
        events: list,
        *,
        kind: str = "",
        origin: Origin | None = None,
        data_refreshes_control: bool = True,
    ) -> Expectation:
        """Expect the data connection ``direction``'s side of ``master`` announced on ``port``.

        The announced address is that side's own (the caller checked it). Returns the expectation;
        its ``dst``/``dport`` are the address and port the payload must name on the peer's side.
        Raises ``ExpectFailure`` when no translation or port is available.
        """
        h = master.halves[direction]  # the announcing side's half: its packets arrive on h.in_iface
        o = master.halves[1 - direction]  # the peer's half
        v = master.version
        sender = h.key[2]  # the announcing side's real address
        peer = o.key[2]  # the peer's address as its packets arrive
        seen = o.key[4]  # the announcing side's address as the peer sees it
        translated = seen != sender or o.key[5] != h.key[3]
        maddr, mport, xl = seen, port, None
        if translated:
            try:
                xl, created = self.nat.translate_source(
                    v, PROTO_TCP, h.in_iface, h.out_iface, sender, port, peer, 0, now
                )
            except NatFailure as e:
                raise ExpectFailure(f"no translation for the data port: {e.message}") from None
            if xl is not None:
                maddr = xl.mapped_addr
                mport = xl.mapped_port if xl.pat else port
                if created:
                    events.append(xlate_built(xl, now))
        key = (v, PROTO_TCP, o.in_iface, peer, maddr, mport)
        clash = self.by_key.get(key)
        spare = None  # an expectation of this master given up below: its object is reused
        if clash is not None and clash.master is not master:
            if xl is not None and xl.pat:
                # The PAT slot is ours alone; an expectation left on its port is stale.
                self._remove(clash, now)
            elif not translated:
                raise ExpectFailure(
                    f"connection {clash.master.id} already expects {addr_to_str(v, maddr)}/{mport}"
                )
            else:
                mport = self._free_port(v, o.in_iface, peer, maddr, mport)
                if mport is None:
                    raise ExpectFailure("all ports in use")
                key = (v, PROTO_TCP, o.in_iface, peer, maddr, mport)
        elif clash is not None:
            # The same master announcing the same connection again (a retransmitted PORT): refresh.
            self._remove(clash, now)
            spare = clash
        # At most MAX_EXPECTED per master: the oldest goes (evict_oldest_expect). The list is read
        # afresh on every round: removing the last one takes the master's entry out of by_master.
        while len(self.by_master.get(master.id, ())) >= MAX_EXPECTED:
            spare = self.by_master[master.id][0]
            self._remove(spare, now)

        if spare is not None and spare.queued:
            # Its timer entry is due no later than the new deadline: it will find the new one then.
            exp = spare
            exp.__init__(v, o.in_iface, peer, maddr, mport, h.in_iface, sender, port, master, direction)
            exp.queued = True
        else:
            exp = Expectation(v, o.in_iface, peer, maddr, mport, h.in_iface, sender, port, master, direction)
        exp.created = now
        exp.expires = now + self.timeout
        exp.kind = kind
        exp.origin = origin
        exp.data_refreshes_control = data_refreshes_control
        if xl is not None and xl.kind != "static":
            self.nat.acquire(xl)
            exp.xlate = xl
        self.by_master.setdefault(master.id, []).append(exp)
        self.by_key[key] = exp
        self.by_real[(v, PROTO_TCP, o.in_iface, peer, sender, port)] = exp
        if not exp.queued:
            self.timers.schedule(exp.expires, exp)
            exp.queued = True
        self.announced += 1
        return exp

    def _free_port(self, v: int, iface: str, peer: int, maddr: int, port: int) -> int | None:
        for p in range(port + 1, 65536):
            if (v, PROTO_TCP, iface, peer, maddr, p) not in self.by_key:
                return p
        return None

    # ---------------------------------------------------------------------------------------------
    # Matching and use

    def find(self, version: int, proto: int, in_iface: str, src: int, dst: int, dport: int, now: float):
        """The live expectation a new flow's first packet matches, or None."""
        exp = self.by_key.get((version, proto, in_iface, src, dst, dport))
        if exp is None:
            return None
        if exp.expires < now or exp.master.closed:
            self._remove(exp, now)
            return None
        return exp

    def for_replay(self, version: int, proto: int, in_iface: str, src: int, dst: int, dport: int):
        """The expectation whose data connection a capture shows going to its real ``dst``/``dport``."""
        exp = self.by_real.get((version, proto, in_iface, src, dst, dport))
        return exp if exp is not None and exp.live and not exp.master.closed else None

    def consume(self, exp: Expectation, conn, now: float) -> None:
        """``conn`` was created from ``exp``: link it to its master and hand it the translation slot."""
        xl = exp.xlate
        exp.xlate = None
        self._remove(exp, now)
        if xl is not None:
            self.nat.acquire(xl)
            conn.xlates = (*conn.xlates, xl)
            self._release(xl, now)
        conn.helper = DataChannel(exp.master, exp.data_refreshes_control)
        self.used += 1

    # ---------------------------------------------------------------------------------------------
    # Ending

    def expire(self, exp: Expectation, now: float) -> None:
        """Timer callback: remove ``exp`` if it is still unused and due (re-queue if refreshed)."""
        exp.queued = False
        if not exp.live:
            return
        if exp.expires > now:
            self.timers.schedule(exp.expires, exp)
            exp.queued = True
            return
        self._remove(exp, now)

    def withdraw(self, exp: Expectation, now: float) -> None:
        """Take back an announcement that could not be delivered to the peer."""
        self._remove(exp, now)

    def remove_master(self, master, now: float) -> None:
        """The master connection is gone: so are the connections it announced and nobody used."""
        for exp in list(self.by_master.get(master.id, ())):
            self._remove(exp, now)

    def _remove(self, exp: Expectation, now: float) -> None:
        if not exp.live:
            return
        exp.live = False
        if self.by_key.get(exp.key) is exp:
            del self.by_key[exp.key]
        rkey = (exp.version, exp.proto, exp.in_iface, exp.src, exp.real_dst, exp.real_dport)
        if self.by_real.get(rkey) is exp:
            del self.by_real[rkey]
        mine = self.by_master.get(exp.master.id)
        if mine is not None:
            if exp in mine:
                mine.remove(exp)
            if not mine:
                del self.by_master[exp.master.id]
        if exp.xlate is not None:
            xl, exp.xlate = exp.xlate, None
            self._release(xl, now)

    def _release(self, xl, now: float) -> None:
        if self.nat.release(xl, now):
            self.timers.schedule(now + xl.timeout, xl)
