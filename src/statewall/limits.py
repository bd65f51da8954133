"""Connection limits: who counts toward which limit, and what a new flow gets when one is reached.

Owns the counts behind the ASA's ``set connection conn-max / embryonic-conn-max / per-client-max /
per-client-embryonic-max`` (reference A.3) and the ``tcp MAX EMB`` / ``udp MAX`` options of ``nat`` and
``static`` lines, and the decision for a new connection (``Limits.decide``): admit it, refuse it (a
total or per-client connection limit is reached: 201011 / 201013) or hand it to TCP Intercept (an
embryonic limit is reached: 201010 / 201012, ``statewall.intercept``).

Populations, as the ASA counts them:

* ``conn-max`` and ``embryonic-conn-max`` count every connection of the class (one count per class as
  applied by one service policy, ``statewall.mpf.ClassUse``);
* ``per-client-*`` count per initiating host (its real address) within that class;
* a NAT line's limits count every connection its rule carries: all hosts of a dynamic ``nat`` line's
  network together, the one server of a ``static``. The configuration guide says that when a class and
  a NAT line both limit the same traffic, "the ASA uses the lower limit": each population is checked
  on its own, so whichever is lower binds first. Both report with the same messages.

Connection limits apply to TCP and UDP; embryonic ones to TCP, where a connection stays embryonic
until its handshake completes (``Admission.established``). A connection that TCP Intercept validated
(the client answered the SYN cookie) is not held to the embryonic limits again.

``201012`` is rate-limited as the ASA does it by default: at most one message every 10 s. The drop is
still counted; its ``detail`` then says ``rate_limited`` and the formatter writes no line.
"""

from __future__ import annotations

from typing import NamedTuple

from .policy import PROTO_TCP, PROTO_UDP, Origin

CONN = "conn"
EMBRYONIC = "embryonic"
PER_CLIENT = "per-client"
PER_CLIENT_EMBRYONIC = "per-client-embryonic"

# Message id of each kind (logfmt.asa ``MESSAGES`` picks the row from ``kind``).
MESSAGE_IDS = {EMBRYONIC: 201010, CONN: 201011, PER_CLIENT_EMBRYONIC: 201012, PER_CLIENT: 201013}
# Messages the ASA rate-limits by default: id -> at most one every so many seconds.
RATE_LIMITS = {201012: 10.0}

ADMIT = 0
DENY = 1
INTERCEPT = 2


class Tally:
    """The connections of one population: how many, how many of them embryonic.

    ``mirror`` is the class's counter dictionary (``ClassUse.counters``) for a class population, so that
    ``show service-policy`` reads current values; ``home``/``key`` let a per-client tally leave its
    table when its last connection ends.
    """

    __slots__ = ("conns", "embryonic", "mirror", "home", "key")

    def __init__(self, mirror=None, home: dict | None = None, key=None) -> None:
        self.conns = 0
        self.embryonic = 0
        self.mirror = mirror
        self.home = home
        self.key = key

    def _show(self) -> None:
        m = self.mirror
        if m is not None:
            m["current_conns"] = self.conns
            m["current_embryonic"] = self.embryonic


class Admission:
    """What one admitted connection counts toward, until it ends (``Connection.limit``)."""

    __slots__ = ("tallies", "embryonic")

    def __init__(self, tallies: tuple[Tally, ...], embryonic: bool) -> None:
        self.tallies = tallies
        self.embryonic = embryonic
        for t in tallies:
            t.conns += 1
            if embryonic:
                t.embryonic += 1
            t._show()

    def established(self) -> None:
        """The handshake completed: no longer embryonic."""
        if not self.embryonic:
            return
        self.embryonic = False
        for t in self.tallies:
            t.embryonic -= 1
            t._show()

    def release(self) -> None:
        """The connection ended."""
        emb = self.embryonic
        self.embryonic = False
        for t in self.tallies:
            t.conns -= 1
            if emb:
                t.embryonic -= 1
            t._show()
            if t.conns == 0 and t.home is not None:
                t.home.pop(t.key, None)
        self.tallies = ()


class Verdict(NamedTuple):
    """``Limits.decide``'s answer. For DENY and INTERCEPT: which limit (``kind``, the population's
    ``count`` and the ``limit``), the line that set it and whether the message may be logged now;
    for ADMIT: the ``admission`` the connection now holds (None when no limit applies to it)."""

    action: int
    kind: str = ""
    count: int = 0
    limit: int = 0
    origin: Origin | None = None
    logged: bool = True
    admission: Admission | None = None

    def detail(self, direction: str) -> dict:
        """The Drop ``detail`` the 2010xx messages need (logfmt.asa ``MESSAGES``)."""
        d = {"kind": self.kind, "count": self.count, "limit": self.limit, "direction": direction}
        if not self.logged:
            d["rate_limited"] = True
        return d


ADMITTED = Verdict(ADMIT)

