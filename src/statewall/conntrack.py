"""The connection table: every tracked flow, found from either direction.

Owns ``Connection`` objects and the dictionary that finds them. A connection has two halves, one per
direction. Each half is indexed by the 6-tuple ``(ip version, protocol, src, sport, dst, dport)`` exactly
as its packets arrive on the wire at the firewall (before translation), and knows where its packets
leave and how they are rewritten on the way. A lookup is therefore one dictionary probe, whichever side
a packet comes from, and the per-packet NAT is a handful of stores (packet-io.md, "fast path data
layout").

For ICMP echo, ``sport`` and ``dport`` are both the echo identifier.
"""

from __future__ import annotations

from .events import Endpoint
from .interning import Interner
from .packet import addr_to_str
from .policy import Origin

ORIGINAL = 0
REPLY = 1


class Half:
    """One direction of a connection: how its packets arrive, where they leave, how they are rewritten.

    ``new_*`` are None when that field is left alone; ``rewrites`` is False when nothing changes, so the
    forwarding path skips the NAT block entirely for untranslated flows. ``nat`` is the translation
    precomputed for the codec (``compile_nat``), built when the first packet needs it; ``new_*`` are
    fixed by then.
    """

    __slots__ = (
        "conn",
        "in_iface",
        "out_iface",
        "key",
        "new_src",
        "new_sport",
        "new_dst",
        "new_dport",
        "nat",
        "_other",  # the connection's other half, for ORIGINAL (Connection.halves)
    )

    # ``dir`` (ORIGINAL or REPLY) and ``rewrites`` never change once the half is made: they are its
    # class's (one of four subclasses, ``_HALVES``), not fields of each half (memory: 10 slots, 112
    # bytes instead of 128, two halves per connection; read as fast as a slot).
    dir: int
    rewrites: bool

    def __new__(cls, conn=None, direction=None, *args):
        if cls is not Half or direction is None:
            return object.__new__(cls)  # a subclass, or a pickle's (__setstate__ picks the class)
        _, _, _, new_src, new_sport, new_dst, new_dport = args
        rewrites = not (new_src is None and new_sport is None and new_dst is None and new_dport is None)
        return object.__new__(_HALVES[direction][rewrites])

    def __setstate__(self, state) -> None:
        # ``(None, {slot: value})``; a snapshot of format version 1 has ``dir`` and ``rewrites`` in it.
        slots = dict(state[1] if isinstance(state, tuple) else state)
        direction, rewrites = slots.pop("dir", None), slots.pop("rewrites", None)
        if direction is not None:
            self.__class__ = _HALVES[direction][bool(rewrites)]
        for name, value in slots.items():
            object.__setattr__(self, name, value)

    def __init__(self, conn, direction, in_iface, out_iface, key, new_src, new_sport, new_dst, new_dport):
        _fill_half(self, conn, in_iface, out_iface, key, new_src, new_sport, new_dst, new_dport)

    def compile_nat(self) -> tuple:
        """``(src, dst, sport, dport, address_delta, l4_delta, address_changed)`` for the codec's
        ``Packet.forward_nat4``.

        The final addresses and ports, and the RFC 1624 sum changes they make: of the addresses (IP header
        checksum, pseudo-header of a partial checksum) and of addresses plus ports (full L4 checksum).
        Computed once per direction instead of per packet (packet-io.md, fast path data layout).
        """
        _, _, src, sport, dst, dport = self.key
        nsrc = src if self.new_src is None else self.new_src
        ndst = dst if self.new_dst is None else self.new_dst
        nsport = sport if self.new_sport is None else self.new_sport
        ndport = dport if self.new_dport is None else self.new_dport
        da = _shared_delta((nsrc - src) + (ndst - dst))
        dl4 = _shared_delta(da + (nsport - sport) + (ndport - dport))
        self.nat = nat = (nsrc, ndst, nsport, ndport, da, dl4, nsrc != src or ndst != dst)
        return nat


