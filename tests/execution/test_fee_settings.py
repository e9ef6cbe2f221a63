"""Fee settings changed in the console reach the paper broker at its next fill (issue 12 #10)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from engine import runtime
from engine.clock import ReplayClock
from engine.config import load_settings
from engine.context import build_context
from engine.db import migrate, session_scope
from engine.settings_store import set_values

NOW = datetime(2026, 10, 1, 15, 0, tzinfo=UTC)


def test_console_fee_change_reaches_the_paper_venue(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "var", sim_symbols=10)
    migrate(settings.db_url)
    ctx = build_context(settings, clock=ReplayClock(NOW))
    assert ctx.broker.config.option_commission_open == Decimal("1.00")  # type: ignore[attr-defined]
    # the console stores an override; the scheduler applies stored settings before each job
    with session_scope(ctx.db) as s:
        set_values(s, settings, {"fees.commission_open_per_contract": "0.65", "fees.fee_per_contract": "0.02"},
                   "operator", NOW)
    runtime.refresh_settings(ctx, runtime.RuntimeState(instance="t"))
    cfg = ctx.broker.config  # type: ignore[attr-defined]
    assert (cfg.option_commission_open, cfg.option_fee_per_contract) == (Decimal("0.65"), Decimal("0.02"))
    # charges for 3 contracts opened: 3 x 0.65 commission, 3 x 0.02 fees
    from engine.execution.ports import Leg, Side

    leg = Leg("SPY   261218C00500000", Side.buy)
    assert ctx.broker._leg_charges(leg, 3, 0, Decimal("0")) == (Decimal("1.95"), Decimal("0.06"))  # type: ignore[attr-defined]
