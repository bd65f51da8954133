"""``seed003``: a PIX that randomizes sequence numbers but not SACK blocks, in front of a Linux host
whose conntrack drops INVALID: long transfers over a lossy path crawl and stall; the host's
``nf_conntrack_tcp_be_liberal = 1`` fixes it, and so does SACK translation.

::

    app server 192.168.1.10 ---- [statewall: ASA, randomization, fault pix-sack-bug] ---- lossy ---- peer
    nftables: ct state invalid drop                                                       203.0.113.2

The application server (the seed's Linux box behind the PIX) sends a long stream to a peer outside.
The firewall randomizes the sender's sequence numbers (the ASA default) with the lab fault
``pix-sack-bug`` (``statewall fault pix-sack-bug`` in the configuration): acknowledgements are taken
back into the sender's numbers, SACK blocks are not. Loss on the way to the peer (nftables random
drop) makes the peer SACK; each SACK reaches the sender with its edges in the shifted numbers, beyond
anything the sender has sent, and the sender's own conntrack calls the segment INVALID ("ACK is over
upper bound") and its ``ct state invalid drop`` rule drops it. Every acknowledgement that still
carries a SACK block is lost the same way, those after each retransmission too, so recovery waits
for retransmission timeouts that back off: the transfer crawls and does not finish within its time
limit. A capture of the inside interface (``statewall ctl capture``) shows one such segment: its
acknowledgement translated, its SACK edges ahead of it by the connection's offset.

That happens when the connection's random offset falls in the lower half of the sequence space; in
the upper half the edges land far behind and conntrack ignores them (docs/normalizer.md). The
scenario therefore reads each new connection's offset from ``statewall ctl show conn detail`` and
uses a connection whose offset is in the lower half (a few handshakes at most), for the broken case
and for both fixes, so that each fix is shown against the case that fails.

Fixes: ``nf_conntrack_tcp_be_liberal = 1`` on the sender (the seed's workaround; conntrack stops
judging windows, and the sender's TCP ignores the SACK blocks it cannot make sense of and recovers
without them, in seconds rather than a tenth of one), and, with the
sysctl back at 0, the configuration without the fault (``statewall ctl reload``): SACK blocks are
translated and the sender's conntrack sees nothing INVALID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import struct
import threading
import time

from ..netns import LabError, Namespace
from ..topology import ASA_INTERFACES, INSIDE, OUTSIDE, FirewallTopology
from . import ScenarioRun, scenario
from ._seedlab import Firewall, Transfer, nft, nft_counter, show_lines

CONFIG = (
    """\
: statewall lab seed003: the PIX in front of the application servers, randomizing sequence numbers
ASA Version 8.2(1)
hostname pix
"""
    + ASA_INTERFACES
    + """\
