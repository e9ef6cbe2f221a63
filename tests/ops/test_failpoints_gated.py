"""Issue 12 design: production code does not SIGKILL itself; failpoints need the explicit test setting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = "from engine import failpoints; failpoints.hit('after_order_row'); print('alive')"


def _run(**extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_")}
    env.update({"PYTHONPATH": str(ROOT), "QM_FAILPOINT": "after_order_row:1", **extra})
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)


def test_an_armed_failpoint_is_inert_without_the_test_setting() -> None:
    done = _run()
    assert done.returncode == 0 and "alive" in done.stdout


def test_the_chaos_setting_arms_it() -> None:
    done = _run(QM_FAILPOINTS_ENABLED="1")
    assert done.returncode == -signal.SIGKILL
