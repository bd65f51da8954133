"""Differential test: statewall's TCP tracker against the running kernel's conntrack, packet by packet.

Three namespaces a <-> fw <-> b (tests/netns_util.py). fw forwards with nftables dropping
``ct state invalid`` in FORWARD and nothing else, so a packet that entered fw and did not leave it was
INVALID to the kernel. The same packets, in the order fw handled them and with their directions, are
fed to ``TcpTracker`` (through ``statewall.packet.decode``); kernel dropped <=> statewall INVALID.

Crafted conversations are injected one packet at a time from both ends with AF_PACKET sockets, between
addresses no stack owns (so no end answers with a RST). After every crafted packet the test also
compares fw's conntrack entry (/proc/net/nf_conntrack: state, ASSURED, remaining timeout) with the
tracker's. Seeded random conversations put segments around every bound the same way. A real
transfer between the kernel's own TCP stacks (python sockets, loss injected after fw so SACK blocks
and window scaling are real) is captured on fw and replayed the same way.

Every mismatch fails the test; documented, reasoned exceptions live in docs/tcptrack.md.

Each test stands alone, in any order and in any selection: the lab is shared (module fixture) but every
test uses its own ports, sets the conntrack knobs it needs and puts them back, checks the ``ct state
invalid`` counter against its own drops (the counter's increase during that test), and removes what it
added to the namespaces even when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

import pytest

from netns_util import PACKET_HOST, PACKET_OUTGOING, Capture, Lab, missing_prerequisites, packet_key, sh
from statewall.packet import decode
from statewall.policy import ConntrackSettings
from statewall.tcptrack import ACCEPT, INVALID, ORIGINAL, REPLY, TcpTracker

_why_not = missing_prerequisites()
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(_why_not is not None, reason=f"kernel differential: {_why_not}"),
]

scapy_inet = pytest.importorskip("scapy.layers.inet")
IP, TCP, ICMP = scapy_inet.IP, scapy_inet.TCP, scapy_inet.ICMP

C_ISN = 1_000_000  # the client's (a side) initial sequence number in crafted conversations
S_ISN = 5_000_000  # the server's (b side)
SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
PASS_WAIT = 0.3  # seconds to wait for a crafted packet to come out of fw before calling it dropped
KNOBS = ("tcp_be_liberal", "tcp_loose", "tcp_ignore_invalid_rst")
DEFAULTS = {"tcp_be_liberal": 0, "tcp_loose": 1, "tcp_ignore_invalid_rst": 0}


# --------------------------------------------------------------------------------------------------
# The statewall side: nf_conntrack_in's lookup / create / kill around TcpTracker


@dataclass
class _Entry:
    trk: TcpTracker
    orig: tuple
    expiry: float


class Model:
    """Connection table + TcpTracker, as the engine drives it (reopen, dead, expiry)."""

    def __init__(self, settings: ConntrackSettings) -> None:
        self.settings = settings
        self.flows: dict[tuple, _Entry] = {}

    def find(self, key: tuple, now: float) -> _Entry | None:
        rkey = (key[2], key[3], key[0], key[1])
        for k in (key, rkey):
            ent = self.flows.get(k)
            if ent is not None and now >= ent.expiry:
                # Expired: the kernel's lookup skips it (and GC removes it).
                del self.flows[ent.orig]
                ent = None
            if ent is not None:
                return ent
        return None

    def feed(self, pkt, now: float):
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        ent = self.find(key, now)
        if ent is None:
            return self._new(key, pkt, now)
        direction = ORIGINAL if ent.orig == key else REPLY
        verdict, reason = ent.trk.packet(direction, pkt, self.settings)
        if ent.trk.reopen:
            del self.flows[ent.orig]
            return self._new(key, pkt, now)
        ent.expiry = ent.trk.expires(now, ent.expiry)
        if ent.trk.dead:
            del self.flows[ent.orig]
        return verdict, reason

    def _new(self, key, pkt, now):
        trk, reason = TcpTracker.new(pkt, self.settings)
        if trk is None:
            return INVALID, reason
        if not trk.dead:
            self.flows[key] = _Entry(trk, key, trk.expires(now, now))
        # new() has already run the first packet through tcp_packet, which always accepts it.
        return ACCEPT, None


# --------------------------------------------------------------------------------------------------
# The kernel side


@dataclass
class Step:
    n: int
    direction: int
    summary: str
    kernel_pass: bool
    model_verdict: object
    model_reason: str | None
    kernel_row: dict | None = None
    model_row: dict | None = None


@dataclass
class Report:
    name: str
    steps: list[Step] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    state_checks: int = 0
    saw_sack: int = 0  # the real transfer: packets carrying SACK blocks, window scaling
    saw_wscale: int = 0

    def line(self) -> str:
        drops = sum(1 for s in self.steps if not s.kernel_pass)
        return (
            f"{self.name}: {len(self.steps)} packets compared, kernel dropped {drops}, "
            f"{self.state_checks} conntrack entries compared, {len(self.mismatches)} mismatches"
        )


ALL_REPORTS: list[Report] = []


class Env:
    """The lab, its capture and injectors, shared by all cases of this module."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.cap = Capture(lab)
        self.inj = {"a": lab.injector("a"), "b": lab.injector("b")}
        self.ip_id = 1
        # Sending from one CPU keeps each packet and its marker in one backlog queue, in order.
        self._affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(self._affinity)})

    def close(self) -> None:
        os.sched_setaffinity(0, self._affinity)
        for s in self.inj.values():
            s.close()
        self.cap.close()

    def next_id(self) -> int:
        self.ip_id = self.ip_id % 0xFFFF + 1
        return self.ip_id

    def send(self, side: str, raw: bytes) -> bool:
        """Inject one packet at ``side``; True if it came out of fw on the other side.

        An ICMP echo marker follows the packet on the same path: once the marker is out, fw has
        finished with the packet, so a packet still missing was dropped (no fixed wait needed).
        """
        k = packet_key(raw)
        src, dst = (
            (self.lab.ghost_a, self.lab.ghost_b) if side == "a" else (self.lab.ghost_b, self.lab.ghost_a)
        )
        marker = bytes(IP(src=src, dst=dst, id=self.next_id()) / ICMP(id=0x5757, seq=self.ip_id))
        mk = packet_key(marker)
        start = len(self.cap.snapshot())
        eth = self.lab.eth_header(side)
        self.inj[side].send(eth + raw)
        self.inj[side].send(eth + marker)

        def out(key):
            return lambda recs: any(r[1] == PACKET_OUTGOING and packet_key(r[2]) == key for r in recs[start:])

        if not self.cap.wait_for(out(mk), 2.0):
            # The marker itself never made it: fall back to waiting for the packet.
            return self.cap.wait_for(out(k), PASS_WAIT)
        return out(k)(self.cap.snapshot())

    def kernel_row(self, tup: tuple) -> dict | None:
        src, sport, dst, dport = tup
        for row in self.lab.conntrack_table():
            if (row["src"], row["sport"], row["dst"], row["dport"]) in (
                (src, sport, dst, dport),
                (dst, dport, src, sport),
            ):
                return row
        return None


