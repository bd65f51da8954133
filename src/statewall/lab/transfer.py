"""A TCP transfer endpoint for lab scenarios: a real application on a real TCP stack, with a verdict.

``python -m statewall.lab.transfer serve --port P [--send N]`` accepts one connection; it either
receives until EOF (default) or sends ``N`` bytes. ``... connect HOST P [--send N]`` is the other end.
Either side prints one JSON line when done: ``{"bytes", "sha256", "seconds", "error"}``, so a
scenario compares what left one host with what arrived at the other. ``serve`` first prints
``listening <port>`` once it accepts connections. Data is a deterministic pseudo-random stream
(``--seed``), so both ends agree on the checksum without sharing a file. Every wait is bounded by
``--timeout``. ``between()`` runs both ends in two lab namespaces and returns their reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .netns import Namespace

CHUNK = 256 * 1024


def stream(nbytes: int, seed: int):
    rng = random.Random(seed)
    left = nbytes
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def send_all(sock: socket.socket, nbytes: int, seed: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    sent = 0
    for chunk in stream(nbytes, seed):
        sock.sendall(chunk)
        digest.update(chunk)
        sent += len(chunk)
    sock.shutdown(socket.SHUT_WR)
    # Wait for the peer's close so that "sent" means "taken by the peer", not "queued locally".
    while sock.recv(65536):
        pass
    return sent, digest.hexdigest()


def receive_all(sock: socket.socket) -> tuple[int, str]:
    digest = hashlib.sha256()
    got = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf)
        if not n:
            break
        digest.update(view[:n])
        got += n
    return got, digest.hexdigest()


def report(nbytes: int, sha: str, started: float, error: str | None = None) -> None:
    print(
        json.dumps(
            {"bytes": nbytes, "sha256": sha, "seconds": round(time.monotonic() - started, 4), "error": error}
        ),
        flush=True,
    )


def serve(args: argparse.Namespace) -> int:
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((args.bind, args.port))
        lsock.listen(1)
        lsock.settimeout(args.timeout)
        print(f"listening {lsock.getsockname()[1]}", flush=True)
        started = time.monotonic()
        try:
            conn, _ = lsock.accept()
        except TimeoutError:
            report(0, "", started, "no connection")
            return 1
    with conn:
        conn.settimeout(args.timeout)
        started = time.monotonic()
        try:
            nbytes, sha = send_all(conn, args.send, args.seed) if args.send else receive_all(conn)
        except OSError as exc:
            report(0, "", started, f"{type(exc).__name__}: {exc}")
            return 1
    report(nbytes, sha, started)
    return 0


def connect(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        with socket.create_connection((args.host, args.port), timeout=args.timeout) as sock:
            nbytes, sha = send_all(sock, args.send, args.seed) if args.send else receive_all(sock)
    except OSError as exc:
        report(0, "", started, f"{type(exc).__name__}: {exc}")
        return 1
    report(nbytes, sha, started)
    return 0


def between(
    src: Namespace, dst: Namespace, dst_addr: str, nbytes: int, *, port: int = 5001, timeout: float = 60
) -> tuple[dict, dict]:
    """Send ``nbytes`` from a client in ``src`` to a receiver in ``dst`` listening on ``dst_addr``.

    Returns (sender's report, receiver's report): ``bytes``, ``sha256``, ``seconds``, ``error``.
    """
    from .netns import LabError
    from .topology import read_line

    py = [sys.executable, "-m", "statewall.lab.transfer"]
    bind = "::" if ":" in dst_addr else "0.0.0.0"
    server = dst.popen(
        [*py, "serve", "--bind", bind, "--port", str(port), "--timeout", str(timeout)], stdout=subprocess.PIPE
    )
    line = read_line(server, 10)
    if not line.startswith("listening"):
        raise LabError(f"transfer server: unexpected output {line!r}")
    client = src.run(
        [*py, "connect", dst_addr, str(port), "--send", str(nbytes), "--timeout", str(timeout)],
        timeout=timeout + 10,
        check=False,
    )
    try:
        out, _ = server.communicate(timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        server.kill()
        out, _ = server.communicate()
    return _last_json(client.stdout), _last_json(out.decode(errors="replace"))


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"bytes": 0, "sha256": "", "seconds": 0, "error": f"no report in {text[-200:]!r}"}


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m statewall.lab.transfer", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--port", type=int, default=5001)
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    for q in (s, c):
        q.add_argument(
            "--send", type=parse_size, default=0, metavar="BYTES", help="send this much (else receive)"
        )
        q.add_argument("--seed", type=int, default=1)
        q.add_argument("--timeout", type=float, default=30.0, help="bound on every wait, seconds")
    args = p.parse_args(argv)
    return serve(args) if args.mode == "serve" else connect(args)


if __name__ == "__main__":
    sys.exit(main())
