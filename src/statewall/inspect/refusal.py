"""What an inspector answers when it refuses a packet (``Refusal``), for every inspector.

The engine (``statewall.engine.forward.inspect``) drops the packet for ``reason`` with ``detail`` (the
fields its syslog message needs) and, with ``close``, tears the connection down ("Flow closed by
inspection").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..events import DropReason
from ..policy import Origin


@dataclass(slots=True)
class Refusal:
    message: str
    close: bool = False
    origin: Origin | None = None
    reason: DropReason = DropReason.INSPECT_FTP
    detail: dict = field(default_factory=dict)
