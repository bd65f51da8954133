"""What the seed scenarios share: the firewall under control (``statewall run`` plus ``statewall ctl``),
FTP servers and clients that are real applications, test files with their SHA-256, and reporting.

Not a scenario itself (the leading underscore keeps ``load_all`` from registering it). Every process
is started through the lab, so the lab ends it; every wait has a bound.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...live.ctl import request
from ..netns import LabError, Namespace, terminate, wait_for
from ..topology import FirewallTopology
from . import ScenarioRun

PY = sys.executable


# --------------------------------------------------------------------------------------------------
# The firewall and its control channel


class Firewall:
    """``statewall run`` on a topology, named after the lab so that concurrent labs never share a
    control socket; ``ctl()`` asks it, ``log()`` reads its log through ``show log``."""

    def __init__(self, run: ScenarioRun, topo: FirewallTopology, role: str = "fw") -> None:
        self.run = run
        self.topo = topo
        self.name = f"{run.lab.prefix}-{role}"
        self.config = os.path.join(run.lab.workdir(), f"{role}.cfg")
        self.log_file = os.path.join(run.lab.workdir(), f"{role}.log")
        self.seen = 0  # log lines already reported
        self.role = role
        self.starts = 0
        self.recording: str | None = None  # this run's --record directory (ScenarioRun.record)

    def write_config(self, text: str) -> None:
        with open(self.config, "w") as f:
            f.write(text)

    def start(self, config: str, *, extra: Sequence[str] = (), offload: bool | None = None) -> None:
        self.write_config(config)
        self.starts += 1
        record: list[str] = []
        if self.run.record is not None:
            # Recorded as a replay's output directory; the report is rendered here on stop, so that
            # the firewall's own exit stays quick.
            self.recording = os.path.join(self.run.record, f"{self.role}-{self.starts}")
            record = ["--record", self.recording, "--no-report"]
        self.topo.start_firewall(
            self.config,
            offload=self.run.offload if offload is None else offload,
            log_file=self.log_file,
            extra=["--name", self.name, *extra, *record],
        )
        self.run.say("  " + self.topo.firewall_output[0])
        # The control socket exists before the ready line; make sure it answers.
        wait_for(lambda: self._answers(), timeout=10, what=f"control channel of {self.name}")

    def _answers(self) -> bool:
        try:
            return request(self.name, "help", timeout=2)[0]
        except OSError:
            return False

    def ctl(self, command: str, *, timeout: float = 15) -> str:
        try:
            ok, text = request(self.name, command, timeout=timeout)
        except OSError as exc:
            raise LabError(f"statewall ctl {command}: {exc}") from None
        if not ok:
            raise LabError(f"statewall ctl {command}: {text.strip()}")
        return text

    def reload(self, config: str) -> str:
        """Write ``config`` over the running configuration file and ``reload`` it; the answer."""
        self.write_config(config)
        return self.ctl("reload")

    def log(self) -> list[str]:
        return self.ctl("show log").splitlines()

    def new_log(self) -> list[str]:
        """Log lines since the last call (``show log`` keeps the last 2000)."""
        lines = self.log()
        new = lines[self.seen :] if len(lines) >= self.seen else lines
        self.seen = len(lines)
        return new

    def stop(self) -> int:
        code = self.topo.stop_firewall()
        if self.recording is not None and os.path.exists(os.path.join(self.recording, "summary.json")):
            from ...report import write_report

            with open(self.config, encoding="utf-8") as f:
                path = write_report(self.recording, f.read())
            self.run.reports.append(str(path))
            self.run.say(f"  report: {path}")
        self.recording = None
        return code


def show_lines(run: ScenarioRun, lines: Sequence[str], pattern: str, *, most: int = 3, what: str = "") -> int:
    """Print up to ``most`` lines matching ``pattern`` (a regex) and how many there were."""
    found = [line for line in lines if re.search(pattern, line)]
    for line in found[:most]:
        run.say(f"    {line}")
    if len(found) > most:
        run.say(f"    ... {len(found)} {what or 'such'} lines in all")
    return len(found)


# --------------------------------------------------------------------------------------------------
# Files


def make_file(path: str, nbytes: int, seed: int = 1) -> str:
    """A file of pseudo-random bytes; its SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = nbytes
        while left:
            chunk = rng.randbytes(min(left, 1 << 20))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def file_facts(path: str) -> tuple[int, str]:
    """(size, SHA-256) of ``path``; (0, "") when it does not exist."""
    if not os.path.exists(path):
        return 0, ""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@dataclass(slots=True)
