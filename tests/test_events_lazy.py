"""Given a connection's events kept and read late, expect the same log lines and JSON as read at once.

The engine gathers a connection's ends (302013/302014) and a translation's fields (305011/305012) as
compact records on the packet path and makes the ``Endpoint`` objects and address texts only when a
log, a sink or a listing reads the event (``statewall.events``). The classic bug of lazy formatting is
an event that reads the connection or the translation when it is formatted instead of when it was
made: formatted after the connection's teardown, after its translation expired and after another
connection took the same real port, it would say something else. Here one run formats every event as
it comes out of the engine and a second, identical run formats them all at the end.
"""

from __future__ import annotations

import pytest
from bench.run import BENCH_CONFIG, CLIENT_BASE, MAPPED, SERVER

from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnBuilt, ConnTeardown, Endpoint, XlateBuilt, XlateTeardown
from statewall.logfmt.asa import format_event
from statewall.logfmt.jsonl import event_record

M = 0xFFFFFFFF


def _connection(fw, client: int, sport: int, now: float, out: list) -> None:
    """A whole connection through PAT, randomization and the MSS rewrite: SYN to the last ACK."""
    opt = craft.tcp_option_mss(1460)

    def rx(iface, data):
        res = fw.receive(iface, data, now)
        out.extend(res.events)
        assert res.packets, [type(e).__name__ for e in res.events]
        return res.packets[0][1]

    syn = rx("inside", craft.tcp_packet(4, client, SERVER, sport, 80, 1000, 0, 0x02, 64240, options=opt))
    mport = int.from_bytes(syn[20:22], "big")
    dc = (int.from_bytes(syn[24:28], "big") - 1000) & M
    back = rx(
        "outside", craft.tcp_packet(4, SERVER, MAPPED, 80, mport, 5000, (1001 + dc) & M, 0x12, 65535, opt)
    )
    ds = (int.from_bytes(back[24:28], "big") - 5000) & M
    rx("inside", craft.tcp_packet(4, client, SERVER, sport, 80, 1001, (5001 + ds) & M, 0x10, 64240))
    rx(
        "outside",
        craft.tcp_packet(4, SERVER, MAPPED, 80, mport, 5001, (1001 + dc) & M, 0x19, 65535, payload=b"y"),
    )
    rx("inside", craft.tcp_packet(4, client, SERVER, sport, 80, 1001, (5003 + ds) & M, 0x11, 64240))
    rx("outside", craft.tcp_packet(4, SERVER, MAPPED, 80, mport, 5003, (1002 + dc) & M, 0x10, 65535))


def _traffic(fw, on_events) -> None:
    """Two hosts, the second taking the first's real port (so PAT moves it); the first's translation
    expires, then a third connection takes the first's real port again; each batch of events goes to
    ``on_events`` as the engine returns it."""
    a, b = CLIENT_BASE + 2, CLIENT_BASE + 3
    for client, sport, now in ((a, 40000, 1.0), (b, 40000, 2.0), (a, 40001, 3.0)):
        got: list = []
        _connection(fw, client, sport, now, got)
        on_events(got)
    on_events(fw.advance(100.0).events)  # the translations expire (305012)
    got = []
    _connection(fw, a, 40000, 101.0, got)  # the same real port again, a new translation
    on_events(got)
    on_events(fw.advance(200.0).events)


def _formatted(ev) -> tuple:
    return (tuple(format_event(ev, timestamp=False)), event_record(ev), ev.to_dict(), repr(ev))


@pytest.mark.parametrize("fast_path", [True, False])
def test_events_read_late_say_what_they_said_at_once(fast_path: bool) -> None:
    at_once: list = []
    _traffic(
        Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=1, fast_path=fast_path),
        lambda evs: at_once.extend(_formatted(e) for e in evs),
    )
    kept: list = []
    _traffic(Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=1, fast_path=fast_path), kept.extend)
    late = [_formatted(e) for e in kept]
    assert late == at_once
    kinds = [type(e) for e in kept]
    assert kinds.count(ConnBuilt) == kinds.count(ConnTeardown) == 4
    assert kinds.count(XlateBuilt) == 4 and kinds.count(XlateTeardown) == 4
    # The second host's translation of the same real port was moved: the records kept their own ports.
    built = [e for e in kept if type(e) is XlateBuilt]
    assert [e.real_port for e in built] == [40000, 40000, 40001, 40000]
    assert built[0].mapped_port != built[1].mapped_port


def test_an_end_given_as_a_record_reads_as_the_endpoint_it_stands_for() -> None:
    """The compact record of an end and the Endpoint it stands for make the same event, field for field
    and line for line (the engine gives records; tests, reports and snapshots give Endpoints)."""
    rec_i = ("inside", 4, CLIENT_BASE + 2, 40000, MAPPED, 1024)
    rec_r = ("outside", 4, SERVER, 80, SERVER, 80)
    eager = ConnBuilt(
        1.0,
        7,
        6,
        "outbound",
        Endpoint("inside", "10.0.0.2", 40000, "192.0.2.1", 1024),
        Endpoint("outside", "198.51.100.7", 80, "198.51.100.7", 80),
    )
    lazy = ConnBuilt(1.0, 7, 6, "outbound", rec_i, rec_r)
    assert lazy == eager and _formatted(lazy) == _formatted(eager)
    assert type(lazy.initiator) is Endpoint and lazy.initiator is lazy.initiator  # made once, kept
    down = ConnTeardown(2.0, 7, 6, "outbound", rec_i, rec_r, 1.0, 10, "TCP FINs", "outside")
    assert down.initiator == eager.initiator and down.responder == eager.responder
    assert format_event(down, timestamp=False) == format_event(
        ConnTeardown(2.0, 7, 6, "outbound", eager.initiator, eager.responder, 1.0, 10, "TCP FINs", "outside"),
        timestamp=False,
    )