@pytest.fixture(scope="module")
def env():
    lab = Lab().open()
    e = None
    try:
        e = Env(lab)
        yield e
    finally:
        try:
            if e is not None:
                e.close()
        finally:
            lab.close()
    if ALL_REPORTS:
        print("\nkernel differential:\n  " + "\n  ".join(r.line() for r in ALL_REPORTS))


class Conversation:
    """A crafted client (a side, ``o``) <-> server (b side, ``r``) exchange, judged by both trackers."""

    def __init__(self, env: Env, name: str, sport: int, dport: int = 80, **knobs: int) -> None:
        self.env = env
        self.lab = env.lab
        self.sport, self.dport = sport, dport
        self.knobs = {**DEFAULTS, **knobs}
        self.lab.conntrack_settings(**self.knobs)
        self.model = Model(ConntrackSettings(**{k: bool(v) for k, v in self.knobs.items()}))
        self.report = Report(name)
        ALL_REPORTS.append(self.report)
        self.invalid_before = self.lab.invalid_drops()
        self.client = (self.lab.ghost_a, sport)
        self.server = (self.lab.ghost_b, dport)

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc) -> None:
        self.lab.conntrack_settings(**DEFAULTS)

    def o(self, flags, seq, ack=0, win=64240, data=0, opts=(), expect=None):
        return self._step("a", ORIGINAL, flags, seq, ack, win, data, opts, expect)

    def r(self, flags, seq, ack=0, win=65160, data=0, opts=(), expect=None):
        return self._step("b", REPLY, flags, seq, ack, win, data, opts, expect)

    def _step(self, side, direction, flags, seq, ack, win, data, opts, expect):
        (sip, sp), (dip, dp) = (self.client, self.server) if side == "a" else (self.server, self.client)
        pkt = IP(src=sip, dst=dip, id=self.env.next_id()) / TCP(
            sport=sp,
            dport=dp,
            flags=flags,
            seq=seq & 0xFFFFFFFF,
            ack=ack & 0xFFFFFFFF,
            window=win,
            options=list(opts),
        )
        if data:
            pkt = pkt / (b"d" * data)
        raw = bytes(pkt)
        now = time.monotonic()
        passed = self.env.send(side, raw)
        verdict, reason = self.model.feed(decode(bytearray(raw)), now)
        n = len(self.report.steps)
        summary = f"{'o' if direction == ORIGINAL else 'r'} {flags} seq={seq} ack={ack} win={win} len={data}"
        step = Step(n, direction, summary, passed, verdict, reason)
        self.report.steps.append(step)
        if passed == (verdict == INVALID):
            self.report.mismatches.append(
                f"#{n} {summary}: kernel {_word(passed)}, statewall {verdict.name} ({reason})"
            )
        if expect is not None:
            # The case is only meaningful if the kernel does what the case is about.
            assert passed == (expect == "pass"), (
                f"{self.report.name} #{n} {summary}: kernel did not {expect} it"
            )
        self._compare_entry(step)
        return step

    def _compare_entry(self, step: Step) -> None:
        tup = (self.client[0], self.client[1], self.server[0], self.server[1])
        krow = self.env.kernel_row(tup)
        t_read = time.monotonic()
        key = (_ip(self.client[0]), self.client[1], _ip(self.server[0]), self.server[1])
        ent = self.model.find(key, t_read)
        step.kernel_row = krow
        self.report.state_checks += 1
        if krow is None and ent is None:
            return
        if (krow is None) != (ent is None):
            self.report.mismatches.append(
                f"#{step.n} {step.summary}: kernel entry {krow}, statewall entry {ent and ent.trk!r}"
            )
            return
        mstate = ent.trk.state.name
        left = ent.expiry - t_read
        step.model_row = {"state": mstate, "assured": ent.trk.assured, "timeout": left}
        problems = []
        if krow["state"] != mstate:
            problems.append(f"state {krow['state']} vs {mstate}")
        if krow["assured"] != ent.trk.assured:
            problems.append(f"assured {krow['assured']} vs {ent.trk.assured}")
        if abs(krow["timeout"] - left) > 2.0:
            problems.append(f"timeout {krow['timeout']} vs {left:.1f}")
        if problems:
            self.report.mismatches.append(
                f"#{step.n} {step.summary}: conntrack entry differs: {', '.join(problems)}"
            )


