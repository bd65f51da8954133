"""The one error every dialect raises for a malformed configuration, located to the offending token.

``str(err)`` is ``file:line:col: message`` (1-based line and column), the form compilers and editors
understand, so that a user can jump straight to the token that is wrong.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A malformed known command. Parsing stops at the first one and nothing is applied."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(file, line, col, message)
        self.file = file
        self.line = line
        self.col = col
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"
