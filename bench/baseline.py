"""The offline lines of ``make bench`` against an earlier commit, in the same run (``bench.run --baseline``).

Issue 18's targets are ratios to the commit before its work (default ``BASELINE``), measured in one run
on one machine, since absolute rates on the shared machines vary from day to day. ``checkout`` makes a
temporary ``git worktree`` of that commit and builds its C extensions in place (with this venv's
Python and compiler); ``measure`` runs one line in a fresh process with ``PYTHONPATH`` set to a tree's
``src``, so that the same bench code (this tree's ``bench``) drives that tree's ``statewall``. Both the
baseline and this tree are measured that way, alternately, so that a busy machine hurts both alike.

The lines use only what both trees have (``Firewall``, ``Firewall.receive``/``advance``, the ASA
dialect's ``parse``, ``craft``): a commit older than that cannot be a baseline.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

BASELINE = "1eadc69"  # the commit before issue 18's work
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """A temporary worktree of ``commit`` with its extensions built; removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="statewall-baseline-"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), commit],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        build = subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if build.returncode != 0:  # without a compiler it still runs, on the Python path as it did then
            print(f"baseline {commit}: extensions not built: {build.stderr.strip()[-300:]}")
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
            timeout=120,
        )
        subprocess.run(["rm", "-rf", str(tmp)], timeout=120)


def describe(tree: Path) -> str:
    res = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True, timeout=30
    )
    return res.stdout.strip()[:100]


def measure(tree: Path, line: str, **kw) -> dict:
    """One measurement of ``line`` (``replay``, ``short``, ``memory``) with ``tree``'s statewall, in a
    fresh process; the dict ``bench.run`` records, plus ``statewall_from`` (the module file loaded)."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    cmd = [sys.executable, "-m", "bench.baseline", line, json.dumps(kw)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=7200)
    if res.returncode != 0:
        return {"error": (res.stdout + res.stderr).strip()[-500:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _worker(line: str, kw: dict) -> dict:
    import statewall
    from bench import run

    fn = {"replay": run.bench_replay, "short": run.bench_short, "memory": run.bench_memory}[line]
    out = fn(**kw)
    out["statewall_from"] = statewall.__file__
    try:
        from statewall import fastpath

        out["fast_path_built"] = bool(getattr(fastpath, "AVAILABLE", False))
    except ImportError:
        out["fast_path_built"] = False
    return out


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], json.loads(sys.argv[2]))))
