"""The notification port. The engine depends on this Protocol only; the default adapter is
:class:`engine.notify.outbox.OutboxNotifier` (records to the database; the delivery worker sends to Discord)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from engine.notify.embeds import Message


@runtime_checkable
class Notifier(Protocol):
    def notify(self, channel: str, message: Message, key: str) -> int:
        """Queue ``message`` for ``channel`` once per ``key`` (a repeated key is a no-op) and return the
        outbox id. Never raises because Discord is unreachable: delivery happens later."""
        ...


class MemoryNotifier:
    """A test double that keeps notifications in memory, one per key."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[str, Message]] = {}
        self._ids: dict[str, int] = {}

    def notify(self, channel: str, message: Message, key: str) -> int:
        if key not in self._ids:
            self._ids[key] = len(self._ids) + 1
            self.sent[key] = (channel, message)
        return self._ids[key]
