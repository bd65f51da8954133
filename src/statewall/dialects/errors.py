"""The errors every dialect raises for a malformed configuration, located to the offending token.

``str(err)`` is ``file:line:col: message`` (1-based line and column), the form compilers and editors
understand, so that a user can jump straight to the token that is wrong. A dialect that reads the whole
file before giving up raises ``ConfigErrors``: every problem it found, in file order, with the warnings
it found on the way, so that one run of ``statewall check`` shows them all.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A malformed known command. Nothing of a configuration with an error is applied."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(file, line, col, message)
        self.file = file
        self.line = line
        self.col = col
        self.message = message

    @property
    def errors(self) -> list[ConfigError]:
        """Every error this exception stands for (itself, for a single one)."""
        return [self]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigErrors(ConfigError):
    """Several errors of one file, in file order; it reads as the first one, and ``str`` lists them all.

    ``warnings`` are the non-fatal findings of the same pass (``statewall.policy.Warning_``), so that a
    checker can print errors and warnings together in file order.
    """

    def __init__(self, errors: list[ConfigError], warnings: list | None = None) -> None:
        ordered = sorted(errors, key=lambda e: (e.line, e.col))
        first = ordered[0]
        super().__init__(first.file, first.line, first.col, first.message)
        self._errors = ordered
        self.warnings = list(warnings or [])

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(e) for e in self._errors)
