"""Issue 12 item 11 (part): a metric's arrow and colour follow the sign of its change."""

from __future__ import annotations

from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest


def _script() -> None:
    import streamlit as st

    from app import ui

    st.metric("Today's P&L", ui.money(-150, signed=True), ui.delta(ui.pct(-0.15, signed=True)))
    st.metric("Total P&L", ui.money(150, signed=True), ui.delta(ui.pct(0.15, signed=True)))


def test_negative_change_shows_a_red_down_arrow() -> None:
    at = AppTest.from_function(_script).run()
    down, up = at.metric
    assert down.proto.direction == MetricProto.MetricDirection.DOWN
    assert down.proto.color == MetricProto.MetricColor.RED
    assert up.proto.direction == MetricProto.MetricDirection.UP
    assert up.proto.color == MetricProto.MetricColor.GREEN


def test_one_session_of_equity_is_drawn_on_a_date_axis_with_a_day_wide_bar() -> None:
    from datetime import date

    import pandas as pd

    from pages.overview import equity_figure

    history = pd.DataFrame({"trade_date": [date(2026, 11, 2)], "equity": [100_150.0], "day_pnl": [-150.0]})
    fig = equity_figure(history)
    axis = fig.layout.xaxis
    assert axis.type == "date"
    start, end = (pd.Timestamp(x) for x in axis.range)
    assert (end - start) == pd.Timedelta(days=7)  # a week around the one session, not a sub-second span
    bar = fig.data[1]
    assert list(bar.width) == [0.6 * 86_400_000]  # 60% of a day, in the axis' milliseconds
