"""The last check before anything reaches a broker.

The scheduler registers "do I still hold the lease?" here; the order path calls ``before_broker_call``
right before it sends, cancels or changes an order, so a process that lost its lease (and may already be
replaced by another scheduler) never places an order. With nothing registered (tests, the CLI) it is a
no-op. ``GuardedBroker`` applies the same check to every order-changing call of any broker adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from engine.execution.ports import Broker

_checks: list[Callable[[str], None]] = []
_lock = threading.Lock()


class BrokerCallRefused(RuntimeError):
    """A registered check refused a broker call (e.g. the scheduler lost its lease)."""


def register(check: Callable[[str], None]) -> None:
    """``check(what)`` raises to refuse the call ``what`` (e.g. "submit ORDER-ID")."""
    with _lock:
        _checks.append(check)


def unregister(check: Callable[[str], None]) -> None:
    with _lock:
        if check in _checks:
            _checks.remove(check)


def before_broker_call(what: str) -> None:
    for check in list(_checks):
        check(what)


class GuardedBroker:
    """A broker whose order-changing calls pass ``before_broker_call`` first; reads go straight through."""

    _GUARDED = frozenset({"submit", "cancel", "replace", "modify"})

    def __init__(self, inner: Broker) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in self._GUARDED and callable(attr):
            def guarded(*args: Any, **kwargs: Any) -> Any:
                before_broker_call(f"{name} {args[0] if args else ''}".strip())
                return attr(*args, **kwargs)
            return guarded
        return attr
