"""Issue 12 item 3: a replay never touches a live book; --auto replays only while the market is closed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import Session, col, func, select

from engine.clock import NEW_YORK
from engine.config import BrokerName, DataSource, load_settings
from engine.db import get_engine
from engine.models import JobRun, NotificationOutbox, Order
from engine.replay_target import auto_replays, replay_settings

ROOT = Path(__file__).resolve().parents[2]


def test_auto_replays_only_while_the_market_is_closed() -> None:
    assert auto_replays(datetime(2026, 11, 3, 11, 0, tzinfo=NEW_YORK)) is False  # Tuesday, mid-session
    assert auto_replays(datetime(2026, 11, 3, 17, 0, tzinfo=NEW_YORK)) is True  # after the close
    assert auto_replays(datetime(2026, 11, 3, 8, 0, tzinfo=NEW_YORK)) is True  # before the open
    assert auto_replays(datetime(2026, 11, 7, 11, 0, tzinfo=NEW_YORK)) is True  # Saturday
    assert auto_replays(datetime(2026, 11, 27, 14, 0, tzinfo=NEW_YORK)) is True  # after the 13:00 early close


def test_the_demo_replay_shares_the_database_and_a_live_source_does_not(tmp_path: Path) -> None:
    demo = load_settings(data_dir=tmp_path)
    assert replay_settings(demo) == (demo, None)
    live = load_settings(data_dir=tmp_path, data_source="massive", massive_api_key="k" * 12,
                         discord_webhook_signals="https://discord.com/api/webhooks/1/a",
                         discord_webhook_playground="https://discord.com/api/webhooks/2/b")
    target, folder = replay_settings(live)
    assert folder == tmp_path / "replay" and target.db_url == f"sqlite:///{tmp_path / 'replay' / 'quantmatrix.db'}"
    assert (target.data_source, target.broker) == (DataSource.sim, BrokerName.paper)
    assert target.discord_webhook_signals is None and target.discord_webhook_playground is not None


@pytest.mark.slow
def test_a_replay_with_massive_configured_stays_out_of_the_live_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    env.update({"QM_DATA_DIR": str(data_dir), "QM_SIM_SYMBOLS": "50", "PYTHONPATH": str(ROOT),
                "QM_DATA_SOURCE": "massive", "QM_MASSIVE_API_KEY": "test-key-123456",
                "QM_MASSIVE_BASE_URL": "http://127.0.0.1:9"})  # nothing listens: any live request would fail
    done = subprocess.run([sys.executable, str(ROOT / "scheduler.py"), "--replay", "2026-11-02..2026-11-02",
                           "--speed", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "replay kept apart from live" in done.stderr
    live = get_engine(f"sqlite:///{data_dir / 'quantmatrix.db'}")
    with Session(live) as s:
        assert s.exec(select(func.count()).select_from(JobRun).where(
            col(JobRun.trigger).like("replay@%"))).one() == 0
        assert s.exec(select(func.count()).select_from(Order)).one() == 0
        assert s.exec(select(func.count()).select_from(NotificationOutbox)).one() == 0
    replayed = get_engine(f"sqlite:///{data_dir / 'replay' / 'quantmatrix.db'}")
    with Session(replayed) as s:
        runs = s.exec(select(JobRun).where(col(JobRun.trigger).like("replay@%"))).all()
        assert len([r for r in runs if not r.job_id.startswith("notify:")]) == 80
        rows = s.exec(select(NotificationOutbox)).all()
    assert rows and {r.channel for r in rows} == {"playground"}
    assert all(r.idempotency_key.startswith("replay:") and "[REPLAY]" in json.dumps(r.payload) for r in rows)


@pytest.mark.parametrize("live", [
    # a live data source: nothing listens at the URL, so any live request would fail the run
    {"QM_DATA_SOURCE": "massive", "QM_MASSIVE_API_KEY": "test-key-123456", "QM_MASSIVE_BASE_URL": "http://127.0.0.1:9"},
    # a real broker: its (made-up) account must never see a replayed order
    {"QM_BROKER": "tastytrade", "QM_TASTYTRADE__CLIENT_SECRET": "cs-123456",
     "QM_TASTYTRADE__REFRESH_TOKEN": "rt-123456", "QM_TASTYTRADE__API_URL": "http://127.0.0.1:9"},
], ids=["massive", "tastytrade"])
def test_run_day_with_a_live_book_configured_runs_apart_like_the_scheduler_replay(live: dict[str, str],
                                                                                   tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    env.update({"QM_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT), **live})
    done = subprocess.run([sys.executable, "-m", "engine", "run-day", "--date", "2026-11-02", "--symbols", "30",
                           "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "kept apart from live" in done.stderr
    assert not (data_dir / "quantmatrix.db").exists()  # the live database is never opened
    replayed = get_engine(f"sqlite:///{data_dir / 'replay' / 'quantmatrix.db'}")
    with Session(replayed) as s:
        runs = s.exec(select(JobRun).where(col(JobRun.trigger).like("replay@%"))).all()
    assert {r.job_id for r in runs} >= {"premarket", "intraday", "postmarket", "nightly"}
    assert all(r.outcome == "ok" for r in runs), [(r.job_id, r.error) for r in runs if r.outcome != "ok"]
