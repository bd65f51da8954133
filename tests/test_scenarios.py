"""The seed scenarios of the lab, end to end as ``statewall lab run`` runs them (root): each one shows its
failure and its fixes (exit 0 only when every check held) and leaves nothing behind: no namespace, no
process, no control socket, no work directory; also when it is stopped half-way. And the demo's live
runner: a scenario that breaks counts as failed, a slot without a scenario is said to be one.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from requires import live_reason
from statewall import demo
from statewall.lab.netns import our_namespaces
from statewall.lab.scenarios import SCENARIOS, ScenarioRun, load_all, scenario

ROOT_REASON = live_reason("ip", "nft", "curl", "ss")
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")

# What each scenario must show happening (beyond its own checks), as it prints it.
SHOWS = {
    "seed000": (
        "%ASA-4-419001:",
        "reason: MSS exceeded, MSS 1390, data 1460",
        "solution B: the upload completes",
    ),
    "seed001": (
        "the download stalls",
        "TCPMSS set 1347",
        "the client's SYN left for the server with MSS 1347",
    ),
    "seed002": (
        "%ASA-6-201012: Per-client embryonic connection limit exceeded 10/10",
        "%ASA-6-201010: Embryonic connection limit exceeded 50/50",
        "%ASA-4-733100: [ SYN attck] drop rate-1 exceeded.",
        "and a legitimate client cannot connect",
        "conn-expiration 1",
        "Flow timed out with reset",
    ),
    "seed003": ("dropped SACKing segments as INVALID", "be_liberal: the transfer completes"),
    "seed004": (
        "Idle Timeout",
        "passive, server inside behind the static (227 rewritten): complete",
        "conntrack: the control entry expired mid-transfer",
        "conntrack: the long transfer completes",
    ),
}


def leftovers(pid: int) -> list[str]:
    """What a ``statewall lab run`` with process id ``pid`` could have left: its namespaces (its labs are
    ``sw-<pid>-...``), processes naming them, control sockets and work directories."""
    prefix = f"sw-{pid}-"
    left = [f"namespace {n}" for n in our_namespaces(prefix)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if prefix in cmdline:
            left.append(f"process {entry}: {cmdline[:120]}")
    if os.path.isdir("/run/statewall"):
        left += [f"socket {s}" for s in os.listdir("/run/statewall") if s.startswith(prefix)]
    tmp = "/tmp"
    left += [f"directory {d}" for d in os.listdir(tmp) if d.startswith(prefix)]
    return left


def lab_run(name: str, timeout: float) -> tuple[int, str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "statewall.cli", "lab", "run", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the lab removes everything on SIGTERM
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"{name} took more than {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out, proc.pid


@pytest.mark.root
@needs_root
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(SHOWS))
def test_scenario_shows_the_failure_and_the_fixes_and_leaves_nothing(name):
    code, out, pid = lab_run(name, timeout=180)
    assert code == 0 and f"scenario {name}: PASSED" in out, out[-4000:]
    assert "[FAILED]" not in out
    for text in SHOWS[name]:
        assert text in out, f"{name} does not show {text!r}:\n{out[-4000:]}"
    assert leftovers(pid) == []


@pytest.mark.root
@needs_root
@pytest.mark.timeout(120)
def test_a_scenario_stopped_half_way_leaves_nothing():
    proc = subprocess.Popen(
        [sys.executable, "-m", "statewall.cli", "lab", "run", "seed004"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        # Stop it in the middle of the broken case: firewall, FTP servers and curl all running.
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("broken:") or time.monotonic() > deadline:
                break
        assert lines and lines[-1].startswith("broken:"), "".join(lines)
        time.sleep(2)
        assert leftovers(proc.pid) != [], "nothing was running when the scenario was stopped"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert leftovers(proc.pid) == []


def test_every_seed_scenario_is_registered_and_listed():
    scenarios = load_all()
    for name in SHOWS:
        assert name in scenarios and scenarios[name].summary.startswith(f"seed {name[4:]}:")
    assert {s.lab for s in demo.LIVE} >= set(SHOWS) | {"seed002"}


def test_the_demo_counts_a_scenario_that_breaks_as_failed_and_names_an_empty_slot():
    @scenario("test-broken-scenario", "raises half-way")
    def broken(run: ScenarioRun) -> None:
        run.check("first step", True)
        raise RuntimeError("the lab fell over")

    try:
        out = io.StringIO()
        live = [
            demo.LiveScenario(
                "998", "test-broken-scenario", "Broken", "it broke", "nothing", (r"first step",)
            ),
            demo.LiveScenario("999", "test-no-such-scenario", "Slot", "-", "-", (), owner="someone else"),
        ]
        assert demo.run_live(live, out) is False
        text = out.getvalue()
        assert "seed 998: FAILED (1/2 checks" in text
        assert "FAILED: scenario ran to the end: RuntimeError: the lab fell over" in text
        assert "shown:  [ok] first step" in text
        assert "no 'test-no-such-scenario' scenario in the lab yet: someone else" in text
        assert "seed 999: not run" in text
    finally:
        SCENARIOS.pop("test-broken-scenario", None)
