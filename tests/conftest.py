"""Shared test fixtures: where the repository, the shared corpus and the seed configurations are.

The shared material (real captures, seeds) lives beside the repository as ``<repo>/../shared``; a test
that needs it is skipped, saying why, when a checkout has no such directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline: speed is measured by benchmarks (make bench), never by timed assertions,
# and on a loaded 2-core machine one example can take longer than hypothesis's default 200 ms.
settings.register_profile("statewall", deadline=None)
settings.load_profile("statewall")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared material not found at {SHARED} (expected beside the repository)")
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    corpus = shared_dir / "corpus"
    if not corpus.is_dir():
        pytest.skip(f"capture corpus not found at {corpus}")
    return corpus


@pytest.fixture(scope="session")
def zeek_ftp_ipv4(corpus_dir: Path) -> Path:
    path = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv4.pcap"
    if not path.is_file():
        pytest.skip(f"Zeek FTP trace not found at {path}")
    return path


@pytest.fixture(scope="session")
def seeds_dir(shared_dir: Path) -> Path:
    seeds = shared_dir / "seeds"
    if not seeds.is_dir():
        pytest.skip(f"seed articles not found at {seeds}")
    return seeds


# The longest files first: with two workers (make test: -n 2 --dist loadfile) a file starts where a
# worker is free, so the 100 000-connection replay and the live seed scenarios begin at once and the
# many short files fill the other core around them, instead of one of them starting last.
LONGEST_FIRST = ("test_scale_replay.py", "test_scenarios.py", "test_intercept.py", "test_asa_real_configs.py")


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
