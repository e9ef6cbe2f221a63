"""Crash-only: SIGKILL the engine 20 times at random order-path failpoints; nothing sent twice,
nothing lost or stuck, and the engine's books equal the paper broker's."""

from __future__ import annotations

import pytest

from engine.chaos import ChaosConfig, run_chaos


@pytest.mark.slow
def test_twenty_kills_leave_consistent_books() -> None:
    result = run_chaos(ChaosConfig(kills=20, sessions=3, symbols=1000, seed=3))
    assert result["kills"] == 20 and result["completed"]
    assert len(result["kills_by_point"]) >= 5  # the kills spread over the order path
    assert result["orders_sent"] > 10
    assert result["duplicate_client_ids_at_broker"] == 0
    assert result["entries_filled_twice"] == 0
    assert result["lost_orders"] == 0
    assert result["stuck_orders"] == 0
    assert result["fills_missing_in_engine"] == 0 and result["fills_engine"] == result["fills_broker"]
    assert result["differences"] == [] and result["broker_book_problems"] == []


@pytest.mark.slow
def test_chaos_honours_a_configured_database_url(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With the environment naming a SQLite file (as the README suggests), parent and child share one
    temporary database, and the operator's database is left alone (issue 11, item 13)."""
    theirs = tmp_path / "operators.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{theirs}")
    result = run_chaos(ChaosConfig(kills=2, sessions=1, symbols=200, seed=5))
    assert result["completed"] and result["kills"] == 2
    assert result["database"] == "sqlite"
    assert result["lost_orders"] == 0 and result["stuck_orders"] == 0 and result["differences"] == []
    assert not theirs.exists()


@pytest.mark.parametrize("variable", ["DATABASE_URL", "QM_DATABASE_URL"])
def test_parent_and_child_get_the_same_temporary_database(variable, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from engine.chaos import _env, _temporary_database
    from engine.config import load_settings

    monkeypatch.setenv(variable, f"sqlite:///{tmp_path / 'operators.db'}")
    url, drop = _temporary_database(tmp_path / "chaos")
    assert url == f"sqlite:///{tmp_path / 'chaos' / 'chaos.db'}"
    child = _env(tmp_path / "chaos", 200, None, url)
    assert "DATABASE_URL" not in child and child["QM_DATABASE_URL"] == url
    monkeypatch.delenv(variable)
    for key, value in child.items():
        monkeypatch.setenv(key, value)
    assert load_settings().db_url == url  # what the child process will read
    drop()