def _word(passed: bool) -> str:
    return "passed" if passed else "dropped"


def _ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _check(conv: Conversation) -> None:
    assert not conv.report.mismatches, conv.report.line() + "\n" + "\n".join(conv.report.mismatches)
    _check_invalid_counter(conv.lab, conv.invalid_before, conv.report)


def _check_invalid_counter(lab: Lab, before: int, report: Report) -> None:
    """Every packet the differential called dropped was counted by the ``ct state invalid`` rule (and
    nothing else was): the counter grew by this report's drops."""
    dropped = sum(1 for s in report.steps if not s.kernel_pass)
    assert lab.invalid_drops() - before == dropped, report.line()


def handshake(c: Conversation, cws=True, cwin=64240, swin=65160, sws=True):
    c.o("S", C_ISN, win=cwin, opts=SYN_OPTS if cws else [("MSS", 1460), ("SAckOK", b"")], expect="pass")
    c.r(
        "SA",
        S_ISN,
        C_ISN + 1,
        win=swin,
        opts=SYN_OPTS if sws else [("MSS", 1460), ("SAckOK", b"")],
        expect="pass",
    )
    c.o("A", C_ISN + 1, S_ISN + 1, win=502 if cws and sws else cwin, expect="pass")


# --------------------------------------------------------------------------------------------------
# Crafted conversations