global (outside) 1 interface
nat (inside) 1 0.0.0.0 0.0.0.0
"""
)
FAULT = "statewall fault pix-sack-bug\n"

# The seed's Linux box: its own stateful filter drops what conntrack calls INVALID.
CONNTRACK = """\
table inet sw_ct {
  chain in { type filter hook input priority 0; policy accept;
    ct state invalid counter drop
  }
}
"""

PORT = 5001
NBYTES = 24 << 20
LOSS = 3.0  # percent of the packets towards the peer (a super-packet counts as one)
LIMIT = 15.0  # seconds for the whole stream (SACK-less recovery with be_liberal takes 3-5 s)
MAX_TRIES = 16


# --------------------------------------------------------------------------------------------------
# The peer: accepts connections and reads each to the end


def _serve(stop: list[bool], results: dict[int, tuple[int, str, float]], ready: list[bool]) -> None:
    """Accept until ``stop``; each connection read to its end in a thread of its own (a reset that the
    lossy path ate must not hold up the next case)."""
    conns: list[socket.socket] = []

    def read(conn: socket.socket, port: int) -> None:
        digest, got, started = hashlib.sha256(), 0, time.monotonic()
        try:
            while chunk := conn.recv(1 << 18):
                digest.update(chunk)
                got += len(chunk)
        except OSError:
            pass
        finally:
            conn.close()
        results[port] = (got, digest.hexdigest(), time.monotonic() - started)

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((OUTSIDE.host, PORT))
        lsock.listen(16)
        lsock.settimeout(0.2)
        ready.append(True)
        try:
            while not stop:
                try:
                    conn, (_addr, port) = lsock.accept()
                except TimeoutError:
                    continue
                conn.settimeout(LIMIT + 10)
                conns.append(conn)
                threading.Thread(target=read, args=(conn, port), daemon=True).start()
        finally:
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def _stream(nbytes: int):
    # Deterministic bytes, so that both ends agree on the checksum without sharing a file.
    block = hashlib.sha256(b"seed003").digest() * 8192  # 256 KB
    left = nbytes
    while left:
        n = min(left, len(block))
        yield block[:n]
        left -= n


# --------------------------------------------------------------------------------------------------
# The sender: a connection with a lower-half offset, then the stream


def _offset(fw: Firewall, sport: int) -> int | None:
    """The firewall's random offset for the inside host's connection from ``sport``."""
    entries = fw.ctl("show conn detail").split("\nTCP ")
    for e in entries:
        if f"inside:{INSIDE.host}/{sport}," in e:
            m = re.search(r"sequence numbers randomized: inside \+(0x[0-9a-f]+)", e)
            return int(m.group(1), 16) if m else None
    return None


def _send(fw: Firewall, nbytes: int) -> tuple[int, int, str, list[int], str]:
    """(source port, bytes handed to TCP, sha256, offsets tried, error) for a lower-half connection."""
    tried: list[int] = []
    for _ in range(MAX_TRIES):
        sock = socket.create_connection((OUTSIDE.host, PORT), timeout=5)
        sport = sock.getsockname()[1]
        off = _offset(fw, sport)
        if off is None:
            sock.close()
            raise LabError(f"no randomized connection from port {sport} in show conn detail")
        tried.append(off)
        if off < 1 << 31:
            break
        # Upper half: the untranslated SACK edges fall behind and are ignored; not the failing case.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    else:
        raise LabError(f"{MAX_TRIES} connections, none with an offset in the lower half: {tried}")
    digest, sent, error = hashlib.sha256(), 0, ""
    deadline = time.monotonic() + LIMIT
    try:
        for chunk in _stream(nbytes):
            view = memoryview(chunk)
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"not done after {LIMIT:g} s")
                sock.settimeout(left)
                n = sock.send(view)
                digest.update(view[:n])
                sent += n
                view = view[n:]
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        while sock.recv(4096):
            pass
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
        # Give up as an application would: reset, so nothing lingers into the next case.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    return sport, sent, digest.hexdigest(), tried, error


def transfer(
    run: ScenarioRun, fw: Firewall, host: Namespace, results: dict, what: str
) -> tuple[Transfer, int, int]:
    """One stream from the sender to the peer on a lower-half connection; what left, what arrived."""
    started = time.monotonic()
    sport, sent, sha, tried, error = host.call(_send, fw, NBYTES, timeout=LIMIT + 60)
    note = f"after {len(tried) - 1} in the upper half: " if len(tried) > 1 else ""
    run.say(f"    connection from port {sport}, offset {tried[-1]:#010x} (lower half; {note or 'first try'}"
            + ", ".join(f"{o:#010x}" for o in tried[:-1]) + ")")  # fmt: skip
    deadline = time.monotonic() + 10
    while sport not in results and time.monotonic() < deadline:
        time.sleep(0.05)
    got, got_sha, _ = results.get(sport, (0, "", 0.0))
    t = Transfer(what, sent, sha, got, got_sha, 1 if error else 0, time.monotonic() - started)
    t.note = f" ({error}; {NBYTES - sent} bytes never handed to TCP)" if error else ""
    t.report(run)
    return t, sport, tried[-1]


@scenario(
    "seed003",
    "seed 003: PIX SACK bug vs. Linux conntrack INVALID drop; be_liberal and SACK translation fix it",
)
def seed003(run: ScenarioRun) -> None:
    topo = FirewallTopology(run.lab, (INSIDE, OUTSIDE)).build()
    sender, peer = topo.host("inside"), topo.host("outside")
    nft(sender, CONNTRACK)
    topo.fw.random_loss(OUTSIDE.veth, LOSS)
    run.say(
        f"topology: app server {INSIDE.host} (ct state invalid drop) - statewall (pix-sack-bug) - "
        f"{LOSS:g}% loss - peer {OUTSIDE.host}"
    )
    fw = Firewall(run, topo)
    fw.start(CONFIG + FAULT)
    stop: list[bool] = []
    results: dict[int, tuple[int, str, float]] = {}
    ready: list[bool] = []
    server = peer.start(_serve, stop, results, ready)
    try:
        deadline = time.monotonic() + 10
        while not ready and time.monotonic() < deadline and not server.done():
            time.sleep(0.05)
        if not ready:
            raise LabError("the peer did not start listening")
        cases(run, fw, sender, results)
    finally:
        stop.append(True)
        server.result(5)
    code = fw.stop()
    run.check("statewall run exits cleanly", code == 0, f"exit code {code}")


def sack_sample(pcap: str, sport: int) -> tuple[int, int, int] | None:
    """(ack, SACK left edge, right edge) of the first SACKing segment to the sender in ``pcap``."""
    import dpkt

    from ...pcapio import read_packets

    for _ts, data in read_packets(pcap):
        ip = dpkt.ip.IP(data)
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP) or tcp.dport != sport or not tcp.opts:
            continue
        for kind, value in dpkt.tcp.parse_opts(tcp.opts):
            if kind == dpkt.tcp.TCP_OPT_SACK and len(value) >= 8:
                left, right = struct.unpack("!II", value[:8])
                return tcp.ack, left, right
    return None


def invalid_drops(sender: Namespace) -> int:
    return sum(n for _, n in nft_counter(sender, "sw_ct"))


def cases(run: ScenarioRun, fw: Firewall, sender: Namespace, results: dict) -> None:
    what = f"{NBYTES >> 20} MB stream, {LIMIT:g} s allowed"
    run.say("broken: sequence numbers randomized, SACK blocks not translated (fault pix-sack-bug)")
    before = invalid_drops(sender)
    pcap = os.path.join(run.lab.workdir(), "inside.pcap")
    fw.ctl(f"capture inside start {pcap}")
    t, sport, offset = transfer(run, fw, sender, results, what)
    fw.ctl("capture inside stop")
    dropped = invalid_drops(sender) - before
    run.check("the transfer does not finish", not t.complete, f"{t.received} of {NBYTES} bytes arrived")
    run.check("the sender's conntrack dropped SACKing segments as INVALID", dropped > 0, f"{dropped} dropped")
    show_lines(run, fw.new_log(), rf"-30201[34]:.*inside:{INSIDE.host}/{sport} ", most=2)
    sample = sack_sample(pcap, sport)
    if sample:
        ack, left, right = sample
        hole = (left - ack - offset) & 0xFFFFFFFF
        run.say(
            f"    statewall ctl capture inside: the peer's ACK {ack} (translated) carries SACK "
            f"{left}-{right} (not): {left - ack & 0xFFFFFFFF:#010x} ahead = the offset {offset:#010x} "
            f"+ a {hole}-byte hole"
        )

    run.say("fixed by the seed's workaround: nf_conntrack_tcp_be_liberal = 1 on the sender")
    sender.sysctl("net.netfilter.nf_conntrack_tcp_be_liberal", 1)
    before = invalid_drops(sender)
    t, sport, offset = transfer(run, fw, sender, results, what)
    dropped = invalid_drops(sender) - before
    same = "match" if t.sent_sha == t.received_sha else "differ"
    run.check(
        "be_liberal: the transfer completes", t.complete, f"{t.received} of {t.sent} bytes, sha256 {same}"
    )
    run.check("be_liberal: nothing INVALID", dropped == 0, f"{dropped} dropped")

    run.say("fixed by translating SACK blocks (the fault off; be_liberal back to 0)")
    sender.sysctl("net.netfilter.nf_conntrack_tcp_be_liberal", 0)
    answer = fw.reload(CONFIG).splitlines()
    run.say(f"    statewall ctl reload: {answer[0]}; {answer[1]}")
    before = invalid_drops(sender)
    t, sport, offset = transfer(run, fw, sender, results, what)
    dropped = invalid_drops(sender) - before
    same = "match" if t.sent_sha == t.received_sha else "differ"
    run.check(
        "SACK translated: the transfer completes",
        t.complete,
        f"{t.received} of {t.sent} bytes, sha256 {same}",
    )
    run.check("SACK translated: nothing INVALID", dropped == 0, f"{dropped} dropped")
