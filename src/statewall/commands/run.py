"""``statewall run -c CONFIG --bind IFACE=DEVICE[@NETNS] ...``: the firewall inline on TUN devices.

Each ``--bind`` attaches one firewall interface (the configuration's ``nameif``) to a TUN device,
created if it does not exist, in network namespace NETNS (a name from ``ip netns`` or a path; default:
the namespace ``statewall`` runs in). By default the TUNs carry the virtio-net header with TSO/USO
offloads, so super-packets of up to 64 KB pass as one; ``--no-offload`` uses plain ``IFF_TUN``.
Events go to ``--log`` (default stderr) as ASA syslog lines or JSON lines. The command prints one
``statewall run: forwarding ...`` line once every TUN is open, runs until SIGINT or SIGTERM, then
prints its interface counters and the ``show asp drop`` table and exits 0.

With ``--http [ADDR:]PORT`` it also serves a read-only web view and Prometheus ``/metrics``
(``statewall.live.web``), on loopback unless ADDR says otherwise. With ``--record OUTDIR`` the run is
written as a replay's output directory, report.html included on stop (``statewall.live.record``).

While it runs, ``statewall ctl --name NAME ...`` reaches it through ``<ctl-dir>/NAME.sock``
(``statewall.live.ctl``; NAME defaults to the configuration's hostname). ``--timeout-override`` and
``--ftp-data-refreshes-control`` change the parsed policy (the lab's short timeouts and seed 004's
switch); a ``reload`` applies them again.

With ``--workers N`` the firewall runs on N cores (``statewall.live.workers``): N worker processes, each
with its own engine and one queue of every TUN, a BPF steering program handing each packet to the
worker of its inside host (``statewall.live.steer``; docs/scale.md). ``--cpu N`` pins the one process
to a CPU and ``--steer-cpus LIST`` has the kernel do its work for the written packets on other CPUs
(Receive Packet Steering on the TUNs: ``statewall.live.placement``; docs/live.md).

With ``--state FILE`` connections survive a restart (docs/state.md): the engine's snapshot
(``Firewall.snapshot``) is written to FILE on stop and every ``--state-interval`` seconds (from a forked
child: ``StateWriter``), atomically, and restored from it on start (``load_state``, ``save_state``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
from typing import IO

from ..events import Event
from . import EXIT_OK, UsageError, add_config_argument


def parse_bind(text: str) -> tuple[str, str, str | None]:
    """``IFACE=DEVICE[@NETNS]`` -> (iface, device, netns or None)."""
    iface, sep, rest = text.partition("=")
    if not sep or not iface or not rest:
        raise UsageError(f"--bind {text!r}: expected IFACE=DEVICE[@NETNS]")
    device, _, netns = rest.partition("@")
    if not device or len(device.encode()) > 15:
        raise UsageError(f"--bind {text!r}: device name must be 1 to 15 bytes")
    return iface, device, netns or None


def make_loop(fw, ports, args, on_events):
    """The live loop as ``statewall run``'s options set it (one process, or one worker of --workers)."""
    from ..live.loop import Loop

    return Loop(
        fw,
        ports,
        tick=args.tick,
        on_events=on_events,
        compiled=not args.python_wait,
        spin=args.poll_us / 1e6,
        uring=args.uring,
        uring_reads=args.uring_reads,
        uring_taskrun=("signal", "coop", "defer").index(args.uring_taskrun),
        collect=args.collect,
    )


