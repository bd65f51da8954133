"""CPU placement for ``statewall run`` (statewall.live.placement): ``--cpu`` pins the firewall,
``--steer-cpus`` has the kernel do its work for the packets the firewall writes on other CPUs (RPS on the
bound TUNs' receive queues, put back on exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from statewall.live import placement
from test_live import ROOT_REASON, _assert_transfer, _engine_available, needs_root


@pytest.mark.parametrize(
    "text, cpus",
    [("0", {0}), ("1", {1}), ("0,2-3", {0, 2, 3}), ("3-3", {3}), (" 1 , 0 ", {0, 1}), ("0-2,1", {0, 1, 2})],
)
def test_cpu_lists_as_the_kernel_writes_them(text, cpus):
    assert placement.parse_cpus(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "2-1", "0,,1", "0x1", "1.5"])
def test_malformed_cpu_lists_are_refused(text):
    with pytest.raises(ValueError):
        placement.parse_cpus(text)


@pytest.mark.parametrize(
    "cpus, mask",
    [({0}, "1"), ({1}, "2"), ({0, 1}, "3"), ({4, 7}, "90"), ({32}, "1,00000000"), ({0, 33}, "2,00000001"),
     ({64}, "1,00000000,00000000")],
)  # fmt: skip
def test_rps_masks_in_32_bit_groups(cpus, mask):
    assert placement.rps_mask(cpus) == mask


def test_cpus_this_process_may_not_use_are_refused():
    allowed = os.sched_getaffinity(0)
    placement.check_cpus(frozenset(allowed), "--steer-cpus")
    with pytest.raises(ValueError, match="no CPU 4096"):
        placement.check_cpus(frozenset({4096}), "--steer-cpus")
    with pytest.raises(ValueError, match="no CPU given"):
        placement.check_cpus(frozenset(), "--cpu")


@pytest.mark.parametrize("device", ["", "a/b", "..", "."])
def test_device_names_that_are_paths_are_refused(device):
    with pytest.raises(ValueError):
        placement.set_rps(device, None, None)


@pytest.fixture
def netns():
    if ROOT_REASON is not None:
        pytest.skip(ROOT_REASON)
    name = f"swt-pl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _mask_in(ns: str, dev: str) -> str:
    res = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return res.stdout.strip()


@pytest.mark.root
@needs_root
def test_rps_of_a_tun_in_another_namespace_set_and_put_back(netns):
    """The masks are the TUN's own namespace's (its sysfs, not ours): read, set, put back; the
    namespace the test runs in gets no mount from the helper."""
    from statewall.live.tun import open_tun

    with open("/proc/self/mounts") as f:
        mounts = f.read()
    tun = open_tun("swpl0", netns, persist=True)
    try:
        before = placement.set_rps("swpl0", netns, None)
        assert before == {"rx-0": _mask_in(netns, "swpl0")}
        assert placement.set_rps("swpl0", netns, placement.rps_mask({0})) == before
        assert int(_mask_in(netns, "swpl0"), 16) == 1
        placement.restore_rps("swpl0", netns, before)
        assert _mask_in(netns, "swpl0") == before["rx-0"]
        with pytest.raises(OSError, match="nodev"):
            placement.set_rps("nodev", netns, "1")
    finally:
        tun.close()
    with open("/proc/self/mounts") as f:
        assert f.read() == mounts


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "statewall.cli", "run", *argv], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cpu", "4096"], "--cpu: no CPU 4096"),
        (["--steer-cpus", "0-"], "--steer-cpus"),
        (["--steer-cpus", "4096"], "--steer-cpus: no CPU 4096"),
        (["--cpu", "0", "--workers", "2"], "not with --workers"),
    ],
)
def test_placement_options_checked_before_anything_opens(tmp_path, args, message):
    from statewall.lab.scenarios.smoke import CONFIG

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    res = _run("-c", str(cfg), "--bind", "inside=swnone0@swt-none", *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr


@pytest.mark.root
@needs_root
@pytest.mark.skipif(not _engine_available(), reason="statewall.engine not present")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.timeout(180)
def test_statewall_run_on_one_cpu_with_the_kernel_steered_to_another(tmp_path):
    """``--cpu`` and ``--steer-cpus`` on the standard topology: the ready line says so, the process runs
    on that CPU only, the TUNs' masks are set while it runs, traffic passes, and the masks are back
    after it stops."""
    from statewall.lab.netns import Lab
    from statewall.lab.scenarios.smoke import CONFIG
    from statewall.lab.topology import FirewallTopology

    cpu, other = sorted(os.sched_getaffinity(0))[:2]
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    with Lab() as lab:
        topo = FirewallTopology(lab).build()
        tuns = [side.tun for side in topo.sides.values()]
        before = {t: _mask_in(topo.fw.name, t) for t in tuns}
        proc = topo.start_firewall(str(cfg), extra=["--cpu", str(other), "--steer-cpus", str(cpu)])
        ready = topo.firewall_output[0]
        assert f"on CPU {other}" in ready and f"written packets on CPUs {cpu} (RPS)" in ready, ready
        assert os.sched_getaffinity(proc.pid) == {other}
        for t in tuns:
            assert int(_mask_in(topo.fw.name, t), 16) == 1 << cpu
        _assert_transfer(topo, 4 << 20)
        assert topo.stop_firewall() == 0
        assert {t: _mask_in(topo.fw.name, t) for t in tuns} == before
