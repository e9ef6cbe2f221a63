"""The console's buttons write the right decisions and commands, recorded as the operator."""

from __future__ import annotations

from decimal import Decimal

from sqlmodel import Session, func, select

from engine.config import get_settings
from engine.models import OperatorCommand, Order, OrderEvent, ScanResult, ScanRun, SettingOverride
from engine.operator import approval_mode, kill_switch_on


def _proposed(db) -> list[Order]:  # type: ignore[no-untyped-def]
    with Session(db) as session:
        return list(session.exec(select(Order).where(Order.status == "proposed").order_by(Order.id)).all())


def _order(db, order_id: int) -> Order:  # type: ignore[no-untyped-def]
    with Session(db) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order


def _operator_events(db, order_id: int) -> list[OrderEvent]:  # type: ignore[no-untyped-def]
    with Session(db) as session:
        return list(session.exec(select(OrderEvent).where(OrderEvent.order_id == order_id,
                                                          OrderEvent.actor == "operator")).all())


def test_approvals_page_lists_every_pending_order_with_the_gate_preview(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    pending = _proposed(db)
    at = console().open("approvals")
    assert at.subheader[0].value == f"Waiting for a decision ({len(pending)})"
    approve_buttons = [b for b in at.button if str(b.key).startswith("approve_")]
    assert sorted(b.key for b in approve_buttons) == sorted(f"approve_{o.id}" for o in pending)
    texts = " ".join(str(s.value) for s in [*at.success, *at.error])
    assert "Risk gate preview" in texts
    checks = at.dataframe[0].value
    assert {"heat", "risk_per_trade", "buying_power"} <= set(checks["rule"])


def test_approve_sets_status_approved_by_the_operator(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    order = _proposed(db)[0]
    at = console().open("approvals")
    at.button(key=f"approve_{order.id}").click().run()
    assert not at.exception
    assert _order(db, order.id).status == "approved"
    events = _operator_events(db, order.id)
    assert [(e.from_status, e.to_status) for e in events] == [("proposed", "approved")]
    assert any("Approved" in str(s.value) for s in at.success)
    history = at.dataframe[-1].value
    assert history.iloc[0]["actor"] == "operator" and history.iloc[0]["order_id"] == order.id


def test_reject_needs_a_reason(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    order = _proposed(db)[0]
    at = console().open("approvals")
    at.button(key=f"reject_{order.id}").click().run()
    assert any("reason" in str(e.value) for e in at.error)
    assert _order(db, order.id).status == "proposed"
    at.text_input(key=f"reject_reason_{order.id}").input("too close to earnings")
    at.button(key=f"reject_{order.id}").click().run()
    assert _order(db, order.id).status == "rejected"
    (event,) = _operator_events(db, order.id)
    assert event.reason == "too close to earnings" and event.to_status == "rejected"


def test_override_changes_quantity_and_reapproves_for_the_gate(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    order = _proposed(db)[-1]
    new_qty = order.quantity + 1
    at = console().open("approvals")
    at.number_input(key=f"ovr_qty_{order.id}").set_value(new_qty)
    at.button(key=f"override_{order.id}").click().run()
    assert any("reason" in str(e.value) for e in at.error), "an override needs a reason"
    assert _order(db, order.id).quantity == order.quantity
    at.text_input(key=f"ovr_reason_{order.id}").input("size up: strong setup")
    at.button(key=f"override_{order.id}").click().run()
    assert not at.exception
    after = _order(db, order.id)
    per_unit = Decimal(order.economics["max_loss_per_unit"]) + Decimal(order.economics["fees_per_unit"])
    equity = Decimal(str(get_settings().starting_cash))
    if per_unit * new_qty > equity * Decimal("0.01"):
        # the order was sized to the 1% budget: one more contract is over it, and the gate says so
        assert any("risk gate" in str(e.value) and "risk_per_trade" in str(e.value) for e in at.error)
        assert after.quantity == order.quantity and after.status == "proposed"
        return
    assert after.quantity == new_qty
    assert after.status == "approved"  # goes through the risk gate again when the engine sends it
    assert after.max_loss == (Decimal(order.economics["max_loss_per_unit"]) * new_qty).quantize(Decimal("0.01"))
    events = _operator_events(db, order.id)
    assert events[0].reason == "override: size up: strong setup"
    assert events[0].data["after"]["quantity"] == new_qty
    assert events[1].to_status == "approved"


def test_override_limit_price(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    order = _proposed(db)[0]
    new_limit = float(order.limit_price) - 0.05
    at = console().open("approvals")
    at.number_input(key=f"ovr_limit_{order.id}").set_value(new_limit)
    at.text_input(key=f"ovr_reason_{order.id}").input("better price")
    at.button(key=f"override_{order.id}").click().run()
    after = _order(db, order.id)
    assert after.limit_price == Decimal(str(round(new_limit, 2)))
    assert after.quantity == order.quantity and after.status == "approved"


def test_kill_switch_needs_a_confirmation(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("risk")
    assert not any(b.key == "kill_confirm" for b in at.button)
    at.button(key="kill_arm").click().run()
    with Session(db) as session:
        assert not kill_switch_on(session), "arming alone changes nothing"
    at.button(key="kill_cancel").click().run()
    assert not any(b.key == "kill_confirm" for b in at.button)
    at.button(key="kill_arm").click().run()
    at.button(key="kill_confirm").click().run()
    assert not at.exception
    with Session(db) as session:
        assert kill_switch_on(session)
        assert session.get(SettingOverride, "kill_switch").updated_by == "operator"
    assert any("Kill switch ON" in str(s.value) for s in at.success)
    overview = console().open("overview")
    assert any("KILL SWITCH ON" in str(m.value) for m in overview.caption)
    # and back off, again through the confirmation
    at.button(key="kill_arm").click().run()
    at.button(key="kill_confirm").click().run()
    with Session(db) as session:
        assert not kill_switch_on(session)


def test_job_buttons_write_operator_commands(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("system")
    at.button(key="pause_premarket").click().run()
    assert not at.exception
    at.button(key="run_nightly").click().run()
    at.button(key="resume_premarket").click().run()
    with Session(db) as session:
        cmds = session.exec(select(OperatorCommand).order_by(OperatorCommand.id)).all()
    assert [(c.kind, c.payload, c.created_by, c.status) for c in cmds] == [
        ("pause_job", {"job_id": "premarket"}, "operator", "pending"),
        ("run_job", {"job_id": "nightly"}, "operator", "pending"),
        ("resume_job", {"job_id": "premarket"}, "operator", "pending"),
    ]
    table = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert list(table["kind"]) == ["resume_job", "run_job", "pause_job"]


def test_scheduler_applies_the_console_commands(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    """End to end through the database: the scheduler's command loop applies what the console queued."""
    from engine import runtime
    from engine.config import get_settings
    from engine.context import build_context

    at = console().open("system")
    at.button(key="pause_intraday").click().run()
    state = runtime.RuntimeState(instance="test")
    runtime.apply_commands(build_context(get_settings()), state)
    assert state.paused == {"intraday"}
    with Session(db) as session:
        (cmd,) = session.exec(select(OperatorCommand)).all()
        assert cmd.status == "applied" and cmd.result == "intraday paused"


def test_bad_setting_names_field_and_range_and_changes_nothing(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("settings")
    with Session(db) as session:
        before = session.exec(select(func.count()).select_from(SettingOverride)).one()
    at.number_input(key="set_risk.max_heat_pct").set_value(500.0)
    at.button(key="save_risk").click().run()
    assert not at.exception
    message = " ".join(str(e.value) for e in at.error)
    assert "max_heat_pct" in message and "100" in message and "nothing changed" in message
    with Session(db) as session:
        assert session.exec(select(func.count()).select_from(SettingOverride)).one() == before
    at.number_input(key="set_risk.max_heat_pct").set_value(8.0)
    at.button(key="save_risk").click().run()
    with Session(db) as session:
        row = session.get(SettingOverride, "risk.max_heat_pct")
        assert row is not None and row.value == {"value": 8.0} and row.updated_by == "operator"
    risk = console().open("risk")
    limits = risk.dataframe[0].value.set_index("rule")
    assert limits.loc["heat", "limit"] == 8.0


def test_approval_mode_switch(filled, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("settings")
    at.radio(key="approval_mode_choice").set_value("manual").run()
    at.button(key="apply_mode").click().run()
    with Session(db) as session:
        assert approval_mode(session, "auto") == "manual"
        assert session.get(SettingOverride, "approval_mode").updated_by == "operator"


def test_live_mode_is_not_pretended(filled, console) -> None:  # type: ignore[no-untyped-def]
    at = console().open("settings")
    text = " ".join(str(w.value) for w in at.warning) + " ".join(str(m.value) for m in at.markdown)
    assert "never from this page" in text  # the tastytrade adapter exists; the switch still is the environment's
    assert "no live broker adapter" not in text  # both broker adapters ship in this build
    for requirement in ("QM_TRADING_MODE=live", "QM_LIVE_TRADING_CONFIRMED=true"):
        assert requirement in text
    assert at.button(key="live_switch").disabled
    assert at.checkbox(key="live_confirm").disabled


def test_scan_now_runs_the_engine_scan(seeded, console, db) -> None:  # type: ignore[no-untyped-def]
    at = console().open("scanner")
    assert any("No scan yet" in str(i.value) for i in at.info)
    at.button(key="scan_now").click().run()
    assert not at.exception
    with Session(db) as session:
        run = session.exec(select(ScanRun)).one()
        rows = session.exec(select(func.count()).select_from(ScanResult)).one()
    assert run.status == "ok" and rows == run.n_scanned > 500
    assert at.get("progress"), "the scan shows a progress bar"
    assert {m.label: m.value for m in at.metric}["Scanned"] == f"{run.n_scanned:,}"
