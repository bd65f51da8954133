"""The ASA command interpreter: sub-modes, dispatch to command modules, and the end-of-file checks.

Owns how lines become commands. A line belongs to the open sub-mode (``interface``, ``object network``,
``class-map``, ...) when it is indented (running-config) or is one of that mode's sub-commands (a pasted
transcript, where nothing is indented); any other line closes the mode and is a top-level command, as
on the ASA console. Top-level commands are looked up in the ``COMMANDS`` tables of the command modules
(``device``, ``interfaces``, ``acl``, ``nat``, ``timeouts``, ``passthrough``); a new feature adds its
own module and table.

At the end, cross-references are checked (an access-group naming a missing access list), NAT lines are
tied to their globals, and the Policy is assembled. A malformed command is an error located at its
token; the interpreter goes on with the next line, so that one pass finds every problem, and raises them
all together (``ConfigErrors``, in file order): no partial Policy is ever returned.

Every command line gets one fate (``Policy.fates``): ``modelled`` unless its handler says otherwise with
``no_effect`` (valid, but nothing it does changes traffic through the box) or ``gap`` (it changes traffic
but statewall does not model it: a warning naming the gap, and an ``Unmodelled`` record in the model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ...policy import Origin, Policy, Unmodelled, Warning_
from ..errors import ConfigError, ConfigErrors
from . import (
    acl,
    checks,
    device,
    fragment,
    interfaces,
    mpf,
    nat,
    objnat,
    passthrough,
    services,
    timeouts,
    xlate,
)
from . import logging as logcfg
from .lexer import Cursor, Line, lines
from .modes import Handler, Mode

# Console words that change the CLI mode or act on the device, not on the configuration.
_EXEC_WORDS = frozenset({"configure", "end", "exit", "write", "wr", "copy", "show", "disable", "reload"})

COMMANDS: dict[str, Handler] = {
    **passthrough.COMMANDS,
    **device.COMMANDS,
    **interfaces.COMMANDS,
    **acl.COMMANDS,
    **services.COMMANDS,
    **nat.COMMANDS,
    **timeouts.COMMANDS,
    **fragment.COMMANDS,
    **xlate.COMMANDS,
    # Last: the policy framework takes class-map/policy-map/tcp-map/service-policy/sysopt/no over.
    **mpf.COMMANDS,
    **logcfg.COMMANDS,  # logging / clock / "no logging" (other "no" forms go on to mpf)
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
    # 8.2 statics by (mapped interface, mapped network, protocol, mapped port): one real host each.
    static_mapped: dict[tuple, object] = field(default_factory=dict)
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
    _soft_checks: list[tuple[Callable[[], bool], Callable[[], None]]] = field(default_factory=list)
    # Every error found so far (the parse goes on after one), and the current line's fate.
    errors: list[ConfigError] = field(default_factory=list)
    fate: str = "modelled"
    known_commands: int = 0  # lines that were commands statewall knows (an ASA configuration has some)
    # Names every command used, for the checker's "defined but never used" (object, ACL, ... names).
    used_names: set[str] = field(default_factory=set)
    # FQDN network objects (no address statewall can know), name -> domain name.
    fqdn_objects: dict[str, str] = field(default_factory=dict)
    # Network object-groups' members and networks as sets, by group name (see ``acl.object_group``).
    group_sets: dict[str, tuple[set, set]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.policy.source_file = self.file

    # -- services for command modules ------------------------------------------------------------

    def origin(self, line: Line) -> Origin:
        return Origin(self.file, line.number, line.text)

    def warn(self, line: Line, message: str, col: int | None = None) -> None:
        col = col if col is not None else (line.tokens[0].col if line.tokens else 1)
        self.policy.warnings.append(Warning_(self.origin(line), message, col))

    def no_effect(self) -> None:
        """The current line is valid and changes nothing for traffic through the box."""
        if self.fate == "modelled":
            self.fate = "no-effect"

    def gap(
        self,
        line: Line,
        feature: str,
        action: str,
        *,
        col: int | None = None,
        acl: str | None = None,
        interface: str | None = None,
        message: str | None = None,
    ) -> Unmodelled:
        """The current line configures ``feature``, which affects traffic through the box (a real ASA
        would ``action``) but is not modelled: warn at the line and record it in the model."""
        col = col if col is not None else (line.tokens[0].col if line.tokens else 1)
        origin = self.origin(line)
        text = message or f"{feature} is not modelled (a real ASA would {action}); statewall ignores it"
        self.policy.warnings.append(Warning_(origin, text, col, gap=feature))
        record = Unmodelled(feature, action, origin, col, acl, interface)
        self.policy.unmodelled.append(record)
        self.fate = "not-modelled"
        return record

    def use(self, name: str) -> None:
        self.used_names.add(name)

    def require(self, ok: Callable[[], bool], error: ConfigError) -> None:
        """Check ``ok()`` once the whole file is read (names may be defined after their use)."""
        self._checks.append((ok, error))

    def expect(
        self, ok: Callable[[], bool], line: Line, col: int, message: str, otherwise: Callable[[], None]
    ) -> None:
        """Like ``require``, but a failed check is a warning at ``line``:``col`` (the ASA would refuse the
        line, yet an excerpt of a configuration that omits what the line names should still load), and
        ``otherwise()`` then undoes what the line set."""

        def failed() -> None:
            self.warn(line, message, col)
            otherwise()

        self._soft_checks.append((ok, failed))

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
        if line.refused:
            # The transcript shows the box refusing this command: it is not part of the configuration.
            self.warn(line, f"the console refused this command ({line.refused}); not applied")
            return
        self.fate = "modelled"
        try:
            counted = self._feed(line)
        except ConfigError as exc:
            self.errors.append(exc)
            counted = True
        if counted:
            self.policy.fates.append((self.origin(line), self.fate))

    def _run(self, step: Callable[[], None]) -> None:
        try:
            step()
        except ConfigError as exc:
            self.errors.append(exc)

    def _feed(self, line: Line) -> bool:
        """Interpret one line; False for console words that are not configuration (``exit``, ``end``)."""
        if self.prompt_host is None:
            self.prompt_host = line.prompt_host
        first = line.tokens[0].word
        if first in _EXEC_WORDS or (first == "enable" and len(line.tokens) == 1):
            if first == "exit":
                if self.modes and self.modes[-1].on_exit(line):
                    self.close_modes()
            elif first == "end":
                self.close_modes()
            return False
        if line.prompt_mode in ("config", ""):
            # The console says we are at the top level, whatever our own tracking thinks.
            self.close_modes()
        if self.modes:
            mode = self.modes[-1]
            if line.indent > 0 or mode.accepts(line):
                mode.handle(self, Cursor(self.file, line))
                if mode.name == "unknown":
                    self.fate = "not-modelled"
                return True
            self.close_modes()
        handler = COMMANDS.get(first)
        if handler is None:
            tok = line.tokens[0]
            self.warn(line, f"unknown command '{tok.text}' ignored", tok.col)
            self.fate = "not-modelled"
            # Its indented sub-lines (if any) belong to it and are ignored with it.
            self.open_mode(Mode("unknown", lambda p, c: None))
            return True
        self.known_commands += 1
        handler(self, Cursor(self.file, line, 1))
        return True

    def finish(self) -> Policy:
        self._run(self.close_modes)
        if not self.policy.fates:
            raise ConfigError(self.file, 1, 1, "empty configuration: it holds no command")
        if not self.known_commands:
            origin = self.policy.fates[0][0]
            raise ConfigError(
                self.file,
                origin.line,
                1,
                "not an ASA configuration: none of its lines is an ASA command "
                f"(first line: '{origin.text[:60]}')",
            )
        if not self.hostname_set and self.prompt_host and device.valid_hostname(self.prompt_host):
            self.policy.hostname = self.prompt_host
        interfaces.finish(self)
        self._run(lambda: mpf.finish(self))
        for ok, error in self._checks:
            if not ok():
                self.errors.append(error)
        for ok, failed in self._soft_checks:
            if not ok():
                failed()
        self._run(lambda: nat.finish(self))
        self._run(lambda: objnat.finish(self))
        self.policy.passthrough = passthrough.ordered(self.blocks)
        passthrough.finish_crypto_maps(self)
        if self.errors:
            raise ConfigErrors(_unique(self.errors), self.policy.warnings)
        checks.run(self)
        self.policy.warnings.sort(key=lambda w: (w.origin.line, w.col))
        return self.policy


def _unique(errors: list[ConfigError]) -> list[ConfigError]:
    seen: set[tuple[int, int, str]] = set()
    out = []
    for e in errors:
        key = (e.line, e.col, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def parse(text: str, filename: str = "<config>") -> Policy:
    parser = Parser(filename)
    for line in lines(text):
        parser.feed(line)
    return parser.finish()
