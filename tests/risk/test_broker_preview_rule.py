"""The gate with a broker's own dry run (any broker: tastytrade dry-run, IBKR what-if): its fees are the
fees counted, its buying power decides, its errors refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from engine.config import RiskSettings
from engine.execution.ports import BrokerPreview, Leg, Side
from engine.risk import Intent, PortfolioRisk, ProposedOrder, evaluate

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
PORTFOLIO = PortfolioRisk(equity=Decimal("100000"), buying_power=Decimal("5000"), day_start_equity=Decimal("100000"),
                          open_positions=0, heat=Decimal("0"))


def _order(intent: Intent = Intent.open, qty: int = 2) -> ProposedOrder:
    return ProposedOrder("qm-p-1", "SPY", "ETF", intent, (Leg("SPY   261218C00600000", Side.buy),), qty,
                         Decimal("4.15"), Decimal("415"), Decimal("415"), fees_per_unit=Decimal("1.10"),
                         position_quantity=qty if intent is Intent.close else None)


def test_without_a_preview_the_model_numbers_decide() -> None:
    d = evaluate(_order(), PORTFOLIO, RiskSettings(), NOW)
    assert d.approved and d.order_risk == Decimal("832.20")  # (415 + 1.10) x 2
    assert "buying_power" in {c.rule for c in d.checks} and "broker_preview" not in {c.rule for c in d.checks}


def test_the_brokers_fees_replace_the_models() -> None:
    d = evaluate(_order(), PORTFOLIO, RiskSettings(), NOW, preview=BrokerPreview(Decimal("832.28"), Decimal("2.28")))
    assert d.approved
    assert d.order_risk == Decimal("832.28")  # (415 + 2.28 / 2) x 2
    rules = {c.rule: c for c in d.checks}
    assert "buying_power" not in rules and rules["broker_buying_power"].after == 832.28


def test_errors_or_too_much_buying_power_refuse() -> None:
    d = evaluate(_order(), PORTFOLIO, RiskSettings(), NOW,
                 preview=BrokerPreview(Decimal("0"), Decimal("0"), errors=("margin_check_failed: not enough",)))
    assert not d.approved and d.gate_pass is None
    assert [c.rule for c in d.failures] == ["broker_preview"] and "margin_check_failed" in d.summary()
    d = evaluate(_order(), PORTFOLIO, RiskSettings(), NOW, preview=BrokerPreview(Decimal("5000.01"), Decimal("2")))
    assert [c.rule for c in d.failures] == ["broker_buying_power"]
    assert "uses $5,000.01 of buying power, available $5,000.00" in d.summary()


def test_a_close_is_refused_only_by_broker_errors() -> None:
    close = _order(Intent.close, 1)
    assert evaluate(close, PORTFOLIO, RiskSettings(), NOW, preview=BrokerPreview(Decimal("-400"), Decimal("0.1"))
                    ).approved
    d = evaluate(close, PORTFOLIO, RiskSettings(), NOW,
                 preview=BrokerPreview(Decimal("0"), Decimal("0"), errors=("position_not_found: none",)))
    assert [c.rule for c in d.failures] == ["broker_preview"]
