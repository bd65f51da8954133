"""``statewall packet-tracer``: the ASA command, for one synthetic packet against a configuration.

Syntax as on the ASA (``-c CONFIG`` added, ``input`` required)::

    packet-tracer -c CONFIG input IFACE tcp|udp SRC SPORT DST DPORT [detailed] [xml] [--json]
    packet-tracer -c CONFIG input IFACE icmp SRC TYPE CODE DST [detailed] [xml] [--json]

Ports and ICMP types take the ASA's names (``ftp``, ``www``, ``echo``). The decisions and their text
come from ``statewall.tracer``; this module only reads the command line. The exit code says the
verdict, so that scripts can test it: 0 when the packet is allowed, 1 when it is dropped (2 for a bad
command line or configuration).

An iptables configuration (``IFACE`` its logical or device name) is traced through netfilter's stages
and printed as ``nft monitor trace`` prints a traced packet, then statewall's account of each stage and
of a drop; the exit code is 1 when the packet is dropped, as a script checking a ruleset wants it.
With ``--capture CAPTURE --packet N`` the traced packet is the N-th of the captures (merged by time,
ingress as ``statewall replay`` gives it), traced after the packets before it were replayed through the
same engine: a packet of a connection (seed 003's SACK-bearing ACK) is traced in that connection.
"""

from __future__ import annotations

import argparse
import ipaddress

from ..dialects.asa import names
from . import EXIT_FAILURE, EXIT_OK, UsageError, add_config_argument, load_config

USAGE = (
    "statewall packet-tracer -c CONFIG input IFACE {tcp|udp} SRC SPORT DST DPORT [detailed] [xml] [--json]\n"
    "       statewall packet-tracer -c CONFIG input IFACE icmp SRC TYPE CODE DST [detailed] [xml] [--json]\n"
    "       statewall packet-tracer -c RULES --capture [IFACE=]CAPTURE ... --packet N [detailed]"
)


def _address(word: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(word))
    except ValueError:
        raise UsageError(f"{what} {word!r} is not an IP address") from None


def _number(word: str, what: str, table: dict[str, int], limit: int) -> int:
    if word.isdigit():
        value = int(word)
    elif word.lower() in table:
        value = table[word.lower()]
    else:
        raise UsageError(f"{what} {word!r} is neither a number nor a known name")
    if not 0 <= value <= limit:
        raise UsageError(f"{what} {word!r} is out of range 0-{limit}")
    return value


def trailing_keywords(words: list[str]) -> list[str]:
    """The ASA's trailing keywords of the command (``detailed``, ``xml``), in any order."""
    tail: list[str] = []
    for w in reversed(words):
        if w.lower() not in ("detailed", "xml") or w.lower() in tail:
            break
        tail.append(w.lower())
    return tail


def parse_words(words: list[str]) -> tuple[str, str, str, int, str, int, bool]:
    """``input IFACE PROTO ...`` -> (iface, proto, src, sport-or-type, dst, dport-or-code, detailed)."""
    detailed = "detailed" in trailing_keywords(words)
    words = words[: len(words) - len(trailing_keywords(words))]
    if len(words) < 3 or words[0].lower() != "input":
        raise UsageError("expected: input IFACE PROTO ...")
    iface, proto = words[1], words[2].lower()
    rest = words[3:]
    if proto in ("tcp", "udp"):
        if len(rest) != 4:
            raise UsageError(f"{proto} takes SRC SPORT DST DPORT")
        table = names.TCP_PORTS if proto == "tcp" else names.UDP_PORTS
        src = _address(rest[0], "source")
        sport = _number(rest[1], "source port", table, 65535)
        dst = _address(rest[2], "destination")
        dport = _number(rest[3], "destination port", table, 65535)
        return iface, proto, src, sport, dst, dport, detailed
    if proto == "icmp":
        if len(rest) != 4:
            raise UsageError("icmp takes SRC TYPE CODE DST")
        src = _address(rest[0], "source")
        icmp_type = _number(rest[1], "ICMP type", names.ICMP_TYPES, 255)
        code = _number(rest[2], "ICMP code", {}, 255)
        dst = _address(rest[3], "destination")
        return iface, proto, src, icmp_type, dst, code, detailed
    raise UsageError(f"protocol {proto!r} not supported (tcp, udp or icmp)")


def run(args: argparse.Namespace) -> int:
    from ..tracer import TracerError, packet_tracer

    if args.capture or args.packet is not None:
        return run_capture(args)
    xml = "xml" in trailing_keywords(args.words)
    iface, proto, src, sport, dst, dport, detailed = parse_words(args.words)
    detailed = detailed or args.detailed
    policy = load_config(args.config)
    if policy.netfilter is not None or policy.ip6_netfilter is not None:
        return run_netfilter(args.config, policy, iface, proto, src, sport, dst, dport, detailed)
    if iface not in policy.interfaces:
        known = ", ".join(sorted(policy.interfaces)) or "none"
        raise UsageError(f"no interface named {iface!r} in {args.config} (interfaces: {known})")
    try:
        output = "xml" if xml else "json" if args.json else "text"
        text, allowed = packet_tracer(
            policy, iface, proto, src, sport, dst, dport, detailed=detailed, output=output
        )
    except TracerError as exc:
        raise UsageError(str(exc)) from None
    print(text, end="" if text.endswith("\n") else "\n")
    return EXIT_OK if allowed else EXIT_FAILURE


