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