def test_normal_transfer_with_sack_and_window_scaling(env):
    with Conversation(env, "crafted transfer, SACK + wscale", 41001) as c:
        handshake(c)
        c.o("PA", C_ISN + 1, S_ISN + 1, win=502, data=1000, expect="pass")
        c.o("PA", C_ISN + 1001, S_ISN + 1, win=502, data=1000)
        c.o("PA", C_ISN + 2001, S_ISN + 1, win=502, data=1000)
        # The first segment was lost downstream: the server SACKs the other two.
        sack = [("NOP", None), ("NOP", None), ("SAck", (C_ISN + 1001, C_ISN + 3001))]
        c.r("A", S_ISN + 1, C_ISN + 1, win=509, opts=sack, expect="pass")
        c.o("PA", C_ISN + 1, S_ISN + 1, win=502, data=1000, expect="pass")  # retransmission
        c.r("A", S_ISN + 1, C_ISN + 3001, win=509)
        c.r("PA", S_ISN + 1, C_ISN + 3001, win=509, data=1400)
        c.o("A", C_ISN + 3001, S_ISN + 1401, win=502)
        c.o("FA", C_ISN + 3001, S_ISN + 1401, win=502, expect="pass")
        c.r("FA", S_ISN + 1401, C_ISN + 3002, win=509, expect="pass")
        c.o("A", C_ISN + 3002, S_ISN + 1402, win=502, expect="pass")
    _check(c)


def test_data_beyond_the_receivers_window(env):
    with Conversation(env, "data beyond the window", 41002) as c:
        handshake(c, cws=False, sws=False, swin=2000)
        c.o("PA", C_ISN + 1, S_ISN + 1, data=1000, expect="pass")
        c.o("PA", C_ISN + 1001, S_ISN + 1, data=1000, expect="pass")  # exactly fills the window
        c.o("PA", C_ISN + 7001, S_ISN + 1, data=100, expect="drop")  # SEQ is over upper bound
        c.o("PA", C_ISN + 2002, S_ISN + 1, data=500, expect="pass")  # a few bytes more: IGNORE
        c.o("A", C_ISN + 100001, S_ISN + 1, expect="drop")  # empty, but its seq is checked (6.x)
        c.r("A", S_ISN + 1, C_ISN + 2502, win=2000, expect="pass")  # ACKs the ignored bytes
        c.o("PA", C_ISN + 2502, S_ISN + 1, data=1000, expect="pass")
    _check(c)


def test_ack_for_data_never_sent(env):
    with Conversation(env, "ACK for data never sent", 41003) as c:
        handshake(c)
        c.o("PA", C_ISN + 1, S_ISN + 1, win=502, data=100, expect="pass")
        c.r("A", S_ISN + 1, C_ISN + 1101, win=509, expect="drop")  # ACK is over upper bound
        sack = [("NOP", None), ("NOP", None), ("SAck", (C_ISN + 101, C_ISN + 700))]
        c.r("A", S_ISN + 1, C_ISN + 1, win=509, opts=sack, expect="drop")  # SACKs unsent data
        c.r("A", S_ISN + 1, C_ISN + 101, win=509, expect="pass")
        c.r("A", S_ISN + 1, C_ISN - 200000, win=509, expect="pass")  # ACK under lower bound: IGNORE
    _check(c)


def test_old_rst_and_rfc5961_rst(env):
    with Conversation(env, "old RST / in-window RST / exact RST", 41004) as c:
        handshake(c)
        c.r("PA", S_ISN + 1, C_ISN + 1, win=509, data=100, expect="pass")
        c.o("A", C_ISN + 1, S_ISN + 101, win=502)
        c.r("R", S_ISN + 50, expect="drop")  # seq before td_maxack: invalid rst
        c.r("R", S_ISN + 5000, expect="pass")  # in window, not exact: state kept (challenge ACK)
        c.r("R", S_ISN + 101, expect="pass")  # exact: CLOSE
    _check(c)
    with Conversation(env, "old RST with ignore_invalid_rst=1", 41005, tcp_ignore_invalid_rst=1) as c:
        handshake(c)
        c.r("PA", S_ISN + 1, C_ISN + 1, win=509, data=100)
        c.o("A", C_ISN + 1, S_ISN + 101, win=502)
        c.r("R", S_ISN + 50, expect="pass")
    _check(c)


def test_rst_answering_syn_removes_the_entry(env):
    with Conversation(env, "RST answering SYN", 41006) as c:
        c.o("S", C_ISN, opts=SYN_OPTS, expect="pass")
        c.r("RA", 0, C_ISN + 1, win=0, expect="pass")
        c.o("S", C_ISN + 7, opts=SYN_OPTS, expect="pass")  # a new connection on the same tuple
    _check(c)