def _half_class(direction: int, rewrites: bool) -> type:
    return type(Half)(
        f"Half{'OR'[direction]}{'x' if rewrites else ''}",
        (Half,),
        {"__slots__": (), "dir": direction, "rewrites": rewrites, "__module__": __name__,
         "__qualname__": f"Half{'OR'[direction]}{'x' if rewrites else ''}"},
    )  # fmt: skip


# _HALVES[dir][rewrites]: the class of a half (Half.__new__ picks it)
_HALVES = tuple(tuple(_half_class(d, r) for r in (False, True)) for d in (0, 1))
HalfO, HalfOx = _HALVES[0]
HalfR, HalfRx = _HALVES[1]


# Addresses repeat across connections (a server, a client's many connections): the halves keep one
# integer object per address instead of the one each connection's first packet decoded (memory,
# docs/performance.md). Bounded: past the bound sharing starts over (equal values, never wrong).
_shared_address = Interner(1 << 16)
_ADDRESSES = _shared_address.table


# Ports repeat too (many hosts' ephemeral ports, PAT keeping the real port where it is free): one
# integer object per port number for the halves and the translations (at most 65 536 of them).
shared_port = Interner(1 << 17)
_PORTS = shared_port.table


def known_address(addr: int) -> int:
    """The shared object for ``addr`` if a connection's halves hold one, else ``addr`` itself (nothing
    kept: a flow that never becomes a connection, a flood's SYN, leaves no trace)."""
    return _ADDRESSES.get(addr, addr)


def known_port(port: int) -> int:
    """The same for a port number."""
    return _PORTS.get(port, port)


def _shared_key(key: tuple) -> tuple:
    """``key`` with its addresses and ports shared (the same tuple when they already are)."""
    v, proto, src, sport, dst, dport = key
    s = _ADDRESSES.get(src)
    d = _ADDRESSES.get(dst)
    sp = _PORTS.get(sport)
    dp = _PORTS.get(dport)
    if s is src and d is dst and sp is sport and dp is dport:
        return key
    if s is None:
        s = _shared_address(src)
    if d is None:
        d = _shared_address(dst)
    if sp is None:
        sp = shared_port(sport)
    if dp is None:
        dp = shared_port(dport)
    return (v, proto, s, sp, d, dp)


# The sum changes of compile_nat repeat across connections: one host's connections through one mapped
# address share ``da``, and ``dl4`` too when PAT keeps the port. One integer object per value instead of
# two per half (memory, docs/performance.md); bounded, past the bound sharing starts over.
_shared_delta = Interner(1 << 16)


def _extra(name: str, doc: str) -> property:
    """A rarely set ``Connection`` field kept in its ``_extra`` slot (None until set)."""

    def get(self):
        extra = self._extra
        return None if extra is None else extra.get(name)

    return property(get, lambda self, value: self._set(name, value), doc=doc)


# ``Connection.version``, ``proto``, ``direction`` and ``timeout_kind``: one tuple per combination of
# their few values, shared (memory); a write replaces the tuple.
_VP: dict = {}
_VP_DEFAULT = (4, 0, "outbound", "idle")


def _shape(version, proto, direction, kind) -> tuple:
    four = (version, proto, direction, kind)
    return _VP.setdefault(four, four)


def _shape_with(conn, i: int, value) -> tuple:
    four = getattr(conn, "_vp", _VP_DEFAULT)  # unset: a pickle of format version 1 sets them one by one
    if four[i] == value:
        return four  # the lifecycle writes timeout_kind per packet, mostly unchanged
    changed = list(four)
    changed[i] = value
    return _shape(*changed)