def _event_writer(fmt: str, fp: IO[str], policy, syslog: list[str], relog: list | None = None):
    """The loop's event callback: the log in ``fmt`` to ``fp``, and every message to the syslog
    servers (the configuration's ``logging host`` lines and ``--syslog``), as the ASA frames them.
    ``relog`` (a list) receives the function ``ctl reload`` calls with the new policy: the logging
    configuration of the log and of the syslog servers follows it (levels, lists, disabled messages,
    timestamps, device id, ``logging host`` lines)."""
    writers = []
    sender = None
    if policy.netfilter is None:
        from ..logfmt.asalog import AsaLog
        from ..syslog import SyslogSender, parse_target, targets_of

        current = [AsaLog(policy)]
        try:
            extra = [parse_target(t) for t in syslog]
        except ValueError as exc:
            raise UsageError(f"--syslog: {exc}") from None
        targets = targets_of(policy.logging.hosts) + extra
        if targets or relog is not None:
            # Kept even without a server when a reload may add one (a loop over no target).
            sender = SyslogSender(current[0], targets)
            writers.append(sender.send_events)

        def reloaded(new_policy) -> None:
            current[0] = AsaLog(new_policy)
            if sender is not None:
                sender.log = current[0]
                new_targets = targets_of(new_policy.logging.hosts) + extra
                if new_targets != sender.targets:
                    sender.close()  # the sockets were per target: opened again on the next message
                    sender.targets = new_targets

        if relog is not None:
            relog.append(reloaded)
    elif syslog:
        raise UsageError("--syslog: an iptables ruleset has no syslog configuration to send (ASA only)")
    if fmt == "json":
        from ..logfmt.jsonl import event_to_json

        def write(events: list[Event]) -> None:
            for ev in events:
                fp.write(event_to_json(ev))
                fp.write("\n")

        writers.append(write)
    elif fmt == "asa":
        if policy.netfilter is not None:
            from ..logfmt.linux import format_event
        else:

            def format_event(ev, hostname=None):
                return current[0].format_event(ev, hostname=hostname)

        def write_asa(events: list[Event]) -> None:
            for ev in events:
                for line in format_event(ev, hostname=policy.hostname):
                    fp.write(line)
                    fp.write("\n")

        writers.append(write_asa)
    if not writers:
        return None, sender
    if len(writers) == 1:
        return writers[0], sender

    def both(events: list[Event]) -> None:
        for w in writers:
            w(events)

    return both, sender