def test_fresh_syn_into_time_wait(env):
    with Conversation(env, "SYN into TIME_WAIT", 41007) as c:
        handshake(c)
        c.o("FA", C_ISN + 1, S_ISN + 1, win=502)
        c.r("FA", S_ISN + 1, C_ISN + 2, win=509)
        c.o("A", C_ISN + 2, S_ISN + 2, win=502)
        c.o("S", C_ISN + 100000, opts=SYN_OPTS, expect="pass")  # reopen: a new conntrack entry
        c.r("SA", S_ISN + 300000, C_ISN + 100001, opts=SYN_OPTS, expect="pass")
        c.o("A", C_ISN + 100001, S_ISN + 300001, win=502, expect="pass")
    _check(c)
    with Conversation(env, "SYN into CLOSE after the server's RST", 41008) as c:
        handshake(c)
        c.r("R", S_ISN + 1)
        c.o("S", C_ISN + 100000, opts=SYN_OPTS, expect="pass")  # ignored, not a reopen
        c.r("SA", S_ISN + 300000, C_ISN + 100001, opts=SYN_OPTS, expect="pass")  # resync from it
        c.o("A", C_ISN + 100001, S_ISN + 300001, win=502, expect="pass")
    _check(c)


def test_seed_003_sack_blocks_left_unshifted(env):
    """A middlebox shifted the server's seq (and the client's ack back) but not the SACK blocks."""

    def conversation(name, sport, **knobs):
        shift = 0x10000
        with Conversation(env, name, sport, **knobs) as c:
            handshake(c)
            c.r("PA", S_ISN + 1, C_ISN + 1, win=509, data=1400)
            c.r("PA", S_ISN + 1401, C_ISN + 1, win=509, data=1400)
            sack = [("NOP", None), ("NOP", None), ("SAck", (S_ISN + shift + 1401, S_ISN + shift + 2801))]
            last = c.o("A", C_ISN + 1, S_ISN + 1, win=502, opts=sack)
        _check(c)
        return last

    assert not conversation("seed 003 unshifted SACK", 41009).kernel_pass
    assert conversation("seed 003 unshifted SACK, be_liberal=1", 41010, tcp_be_liberal=1).kernel_pass


def test_loose_pickup(env):
    with Conversation(env, "mid-stream pickup (tcp_loose=1)", 41011) as c:
        c.o("A", C_ISN + 5000, S_ISN + 9000, win=502, expect="pass")
        c.r("A", S_ISN + 9000, C_ISN + 5000, win=509, expect="pass")
        c.o("PA", C_ISN + 5000, S_ISN + 9000, win=502, data=300, expect="pass")
        c.r("A", S_ISN + 9000, C_ISN + 5300, win=509, expect="pass")
    _check(c)
    with Conversation(env, "no pickup (tcp_loose=0)", 41012, tcp_loose=0) as c:
        c.o("A", C_ISN + 5000, S_ISN + 9000, win=502, expect="drop")
        c.r("A", S_ISN + 9000, C_ISN + 5000, win=509, expect="drop")
    _check(c)


def test_window_failures_with_be_liberal(env):
    with Conversation(env, "be_liberal=1 window failures", 41013, tcp_be_liberal=1) as c:
        handshake(c, swin=2000, cws=False, sws=False)
        c.o("PA", C_ISN + 50001, S_ISN + 1, data=100, expect="pass")
        c.r("A", S_ISN + 1, C_ISN + 90000, expect="pass")
        c.o("SA", C_ISN + 1, S_ISN + 1, expect="drop")  # a state-table INVALID stays INVALID
    _check(c)


