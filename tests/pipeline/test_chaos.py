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