def run(args: argparse.Namespace) -> int:
    # Imported here so that `statewall --help` works where the live path cannot (no /dev/net/tun).
    from ..engine import Firewall
    from ..live import placement
    from ..live.ctl import Commands, CtlError, CtlServer, PolicySource, parse_timeout_override
    from ..live.loop import Port
    from ..live.tun import open_tun

    try:
        overrides = dict(parse_timeout_override(t) for t in args.timeout_override)
    except ValueError as exc:
        raise UsageError(f"--timeout-override {exc}") from None
    refresh = {None: None, "on": True, "off": False}[args.ftp_data_refreshes_control]
    source = PolicySource(args.config, overrides, refresh)
    try:
        policy = source.load(show_warnings=True)
    except OSError as exc:
        raise UsageError(f"cannot read configuration {args.config}: {exc.strerror or exc}") from None
    binds = [parse_bind(b) for b in args.bind]
    names = [b[0] for b in binds]
    for name in names:
        if name not in policy.interfaces:
            known = ", ".join(sorted(policy.interfaces)) or "none"
            raise UsageError(f"--bind {name}: the configuration has no interface {name!r} (it has: {known})")
    if len(set(names)) != len(names):
        raise UsageError("each interface can be bound once")
    unbound = sorted(set(policy.interfaces) - set(names))
    if unbound:
        print(
            f"statewall run: interfaces without --bind (their traffic is dropped): {', '.join(unbound)}",
            file=sys.stderr,
        )

    web_addr = None
    if args.http:
        from ..live.web import parse_listen

        try:
            web_addr = parse_listen(args.http)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.state_interval < 0:
        raise UsageError("--state-interval must be 0 (only on stop) or more seconds")
    if args.workers < 1:
        raise UsageError("--workers must be 1 or more")
    if not 0 <= args.uring_reads <= 256 or args.uring_reads & (args.uring_reads - 1):
        raise UsageError("--uring-reads: 0 or a power of two up to 256")
    if not 0 <= args.collect <= 1024:
        raise UsageError("--collect: 0 to 1024 packets")
    cpu, steer_cpus = _placement(args)
    if args.workers > 1:
        if cpu is not None or steer_cpus is not None:
            raise UsageError("--cpu, --steer-cpus: not with --workers (one firewall process and its TUNs)")
        return _run_workers(args, source, policy, binds, web_addr)
    if cpu is not None:
        placement.pin(cpu)  # before any thread starts: they inherit it
    fw = Firewall(policy, fast_path=not args.no_fast_path)
    if args.state:
        load_state(fw, args.state)
    ports: list[Port] = []
    steered: list = []  # (tun, its queues' RPS masks before --steer-cpus)
    recorder = None
    ctl: CtlServer | None = None
    sender = None
    web = None
    log_fp: IO[str] = sys.stderr if args.log == "-" else open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    try:
        for name, device, netns in binds:
            try:
                tun = open_tun(device, netns, offload=not args.no_offload, txqueuelen=args.txqueuelen)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # A multi-queue device (made for --workers) takes only multi-queue opens: one queue.
                tun = open_tun(
                    device, netns, offload=not args.no_offload, txqueuelen=args.txqueuelen, multi_queue=True
                )
            ports.append(Port(name, tun))
        if steer_cpus is not None:
            mask = placement.rps_mask(steer_cpus)
            for p in ports:
                try:
                    steered.append((p.tun, placement.set_rps(p.tun.name, p.tun.netns, mask)))
                except (OSError, ValueError) as exc:
                    raise UsageError(f"--steer-cpus: {exc}") from None
        relog: list = []
        on_events, sender = _event_writer(args.log_format, log_fp, policy, args.syslog, relog)
        loop = make_loop(fw, ports, args, on_events)
        if args.record:
            from ..live.record import Recorder, attach

            try:
                recorder = Recorder(args.record, policy, loop.now)
            except OSError as exc:
                raise UsageError(f"--record {args.record}: {exc.strerror or exc}") from None
            attach(recorder, ports)
            loop.on_events = _chain(on_events, recorder.events)
        loop.on_tick = log_fp.flush
        writer = StateWriter(fw, args.state) if args.state else None
        if writer is not None and args.state_interval > 0:
            loop.on_tick = _saving_every(args.state_interval, writer, log_fp.flush)
        if not args.no_ctl:
            commands = Commands(
                fw,
                loop,
                reload=source.load,
                on_reload=relog,
                source=args.config,
                capture_dir=args.capture_dir,
                capture_anywhere=args.capture_anywhere,
            )
            # Without --name, two firewalls with the same hostname (tests, labs) both get a channel.
            names = [args.name] if args.name else [policy.hostname, f"{policy.hostname}-{os.getpid()}"]
            for i, name in enumerate(names):
                try:
                    server = CtlServer(loop, commands, name, directory=args.ctl_dir)
                    server.start()
                    ctl = server
                    break
                except (CtlError, OSError) as exc:
                    if args.name:
                        raise UsageError(f"control channel: {exc}") from None
                    if i == len(names) - 1:
                        print(f"statewall run: no control channel: {exc}", file=sys.stderr)
        if web_addr is not None:
            from ..live.web import WebView

            web = WebView(fw, loop, *web_addr, recorder=recorder)
            try:
                web.start()
            except OSError as exc:
                raise UsageError(f"--http {args.http}: {exc.strerror or exc}") from None
        ready = "statewall run: forwarding " + " ".join(f"{p.name}={p.tun.describe()}" for p in ports)
        if cpu is not None:
            ready += f"; on CPU {cpu}"
        if steer_cpus is not None:
            ready += f"; the kernel's work for written packets on CPUs {args.steer_cpus} (RPS)"
        try:
            # Signals stop the loop from before the ready line on: whoever waits for that line and
            # then sends SIGTERM gets a clean exit, not the default action.
            with loop.stop_on_signals():
                print(ready, flush=True)
                if ctl is not None:
                    print(f"statewall run: control channel {ctl.path}", flush=True)
                if web is not None:
                    print(f"statewall run: web view {web.url} (read-only; /metrics)", flush=True)
                loop.run()
            if writer is not None:
                writer.wait()  # an interval's write still running must not rename over this one
                save_state(fw, args.state)
        finally:
            if web is not None:
                web.close()
            if ctl is not None:
                ctl.close()
            loop.close()
        log_fp.flush()
        print_summary(loop, fw)
        if recorder is not None:
            out = recorder.close(report=not args.no_report)
            what = "report" if not args.no_report else "recorded"
            where = out / "report.html" if not args.no_report else out
            print(f"statewall run: {what} {where}", flush=True)
    finally:
        if recorder is not None and not recorder.closed:
            recorder.close(report=False)
        for tun, previous in steered:
            with contextlib.suppress(OSError, ValueError):
                placement.restore_rps(tun.name, tun.netns, previous)
        for p in ports:
            p.tun.close()
        if log_fp is not sys.stderr:
            log_fp.close()
        if sender is not None:
            sender.close()
    return EXIT_OK