def test_handshake_oddities(env):
    with Conversation(env, "simultaneous open", 41014) as c:
        c.o("S", C_ISN, opts=SYN_OPTS, expect="pass")
        c.r("S", S_ISN, opts=SYN_OPTS, expect="pass")
        c.o("SA", C_ISN, S_ISN + 1, opts=SYN_OPTS, expect="pass")
        c.r("SA", S_ISN, C_ISN + 1, opts=SYN_OPTS)
        c.r("A", S_ISN + 1, C_ISN + 1, win=509, expect="pass")
        c.o("A", C_ISN + 1, S_ISN + 1, win=502, expect="pass")
    _check(c)
    with Conversation(env, "invalid first packets and flags", 41015) as c:
        c.o("SA", C_ISN, S_ISN, expect="drop")  # invalid new
        c.o("FA", C_ISN, S_ISN, expect="drop")
        c.o("R", C_ISN, expect="drop")
        c.o("SF", C_ISN, expect="drop")  # invalid flag combination
        handshake(c)
        c.o("A", C_ISN + 1, S_ISN + 1, win=502)
        c.r("SF", S_ISN + 1, C_ISN + 1, expect="drop")
        c.r("FPU", S_ISN + 1, C_ISN + 1, expect="drop")  # FIN without ACK
        c.o("", C_ISN + 1, S_ISN + 1, expect="drop")  # no flags at all
        c.o("A", C_ISN + 1, S_ISN + 1, win=502, expect="pass")
    _check(c)
    with Conversation(env, "ACK before SYN/ACK, ignored SYN + resync", 41016) as c:
        c.o("S", C_ISN, opts=SYN_OPTS)
        c.o("A", C_ISN + 1, S_ISN + 1, expect="drop")  # ACK before any SYN/ACK
        c.r("A", S_ISN + 77, C_ISN + 1, expect="pass")  # reply ACK to a SYN: ignored
        c.r("SA", S_ISN, C_ISN + 1, opts=SYN_OPTS, expect="pass")
        c.o("A", C_ISN + 1, S_ISN + 1, win=502)
        c.o("S", C_ISN + 777777, opts=SYN_OPTS, expect="pass")  # SYN in ESTABLISHED: ignored
        c.r("SA", S_ISN + 888888, C_ISN + 777778, opts=SYN_OPTS, expect="pass")  # resync
        c.o("A", C_ISN + 777778, S_ISN + 888889, win=502, expect="pass")
    _check(c)


def test_close_sequences_and_timeouts(env):
    with Conversation(env, "server closes first, challenge ACK in LAST_ACK", 41017) as c:
        handshake(c)
        c.r("FA", S_ISN + 1, C_ISN + 1, win=509)
        c.o("FA", C_ISN + 1, S_ISN + 2, win=502)
        c.o("S", C_ISN + 400000, opts=SYN_OPTS, expect="pass")
        c.r("A", S_ISN + 2, C_ISN + 2, win=509, expect="pass")  # challenge ACK: ignored
        c.r("A", S_ISN + 2, C_ISN + 2, win=509, expect="pass")  # the real last ACK
    _check(c)
    with Conversation(env, "retransmissions and zero window", 41018) as c:
        handshake(c)
        for _ in range(5):
            c.o("A", C_ISN + 1, S_ISN + 1, win=502)  # identical ACKs: max_retrans timeout
        c.r("A", S_ISN + 1, C_ISN + 1, win=0)  # zero window
        c.o("PA", C_ISN + 1, S_ISN + 1, win=502, data=10)  # unacknowledged data
        c.r("A", S_ISN + 1, C_ISN + 11, win=509)
        c.o("FA", C_ISN + 900000, S_ISN + 1, win=502, expect="drop")  # out-of-window FIN
        c.r("FA", S_ISN + 900000, C_ISN + 11, win=509, expect="drop")  # ... answered: timer shrinks
    _check(c)
    with Conversation(env, "RST far out of window while closing", 41019) as c:
        handshake(c)
        c.o("FA", C_ISN + 1, S_ISN + 1, win=502)
        c.r("R", S_ISN + 3000000, expect="pass")  # closing states take a RST without checks
    _check(c)


# --------------------------------------------------------------------------------------------------
# Random conversations: plausible segments with offsets around every bound, judged by both


def _offset(rng, scale_weights=(8, 3, 2, 1)) -> int:
    """0 most of the time, else a nudge, a window-sized jump or anything at all."""
    kind = rng.choices(("zero", "nudge", "window", "huge"), weights=scale_weights)[0]
    if kind == "zero":
        return 0
    if kind == "nudge":
        return rng.randint(-100, 100)
    if kind == "window":
        return rng.choice((-1, 1)) * rng.randint(1000, 300000)
    return rng.randrange(1 << 32)


def _syn_opts(rng):
    opts = [("MSS", 1460)]
    if rng.random() < 0.7:
        opts.append(("SAckOK", b""))
    if rng.random() < 0.7:
        opts += [("NOP", None), ("WScale", rng.choice((0, 2, 7, 14, 15)))]
    return opts


