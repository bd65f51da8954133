"""``statewall run --workers N``: the live firewall on N cores, one worker process per TUN queue.

Every bound TUN is opened with ``IFF_MULTI_QUEUE`` N times by this (the supervising) process, so queue k
of every device is the k-th file; worker k, a forked process, reads and writes queue k of each device
with an engine of its own (``Firewall`` over ``scale.replay.shard_policy``: the class and NAT limits
divided as the ASA divides them between its cores) and owns the connections that arrive there. A BPF
steering program on each device (``statewall.live.steer``) makes the kernel hand every packet to the
queue of its inside host, both directions and through NAT:

* worker k allocates PAT ports (and ICMP identifiers) only from the port blocks ``b`` with
  ``b % N == k`` (``NatTable.port_share``, as the sharded replay and an ASA cluster's units do), and a
  dynamic NAT pool's ``i``-th address only when ``i % N == k``; so a reply to a mapped address names its
  worker by its destination port (or address);
* the program hashes the inside host's address otherwise (docs/scale.md).

Connection numbers stay unique in the box: worker k numbers k+1, k+1+N, k+1+2N, ...

The supervisor answers ``statewall ctl`` on ``<ctl-dir>/<name>.sock`` by asking every worker (each has
its own socket in ``<ctl-dir>/<name>.workers/``) and merging: ``show conn``/``xlate``/``local-host``
sum their ``in use`` lines and list every worker's entries, ``show asp drop`` sums per reason, ``reload``
reloads every worker (and the steering programs); other commands answer per worker. A worker that dies
(killed, a crash) is reported on stderr and started again with an empty engine: its connections are lost,
the other workers' are not (its queue keeps its packets meanwhile, as the supervisor holds the queue
open). On SIGTERM/SIGINT the supervisor stops the workers, sums their counters and prints the summary
one process prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import threading
from collections import Counter
from typing import Any

from . import steer

_IN_USE = re.compile(r"^(\d+) in use, (\d+) most used$")
_COUNT_LINE = re.compile(r"^(.*\S)\s+(\d+)$")


def merge_answers(command: str, answers: list[tuple[bool, str]]) -> tuple[bool, str]:
    """One answer for ``statewall ctl`` from the workers' answers to ``command`` (in worker order)."""
    words = command.split()
    ok = all(a[0] for a in answers)
    texts = [a[1] for a in answers]
    verb = words[0] if words else ""
    what = words[1] if len(words) > 1 else ""
    if ok and "show".startswith(verb) and verb and what:
        if any(k.startswith(what) for k in ("conn", "xlate", "local-host")) and all(
            _IN_USE.match(t.split("\n", 1)[0]) for t in texts
        ):
            used = most = 0
            body: list[str] = []
            for t in texts:
                head, _, rest = t.partition("\n")
                m = _IN_USE.match(head)
                assert m is not None
                used += int(m.group(1))
                most += int(m.group(2))
                body += [line for line in rest.split("\n") if line]
            # "most used" of the box is at most the sum of the workers' (they peaked at different times).
            return True, "\n".join([f"{used} in use, {most} most used", *body]) + "\n"
        if "asp".startswith(what[:3]) and what.startswith("asp"):
            return True, _merge_counts(texts)
    out = []
    for k, (good, text) in enumerate(answers):
        out.append(f"worker {k}:" + ("" if good else " ERROR"))
        out += ["  " + line for line in text.rstrip("\n").split("\n")]
    return ok, "\n".join(out) + "\n"


def _merge_counts(texts: list[str]) -> str:
    """``show asp drop`` of several engines: the counts of equal lines summed, in first-seen order."""
    sections: dict[str, Counter] = {}
    order: dict[str, list[str]] = {}
    current = ""
    tails: dict[str, list[str]] = {}
    for text in texts:
        current = ""
        for line in text.split("\n"):
            m = _COUNT_LINE.match(line) if line.startswith(" ") else None
            if m is None:
                if line and not line.startswith("Last clearing"):
                    current = line
                    sections.setdefault(current, Counter())
                    order.setdefault(current, [])
                    tails.setdefault(current, [])
                elif line.startswith("Last clearing") and line not in tails.setdefault(current, []):
                    tails[current].append(line)
                continue
            label = m.group(1)
            if label not in sections[current]:
                order[current].append(label)
            sections[current][label] += int(m.group(2))
    out = []
    for sec, counts in sections.items():
        out.append(sec)
        width = max((len(label) for label in order[sec]), default=0)
        out += [f"{label.ljust(width)}  {counts[label]}" for label in order[sec]]
        out.append("")
        out += tails[sec]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