def _placement(args) -> tuple[int | None, frozenset[int] | None]:
    """``--cpu`` and ``--steer-cpus`` checked against the CPUs this process may use."""
    from ..live import placement

    cpu = steer = None
    try:
        if args.cpu is not None:
            cpu = args.cpu
            placement.check_cpus(frozenset({cpu}), "--cpu")
        if args.steer_cpus is not None:
            try:
                steer = placement.parse_cpus(args.steer_cpus)
            except ValueError as exc:
                raise ValueError(f"--steer-cpus: {exc}") from None
            placement.check_cpus(steer, "--steer-cpus")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return cpu, steer


def _chain(first, second):
    """Two event callbacks as one (either may be None)."""
    if first is None:
        return second

    def both(events: list[Event]) -> None:
        first(events)
        second(events)

    return both


def _run_workers(args, source, policy, binds, web_addr) -> int:
    """``--workers N``: N worker processes, one TUN queue each (``statewall.live.workers``)."""
    from ..live.workers import Supervisor
    from ..scale.replay import port_translation

    if args.state:
        raise UsageError(
            "--state: not with --workers (each worker's connections would need a file of their own)"
        )
    if web_addr is not None:
        raise UsageError("--http: not with --workers (the web view reads one engine)")
    if args.record:
        raise UsageError("--record: not with --workers (the recording is one engine's packets and events)")
    rule = port_translation(policy)
    if rule is not None:
        raise UsageError(
            f"--workers: the ruleset translates ports ({rule}); Linux's allocator has no port blocks per "
            "worker, so a reply could not be steered to its connection's worker"
        )
    return Supervisor(args, source, policy, binds, args.workers).run()


def load_state(fw, path: str) -> bool:
    """Restore ``fw``'s state from the file ``path`` when it exists (``Firewall.restore``), saying so on
    stderr; a file that cannot be read or restored is reported and ignored (the firewall starts
    empty). Whether it was restored."""
    from ..engine import SnapshotError

    try:
        with open(path, "rb") as fp:
            st = os.fstat(fp.fileno())
            # Unpickling runs what the file says: only a file of ours that nobody else can write.
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                print(
                    f"statewall run: state {path} not restored: it must belong to uid {os.geteuid()} and be "
                    f"writable by its owner only (it is uid {st.st_uid}, mode {st.st_mode & 0o777:o})",
                    file=sys.stderr,
                )
                return False
            data = fp.read()
    except FileNotFoundError:
        print(f"statewall run: no state file {path} yet; starting with no connections", file=sys.stderr)
        return False
    except OSError as exc:
        print(f"statewall run: state {path} not restored: {exc.strerror or exc}", file=sys.stderr)
        return False
    try:
        counts = fw.restore(data)
    except SnapshotError as exc:
        print(
            f"statewall run: state {path} not restored: {exc}; starting with no connections", file=sys.stderr
        )
        return False
    print(
        f"statewall run: restored {counts['connections']} connections, {counts['translations']} "
        f"translations and {counts['expectations']} expectations from {path}",
        file=sys.stderr,
        flush=True,
    )
    return True