# SW_KERNEL_FUZZ_SEEDS=200 runs a longer hunt for divergences than the default dozen.
_FUZZ_FLAGS = (("A", 30), ("PA", 25), ("FA", 6), ("R", 4), ("RA", 3), ("S", 3), ("SA", 3), ("SF", 1), ("", 1))


@pytest.mark.parametrize("seed", range(int(os.environ.get("SW_KERNEL_FUZZ_SEEDS", "12"))))
def test_random_conversations(env, seed):
    import random

    rng = random.Random(1000 + seed)
    # Every fourth seed with each non-default knob, so all of them meet random traffic.
    knobs = {
        "tcp_be_liberal": int(seed % 4 == 1),
        "tcp_loose": int(seed % 4 != 2),
        "tcp_ignore_invalid_rst": int(seed % 4 == 3),
    }
    name = f"random conversation seed {seed} ({', '.join(f'{k}={v}' for k, v in knobs.items())})"
    with Conversation(env, name, 42000 + seed, **knobs) as c:
        nxt = [rng.randrange(1 << 32), rng.randrange(1 << 32)]  # next seq each side would send
        send = (c.o, c.r)
        if rng.random() < 0.85:  # usually a proper handshake first
            c.o("S", nxt[0], win=rng.choice((64240, 1000, 0)), opts=_syn_opts(rng))
            c.r("SA", nxt[1], nxt[0] + 1, win=rng.choice((65160, 2000, 0)), opts=_syn_opts(rng))
            nxt = [(nxt[0] + 1) & 0xFFFFFFFF, (nxt[1] + 1) & 0xFFFFFFFF]
        for _ in range(120):
            d = rng.randrange(2)
            flags = rng.choices([f for f, _ in _FUZZ_FLAGS], weights=[w for _, w in _FUZZ_FLAGS])[0]
            off = _offset(rng)
            seq = (nxt[d] + off) & 0xFFFFFFFF
            ack = (nxt[1 - d] + _offset(rng)) & 0xFFFFFFFF
            data = 0 if flags in ("S", "SA", "R", "RA") or rng.random() < 0.4 else rng.randint(1, 1400)
            win = rng.choice((502, 509, 64240, 0, rng.randint(1, 65535)))
            opts = []
            if "S" in flags:
                opts = _syn_opts(rng)
                if flags == "S" and rng.random() < 0.5:
                    seq = rng.randrange(1 << 32)  # a new connection attempt on the same tuple
            elif rng.random() < 0.15:
                left = (nxt[1 - d] + _offset(rng, (2, 3, 2, 1))) & 0xFFFFFFFF
                opts = [
                    ("NOP", None),
                    ("NOP", None),
                    ("SAck", (left, (left + rng.randint(1, 3000)) & 0xFFFFFFFF)),
                ]
            step = send[d](flags, seq, ack, win=win, data=data, opts=opts)
            if step.kernel_pass and "R" not in flags and off == 0:
                nxt[d] = (seq + data + ("S" in flags) + ("F" in flags)) & 0xFFFFFFFF
            if "S" in flags and step.kernel_pass:
                nxt[d] = (seq + 1) & 0xFFFFFFFF
    _check(c)


# --------------------------------------------------------------------------------------------------
# A real transfer between the kernel's own stacks


_SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(30); s.bind((sys.argv[1], 5001)); s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept(); c.settimeout(30)
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    c.sendall(b"r" * 300000)
    c.close()
    print(n, flush=True)
    """
)
_CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.create_connection((sys.argv[1], 5001), timeout=30)
    s.sendall(b"c" * 2000000)
    s.shutdown(socket.SHUT_WR)
    n = 0
    while True:
        d = s.recv(65536)
        if not d:
            break
        n += len(d)
    s.close()
    print(n, flush=True)
    """
)


def test_real_transfer_between_kernel_stacks(env):
    lab = env.lab
    invalid_before = lab.invalid_drops()
    start = len(env.cap.snapshot())
    try:
        records = _lossy_transfer(env)
    finally:
        for ns in (lab.a, lab.b):
            # Gone even when the transfer failed, so that no later test meets the loss.
            sh("ip", "netns", "exec", ns, "nft", "delete", "table", "netdev", "loss", check=False)
    records = records[start:]
    report = _real_transfer_report(records)
    assert report.saw_wscale >= 2, "the handshake should carry window scaling"
    assert report.saw_sack > 0, "loss after fw should have produced SACK blocks"
    assert len(report.steps) > 100
    assert not report.mismatches, report.line() + "\n" + "\n".join(report.mismatches[:30])
    _check_invalid_counter(lab, invalid_before, report)


