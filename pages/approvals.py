"""Approvals: orders waiting for the operator with the risk gate's numbers; approve, reject (with a reason)
or override size or limit price (the gate runs again at send); the history of decisions."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import actions, data, ui
from engine.execution.orders import IllegalTransition
from engine.readings import legs_text as _legs_text


def gate_table(preview: dict[str, Any]) -> None:
    checks = pd.DataFrame(preview["checks"])
    checks["ok"] = checks["passed"].map(lambda p: "✅" if p else "❌")
    st.dataframe(checks, hide_index=True, width="stretch", column_order=["ok", "rule", "limit", "current", "after",
                                                                         "message"],
                 column_config={"ok": st.column_config.TextColumn("", width="small"),
                                "limit": ui.number_col("Limit"), "current": ui.number_col("Now"),
                                "after": ui.number_col("After order"), "message": st.column_config.TextColumn("Check")})


def _act(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        message = fn(*args, **kwargs)
    except (ValueError, LookupError, IllegalTransition) as exc:
        st.error(str(exc), icon="⚠️")
        return
    st.session_state["approvals_flash"] = message
    st.rerun()


def order_card(order: dict[str, Any]) -> None:
    oid = int(order["id"])
    preview = data.gate_preview(order)
    with st.container(border=True):
        head, verdict = st.columns([3, 2])
        limit = order["limit_price"]
        kind = "debit" if (limit or 0) >= 0 else "credit"
        head.markdown(f"#### {order['symbol']} · {order['structure'].replace('_', ' ')} ×{order['quantity']}")
        head.caption(f"{order['intent']} · limit {ui.money(abs(limit or 0))} {kind} per unit · max loss "
                     f"{ui.money(order['max_loss'])} · created {ui.ny(order['created_at'])} · "
                     f"`{order['client_order_id']}`")
        head.markdown(_legs_text(order["legs"]))
        if order["reason"]:
            head.caption(f"Why: {order['reason']}")
        if preview["approved"]:
            verdict.success(f"Risk gate preview: passes · order risk {ui.money(preview['order_risk'])} "
                            f"({ui.pct(preview['order_risk_pct'])} of equity)", icon="🛡️")
        else:
            verdict.error(f"Risk gate preview: would refuse — {preview['summary']}", icon="🛡️")
        verdict.caption("A preview against the newest account snapshot; the gate runs again with the broker's "
                        "account when the engine sends the order.")
        with st.expander("Risk checks", expanded=not preview["approved"]):
            gate_table(preview)
        a, r, o = st.columns(3, gap="medium")
        with a:
            st.markdown("**Approve**")
            note = st.text_input("Note (optional)", key=f"approve_note_{oid}")
            if st.button("Approve", key=f"approve_{oid}", type="primary", icon="✅", width="stretch"):
                _act(actions.approve_order, oid, note)
        with r:
            st.markdown("**Reject**")
            reason = st.text_input("Reason (required)", key=f"reject_reason_{oid}")
            if st.button("Reject", key=f"reject_{oid}", icon="⛔", width="stretch"):
                if not reason.strip():
                    st.error("Give a reason to reject.", icon="⚠️")
                else:
                    _act(actions.reject_order, oid, reason)
        with o:
            st.markdown("**Override**")
            q, p = st.columns(2)
            qty = q.number_input("Quantity", min_value=1, value=int(order["quantity"]), step=1, key=f"ovr_qty_{oid}")
            price = p.number_input("Limit price", value=float(limit or 0.0), step=0.05, format="%.2f",
                                   key=f"ovr_limit_{oid}", help="per unit: + debit, − credit")
            why = st.text_input("Reason (required)", key=f"ovr_reason_{oid}")
            if st.button("Override and approve", key=f"override_{oid}", icon="✏️", width="stretch"):
                if not why.strip():
                    st.error("Give a reason for the override.", icon="⚠️")
                else:
                    _act(actions.override_order, oid, why, quantity=int(qty), limit_price=round(float(price), 2))


def render() -> None:
    mode = data.mode()
    ui.page_header("Approvals", f"Approval mode **{mode['approval_mode']}**: "
                   + {"manual": "every order waits here for a decision.",
                      "semi": "orders above the semi-auto risk limit wait here; smaller ones go out by themselves.",
                      "auto": "orders that pass the risk gate go out without approval (change it in Settings)."}
                   .get(mode["approval_mode"], ""))
    flash = st.session_state.pop("approvals_flash", None)
    if flash:
        st.success(flash, icon="✅")
    if mode["kill_switch"]:
        st.warning("Kill switch is ON: approved entries will still be refused by the risk gate.", icon="🛑")
    pending = data.pending_orders()
    st.subheader(f"Waiting for a decision ({len(pending)})")
    if not pending:
        ui.empty("No orders waiting for approval. In manual or semi mode the pre-market job proposes orders here; "
                 f"the approval mode is {mode['approval_mode']} (Settings page).")
    for order in pending:
        order_card(order)
    st.subheader("Decisions")
    history = data.decisions()
    if history.empty:
        st.caption("No operator decisions yet.")
    else:
        st.dataframe(ui.to_local(history, ["at"]), hide_index=True, width="stretch", key="decisions",
                     column_order=["at", "decision", "symbol", "structure", "order_id", "from", "to", "actor", "reason",
                                   "client_order_id"],
                     column_config={"at": ui.time_col("At (ET)"), "order_id": st.column_config.NumberColumn("Order"),
                                    "decision": "Decision", "symbol": "Symbol", "structure": "Structure",
                                    "from": "From", "to": "To", "actor": "Actor", "reason": "Reason",
                                    "client_order_id": "Client order id"})


if __name__ == "__main__":
    render()