def _report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def save_state(fw, path: str, report=_report) -> bool:
    """Write ``fw.snapshot()`` to ``path`` atomically: a temporary file in the same directory, mode
    0600, written and synced, then renamed over ``path`` (and the directory synced), so that a crash
    at any moment leaves the previous state or the new one, never a torn file. A failure is reported
    (``report``, stderr by default) and the firewall goes on. Whether it was written."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        data = fw.snapshot()
        # A name of this process's own (a background writer is a child: its pid), created 0600, never
        # through a link; no tempfile module, whose lock a forked child may find held.
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # left by a writer of the same pid that was killed
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
        tmp = None
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True
    except (OSError, ValueError, TypeError) as exc:  # a pickling error is a TypeError/PicklingError
        report(f"statewall run: cannot write state {path}: {exc}")
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class StateWriter:
    """``--state-interval``'s writes, off the forwarding loop. ``start`` forks: the child holds the
    engine as it was at that instant (copy-on-write pages, as Redis's BGSAVE takes its snapshot),
    pickles and writes it with ``save_state`` and exits; the loop goes on forwarding
    at once, paying only for the fork. One write at a time: a tick while the child still writes skips
    this interval's. ``wait`` reaps the child (before the final write on stop, so an older write can
    never rename over a newer one). Without ``os.fork`` the write is made in the loop, as before."""

    def __init__(self, fw, path: str) -> None:
        self.fw = fw
        self.path = path
        self.pid: int | None = None
        self.started = self.skipped = self.failed = 0

    def busy(self) -> bool:
        """Whether a child is still writing (reaping it when it is done)."""
        if self.pid is None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self._done(status)
        return False

    def _done(self, status: int) -> None:
        self.pid = None
        if os.waitstatus_to_exitcode(status) != 0:
            self.failed += 1

    def start(self) -> bool:
        """Begin a write; False when the previous one is still running (this one is skipped)."""
        if self.busy():
            self.skipped += 1
            return False
        if not hasattr(os, "fork"):
            save_state(self.fw, self.path)
            return True
        pid = os.fork()
        if pid == 0:  # the child: write, report through the raw descriptor, never return
            code = 1
            try:
                code = 0 if save_state(self.fw, self.path, report=_raw_report) else 1
            finally:
                os._exit(code)
        self.pid = pid
        self.started += 1
        return True

    def wait(self) -> None:
        if self.pid is not None:
            _, status = os.waitpid(self.pid, 0)
            self._done(status)


def _raw_report(message: str) -> None:
    # A forked child writes to the descriptor, not through sys.stderr, whose lock another thread of the
    # parent may have held at the fork.
    with contextlib.suppress(OSError):
        os.write(2, (message + "\n").encode())


def _saving_every(interval: float, writer: StateWriter, flush):
    """The loop's tick callback with ``--state-interval``: ``flush`` the log, and start a background
    write of the state once ``interval`` seconds have passed since the last one began."""
    import time

    due = [time.monotonic() + interval]

    def tick() -> None:
        flush()
        now = time.monotonic()
        if now >= due[0] and writer.start():
            due[0] = now + interval

    return tick


def print_summary(loop, fw) -> None:
    counters = loop.counters()
    print("statewall run: stopped; " + json.dumps(counters, separators=(",", ":")), flush=True)
    drops = getattr(fw, "drops", None)
    if drops:
        from ..logfmt.counters import format_show_asp_drop

        print(format_show_asp_drop(drops), flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the firewall inline on TUN devices",
        description="Forward between TUN devices through the engine until SIGINT/SIGTERM. "
        "IFACE is the configuration's interface name (nameif); DEVICE a TUN device, created if "
        "missing; NETNS a network namespace name (ip netns) or path.",
    )
    add_config_argument(p)
    p.add_argument(
        "--bind",
        action="append",
        required=True,
        metavar="IFACE=DEVICE[@NETNS]",
        help="attach an interface to a TUN device (repeat for each interface)",
    )
    p.add_argument(
        "--no-offload",
        action="store_true",
        help="plain TUN: no virtio-net header, no TSO/USO super-packets (slower)",
    )
    p.add_argument("--log", default="-", metavar="FILE", help="where events go (default: stderr)")
    p.add_argument(
        "--log-format",
        choices=("asa", "json", "none"),
        default="asa",
        help="ASA syslog lines (default), JSON lines, or nothing",
    )
    p.add_argument(
        "--syslog",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="also send every message to this syslog server over UDP (default port 514), as the "
        "configuration's 'logging host' lines do; repeatable",
    )
    p.add_argument("--tick", type=float, default=0.1, metavar="SECONDS", help="timer resolution (0.1)")
    p.add_argument(
        "--poll-us",
        type=float,
        default=0.0,
        metavar="US",
        help="after the last packet, poll the TUNs this many microseconds before sleeping (0: sleep at once)",
    )
    p.add_argument(
        "--uring",
        type=int,
        default=32,
        metavar="N",
        help="write the fast path's packets to the TUNs through io_uring, up to N per submission "
        "(default 32; 0: one writev each; no effect where statewall was built without liburing)",
    )
    p.add_argument(
        "--uring-reads",
        type=int,
        default=0,
        metavar="N",
        help="read the TUNs through io_uring (one multishot read per TUN, N buffers each, a power of two "
        "up to 256) instead of epoll_wait and a read() per packet (default 0: off; needs Linux 6.7 and "
        "liburing; the compiled loop only)",
    )
    p.add_argument(
        "--uring-taskrun",
        choices=("signal", "coop", "defer"),
        default="signal",
        help="with --uring-reads: when the kernel runs the reads it queues as packets arrive: at once "
        "(signal, io_uring's default), at the loop's next system call (coop), or only when the loop waits "
        "on the ring (defer)",
    )
    p.add_argument(
        "--collect",
        type=int,
        default=16,
        metavar="N",
        help="after a packet of a new flow for the engine's Python path, read on in the same TUN and hand "
        "over up to N more such packets with it, the fast path forwarding its own meanwhile; a packet "
        "whose flow the fast path may hold ends it (each flow's order kept; default 16, 0: one packet "
        "per return; the compiled loop's epoll reads only)",
    )
    p.add_argument(
        "--cpu",
        type=int,
        default=None,
        metavar="N",
        help="run the firewall's process on CPU N only (default: where the scheduler puts it)",
    )
    p.add_argument(
        "--steer-cpus",
        default=None,
        metavar="LIST",
        help="have the kernel do its work for the packets the firewall writes (their forwarding to the "
        "next hop, and on a veth the receiving host's own processing) on these CPUs (e.g. 0 or 0,2-3) "
        "instead of in the firewall's write: Receive Packet Steering on each bound TUN's queues, the "
        "previous masks put back on exit; with --cpu, a list without that CPU (docs/live.md)",
    )
    p.add_argument(
        "--python-wait",
        action="store_true",
        help="wait for the TUNs in Python around the C pump instead of the compiled loop (for comparison)",
    )
    p.add_argument(
        "--txqueuelen",
        type=int,
        default=None,
        metavar="N",
        help="TUN transmit queue length (the kernel default is 500)",
    )
    p.add_argument(
        "--name",
        metavar="NAME",
        help="control channel name for statewall ctl (default: the configuration's hostname)",
    )
    p.add_argument(
        "--ctl-dir",
        default="/run/statewall",
        metavar="DIR",
        help="where the control socket NAME.sock goes (default /run/statewall)",
    )
    p.add_argument("--no-ctl", action="store_true", help="no control channel")
    p.add_argument(
        "--capture-dir",
        default="/var/lib/statewall/captures",
        metavar="DIR",
        help="where 'statewall ctl capture' writes (relative names go here; other paths are refused; "
        "default /var/lib/statewall/captures, created 0700)",
    )
    p.add_argument(
        "--capture-anywhere",
        action="store_true",
        help="let 'statewall ctl capture' write any absolute path (still 0600, never through a link)",
    )
    p.add_argument(
        "--http",
        metavar="[ADDR:]PORT",
        help="serve a read-only web view (connections, recent drops, counters) and Prometheus /metrics on "
        "ADDR:PORT (ADDR 127.0.0.1 unless given; 0 for PORT picks a free one)",
    )
    p.add_argument(
        "--no-fast-path",
        action="store_true",
        help="every packet on the engine's Python path: no compiled fast path for established "
        "connections, no C pump (to compare, or to rule the fast path out)",
    )
    p.add_argument(
        "--record",
        metavar="OUTDIR",
        help="record the run as statewall replay writes its results: arrived/ and per-interface pcaps, "
        "asp-drop.pcap, log.txt, events.jsonl, and on stop summary.json and report.html (statewall "
        "report OUTDIR renders it again); every packet then takes the Python loop",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="with --record, write no report.html on stop (statewall report OUTDIR writes it later)",
    )
    p.add_argument(
        "--state",
        metavar="FILE",
        help="keep connections across a restart: restore the state (connections, translations, "
        "expectations, timers, counters, the randomization secret) from FILE when it exists, and "
        "write it there on stop and every --state-interval (atomically, mode 0600); a damaged or "
        "mismatched file is reported and ignored",
    )
    p.add_argument(
        "--state-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --state, also write the state this often (default 10; 0: only on stop), from a forked "
        "child so that forwarding goes on meanwhile. A kill -9 loses what changed since the last write",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="forward on N cores: N worker processes, each with its own engine and one queue of every "
        "TUN (IFF_MULTI_QUEUE); a BPF steering program hands each packet to its inside host's worker, and "
        "each worker translates to PAT ports of its own blocks (docs/scale.md). Not with --state, --http, "
        "or an iptables ruleset that translates ports (default 1)",
    )
    p.add_argument(
        "--timeout-override",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="set a global timeout after parsing, beyond the dialect's range (conn=8: a short "
        "'timeout conn' for a lab); repeatable",
    )
    p.add_argument(
        "--ftp-data-refreshes-control",
        choices=("on", "off"),
        default=None,
        help="whether FTP data activity keeps the control connection alive (default: as configured, on)",
    )
    p.set_defaults(func=run)