def run_netfilter(config, policy, iface, proto, src, sport, dst, dport, detailed) -> int:
    """An iptables configuration: the kernel's trace lines, then statewall's account; exit 1 on a drop."""
    from ..tracer import TracerError, netfilter_tracer, nf_interface

    if nf_interface(policy, iface) is None:
        known = ", ".join(
            f"{n} ({i.hardware})" if i.hardware else n for n, i in sorted(policy.interfaces.items())
        )
        raise UsageError(f"no interface named {iface!r} in {config} (interfaces: {known or 'none'})")
    try:
        text, allowed = netfilter_tracer(policy, iface, proto, src, sport, dst, dport, detailed=detailed)
    except TracerError as exc:
        raise UsageError(str(exc)) from None
    print(text, end="")
    return EXIT_OK if allowed else EXIT_FAILURE


class _Traced(Exception):
    """Packet N was traced: the replay stops there."""

    def __init__(self, text: str, allowed: bool) -> None:
        super().__init__()
        self.text = text
        self.allowed = allowed


class _TraceNth:
    """The engine as replay drives it, tracing the ``n``-th packet of the merged captures (replay
    advances the clock once before each packet, so the advances count the packets)."""

    def __init__(self, fw, n: int, detailed: bool) -> None:
        self.fw = fw
        self.n = n
        self.detailed = detailed
        self.seen = 0

    def __getattr__(self, name: str):
        return getattr(self.fw, name)

    def advance(self, now: float):
        self.seen += 1
        return self.fw.advance(now)

    def ingress_for(self, data):
        iface = self.fw.ingress_for(data)
        if iface is None and self.seen == self.n:
            raise UsageError(f"packet {self.n} comes from an address no route leads back to: name its "
                             "capture's interface (--capture IFACE=CAPTURE)")  # fmt: skip
        return iface

    def sent_by_box(self, iface, data):
        if self.fw.sent_by_box(iface, data):
            if self.seen == self.n:
                raise UsageError(f"packet {self.n} is the firewall's own output in the capture of the "
                                 f"link it left by ({iface}): it did not arrive there")  # fmt: skip
            return True
        return False

    def replay_rewrite(self, iface, data, now):
        return self.fw.replay_rewrite(iface, data, now)

    def receive(self, iface, data, now):
        if self.seen == self.n:
            from ..tracer import netfilter_trace

            raise _Traced(*netfilter_trace(self.fw, iface, data, now, self.detailed))
        return self.fw.receive(iface, data, now)


def run_capture(args: argparse.Namespace) -> int:
    """``--capture ... --packet N``: replay the captures through an iptables configuration and trace
    their N-th packet (counted over the captures merged by time, from 1) in the state the packets
    before it left: the connection it belongs to, its windows, its NAT bindings."""
    import tempfile

    from ..engine import Firewall
    from ..replay import ReplayError, replay

    if not args.capture or args.packet is None or args.packet < 1:
        raise UsageError("--capture CAPTURE and --packet N (from 1) go together")
    detailed = args.detailed or [w.lower() for w in args.words] == ["detailed"]
    if args.words and not detailed:
        raise UsageError("with --capture the packet comes from the capture: no 'input IFACE ...'")
    policy = load_config(args.config)
    if policy.netfilter is None and policy.ip6_netfilter is None:
        raise UsageError("--capture traces through an iptables configuration's stages only")
    captures = []
    for word in args.capture:
        iface, sep, path = word.partition("=")
        captures.append((iface, path) if sep else (None, word))
    fw = Firewall(policy, fast_path=False)
    tracing = _TraceNth(fw, args.packet, detailed)
    try:
        with tempfile.TemporaryDirectory() as out:
            replay(policy, captures, out, firewall=tracing)
    except _Traced as traced:
        print(traced.text, end="")
        return EXIT_OK if traced.allowed else EXIT_FAILURE
    except (ReplayError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if tracing.seen >= args.packet:
        # Reached but never handed over: cut short by the snap length, or (--ingress auto) a copy of
        # what the firewall had just sent (statewall.replay.RecentOutput).
        raise UsageError(f"packet {args.packet} was not handed to the firewall: the capture cut it "
                         "short, or it is the firewall's own output (a copy of a packet it had just "
                         "sent)")  # fmt: skip
    raise UsageError(f"the captures hold fewer than {args.packet} packets")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "packet-tracer",
        help="trace one packet through a configuration, phase by phase",
        description="Show each phase (flow lookup, route lookup, access list, connection settings, NAT, "
        "9.x's per-session NAT, IP options, inspection, flow creation; 8.2's NAT-EXEMPT) with Result: ALLOW "
        "or DROP and the configuration lines used, in the configured release's form ('detailed' adds the "
        "rule lookups); what a real ASA would also do that statewall does not model (a crypto map's "
        "encryption, an inspection) is a phase in its place with Result: NOT MODELLED, "
        "then Action: allow or drop. Exit status 0 "
        "when the packet is allowed, 1 when it is dropped."
        " For an iptables configuration: the kernel's trace lines (nft monitor trace) and each stage "
        "with its configuration line.",
        usage=USAGE,
    )
    add_config_argument(p)
    p.add_argument("words", nargs="*", metavar="input IFACE PROTO ...", help="the ASA command's arguments")
    p.add_argument(
        "--capture", action="append", default=[], metavar="[IFACE=]CAPTURE",
        help="iptables configurations: replay these captures (ingress as for replay) and trace --packet N",
    )  # fmt: skip
    p.add_argument("--packet", type=int, metavar="N", help="the packet of the captures to trace (from 1)")
    p.add_argument("--detailed", action="store_true", help="same as the trailing keyword 'detailed'")
    p.add_argument(
        "--json",
        action="store_true",
        help="the phases and the result as JSON (statewall's explanation under 'statewall'); the ASA's "
        "XML with the trailing keyword 'xml'",
    )
    p.set_defaults(func=run)