def reply_key(key: tuple, xlated: tuple, query: bool) -> tuple:
    """The key of a connection's REPLY half: its first packet's ``key`` ``(version, proto, src, sport,
    dst, dport)`` as it arrived and ``xlated`` ``(src, sport, dst, dport)`` as it left (the mapped
    source, the real destination), reversed. An ICMP query (``query``) has one "port", its identifier,
    in both places."""
    src1, sport1, dst1, dport1 = xlated
    return (key[0], key[1], dst1, sport1 if query else dport1, src1, sport1)


def make_halves(
    conn,
    in_iface: str,
    out_iface: str | None,
    key: tuple,
    xlated: tuple,
    query: bool,
    rkey: tuple | None = None,
):
    """Both halves of a new connection whose first packet arrived on ``in_iface`` as ``key`` and left
    through ``out_iface`` as ``xlated`` (``reply_key``, or ``rkey`` when the caller made it already):
    each half rewrites what differs, the REPLY half back to what the initiator used. For an ICMP query
    only the identifier (``new_sport``) changes.

    Per new connection, so ``Half(...)`` written out: the class chosen here (``_HALVES``) and the slots
    filled as ``Half.__init__`` fills them, without ``Half.__new__``'s and ``__init__``'s calls."""
    _, _, src0, sport0, dst0, dport0 = key
    src1, sport1, dst1, dport1 = xlated
    nsrc = src1 if src1 != src0 else None
    nsport = sport1 if sport1 != sport0 else None
    ndst = dst1 if dst1 != dst0 else None
    ndport = dport1 if dport1 != dport0 and not query else None
    if query:
        back_sport = sport0 if sport1 != sport0 else None
        back_dport = None
    else:
        back_sport = dport0 if dport1 != dport0 else None
        back_dport = sport0 if sport1 != sport0 else None
    if rkey is None:
        rkey = reply_key(key, xlated, query)
    rewrites = not (nsrc is None and nsport is None and ndst is None and ndport is None)
    fwd = _half(_HALVES[0][rewrites], conn, in_iface, out_iface, key, nsrc, nsport, ndst, ndport)
    # The REPLY half rewrites exactly when the ORIGINAL one does (each field undoes one of its).
    rev = _half(
        _HALVES[1][not (ndst is None and back_sport is None and nsrc is None and back_dport is None)],
        conn,
        out_iface,
        in_iface,
        rkey,
        ndst if ndst is None else dst0,
        back_sport,
        nsrc if nsrc is None else src0,
        back_dport,
    )
    return fwd, rev


def _half(cls, conn, in_iface, out_iface, key, new_src, new_sport, new_dst, new_dport):
    """One half of ``make_halves``, its slots filled without ``Half.__init__``'s call."""
    return _fill_half(_new(cls), conn, in_iface, out_iface, key, new_src, new_sport, new_dst, new_dport)


def _fill_half(h, conn, in_iface, out_iface, key, new_src, new_sport, new_dst, new_dport):
    """A half's slots as ``Half(...)`` makes them (its NAT compiled later, its other half set by
    ``ConnTable.add``)."""
    h.conn = conn
    h.in_iface = in_iface
    h.out_iface = out_iface
    h.key = _shared_key(key)
    h.new_src = new_src if new_src is None else _shared_address(new_src)
    h.new_sport = new_sport
    h.new_dst = new_dst if new_dst is None else _shared_address(new_dst)
    h.new_dport = new_dport
    h.nat = None
    h._other = None
    return h


_new = object.__new__


# ``Connection.data_seen``: whether payload went each way, an immutable pair shared by every connection
# with the same two flags and replaced on a write (``seen_with``), instead of a list per connection
# (memory). The compiled fast path writes it the same way.
_SEEN = {(a, b): (a, b) for a in (False, True) for b in (False, True)}
NOTHING_SEEN = _SEEN[(False, False)]


def seen_with(pair: tuple[bool, bool], d: int) -> tuple[bool, bool]:
    """``pair`` with direction ``d`` marked, shared."""
    return _SEEN[(True, bool(pair[1])) if d == 0 else (bool(pair[0]), True)]


