"""Failpoints: named places on the order path where a chaos run may kill the process.

Inactive (a dictionary lookup) unless QM_FAILPOINT is set, e.g. ``QM_FAILPOINT=after_submitting_commit:3``
kills the process with SIGKILL the 3rd time execution passes that point. Only the chaos harness sets it;
it exists so crash-only behaviour is tested at every step that matters, not just wherever a timer fires.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "before_order_row",  # an order is about to be inserted
    "after_order_row",  # the order row is committed, nothing sent
    "after_submitting_commit",  # 'submitting' committed, broker not yet called
    "after_broker_submit",  # the broker accepted, the answer not yet applied
    "during_fills",  # fills being written (inside the transaction)
    "during_position_update",  # position being changed (inside the transaction)
    "after_fill_commit",  # fills and position committed
)

_spec = os.environ.get("QM_FAILPOINT", "")
_target, _, _count = _spec.partition(":")
_remaining = int(_count or 1) if _target else 0


def hit(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if this is the armed point's n-th pass."""
    global _remaining
    if not _target or name != _target:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
