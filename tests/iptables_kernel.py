"""Running iptables-legacy in a private network namespace: the reference the dialect's output is checked
against. Used by tests/test_iptables_dialect.py (live, when this machine can) and to regenerate
tests/configs/iptables-listing.golden:

    .venv/bin/python tests/iptables_kernel.py tests/configs/iptables-listing.rules \\
        > tests/configs/iptables-listing.golden

The "prot" column is rewritten from numbers to names: iptables 1.8.9 prints numbers with -n (netfilter
bugzilla 1729, fixed in 1.8.10), every other version names, which is what statewall prints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from statewall.dialects.iptables import names  # noqa: E402

TABLES = ("filter", "nat", "mangle", "raw")
# (section kind, iptables flags, format_listing keyword arguments)
KINDS = (
    ("listing", "-nvxL", {}),
    ("plain", "-nL", {"verbose": False}),
    ("kmg", "-nvL --line-numbers", {"exact": False, "line_numbers": True}),
)
_ROW = re.compile(
    r"^(?P<pre>(?:\d+ +)?(?: *\d+[KMGT]?){2} )?"
    r"(?P<target>\S*) +(?P<inv>!?)(?P<prot>\d+) *(?P<rest>[-!][-f] .*)$"
)


def available() -> bool:
    """True when this process may create a network namespace and run iptables-legacy in it."""
    if not (shutil.which("unshare") and shutil.which("iptables-legacy") and shutil.which("ip6tables-legacy")):
        return False
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-n", "iptables-legacy", "-t", "filter", "-nL"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


def protocol_names(text: str) -> str:
    out = []
    for line in text.splitlines():
        m = _ROW.match(line)
        if m and not line.startswith("Chain"):
            num = int(m["prot"])
            name = names.LISTING_PROTOCOL_NAMES.get(num, str(num))
            line = (m["pre"] or "") + f"{m['target']:<9} " + (m["inv"] or " ") + f"{name:<5}" + m["rest"]
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def run_sections(body: list[str], marker: str) -> dict[str, str]:
    """Run the shell lines ``body`` in a fresh network namespace; its output cut at each line that starts
    with ``marker``, by the name that follows the marker."""
    result = subprocess.run(
        ["unshare", "-n", "bash", "-c", "\n".join(body)], capture_output=True, text=True, check=True
    )
    sections: dict[str, str] = {}
    current = None
    for line in result.stdout.splitlines(keepends=True):
        if line.startswith(marker):
            current = line[len(marker) :].strip()
            sections[current] = ""
        elif current is not None:
            sections[current] += line
    return sections


def kernel_sections(script: str) -> dict[str, str]:
    """Run the iptables/ip6tables commands of ``script`` in a fresh namespace; the listings and saves."""
    lines = []
    for line in script.splitlines():
        if line.startswith("iptables "):
            lines.append("iptables-legacy " + line[len("iptables ") :])
        elif line.startswith("ip6tables "):
            lines.append("ip6tables-legacy " + line[len("ip6tables ") :])
    marker = "=====SECTION "
    body = ["set -e", *lines]
    for family, prog in ((4, "iptables-legacy"), (6, "ip6tables-legacy")):
        for kind, flags, _kw in KINDS:
            for table in TABLES:
                body.append(f"echo '{marker}{kind} {family} {table}'")
                body.append(f"{prog} -t {table} {flags}")
        body.append(f"echo '{marker}save {family}'")
        body.append(f"{prog}-save | grep -v '^#'")
    sections = run_sections(body, marker)
    return {k: (v if k.startswith("save") else protocol_names(v)) for k, v in sections.items()}


def save_tables(text: str) -> dict[str, list[str]]:
    """iptables-save text by table, comments dropped; tables without rules and with ACCEPT policies
    are left out (iptables-save prints every table the kernel has loaded, listing loads them all)."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("*"):
            current = line[1:]
            tables[current] = []
        elif current is not None:
            tables[current].append(line)
    return {
        name: body
        for name, body in tables.items()
        if any(not (ln.startswith(":") and " ACCEPT " in ln or ln == "COMMIT") for ln in body)
    }


def write_golden(sections: dict[str, str]) -> str:
    out = []
    for key, value in sections.items():
        out.append(f"==> {key} <==\n")
        out.append(value)
    return "".join(out)


def read_golden(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines(keepends=True):
        if line.startswith("==> ") and line.rstrip().endswith(" <=="):
            current = line[4:].rstrip()[:-4]
            sections[current] = ""
        elif current is not None:
            sections[current] += line
    return sections


if __name__ == "__main__":
    sys.stdout.write(write_golden(kernel_sections(Path(sys.argv[1]).read_text())))
