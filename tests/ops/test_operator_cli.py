"""Issue 12 item 9: the first password and the kill switch from the command line; a login token for reloads."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from engine import auth
from engine.db import get_engine
from engine.operator import kill_switch_on

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QM_") and k != "DATABASE_URL"}
    env.update({"QM_DATA_DIR": str(tmp_path / "never-initialised"), "PYTHONPATH": str(ROOT), **env_extra})
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_set_password_and_kill_switch_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-initialised' / 'quantmatrix.db'}"
    done = _cli(tmp_path, "operator", "set-password", QM_NEW_OPERATOR_PASSWORD="a-good-password")
    assert done.returncode == 0, done.stderr
    assert "a-good-password" not in done.stdout + done.stderr
    assert auth.check_login(get_engine(url), "a-good-password").ok
    again = _cli(tmp_path, "operator", "set-password", QM_NEW_OPERATOR_PASSWORD="another-password")
    assert again.returncode == 2 and "already set" in again.stderr
    no_tty = _cli(tmp_path, "operator", "set-password")
    assert no_tty.returncode == 2 and "QM_NEW_OPERATOR_PASSWORD" in no_tty.stderr

    on = _cli(tmp_path, "kill-switch", "on", "--reason", "news")
    assert on.returncode == 0 and "kill switch ON" in on.stdout
    with Session(get_engine(url)) as s:
        assert kill_switch_on(s)
    off = _cli(tmp_path, "kill-switch", "off")
    assert off.returncode == 0 and "kill switch OFF" in off.stdout
    with Session(get_engine(url)) as s:
        assert not kill_switch_on(s)


def test_a_login_token_lasts_its_hours_and_dies_with_a_password_change(migrated_sqlite) -> None:  # type: ignore[no-untyped-def]
    auth.set_password(migrated_sqlite, "first-password")
    t0 = datetime(2026, 11, 24, 15, tzinfo=UTC)
    token = auth.issue_token(migrated_sqlite, hours=8, now=t0)
    assert auth.verify_token(migrated_sqlite, token, now=t0 + timedelta(hours=7, minutes=59))
    assert not auth.verify_token(migrated_sqlite, token, now=t0 + timedelta(hours=8))
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")  # type: ignore[index]
    assert not auth.verify_token(migrated_sqlite, forged, now=t0)
    longer = token.replace(token.split(".")[0], str(int(token.split(".")[0]) + 86400))  # type: ignore[union-attr]
    assert not auth.verify_token(migrated_sqlite, longer, now=t0)
    auth.set_password(migrated_sqlite, "second-password", replace=True)
    assert not auth.verify_token(migrated_sqlite, token, now=t0)
