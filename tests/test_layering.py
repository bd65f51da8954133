"""The import rule of the project: no core module imports an adapter, a dialect or a formatter.

Core modules (the engine and what it is made of) never import ``dialects/``, ``commands/``, ``live/``,
``lab/``, ``logfmt/``, ``replay``, ``pcapio`` or ``demo``, at module level or inside a function. The
test reads every core module's imports (relative ones resolved) and names each one that breaks it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import statewall

SRC = Path(statewall.__file__).parent

# Files and packages (every module under them) of the core.
CORE = (
    "packet.py",
    "checksum.py",
    "events.py",
    "policy.py",
    "engine",
    "conntrack.py",
    "tcptrack.py",
    "nat.py",
    "nf_nat.py",
    "normalizer.py",
    "limits.py",
    "intercept.py",
    "timers.py",
    "expect.py",
    "inspect",
    "netfilter.py",
)
FORBIDDEN = (
    "statewall.dialects",
    "statewall.commands",
    "statewall.live",
    "statewall.lab",
    "statewall.logfmt",
    "statewall.replay",
    "statewall.pcapio",
    "statewall.demo",
)
# Exceptions to the rule (module, forbidden package): none. netfilter.py reads the neutral model only.
KNOWN: set[tuple[str, str]] = set()


def core_files() -> list[Path]:
    files = []
    for entry in CORE:
        path = SRC / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from . import logfmt`` imports a module by the name it lists.
            found += [(node.lineno, f"{mod}.{alias.name}") for alias in node.names]
            found.append((node.lineno, mod))
    return found


def violations() -> list[str]:
    bad = []
    for path in core_files():
        name = module_name(path)
        for line, mod in imports(path):
            for prefix in FORBIDDEN:
                if mod == prefix or mod.startswith(prefix + "."):
                    if any(name == m and (mod == p or mod.startswith(p + ".")) for m, p in KNOWN):
                        continue
                    bad.append(f"{path.relative_to(SRC.parent)}:{line}: {name} imports {mod}")
    return sorted(set(bad))


def test_no_core_module_imports_an_adapter_a_dialect_or_a_formatter():
    assert violations() == []


def test_the_rule_sees_an_import_that_breaks_it(tmp_path, monkeypatch):
    """The checker itself: a relative import of a formatter from inside the engine is found."""
    fake = tmp_path / "statewall"
    (fake / "engine").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "engine" / "__init__.py").write_text("from .. import logfmt\n")
    (fake / "engine" / "stage.py").write_text("def f():\n    from ..replay import replay\n")
    (fake / "packet.py").write_text("import statewall.pcapio\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    monkeypatch.setattr(sys.modules[__name__], "CORE", ("engine", "packet.py"))
    found = violations()
    assert any("statewall.engine imports statewall.logfmt" in v for v in found), found
    assert any("statewall.engine.stage imports statewall.replay" in v for v in found), found
    assert any("statewall.packet imports statewall.pcapio" in v for v in found), found
