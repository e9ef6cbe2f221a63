"""Failpoints: named places where a chaos or fault-injection test may kill the process or raise an error.

Production code never arms them: every point is a no-op unless the explicit test setting
``QM_FAILPOINTS_ENABLED=1`` is present in the environment *and* a point is armed. Only the chaos harness
(``engine.chaos``) and the scheduler fault tests set both.

- ``QM_FAILPOINT=after_submitting_commit:3`` kills the process with SIGKILL the 3rd time execution passes
  that point (crash-only behaviour tested at every step that matters, not just wherever a timer fires).
- ``QM_FAULT=lease_renew:3:2`` makes ``fault("lease_renew")`` raise a database ``OperationalError`` on the
  3rd and 4th pass (count ``inf``: every pass from the 3rd on), so a test can inject a transient or a
  lasting database error into one code path of a real process. Several ranges: comma-separated.
"""

from __future__ import annotations

import math
import os
import signal
from collections import Counter

POINTS = (
    "before_order_row",  # an order is about to be inserted
    "after_order_row",  # the order row is committed, nothing sent
    "after_submitting_commit",  # 'submitting' committed, broker not yet called
    "after_broker_submit",  # the broker accepted, the answer not yet applied
    "during_fills",  # fills being written (inside the transaction)
    "during_position_update",  # position being changed (inside the transaction)
    "after_fill_commit",  # fills and position committed
)
FAULTS = ("lease_renew",)  # places where QM_FAULT may raise a database error
ENABLE_VAR = "QM_FAILPOINTS_ENABLED"


def _enabled() -> bool:
    return os.environ.get(ENABLE_VAR) == "1"


def _parse_kill(spec: str) -> tuple[str, int]:
    target, _, count = spec.partition(":")
    return target, (int(count or 1) if target else 0)


def _parse_faults(spec: str) -> list[tuple[str, int, float]]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, rest = part.partition(":")
        start, _, count = rest.partition(":")
        out.append((name, int(start or 1), math.inf if count == "inf" else float(count or 1)))
    return out


_target, _remaining = _parse_kill(os.environ.get("QM_FAILPOINT", "") if _enabled() else "")
_faults = _parse_faults(os.environ.get("QM_FAULT", "") if _enabled() else "")
_passes: Counter[str] = Counter()


def hit(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if this is the armed point's n-th pass."""
    global _remaining
    if not _target or name != _target:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)


def fault(name: str) -> None:
    """Raise an injected database error here if ``QM_FAULT`` arms this pass of ``name``."""
    if not _faults:
        return
    _passes[name] += 1
    n = _passes[name]
    if any(f == name and start <= n < start + count for f, start, count in _faults):
        from sqlalchemy.exc import OperationalError

        raise OperationalError(f"injected fault at {name} (pass {n})", None, Exception("injected by QM_FAULT"))