def _lossy_transfer(env) -> list:
    """A transfer between the kernel's stacks with loss after fw; what the capture holds afterwards."""
    lab = env.lab
    # Loss *after* fw (on the ends' ingress), so fw sees every packet and the receivers SACK the holes.
    for ns, dev, port in ((lab.b, "b0", "tcp dport 5001"), (lab.a, "a0", "tcp sport 5001")):
        lab.nft(
            ns,
            f"""
            table netdev loss {{
                chain in {{
                    type filter hook ingress device {dev} priority 0; policy accept;
                    {port} meta length > 200 numgen inc mod 37 == 11 drop
                }}
            }}
            """,
        )
    # Everything on one CPU, so fw handles both directions' packets in the order the capture sees them.
    pin = ["taskset", "-c", "0"] if _have("taskset") else []
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.b, *pin, sys.executable, "-c", _SERVER, lab.b_ip],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.run(
            ["ip", "netns", "exec", lab.a, *pin, sys.executable, "-c", _CLIENT, lab.b_ip],
            capture_output=True,
            text=True,
            timeout=60,
        )
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=5)
    assert client.returncode == 0, client.stderr
    assert client.stdout.strip() == "300000" and out.strip() == "2000000"
    time.sleep(0.3)
    return env.cap.snapshot()


def _real_transfer_report(records) -> Report:
    """The captured transfer fed to the tracker: kernel verdict against statewall's, packet by packet."""
    report = Report("real transfer (kernel stacks, SACK + wscale)")
    ALL_REPORTS.append(report)
    egress: dict[bytes, int] = {}
    for _ifname, ptype, ip in records:
        if ptype == PACKET_OUTGOING:
            k = packet_key(ip)
            egress[k] = egress.get(k, 0) + 1
    model = Model(ConntrackSettings())
    saw_sack = saw_wscale = 0
    for i, (_ifname, ptype, ip) in enumerate(records):
        if ptype != PACKET_HOST or ip[9] != 6:
            continue
        pkt = decode(bytearray(ip))
        if 5001 not in (pkt.sport, pkt.dport):
            continue
        k = packet_key(ip)
        passed = egress.get(k, 0) > 0
        if passed:
            egress[k] -= 1
        verdict, reason = model.feed(pkt, 0.0)
        saw_sack += bool(pkt.sack_blocks())
        saw_wscale += pkt.wscale() is not None
        d = "o" if pkt.dport == 5001 else "r"
        summary = (
            f"{d} flags={pkt.flags:#04x} seq={pkt.seq} ack={pkt.ack} win={pkt.window} len={pkt.payload_len}"
        )
        report.steps.append(Step(i, ORIGINAL if d == "o" else REPLY, summary, passed, verdict, reason))
        if passed == (verdict == INVALID):
            report.mismatches.append(
                f"#{i} {summary}: kernel {_word(passed)}, statewall {verdict.name} ({reason})"
            )
    report.saw_sack, report.saw_wscale = saw_sack, saw_wscale
    return report


def _have(cmd: str) -> bool:
    from shutil import which

    return which(cmd) is not None


def test_invalid_counter_agrees_with_the_capture(env):
    """Every packet the differential calls dropped is one the ``ct state invalid`` rule counted: a
    conversation of its own with known drops (every other test checks its own drops the same way)."""
    with Conversation(env, "the invalid counter", 41020) as c:
        c.o("SA", C_ISN, S_ISN, expect="drop")  # invalid new
        c.o("R", C_ISN, expect="drop")
        handshake(c)
        c.o("", C_ISN + 1, S_ISN + 1, expect="drop")  # no flags at all
        c.o("A", C_ISN + 1, S_ISN + 1, win=502, expect="pass")
    assert sum(1 for s in c.report.steps if not s.kernel_pass) == 3
    _check(c)


if os.environ.get("SW_KERNEL_DIFF_VERBOSE"):  # pragma: no cover - debugging aid

    def test_dump_steps(env):
        for r in ALL_REPORTS:
            print(r.line())
            for s in r.steps:
                print("  ", s)
