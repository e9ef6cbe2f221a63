"""A Broker wrapper that injects the faults real brokers have, to prove the engine survives them.

Per call, with probability ``rate``, it raises instead of answering:
- ``timeout_before`` / ``connection_error``: ``BrokerUnavailable`` BEFORE forwarding (the broker never saw
  the call);
- ``timeout_after``: ``BrokerUnavailable`` AFTER forwarding (the broker did it, the answer was lost);
- ``reject``: ``BrokerRejected`` before forwarding (a definite refusal; submit only).
Everything is drawn from ``random.Random(seed)``, one draw sequence per wrapper, so a run is reproducible.
What was injected is counted in ``injected[(method, kind)]``; ``calls[method]`` counts every call.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from engine.execution.ports import (
    Broker,
    BrokerAccount,
    BrokerEvent,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    BrokerRejected,
    BrokerUnavailable,
)
from engine.risk import is_gate_pass

__all__ = ["FAULT_KINDS", "FaultInjectingBroker"]

FAULT_KINDS = ("timeout_before", "timeout_after", "connection_error", "reject")
_BEFORE = ("timeout_before", "connection_error")
DEFAULT_METHODS = ("submit", "cancel", "order", "fills", "events", "positions", "account")


class FaultInjectingBroker:
    """Wraps any ``Broker``; see the module docstring. Other attributes (``process``, ``settle_expiries``,
    ...) pass through to the inner broker untouched, so a simulation can still drive the venue."""

    def __init__(self, inner: Broker, rate: float = 0.3, seed: int = 0,
                 kinds: Sequence[str] = FAULT_KINDS, methods: Sequence[str] = DEFAULT_METHODS) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {FAULT_KINDS}, got {tuple(kinds)}")
        self.inner = inner
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        self.methods = frozenset(methods)
        self.name = f"faulty({getattr(inner, 'name', type(inner).__name__)})"
        self._rng = random.Random(seed)
        self.enabled = True
        self.calls: Counter[str] = Counter()
        self.injected: Counter[tuple[str, str]] = Counter()

    @property
    def injected_total(self) -> int:
        return sum(self.injected.values())

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No faults inside the block (e.g. for the assertions of a test)."""
        was, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = was

    def _draw(self, method: str) -> str | None:
        """The fault for this call, or None. Always two draws per faultable call, so the sequence of
        decisions depends only on the seed and the sequence of calls."""
        self.calls[method] += 1
        u, pick = self._rng.random(), self._rng.random()
        if not self.enabled or method not in self.methods or u >= self.rate:
            return None
        kinds = [k for k in self.kinds if k != "reject" or method == "submit"]
        if not kinds:
            return None
        kind = kinds[min(int(pick * len(kinds)), len(kinds) - 1)]
        self.injected[(method, kind)] += 1
        return kind

    def _call(self, method: str, *args: Any) -> Any:
        kind = self._draw(method)
        if kind in _BEFORE:
            raise BrokerUnavailable(f"injected {kind} on {method} (not forwarded)")
        if kind == "reject":
            raise BrokerRejected(f"injected rejection on {method} (not forwarded)")
        result = getattr(self.inner, method)(*args)
        if kind == "timeout_after":
            raise BrokerUnavailable(f"injected timeout_after on {method} (forwarded, answer lost)")
        return result

    def submit(self, gate_pass: Any) -> BrokerOrder:
        if not is_gate_pass(gate_pass):  # a broker in its own right: it takes nothing but a pass
            raise PermissionError("brokers accept only a GatePass issued by engine.risk.evaluate")
        return self._call("submit", gate_pass)

    def cancel(self, client_order_id: str) -> BrokerOrder:
        return self._call("cancel", client_order_id)

    def order(self, client_order_id: str) -> BrokerOrder | None:
        return self._call("order", client_order_id)

    def fills(self, client_order_id: str | None = None) -> list[BrokerFill]:
        return self._call("fills", client_order_id)

    def events(self) -> list[BrokerEvent]:
        return self._call("events")

    def positions(self) -> list[BrokerPosition]:
        return self._call("positions")

    def account(self) -> BrokerAccount:
        return self._call("account")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
