"""The ASA command interpreter: sub-modes, dispatch to command modules, and the end-of-file checks.

Owns how lines become commands. A line belongs to the open sub-mode (``interface``, ``object network``,
``class-map``, ...) when it is indented (running-config) or is one of that mode's sub-commands (a pasted
transcript, where nothing is indented); any other line closes the mode and is a top-level command, as
on the ASA console. Top-level commands are looked up in the ``COMMANDS`` tables of the command modules
(``device``, ``interfaces``, ``acl``, ``nat``, ``timeouts``, ``passthrough``); a new feature adds its
own module and table.

At the end, cross-references are checked (an access-group naming a missing access list), NAT lines are
tied to their globals, and the Policy is assembled. The first malformed command raises ``ConfigError``;
no partial Policy is ever returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ...policy import Origin, Policy, Warning_
from ..errors import ConfigError
from . import acl, device, fragment, interfaces, mpf, nat, objnat, passthrough, timeouts
from .lexer import Cursor, Line, lines
from .modes import Handler, Mode

# Console words that change the CLI mode or act on the device, not on the configuration.
_EXEC_WORDS = frozenset({"configure", "end", "exit", "write", "wr", "copy", "show", "disable", "reload"})

COMMANDS: dict[str, Handler] = {
    **passthrough.COMMANDS,
    **device.COMMANDS,
    **interfaces.COMMANDS,
    **acl.COMMANDS,
    **nat.COMMANDS,
    **timeouts.COMMANDS,
    **fragment.COMMANDS,
    # Last: the policy framework takes class-map/policy-map/tcp-map/service-policy/sysopt/no over.
    **mpf.COMMANDS,
}


@dataclass(slots=True)
class Parser:
    """Interpreter state for one file. Command modules keep their working state in the fields below."""

    file: str
    policy: Policy = field(default_factory=Policy)
    modes: list[Mode] = field(default_factory=list)
    # Passthrough blocks: a top-level line and its sub-lines, kept in the order read.
    blocks: list[list[tuple[Origin, str]]] = field(default_factory=list)
    # ``name`` aliases (ASA ``names``): alias -> address text.
    hosts: dict[str, str] = field(default_factory=dict)
    # Interface records by hardware name, in the order configured (see ``interfaces``).
    hardware: dict[str, interfaces.InterfaceRecord] = field(default_factory=dict)
    # NAT work to resolve at the end, in file order (see ``nat``).
    nat_items: list[object] = field(default_factory=list)
    nat_globals: list[nat.GlobalLine] = field(default_factory=list)
    # ASA 8.3+ NAT (object and twice NAT) and the service objects it names (see ``objnat``).
    objnat: objnat.State = field(default_factory=objnat.State)
    # Objects kept but not modelled (service groups, ...), name -> kind, so that a rule naming one
    # fails with a message that says why.
    unmodelled_objects: dict[str, str] = field(default_factory=dict)
    # The hostname a transcript's prompts show: the device's name when no hostname command says it.
    prompt_host: str | None = None
    hostname_set: bool = False
    # Checks that need the whole file (forward references), run in the order registered.
    _checks: list[tuple[Callable[[], bool], ConfigError]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.policy.source_file = self.file

    # -- services for command modules ------------------------------------------------------------

    def origin(self, line: Line) -> Origin:
        return Origin(self.file, line.number, line.text)

    def warn(self, line: Line, message: str) -> None:
        self.policy.warnings.append(Warning_(self.origin(line), message))

    def require(self, ok: Callable[[], bool], error: ConfigError) -> None:
        """Check ``ok()`` once the whole file is read (names may be defined after their use)."""
        self._checks.append((ok, error))

    def keep(self, line: Line, depth: int = 0) -> None:
        """Keep ``line`` verbatim for printing back: a top-level line starts a block, a sub-line
        (``depth`` > 0) joins the last block, indented one blank per level as the ASA prints it."""
        self.keep_text(self.origin(line), line.text, depth)

    def keep_text(self, origin: Origin, text: str, depth: int = 0) -> None:
        entry = (origin, " " * depth + text)
        if depth == 0 or not self.blocks:
            self.blocks.append([entry])
        else:
            self.blocks[-1].append(entry)

    def open_mode(self, mode: Mode) -> None:
        self.close_modes()
        self.modes.append(mode)

    def close_modes(self) -> None:
        while self.modes:
            mode = self.modes.pop()
            if mode.on_close is not None:
                mode.on_close()

    # -- the interpreter -------------------------------------------------------------------------

    def feed(self, line: Line) -> None:
        if self.prompt_host is None:
            self.prompt_host = line.prompt_host
        first = line.tokens[0].word
        if first in _EXEC_WORDS or (first == "enable" and len(line.tokens) == 1):
            if first == "exit":
                if self.modes and self.modes[-1].on_exit(line):
                    self.close_modes()
            elif first == "end":
                self.close_modes()
            return
        if line.prompt_mode in ("config", ""):
            # The console says we are at the top level, whatever our own tracking thinks.
            self.close_modes()
        if self.modes:
            mode = self.modes[-1]
            if line.indent > 0 or mode.accepts(line):
                mode.handle(self, Cursor(self.file, line))
                return
            self.close_modes()
        handler = COMMANDS.get(first)
        if handler is None:
            self.warn(line, f"unknown command '{line.tokens[0].text}' ignored")
            # Its indented sub-lines (if any) belong to it and are ignored with it.
            self.open_mode(Mode("unknown", lambda p, c: None))
            return
        handler(self, Cursor(self.file, line, 1))

    def finish(self) -> Policy:
        self.close_modes()
        if not self.hostname_set and self.prompt_host and device.valid_hostname(self.prompt_host):
            self.policy.hostname = self.prompt_host
        interfaces.finish(self)
        mpf.finish(self)
        for ok, error in self._checks:
            if not ok():
                raise error
        nat.finish(self)
        objnat.finish(self)
        self.policy.passthrough = passthrough.ordered(self.blocks)
        return self.policy


def parse(text: str, filename: str = "<config>") -> Policy:
    parser = Parser(filename)
    for line in lines(text):
        parser.feed(line)
    return parser.finish()