_CLASS_LIMITS = (
    ("conn_max", CONN),
    ("per_client_max", PER_CLIENT),
    ("embryonic_conn_max", EMBRYONIC),
    ("per_client_embryonic_max", PER_CLIENT_EMBRYONIC),
)
_EMBRYONIC_KINDS = frozenset({EMBRYONIC, PER_CLIENT_EMBRYONIC})


class Limits:
    """Every population's tally for one firewall, and the decision for new flows."""

    __slots__ = ("classes", "clients", "nat", "_logged")

    def __init__(self) -> None:
        self.classes: dict[int, Tally] = {}  # id(ClassUse) -> tally (the ClassUse lives as long)
        self.clients: dict[tuple, Tally] = {}  # (id(ClassUse), version, address) -> tally
        self.nat: dict[int, tuple[object, Tally]] = {}  # id(NatRule) -> (rule, tally)
        self._logged: dict[int, float] = {}

    def decide(
        self, eff, rules, proto: int, version: int, src: int, now: float, *, validated: bool = False
    ) -> Verdict:
        """Admit, refuse or intercept a new flow.

        ``eff`` is the flow's ``statewall.mpf.Effective`` (None without a policy framework), ``rules`` the
        NAT rules it uses (``NatRule``), ``src`` the initiator's real address. ``validated``: the client
        already answered a SYN cookie, so embryonic limits do not apply again.
        """
        if proto != PROTO_TCP and proto != PROTO_UDP:
            return ADMITTED
        if eff is None or not (
            eff.conn_max or eff.per_client_max or eff.embryonic_conn_max or eff.per_client_embryonic_max
        ):
            for r in rules:
                if (r.max_conns or r.embryonic_limit) if proto == PROTO_TCP else r.udp_max_conns:
                    break
            else:
                return ADMITTED  # no limit applies (the usual case): nothing to count either
        # Each limit that applies: (kind, limit, population key, origin, class use or None), and each
        # population once, with what owns it (a ClassUse or a NatRule).
        checks: list[tuple[str, int, tuple, Origin | None, object]] = []
        pops: dict[tuple, object] = {}
        if eff is not None:
            for name, kind in _CLASS_LIMITS:
                limit = getattr(eff, name)
                if not limit:
                    continue
                use = eff.set_by.get(name)
                if use is None:
                    continue
                per_client = kind in (PER_CLIENT, PER_CLIENT_EMBRYONIC)
                key = ("client", id(use), version, src) if per_client else ("class", id(use))
                pops.setdefault(key, use)
                checks.append((kind, limit, key, eff.origins.get(name), use))
        for rule in rules:
            if proto == PROTO_TCP:
                conn_limit, emb_limit = rule.max_conns, rule.embryonic_limit
            else:
                conn_limit, emb_limit = rule.udp_max_conns, 0
            if not (conn_limit or emb_limit):
                continue
            key = ("nat", id(rule))
            pops.setdefault(key, rule)
            if conn_limit:
                checks.append((CONN, conn_limit, key, rule.origin, None))
            if emb_limit:
                checks.append((EMBRYONIC, emb_limit, key, rule.origin, None))
        if not checks:
            return ADMITTED
        # Connection limits refuse; embryonic ones send the flow to TCP Intercept. Refusals first:
        # an intercepted client would only be refused once validated.
        for embryonic_pass in (False, True):
            for kind, limit, key, origin, use in checks:
                is_emb = kind in _EMBRYONIC_KINDS
                if is_emb != embryonic_pass:
                    continue
                if is_emb and (validated or proto != PROTO_TCP):
                    continue
                tally = self._find(key)
                count = 0 if tally is None else (tally.embryonic if is_emb else tally.conns)
                if count >= limit:
                    if use is not None and not is_emb:
                        use.counters["conn_limit_drops"] += 1  # show service-policy: "drop N"
                    logged = self._may_log(MESSAGE_IDS[kind], now)
                    return Verdict(INTERCEPT if is_emb else DENY, kind, count, limit, origin, logged)
        tallies = tuple(self._tally(key, owner) for key, owner in pops.items())
        return Verdict(ADMIT, admission=Admission(tallies, proto == PROTO_TCP))

    def _find(self, key: tuple) -> Tally | None:
        if key[0] == "class":
            return self.classes.get(key[1])
        if key[0] == "client":
            return self.clients.get(key[1:])
        entry = self.nat.get(key[1])
        return entry[1] if entry is not None else None

    def _tally(self, key: tuple, owner) -> Tally:
        t = self._find(key)
        if t is not None:
            return t
        if key[0] == "class":
            t = self.classes[key[1]] = Tally(owner.counters)
        elif key[0] == "client":
            t = self.clients[key[1:]] = Tally(None, self.clients, key[1:])
        else:
            t = Tally()
            self.nat[key[1]] = (owner, t)
        return t

    def _may_log(self, asa_id: int, now: float) -> bool:
        interval = RATE_LIMITS.get(asa_id)
        if interval is None:
            return True
        last = self._logged.get(asa_id)
        if last is not None and now - last < interval:
            return False
        self._logged[asa_id] = now
        return True
