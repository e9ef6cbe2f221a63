"""Issue 12 items 1 and 12: real scheduler processes sharing one database (a SQLite file, PostgreSQL)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from engine.db import get_engine
from engine.lease import holder_of
from engine.models import JobRun, NotificationOutbox

ROOT = Path(__file__).resolve().parents[2]
WEEK = "2026-11-02..2026-11-06"
# Nov 2-6 2026 are five full NYSE sessions: premarket, intraday every 5 min from 09:35 to 15:55 (77 runs),
# postmarket and nightly = 80 job runs a session.
RUNS_PER_WEEK = 5 * (1 + (15 * 60 + 55 - (9 * 60 + 35)) // 5 + 1 + 1 + 1)


def _start(data_dir: Path, *args: str, db_url: str | None = None, extra: dict[str, str] | None = None,
           log: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    env.update({"QM_DATA_DIR": str(data_dir), "QM_SIM_SYMBOLS": "50", "PYTHONPATH": str(ROOT)})
    if db_url:
        env["DATABASE_URL"] = db_url
    env.update(extra or {})
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, str(ROOT / "scheduler.py"), *args], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT, text=True)


def _holder(url: str) -> str | None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        return holder_of(get_engine(url), "scheduler")
    except (OperationalError, ProgrammingError):  # the process has not migrated yet
        return None


def _scheduled_runs(url: str) -> list[JobRun]:
    with Session(get_engine(url)) as s:
        return list(s.exec(select(JobRun).where(col(JobRun.trigger).like("replay@%"))
                           .order_by(col(JobRun.started_at))).all())


def _assert_one_run_per_scheduled_time(url: str) -> list[JobRun]:
    runs = _scheduled_runs(url)
    jobs = [r for r in runs if not r.job_id.startswith("notify:")]
    counted = Counter((r.job_id, r.trigger) for r in jobs if r.outcome in ("ok", "error"))
    assert max(counted.values()) == 1, [k for k, n in counted.items() if n > 1][:5]
    assert len(counted) == RUNS_PER_WEEK
    assert all(r.outcome in ("ok", "abandoned") for r in jobs), [r.error for r in jobs if r.outcome == "error"][:3]
    # never two job runs at the same time, whichever process ran them
    for before, after in itertools.pairwise(jobs):
        assert before.finished_at is not None and after.started_at >= before.finished_at, (before, after)
    return runs


@pytest.mark.slow
def test_two_replays_started_together_run_each_job_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    # --wait-for-lease: the second waits out the first however slow the machine is, then finds nothing to do
    procs = [_start(data_dir, "--replay", WEEK, "--speed", "100000", "--wait-for-lease", "1500",
                    log=tmp_path / f"p{i}.log") for i in (1, 2)]
    for p in procs:
        assert p.wait(timeout=1800) == 0, (tmp_path / "p1.log").read_text()[-3000:]
    url = f"sqlite:///{data_dir / 'quantmatrix.db'}"
    runs = _assert_one_run_per_scheduled_time(url)
    notify = Counter((r.job_id, r.trigger) for r in runs if r.job_id.startswith("notify:"))
    assert len(notify) == RUNS_PER_WEEK and max(notify.values()) == 1
    with Session(get_engine(url)) as s:
        keys = s.exec(select(NotificationOutbox.idempotency_key)).all()
    kinds = Counter(k.removeprefix("replay:").split(":", 1)[0] for k in keys)
    # one set of reports: one Morning Brew, one digest and one post-market report per session
    for kind in ("morning_brew", "digest", "postmarket"):
        assert kinds[kind] == 5, kinds


def _lease_takeover(tmp_path: Path, db_url: str | None) -> None:
    data_dir = tmp_path / "var"
    url = db_url or f"sqlite:///{data_dir / 'quantmatrix.db'}"
    # A: a database error on the 5th and 6th lease write (transient: retried, lease kept), then on every
    # write from the 60th on (lasting): A must stop and exit 3, B takes over and finishes the week.
    faults = {"QM_FAILPOINTS_ENABLED": "1", "QM_FAULT": "lease_renew:5:2,lease_renew:60:inf"}
    a = _start(data_dir, "--replay", WEEK, "--speed", "100000", "--lease-seconds", "6", db_url=db_url,
               extra=faults, log=tmp_path / "a.log")
    deadline = time.monotonic() + 120
    while _holder(url) is None:
        assert time.monotonic() < deadline and a.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
        time.sleep(0.2)
    b = _start(data_dir, "--replay", WEEK, "--speed", "100000", "--lease-seconds", "6", "--wait-for-lease", "600",
               db_url=db_url, log=tmp_path / "b.log")
    try:
        assert a.wait(timeout=600) == 3
        assert b.wait(timeout=900) == 0, (tmp_path / "b.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    a_log = (tmp_path / "a.log").read_text()
    assert "lease renewal failed" in a_log and "retrying" in a_log  # the transient error was retried
    assert "LEASE LOST" in a_log and "exiting with status 3" in a_log
    runs = _assert_one_run_per_scheduled_time(url)
    by = Counter(r.job_id for r in runs if r.outcome == "ok" and not r.job_id.startswith("notify:"))
    assert sum(by.values()) == RUNS_PER_WEEK
    with Session(get_engine(url)) as s:
        alert = s.exec(select(NotificationOutbox).where(
            col(NotificationOutbox.idempotency_key).like("lease-lost:%"))).first()
        assert alert is not None and alert.channel == "system_status"


@pytest.mark.slow
def test_lost_lease_stops_the_scheduler_and_another_takes_over_sqlite(tmp_path: Path) -> None:
    _lease_takeover(tmp_path, None)


@pytest.mark.slow
def test_lost_lease_stops_the_scheduler_and_another_takes_over_postgres(tmp_path: Path, postgres_url: str) -> None:
    _lease_takeover(tmp_path, postgres_url)


def test_sigterm_releases_the_lease_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'quantmatrix.db'}"
    p = _start(data_dir, "--lease-seconds", "60")
    try:
        deadline = time.monotonic() + 120
        while _holder(url) is None:
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out[-3000:]
    assert "released the scheduler lease; stopped cleanly" in out
    assert _holder(url) is None  # not left to expire in 60 s
