"""Live: ``statewall run --state`` restarted under a running TCP transfer, between network namespaces.

A paced upload through PAT with sequence randomization (the ASA's defaults) runs while the firewall is
stopped with SIGTERM and started again, then killed with SIGKILL and started again: each start says it
restored the connection, and the transfer completes with every byte intact. With SIGKILL the state is
the last periodic write's (``--state-interval``, 0.2 s here): what the connection did since then is
lost, and TCP's retransmissions bring the ends back into the restored window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from requires import live_reason
from statewall.lab.topology import ASA_INTERFACES

ROOT_REASON = live_reason("ip")
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")

CONFIG = (
    """\
ASA Version 8.2(1)
hostname statesmoke
"""
    + ASA_INTERFACES
    + """\
global (outside) 1 interface
nat (inside) 1 0.0.0.0 0.0.0.0
"""
)

# The client: CHUNKS chunks of pseudo-random bytes, one every PACE seconds, then the sha256 of all.
CHUNKS, CHUNK, PACE = 250, 4000, 0.03
CLIENT = f"""
import hashlib, json, random, socket, time
rng, digest, sent = random.Random(7), hashlib.sha256(), 0
with socket.create_connection(("203.0.113.2", 5001), timeout=60) as s:
    for _ in range({CHUNKS}):
        chunk = rng.randbytes({CHUNK})
        s.sendall(chunk)
        digest.update(chunk)
        sent += len(chunk)
        time.sleep({PACE})
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
print(json.dumps({{"bytes": sent, "sha256": digest.hexdigest()}}), flush=True)
"""


@pytest.mark.root
@needs_root
@pytest.mark.timeout(120)
def test_a_transfer_survives_a_sigterm_restart_and_a_sigkill_restart(tmp_path):
    from statewall.lab.netns import Lab
    from statewall.lab.topology import FirewallTopology, read_line

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    state = tmp_path / "fw.state"
    extra = ["--no-ctl", "--state", str(state), "--state-interval", "0.2"]
    with Lab() as lab:
        topo = FirewallTopology(lab).build()
        topo.start_firewall(str(cfg), extra=extra, log_file=str(tmp_path / "events.log"))
        assert any("no state file" in line for line in topo.firewall_output), topo.firewall_output
        py = [sys.executable, "-m", "statewall.lab.transfer"]
        server = topo.host("outside").popen(
            [*py, "serve", "--bind", "0.0.0.0", "--port", "5001", "--timeout", "60"], stdout=subprocess.PIPE
        )
        assert read_line(server, 10).startswith("listening")
        client = topo.host("inside").popen([sys.executable, "-c", CLIENT], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            # SIGTERM: the state written on stop, restored on start.
            assert topo.stop_firewall() == 0
            assert state.stat().st_mode & 0o777 == 0o600
            topo.start_firewall(str(cfg), extra=extra, log_file=str(tmp_path / "events.log"))
            restored = [line for line in topo.firewall_output if "restored" in line]
            assert restored and restored[0].startswith(
                "statewall run: restored 1 connections, 1 translations"
            )
            time.sleep(2.0)
            assert client.poll() is None, "the transfer ended before the second restart"
            # SIGKILL: the last periodic write is what the next start restores.
            proc = topo.firewall
            proc.kill()
            proc.wait(10)
            topo.start_firewall(str(cfg), extra=extra, log_file=str(tmp_path / "events.log"))
            restored = [line for line in topo.firewall_output if "restored" in line]
            assert restored and restored[0].startswith("statewall run: restored 1 connections"), restored
            out, _ = client.communicate(timeout=60)
            got, _ = server.communicate(timeout=30)
        finally:
            for p in (client, server):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert out.strip(), "the client gave up: the connection did not survive a restart"
        sent = json.loads(out.strip().splitlines()[-1])
        received = json.loads(got.decode().strip().splitlines()[-1])
        assert received["error"] is None, received
        assert sent["bytes"] == received["bytes"] == CHUNKS * CHUNK
        assert sent["sha256"] == received["sha256"]
        assert topo.stop_firewall() == 0
    # One connection from the first SYN to the FINs, through three processes, and no drop of it.
    log = (tmp_path / "events.log").read_text().splitlines()
    assert sum("Built outbound TCP connection 1 " in line for line in log) == 1, log
    assert any("Teardown TCP connection 1 " in line and "TCP FINs" in line for line in log), log
    assert not any("106015" in line or "Deny" in line for line in log), log