class Connection:
    """A tracked flow. ``tcp`` is the TCP tracker (None for UDP/ICMP/other).

    Memory (a million idle connections, docs/performance.md): what most connections never set lives in
    one slot, ``_extra`` (None, or a dict once one is set), behind properties: ends that differ from
    the ORIGINAL half's (``initiator``, ``responder``), the interface whose FIN began the close
    (``closer``), the replay index keys (``replay_keys``), and the inspection (``helper``), connection
    limits (``limit``), TCP Intercept (``intercept``), Dead Connection Detection (``dcd``) and
    per-class timeouts (``tmo``) that only some connections have. ``inside_is_initiator`` is derived
    from ``direction``; ``version``, ``proto``, ``direction`` and ``timeout_kind`` are one shared
    tuple. ``xlates`` keeps a lone translation without a tuple.
    """

    __slots__ = (
        "id",
        "_vp",
        "_fwd",
        "tcp",
        "created",
        "last",
        "timeout",
        "bytes",
        "data_seen",
        "_extra",
        "_xl",
        "origin",
        "queued_at",
        "closed",
        "mpf",
        "norm",
        "seqrand",
        "fast",
    )

    def __init__(self, conn_id, version, proto, created, direction, initiator, responder, origin):
        self.id = conn_id
        self._vp = _shape(version, proto, direction, "idle")
        self._fwd: Half | None = None  # the ORIGINAL half; the REPLY half is its _other (halves)
        self.tcp = None
        self.created = created
        self.last = created
        self.timeout = 0.0
        self.bytes = 0
        self.data_seen = NOTHING_SEEN  # payload seen in ORIGINAL / REPLY direction (seen_with)
        # {"initiator", "responder", "closer", "replay_keys": value} for those that are set (see above)
        self._extra: dict | None = None
        if initiator is not None or responder is not None:
            self._extra = {"initiator": initiator, "responder": responder}
        self._xl = None  # xlates: None, the one translation, or a tuple of several
        self.origin: Origin | None = origin
        self.queued_at = 0.0
        self.closed = False
        # The ASA's class settings (statewall.mpf.Effective), TCP normalizer state and sequence
        # randomization (statewall.normalizer.NormState, statewall.seqrand.SeqShift); None elsewhere.
        self.mpf = None
        self.norm = None
        self.seqrand = None
        # The compiled fast path's record while the connection is offloaded to it (statewall.fastpath).
        self.fast = None

    @property
    def xlates(self) -> tuple:
        """The translations the connection holds (most hold one: kept without a tuple, memory)."""
        x = self._xl
        return () if x is None else x if type(x) is tuple else (x,)

    @xlates.setter
    def xlates(self, xlates) -> None:
        self._xl = None if not xlates else xlates[0] if len(xlates) == 1 else tuple(xlates)

    def deadline(self) -> float:
        return self.last + self.timeout if self.timeout > 0 else float("inf")

    @property
    def halves(self) -> tuple[Half, Half] | tuple:
        """``(ORIGINAL half, REPLY half)``, or ``()`` before they are set. Built when asked (nothing
        reads it per forwarded packet): a connection keeps no tuple for it (memory)."""
        fwd = self._fwd
        return () if fwd is None else (fwd, fwd._other)

    @halves.setter
    def halves(self, pair: tuple[Half, Half] | tuple) -> None:
        if not pair:
            self._fwd = None
            return
        fwd, rev = pair
        fwd._other = rev
        self._fwd = fwd

    # The two ends as events and ``show conn`` name them. Once the table holds the connection they are
    # usually what the ORIGINAL half says (its tuple and translation), and then they are built from it
    # when asked instead of being kept as four address strings and two objects per connection.

    def _get(self, name: str):
        extra = self._extra
        return None if extra is None else extra.get(name)

    def _set(self, name: str, value) -> None:
        extra = self._extra
        if extra is None:
            if value is None:
                return
            self._extra = extra = {}
        extra[name] = value

    @property
    def initiator(self) -> Endpoint:
        ep = self._get("initiator")
        return self._ends()[0] if ep is None else ep

    @initiator.setter
    def initiator(self, ep: Endpoint) -> None:
        self._set("initiator", ep)

    @property
    def responder(self) -> Endpoint:
        ep = self._get("responder")
        return self._ends()[1] if ep is None else ep

    @responder.setter
    def responder(self, ep: Endpoint) -> None:
        self._set("responder", ep)

    closer = _extra("closer", "The interface whose FIN began the close (None before).")
    helper = _extra("helper", "The inspection's per-connection state (None without one).")
    limit = _extra(
        "limit", "Its connection limits' admission (``statewall.limits.Admission``; None without)."
    )
    intercept = _extra(
        "intercept", "TCP Intercept's pending handshake (``statewall.intercept.Pending``; None)."
    )
    dcd = _extra("dcd", "Dead Connection Detection's probe (``statewall.dcd.Probe``; None when not in use).")
    tmo = _extra(
        "tmo", "Per-class (embryonic, idle, half-closed) seconds replacing the global ones (None when none)."
    )

    version = property(
        lambda self: self._vp[0], lambda self, value: setattr(self, "_vp", _shape_with(self, 0, value))
    )
    proto = property(
        lambda self: self._vp[1], lambda self, value: setattr(self, "_vp", _shape_with(self, 1, value))
    )
    direction = property(
        lambda self: self._vp[2],
        lambda self, value: setattr(self, "_vp", _shape_with(self, 2, value)),
        doc="``outbound`` (from the higher security level) or ``inbound``.",
    )
    timeout_kind = property(
        lambda self: self._vp[3],
        lambda self, value: setattr(self, "_vp", _shape_with(self, 3, value)),
        doc="What the idle timeout is (``idle``, ``embryonic``, ``half-closed``, the tracker's state).",
    )

    icmp = _extra("icmp", "An ICMP connection's (type, code) of the packet that opened it (302020/302021).")
    replay_keys = _extra(
        "replay_keys",
        "Its entries in ``Firewall.replay_index`` (None unless a replay adapter asked for one).",
    )
    replay_space = _extra(
        "replay_space",
        "Per direction, the sequence space a replayed capture writes its acks in "
        "(``statewall.engine.capture_space.Space``; None unless a replay met a shifted connection).",
    )

    @property
    def inside_is_initiator(self) -> bool:
        return self.direction == "outbound"

    def _ends(self) -> tuple[Endpoint, Endpoint]:
        """(initiator, responder) as the ORIGINAL half describes them: real and mapped ends."""
        fwd = self._fwd
        if fwd is None:
            fwd = self.halves[0]  # a connection its compiled record holds alone (statewall.fastpath)
        v, _, src, sport, dst, dport = fwd.key
        msrc = src if fwd.new_src is None else fwd.new_src
        msport = sport if fwd.new_sport is None else fwd.new_sport
        rdst = dst if fwd.new_dst is None else fwd.new_dst
        rdport = dport if fwd.new_dport is None else fwd.new_dport
        return (
            Endpoint(fwd.in_iface, addr_to_str(v, src), sport, addr_to_str(v, msrc), msport),
            Endpoint(fwd.out_iface, addr_to_str(v, rdst), rdport, addr_to_str(v, dst), dport),
        )

    def compact(self) -> None:
        """Forget the stored ends where the ORIGINAL half gives the same (the table calls this once the
        halves are final)."""
        extra = self._extra
        if self._fwd is None or extra is None:
            return
        stored_ini = extra.get("initiator")
        stored_res = extra.get("responder")
        if stored_ini is None or stored_res is None:
            return
        ini, res = self._ends()
        if ini == stored_ini:
            del extra["initiator"]
        if res == stored_res:
            del extra["responder"]
        if not extra:
            self._extra = None