class Transfer:
    """One file transfer by a real client: what left, what arrived, how the client ended."""

    what: str
    sent: int
    sent_sha: str
    received: int
    received_sha: str
    code: int
    seconds: float
    note: str = ""

    @property
    def complete(self) -> bool:
        return self.code == 0 and self.received == self.sent and self.sent_sha == self.received_sha

    def report(self, run: ScenarioRun) -> None:
        run.say(f"    {self.what}: client exit {self.code} after {self.seconds:.1f} s{self.note}")
        run.say(f"      sent     {self.sent} bytes sha256 {self.sent_sha}")
        run.say(f"      received {self.received} bytes sha256 {self.received_sha or '-'}")


# --------------------------------------------------------------------------------------------------
# FTP: pyftpdlib as the server, curl as the client


class FtpServer:
    """pyftpdlib (anonymous, writable) on ``address``:21 in ``ns``, serving a fresh directory."""

    def __init__(
        self, run: ScenarioRun, ns: Namespace, address: str, *, passive: str = "50000-50099"
    ) -> None:
        self.run = run
        self.ns = ns
        self.address = address
        self.root = os.path.join(run.lab.workdir(), f"ftp-{ns.role}")
        os.makedirs(self.root, exist_ok=True)
        os.chmod(self.root, 0o777)
        self.stderr = open(os.path.join(run.lab.workdir(), f"ftp-{ns.role}.log"), "w")  # noqa: SIM115
        self.proc = ns.popen(
            [PY, "-m", "pyftpdlib", "-i", address, "-p", "21", "-w", "-d", self.root, "-r", passive],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        wait_for(lambda: self._listening(), timeout=15, what=f"FTP server on {address}:21")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise LabError(f"the FTP server exited ({self.proc.returncode}); see {self.stderr.name}")
        res = self.ns.run(["ss", "-Hltn", "sport = :21"], timeout=10, check=False)
        return bool(res.stdout.strip())

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)


def curl_ftp(
    run: ScenarioRun,
    ns: Namespace,
    url: str,
    *,
    upload: str | None = None,
    download: str | None = None,
    active: bool = False,
    epsv: bool = True,
    max_time: float = 20,
    extra: Sequence[str] = (),
    during: Callable[[], None] | None = None,
    during_after: float = 1.0,
) -> tuple[int, float, str]:
    """curl in ``ns``: upload a file (STOR) or download one (RETR); (exit code, seconds, stderr tail).

    ``active`` sends PORT (EPRT off), else passive (EPSV, or PASV with ``epsv=False``). ``during`` is
    called once, ``during_after`` seconds into the transfer, while curl still runs (a look at the
    firewall's tables mid-transfer).
    """
    argv = ["curl", "-sS", "--max-time", str(max_time), "--connect-timeout", "5"]
    if active:
        argv += ["-P", "-", "--disable-eprt"]
    elif not epsv:
        argv += ["--disable-epsv"]
    if upload is not None:
        argv += ["-T", upload]
    if download is not None:
        argv += ["-o", download]
    argv += [*extra, url]
    started = time.monotonic()
    proc = ns.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if during is not None:
            try:
                proc.wait(during_after)
            except subprocess.TimeoutExpired:
                during()
        _, err = proc.communicate(timeout=max_time + 15)
    except subprocess.TimeoutExpired:
        terminate(proc)
        raise LabError(f"curl {url} outlived its own --max-time {max_time}") from None
    return proc.returncode, time.monotonic() - started, (err or "").strip()[-200:]


def tcp_reachable(ns: Namespace, address: str, port: int, timeout: float = 3) -> bool:
    def probe() -> bool:
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return True
        except OSError:
            return False

    return ns.call(probe, timeout=timeout + 5)


def nft(ns: Namespace, script: str) -> None:
    ns.run(["nft", "-f", "-"], input=script, timeout=10)


def nft_counter(ns: Namespace, table: str, family: str = "inet") -> list[tuple[str, int]]:
    """(rule text, packets) for each counter in ``table``: what the kernel matched."""
    res = ns.run(["nft", "list", "table", family, table], timeout=10)
    out = []
    for line in res.stdout.splitlines():
        m = re.search(r"counter packets (\d+) bytes \d+", line)
        if m:
            out.append((line.strip(), int(m.group(1))))
    return out
