"""The SYN of a known flow class built straight into a compiled record (statewall.engine.known_syn)
against the Python path, packet for packet and state for state (tests/test_fastpath.py's comparison:
every packet out, every event, the counters, the clock and every connection's state after every
packet, ``show conn`` and the ended connections at the end).

Many connections of one class (one client to one server and port), so that the class's template is
made and later SYNs are built from it: through PAT (ports kept and translated), a static translation,
no translation with a tcp-map, without randomization, with ``sysopt connection tcpmss``, a tcp-map that
clears options; SYNs that differ from the template (options, TTL, window, a bad checksum) and SYNs of
partial checksums, which the Python path takes; a reload between the connections; packet-tracer.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statewall.checksum import internet_checksum
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.logfmt.tables import show_conn, show_xlate
from test_fastpath import (
    CLIENT,
    ENDS,
    GAPS,
    HANDSHAKES,
    SERVER,
    STEPS,
    WHOLE_CONFIGS,
    compare_trace,
    interleave,
    needs_fast,
    whole_connection,
)

M = 0xFFFFFFFF


def header_checksum(pkt: bytearray) -> bytearray:
    """``pkt`` with its IPv4 header checksum made right again."""
    pkt[10:12] = b"\0\0"
    pkt[10:12] = internet_checksum(pkt, 0, (pkt[0] & 15) * 4).to_bytes(2, "big")
    return pkt


def vary_syn(flow: list, how: str, rnd: random.Random) -> list:
    """The connection's first packet (its SYN) changed: ``ip-id`` (a per-connection field the template
    allows), ``ttl``, ``window``, ``tos``, ``df`` (fields it does not: the Python path), ``tcp-csum``
    (a wrong TCP checksum, which the Python path forwards updated), ``ip-csum`` (a wrong header
    checksum: dropped)."""
    if how == "same":
        return flow
    iface, pkt, dt, gso = flow[0]
    pkt = bytearray(pkt)
    if how == "ip-id":
        pkt[4:6] = rnd.getrandbits(16).to_bytes(2, "big")
    elif how == "ttl":
        pkt[8] = rnd.choice([1, 2, 63, 128])
    elif how == "tos":
        pkt[1] = 0x10
    elif how == "df":
        pkt[6] |= 0x40
    elif how == "window":
        pkt[34:36] = b"\x10\x00"
        c = int.from_bytes(pkt[36:38], "big")  # the checksum moved with it (RFC 1624)
        x = ((c ^ 0xFFFF) + 0x1000 + (0xFFFF - 64240)) % 0xFFFF or 0xFFFF
        pkt[36:38] = (0xFFFF - x).to_bytes(2, "big")
    elif how == "tcp-csum":
        pkt[36:38] = rnd.choice([0, 0xFFFF, rnd.getrandbits(16)]).to_bytes(2, "big")
    if how != "ip-csum":
        header_checksum(pkt)
    else:
        pkt[10:12] = (int.from_bytes(pkt[10:12], "big") ^ 0x5A5A).to_bytes(2, "big")
    return [(iface, pkt, dt, gso), *flow[1:]]


def rest_of(fw) -> list:
    """What ``compare_trace`` does not compare and the SYN's making writes: each connection's rare
    fields (``_extra``: the replay index keys, the inspection, the class timeouts, in their order), its
    translations' reference counts, the translation table, the service policy classes' connection
    counts, and whether some connection is randomized."""
    rows = [(c.id, repr(list((c._extra or {}).items())), [x.refcount for x in c.xlates]) for c in fw.conns]
    sp = fw.service_policies
    uses = sorted((k, u.connections, sorted(u.counters.items())) for k, u in sp.uses.items()) if sp else None
    return [sorted(rows), show_xlate(fw, now=fw.now), uses, fw.shifting, dict(fw.flow_classes.kept).keys()]


def same_rest(n, fast, slow) -> None:
    assert rest_of(fast) == rest_of(slow), f"after packet {n}"


VARIANTS = ["same", "same", "same", "ip-id", "ip-id", "ttl", "tos", "df", "window", "tcp-csum", "ip-csum"]


def class_specs():
    """Connections of one class: one set of SYN options for most of them (the template's), random
    ISNs, stories and handshakes."""
    options = st.tuples(
        st.sampled_from([536, 1380, 1460]), st.booleans(), st.booleans(), st.sampled_from([None, 0, 7])
    )
    one = st.tuples(
        st.tuples(st.integers(0, M), st.integers(0, M)),
        st.lists(st.sampled_from(STEPS), max_size=4),
        st.sampled_from(ENDS),
        st.lists(st.sampled_from(GAPS), max_size=20),
        st.sampled_from(["plain"] * 6 + HANDSHAKES),
        st.sampled_from(VARIANTS),
        st.booleans(),  # the template's options, or others
    )
    return st.tuples(options, options, st.lists(one, min_size=4, max_size=10))


def class_trace(spec, rnd: random.Random, sport_base: int = 43000, sports=None, overlap: float = 0.3) -> list:
    usual, other, conns = spec
    flows = []
    for i, (isns, steps, end, gaps, hs, how, same) in enumerate(conns):
        sport = sports[i] if sports is not None else sport_base + i
        flow = whole_connection((isns, usual if same or i < 2 else other, steps, end, gaps, hs), sport)
        flows.append(vary_syn(flow, how, rnd))
    # Mostly one connection after the other (a client's short connections), some overlapping.
    trace = []
    for f in flows:
        if rnd.random() < overlap and trace:
            merged = interleave(rnd, [trace[-len(f) :], f])
            trace[-len(f) :] = merged[: len(f)]
            trace += merged[len(f) :]
        else:
            trace += f
    return trace


@needs_fast
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(sorted(WHOLE_CONFIGS)),
    spec=class_specs(),
    seed=st.integers(0, 1 << 30),
    partial=st.booleans(),
)
def test_known_class_syns_equal_the_python_path(config, spec, seed, partial):
    """Many connections of one class, SYN to teardown: both paths packet for packet, state for state
    (full checksums, or partial ones and super-packets as the TUN gives them)."""
    rnd = random.Random(seed)
    trace = class_trace(spec, rnd)
    compare_trace(WHOLE_CONFIGS[config], 5, trace, drain=4000.0, between=same_rest, partial=partial)


def plain_spec(n: int, options=(1460, True, True, 7)):
    conns = [((1000 * i + 17, 5000 * i + 3), ["c-data", "s-data"], "fin-c", [], "plain", "same", True)
             for i in range(n)]  # fmt: skip
    return options, options, conns


@needs_fast
@pytest.mark.parametrize("config", sorted(WHOLE_CONFIGS))
@pytest.mark.parametrize(
    "options", [(1460, True, True, 7), (536, True, False, None)], ids=["ts-sack-ws", "sack"]
)
def test_the_syns_of_a_known_class_are_built_in_the_record(config, options):
    """Six connections of one class: the first is kept as the class, the second's SYN becomes its
    template, the other four SYNs are built from it (``FastPath.syns``), equal to the Python path's.
    Where the tcp-map clears an option of the SYN (window scale, SACK-permitted) the SYN changed
    otherwise than the template knows: no template, every SYN takes the stages."""
    trace = class_trace(plain_spec(6, options), random.Random(1))
    fast, slow = compare_trace(WHOLE_CONFIGS[config], 5, trace, between=same_rest)
    assert fast.fast.syns == (
        0 if config == "clear-options" and (options[2] or options[3] is not None) else 4
    )
    assert slow.fast is None
    assert fast.flow_classes.hits == slow.flow_classes.hits == 5


@needs_fast
@pytest.mark.parametrize("config", ["pat", "pat-norandom"])
def test_pat_ports_translated_within_a_class(config, monkeypatch):
    """Two clients with the same source ports, one after the other: the second one's ports are taken
    and translated by PAT (the halves' rewrite mask then has the port bits, another shared tuple than
    the template's), the first one's kept, each client's class with its own template."""
    import test_fastpath

    rnd = random.Random(3)
    a = class_trace(plain_spec(6), rnd)
    monkeypatch.setattr(test_fastpath, "CLIENT", CLIENT + 1)
    b = class_trace(plain_spec(6), rnd)
    monkeypatch.undo()
    trace = []
    for i in range(0, len(a), 9):  # a's connections open first, b's while a's are still open
        trace += a[i : i + 9] + b[i : i + 9]
    masks = []

    def between(n, fast, slow):
        masks.extend(f.shared[-2] for f in fast.fast.table.flows() if f.shared is not None)
        same_rest(n, fast, slow)

    fast, _ = compare_trace(WHOLE_CONFIGS[config], 5, trace, between=between)
    assert fast.fast.syns == 8
    assert len(set(masks)) > 1  # ports kept and ports translated


@needs_fast
def test_a_syn_unlike_the_template_takes_the_python_path():
    """A SYN of the class with other options, TTL, window or type of service is not the template's:
    the stages take it (no SYN built), and the next plain one is built again."""
    usual = (1460, True, True, 7)
    conns = [((1000 * i + 17, 5000 * i + 3), ["c-data"], "fin-c", [], "plain", how, True)
             for i, how in enumerate(["same", "same", "ttl", "window", "tos", "df", "same"])]  # fmt: skip
    conns[3] = (*conns[3][:6], False)
    trace = class_trace((usual, (536, False, False, None), conns), random.Random(2), overlap=0.0)
    fast, _ = compare_trace(WHOLE_CONFIGS["pat"], 5, trace)
    assert fast.fast.syns == 1  # only the last one


@needs_fast
@pytest.mark.parametrize("config", ["pat", "no-nat-tcp-map", "static", "pat-norandom", "pat-tcpmss"])
def test_partial_checksums_are_built_too(config):
    """SYNs with a partial checksum (TUN NEEDS_CSUM: the field holds the pseudo-header's sum, which only
    an address change moves): built from the template as the Python path rewrites them."""
    trace = class_trace(plain_spec(5), random.Random(1))
    fast, _ = compare_trace(WHOLE_CONFIGS[config], 5, trace, partial=True, between=same_rest)
    assert fast.fast.syns == 3


@needs_fast
def test_a_reload_between_connections_makes_a_new_template():
    """A reload drops the kept classes and their templates: the SYNs after it take the stages until
    the class has a template again, built by the new policy (here: randomization turned off)."""
    from statewall.live.ctl import reload_firewall

    trace = class_trace(plain_spec(8), random.Random(1))
    cut = len(trace) // 2
    syn_count = []

    def between(n, fast, slow):
        if n == cut:
            syn_count.append(fast.fast.syns)
            for fw in (fast, slow):
                reload_firewall(fw, parse(WHOLE_CONFIGS["pat-norandom"], "r.cfg"))

    fast, _ = compare_trace(WHOLE_CONFIGS["pat"], 5, trace, between=between)
    assert syn_count[0] and fast.fast.syns  # (the reload made a new compiled table and counters)
    assert all(c.seqrand is None for c in fast.conns)


@needs_fast
def test_packet_tracer_and_a_live_expectation_take_the_stages(monkeypatch):
    """While packet-tracer listens, or an expectation is live, the SYN takes every stage."""
    fw = Firewall(parse(WHOLE_CONFIGS["pat"], "t.cfg"), seed=5)
    trace = class_trace(plain_spec(4), random.Random(1))
    syns = [(i, p, dt) for i, p, dt, _ in trace if i == "inside" and p[33] == 0x02]
    now = 100.0
    for iface, pkt, _ in syns[:3]:
        fw.receive(iface, bytes(pkt), now)
    assert fw.fast.syns == 1
    fw.trace_log = []
    fw.receive("inside", bytes(syns[3][1]), now)
    assert fw.fast.syns == 1 and fw.trace_log
    fw.trace_log = None
    fw2 = Firewall(parse(WHOLE_CONFIGS["pat"], "t.cfg"), seed=5)
    for iface, pkt, _ in syns[:2]:
        fw2.receive(iface, bytes(pkt), now)
    monkeypatch.setattr(type(fw2.expect), "__bool__", lambda self: True, raising=False)
    monkeypatch.setattr(type(fw2.expect), "__len__", lambda self: 1, raising=False)
    fw2.receive("inside", bytes(syns[2][1]), now)
    assert fw2.fast.syns == 0


@needs_fast
def test_the_platform_connection_limit_is_checked_first():
    """At the platform's connection limit the stages refuse the SYN, as without a template."""
    trace = [x for x in class_trace(plain_spec(5), random.Random(1)) if x[0] == "inside" and x[1][33] == 0x02]
    fast = Firewall(parse(WHOLE_CONFIGS["pat"], "t.cfg"), seed=5)
    slow = Firewall(parse(WHOLE_CONFIGS["pat"], "t.cfg"), seed=5, fast_path=False)
    for fw in (fast, slow):
        fw.ct.max = 4
    for iface, pkt, _, _ in trace:
        a = fast.receive(iface, bytes(pkt), 100.0)
        b = slow.receive(iface, bytes(pkt), 100.0)
        assert [(i, bytes(p)) for i, p in a.packets] == [(i, bytes(p)) for i, p in b.packets]
        assert [repr(e) for e in a.events] == [repr(e) for e in b.events]
    assert fast.fast.syns == 2 and fast.stats == slow.stats and len(fast.conns) == 4
    assert SERVER  # (the trace's server)


def step_both(fast, slow, iface, pkt, now, **kw) -> None:
    """One packet through both firewalls: the same packets, events, counters and state after it."""
    from test_fastpath import state_of

    a = fast.receive(iface, bytes(pkt), now, **kw)
    b = slow.receive(iface, bytes(pkt), now, **kw)
    assert [(i, bytes(p)) for i, p in a.packets] == [(i, bytes(p)) for i, p in b.packets]
    assert [repr(e) for e in a.events] == [repr(e) for e in b.events]
    assert fast.stats == slow.stats
    fast.fast.sync()
    assert state_of(fast, flush=False) == state_of(slow)
    assert rest_of(fast) == rest_of(slow)


@needs_fast
@pytest.mark.parametrize("config", ["pat", "no-nat-tcp-map", "static", "pat-norandom"])
def test_full_and_partial_checksums_in_one_class(config):
    """The template made from a full checksum; later SYNs of the class with partial and full ones."""
    syns = [x for x in class_trace(plain_spec(6), random.Random(1), overlap=0.0) if x[1][33] == 0x02]
    fast = Firewall(parse(WHOLE_CONFIGS[config], "t.cfg"), seed=5)
    slow = Firewall(parse(WHOLE_CONFIGS[config], "t.cfg"), seed=5, fast_path=False)
    for n, (iface, pkt, _, _) in enumerate(syns):
        if n == 4:  # a partial sum of 0 (forged): untouched where no address changes, 0xFFFF where one does
            pkt = bytearray(pkt)
            pkt[36:38] = b"\0\0"
        step_both(fast, slow, iface, pkt, 100.0 + n, csum_partial=n in (2, 4))
    assert fast.fast.syns == 4


@needs_fast
def test_a_reply_tuple_in_use_is_refused_by_the_stages():
    """A SYN of a class with a template whose reply tuple is in the connection table already (as
    another connection's half would be: put there by hand, the configurations here cannot make one
    without the SYN's own tuple): the stages refuse it (build's check, 'the translated tuple is in
    use'), as without a template; the next SYN is built again."""
    syns = [x for x in class_trace(plain_spec(5), random.Random(1), overlap=0.0) if x[1][33] == 0x02]
    fast = Firewall(parse(WHOLE_CONFIGS["static"], "t.cfg"), seed=5)
    slow = Firewall(parse(WHOLE_CONFIGS["static"], "t.cfg"), seed=5, fast_path=False)
    for n, (iface, pkt, _, _) in enumerate(syns[:3]):
        step_both(fast, slow, iface, pkt, 100.0 + n)
    assert fast.fast.syns == 1
    taken = (4, 6, SERVER, 80, 0xC0A80928, 43003)  # the static's mapped address, the SYN's port
    for fw in (fast, slow):
        dict.__setitem__(fw.conns.by_key, taken, None)
    step_both(fast, slow, "inside", syns[3][1], 105.0)
    assert fast.fast.syns == 1 and len(fast.conns) == 3 and fast.drops == slow.drops
    step_both(fast, slow, "inside", syns[4][1], 106.0)
    assert fast.fast.syns == 2


@needs_fast
@pytest.mark.parametrize("config", ["pat", "no-nat-tcp-map"])
def test_a_snapshot_of_connections_built_from_a_template(config):
    """Connections whose SYN was built from the template, snapshotted at every SYN and restored into new
    firewalls: the same counters, connections and state as the Python path's restored; the restored
    fast one carries on like the Python path's (its classes, and templates, made again)."""
    from test_fastpath import state_of

    def restored(fw):
        again = Firewall(parse(WHOLE_CONFIGS[config], "t.cfg"), seed=5, fast_path=fw.fast is not None)
        again.restore(fw.snapshot())
        return again

    trace = class_trace(plain_spec(8), random.Random(4), overlap=0.0)
    fast = Firewall(parse(WHOLE_CONFIGS[config], "t.cfg"), seed=5)
    slow = Firewall(parse(WHOLE_CONFIGS[config], "t.cfg"), seed=5, fast_path=False)
    now = 100.0
    built = 0
    for iface, pkt, dt, _ in trace:
        now += dt
        step_both(fast, slow, iface, pkt, now)
        if pkt[33] == 0x02 and fast.fast.syns:
            built = max(built, fast.fast.syns)
            a, b = restored(fast), restored(slow)
            assert a.stats == b.stats == slow.stats and a.now == b.now
            assert show_conn(a, detail=True) == show_conn(b, detail=True)
            assert state_of(a) == state_of(b)
            fast, slow = a, b
    assert built


@needs_fast
def test_a_timestamps_offset_outside_the_options_is_refused():
    """``ts`` names where the timestamps option's values are: inside the TCP options of the SYN or not
    at all (syn_like: not alike; syn_build: an error, nothing written)."""
    from statewall._fastpath import Flow

    syn = whole_connection(((1, 2), (1460, True, True, 7), [], "fin-c", []), 43000)[0][1]
    assert len(syn) == 60
    assert Flow.syn_like(syn, bytes(syn), 0) and Flow.syn_like(syn, bytes(syn), 48)
    for ts in (8, 39, 53, 60, -4):
        assert not Flow.syn_like(syn, bytes(syn), ts)
        before = bytes(syn)
        with pytest.raises(ValueError, match="timestamps"):
            Flow().syn_build(object(), (), syn, before, before, 1, 2, 0, 0, False, ts)
        assert syn == before