_dict_get = dict.get
_dict_contains = dict.__contains__


class Keys(dict):
    """``ConnTable.by_key``: every half by its key, including the halves of the connections the compiled
    fast path's records hold alone (``statewall.fastpath``: an idle offloaded TCP connection keeps
    neither halves nor keys, issue 18's fifth memory round). A lookup that misses the dictionary asks
    the compiled table (``find``, one C call), and for a key it holds the fast path makes that
    connection's halves again and puts them back here (``fast.held_half``): every reader finds what it
    found when the halves were kept. ``in`` answers without making them, ``peek`` makes a view that is
    not kept. Pickled (a snapshot) as the plain dictionary it was before (``ConnTable.__setstate__``
    makes it a ``Keys`` again)."""

    __slots__ = ("fast", "find")

    def __init__(self, *args) -> None:
        dict.__init__(self, *args)
        self.fast = None  # the FastPath whose records hold halves (set when it first drops some)
        self.find = None  # its table's find(key) -> (flow, direction) or None

    def get(self, key, default=None):
        half = _dict_get(self, key)
        if half is not None:
            return half
        find = self.find
        if find is None:
            return default
        found = find(key)
        if found is None:
            return default
        half = self.fast.held_half(found)
        return default if half is None else half

    def peek(self, key):
        """The half under ``key`` or None, for a reader that only reads it: of a connection its record
        holds alone, a view made from the record (not kept; ``get`` keeps the halves it makes)."""
        half = _dict_get(self, key)
        if half is None:
            find = self.find
            if find is not None:
                found = find(key)
                if found is not None:
                    return self.fast.view_half(found)
        return half

    def __contains__(self, key) -> bool:
        if _dict_contains(self, key):
            return True
        find = self.find
        if find is None:
            return False
        found = find(key)
        return found is not None and self.fast.holds(found)

    def __missing__(self, key):
        half = self.get(key)
        if half is None:
            raise KeyError(key)
        return half

    def __reduce__(self):
        return (dict, (dict(self),))