class _Worker:
    __slots__ = ("index", "pid", "ready", "result")

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.ready = -1  # read end of the pipe the worker writes "ready" and its final counters to
        self.result = b""


class Supervisor:
    """Opens the queues, steers, forks the workers, answers ``statewall ctl``, restarts a dead worker."""

    def __init__(self, args: Any, source: Any, policy: Any, binds: list, count: int) -> None:
        self.args = args
        self.source = source
        self.policy = policy
        self.binds = binds
        self.count = count
        self.queues: dict[str, list] = {}  # interface -> its TUN's queues (Tun), queue k for worker k
        self.workers = [_Worker(k) for k in range(count)]
        self.stopping = False
        self.ctl_sock: socket.socket | None = None
        self.ctl_path: str | None = None
        self.worker_dir: str | None = None
        self.name: str | None = None
        self.restarts = 0

    # ---- setup ------------------------------------------------------------------------------------

    def open(self) -> None:
        from .tun import open_tun

        for name, device, netns in self.binds:
            self.queues[name] = [
                open_tun(
                    device,
                    netns,
                    offload=not self.args.no_offload,
                    txqueuelen=self.args.txqueuelen,
                    multi_queue=True,
                )
                for _ in range(self.count)
            ]
        self.steer()

    def steer(self, policy: Any = None) -> None:
        """(Re)load each TUN's steering program from ``policy`` (the configuration's NAT and routes)."""
        from ..engine import Firewall

        fw = Firewall(policy or self.policy, fast_path=False)
        for name, queues in self.queues.items():
            prog = steer.load(steer.program(fw, name), f"sw_{name}"[:15])
            try:
                steer.attach(queues[0].fd, prog)
            finally:
                os.close(prog)

    # ---- workers ----------------------------------------------------------------------------------

    def spawn(self, w: _Worker) -> None:
        r, wr = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                _die_with_parent()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                if self.ctl_sock is not None:
                    self.ctl_sock.close()
                for other in self.workers:
                    if other.ready >= 0:
                        os.close(other.ready)
                code = self._work(w.index, wr)
            except BaseException as exc:  # noqa: BLE001 -- a worker reports and ends, never returns
                print(
                    f"statewall run: worker {w.index}: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
            finally:
                os._exit(code)
        os.close(wr)
        w.pid = pid
        w.ready = r
        w.result = b""

    def _work(self, k: int, pipe: int) -> int:
        from ..commands.run import _event_writer, make_loop
        from ..engine import Firewall
        from ..scale.replay import shard_policy
        from .ctl import Commands, CtlServer
        from .loop import Port

        args = self.args
        for queues in self.queues.values():
            for j, q in enumerate(queues):
                if j != k:
                    q.close()
        fw = Firewall(shard_policy(self.policy, self.count), fast_path=not args.no_fast_path)
        fw.nat.port_share = (k, self.count)
        fw.next_id = k + 1
        fw.id_step = self.count
        ports = [Port(name, queues[k]) for name, queues in self.queues.items()]
        log_fp = sys.stderr if args.log == "-" else open(args.log, "a", encoding="utf-8")  # noqa: SIM115
        on_events, sender = _event_writer(args.log_format, log_fp, self.policy, args.syslog)
        loop = make_loop(fw, ports, args, on_events)
        loop.on_tick = log_fp.flush
        server = None
        if self.worker_dir is not None:

            def reload() -> Any:
                return shard_policy(self.source.load(), self.count)

            commands = Commands(fw, loop, reload=reload, source=args.config, capture_dir=args.capture_dir)
            server = CtlServer(loop, commands, f"w{k}", directory=self.worker_dir)
            server.start()
        try:
            with loop.stop_on_signals():
                os.write(pipe, b"R")
                loop.run()
        finally:
            if server is not None:
                server.close()
            loop.close()
            log_fp.flush()
            if sender is not None:
                sender.close()
        drops = {r.name: n for r, n in getattr(fw, "drops", {}).items()}
        os.write(pipe, json.dumps({"counters": loop.counters(), "drops": drops}).encode())
        return 0

    def wait_ready(self, w: _Worker) -> bool:
        try:
            return os.read(w.ready, 1) == b"R"
        except OSError:
            return False

    def reap(self) -> None:
        """Collect ended workers; start again those that ended while the firewall runs."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for w in self.workers:
                if w.pid != pid:
                    continue
                w.pid = 0
                w.result = self._read_all(w.ready)
                os.close(w.ready)
                w.ready = -1
                if not self.stopping:
                    how = (
                        f"signal {os.WTERMSIG(status)}"
                        if os.WIFSIGNALED(status)
                        else f"exit {os.WEXITSTATUS(status)}"
                    )
                    print(
                        f"statewall run: worker {w.index} (pid {pid}) ended ({how}); its connections are "
                        "lost; starting it again",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.restarts += 1
                    self.spawn(w)
                    self.wait_ready(w)
                    print(
                        f"statewall run: worker {w.index} started again (pid {w.pid})",
                        file=sys.stderr,
                        flush=True,
                    )

    @staticmethod
    def _read_all(fd: int) -> bytes:
        chunks = []
        with contextlib.suppress(OSError):
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks)

    # ---- control channel --------------------------------------------------------------------------

    def start_ctl(self) -> None:
        from .ctl import CtlError, socket_path

        args = self.args
        if args.no_ctl:
            return
        names = [args.name] if args.name else [self.policy.hostname, f"{self.policy.hostname}-{os.getpid()}"]
        for i, name in enumerate(names):
            try:
                path = socket_path(name, args.ctl_dir)
                os.makedirs(args.ctl_dir, mode=0o755, exist_ok=True)
                if os.path.exists(path):
                    with socket.socket(socket.AF_UNIX) as probe:
                        try:
                            probe.connect(path)
                        except OSError:
                            os.unlink(path)
                        else:
                            raise CtlError(f"{path}: a firewall named {name!r} is already running")
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(path)
                os.chmod(path, 0o600)
                sock.listen(16)
            except (CtlError, OSError) as exc:
                if args.name or i == len(names) - 1:
                    from ..commands import UsageError

                    raise UsageError(f"control channel: {exc}") from None
                continue
            self.ctl_sock, self.ctl_path, self.name = sock, path, name
            self.worker_dir = os.path.join(args.ctl_dir, f"{name}.workers")
            os.makedirs(self.worker_dir, mode=0o700, exist_ok=True)
            return

    def serve_ctl(self) -> None:
        """The control channel's thread: one request at a time, fanned out to the workers."""
        from .ctl import MAX_REQUEST

        sock = self.ctl_sock
        assert sock is not None
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed: the firewall stops
            with conn:
                try:
                    conn.settimeout(10)
                    data = b""
                    while b"\n" not in data and len(data) < MAX_REQUEST:
                        chunk = conn.recv(MAX_REQUEST)
                        if not chunk:
                            break
                        data += chunk
                    line = data.split(b"\n", 1)[0].decode(errors="replace").strip()
                    ok, text = self.execute(line)
                    conn.settimeout(60)
                    conn.sendall((("OK" if ok else "ERROR") + "\n" + text).encode())
                except OSError:
                    continue

    def execute(self, line: str) -> tuple[bool, str]:
        from .ctl import request

        words = line.split()
        if words and "capture".startswith(words[0]) and len(words[0]) >= 3:
            return False, "% capture is not available with --workers (each worker sees only its queue)\n"
        answers = []
        for w in self.workers:
            try:
                answers.append(request(f"w{w.index}", line, directory=self.worker_dir or "", timeout=30))
            except (OSError, TimeoutError) as exc:
                answers.append((False, f"% worker {w.index} did not answer: {exc}\n"))
        ok, text = merge_answers(line, answers)
        if ok and words and "reload".startswith(words[0]) and len(words[0]) >= 3:
            try:
                self.steer(self.source.load())
                text += "steering programs reloaded\n"
            except OSError as exc:
                ok, text = False, text + f"% steering programs not reloaded: {exc}\n"
        return ok, text

    def close_ctl(self) -> None:
        if self.ctl_sock is not None:
            with contextlib.suppress(OSError):
                self.ctl_sock.shutdown(socket.SHUT_RDWR)
            self.ctl_sock.close()
            self.ctl_sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.ctl_path or "")
        if self.worker_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.worker_dir)

    # ---- the whole ------------------------------------------------------------------------------

    def run(self) -> int:
        from ..commands import EXIT_OK

        sigs = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        try:
            self.open()
            self.start_ctl()
            for w in self.workers:
                self.spawn(w)
            for w in self.workers:
                if not self.wait_ready(w):
                    print(
                        f"statewall run: worker {w.index} did not start (its error is above)",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
            ports = " ".join(f"{name}={q[0].describe()} queues {len(q)}" for name, q in self.queues.items())
            # The workers' pids first: whoever waits for the forwarding line has them by then.
            print(
                "statewall run: workers " + " ".join(f"{w.index}=pid{w.pid}" for w in self.workers),
                flush=True,
            )
            print(
                f"statewall run: forwarding {ports} with {self.count} workers (steered by inside host)",
                flush=True,
            )
            if self.ctl_sock is not None:
                print(f"statewall run: control channel {self.ctl_path}", flush=True)
                threading.Thread(target=self.serve_ctl, name="ctl", daemon=True).start()
            while True:
                sig = signal.sigwait(sigs)
                if sig == signal.SIGCHLD:
                    self.reap()
                    continue
                break
            self.stopping = True
            for w in self.workers:
                if w.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGTERM)
            while any(w.pid for w in self.workers):
                signal.sigwait({signal.SIGCHLD})
                self.reap()
            self.close_ctl()
            self.summary()
        finally:
            self.stopping = True
            for w in self.workers:
                if w.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGKILL)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(w.pid, 0)
            self.close_ctl()
            for queues in self.queues.values():
                for q in queues:
                    q.close()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
        return EXIT_OK

    def summary(self) -> None:
        """The one-process summary line with every worker's counters summed, the workers' own beside
        them (``workers``), and the summed ``show asp drop``."""
        from ..events import DropReason
        from ..logfmt.counters import format_show_asp_drop

        per = []
        drops: Counter = Counter()
        for w in self.workers:
            try:
                res = json.loads(w.result.decode()[1:] if w.result.startswith(b"R") else w.result.decode())
            except ValueError:
                res = {"counters": None, "drops": {}}
            per.append(res["counters"])
            for name, n in res["drops"].items():
                drops[DropReason[name]] += n
        total = _sum([c for c in per if c is not None])
        total["workers"] = per
        total["restarts"] = self.restarts
        print("statewall run: stopped; " + json.dumps(total, separators=(",", ":")), flush=True)
        if drops:
            print(format_show_asp_drop(drops), flush=True)


def _die_with_parent() -> None:
    """A worker gets SIGTERM when the supervisor dies (``prctl(PR_SET_PDEATHSIG)``): no worker goes on
    forwarding for a supervisor killed with SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _sum(items: list) -> Any:
    """Numbers added, dictionaries merged key by key (booleans: all)."""
    if not items:
        return {}
    first = items[0]
    if isinstance(first, bool):
        return all(items)
    if isinstance(first, (int, float)):
        return sum(items)
    if isinstance(first, dict):
        keys = dict.fromkeys(k for d in items if d for k in d)
        return {k: _sum([d[k] for d in items if d and d.get(k) is not None]) for k in keys}
    return first