class ConnTable:
    """Both halves of every connection in one dictionary, plus the counts ``show conn`` prints."""

    __slots__ = ("by_key", "by_id", "most_used")

    def __init__(self) -> None:
        self.by_key: Keys = Keys()
        self.by_id: dict[int, Connection] = {}
        self.most_used = 0

    def __setstate__(self, state) -> None:
        # ``(None, {slot: value})`` as pickled; ``by_key`` comes back a plain dict (Keys.__reduce__).
        slots = state[1] if isinstance(state, tuple) else state
        for name, value in slots.items():
            setattr(self, name, value)
        if type(self.by_key) is not Keys:
            self.by_key = Keys(self.by_key)

    def add(self, conn: Connection, oneway: bool = False) -> None:
        """``oneway``: a unidirectional connection, found only by its ORIGINAL half's key (its REPLY half
        describes the way back but no packet finds it: the ASA's ICMP without inspection)."""
        fwd = conn._fwd  # conn.halves without its tuple (per new connection)
        if fwd is not None:
            by_key = self.by_key
            by_key[fwd.key] = fwd
            if not oneway:
                rev = fwd._other
                by_key[rev.key] = rev
        if conn._extra is not None:  # nothing to forget otherwise
            conn.compact()
        self.by_id[conn.id] = conn
        n = len(self.by_id)
        if n > self.most_used:
            self.most_used = n

    def remove(self, conn: Connection) -> None:
        # The halves the dictionary holds (a connection whose record holds it alone has none here: its
        # keys are the compiled table's, which the fast path's unoffload forgets).
        keys = self.by_key
        fwd = conn._fwd
        if fwd is not None:
            for half in (fwd, fwd._other):
                if half is not None and _dict_get(keys, half.key) is half:
                    dict.__delitem__(keys, half.key)
        self.by_id.pop(conn.id, None)
        conn.closed = True

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self):
        return iter(list(self.by_id.values()))
