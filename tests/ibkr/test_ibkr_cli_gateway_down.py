"""``sync --broker ibkr`` with no gateway listening: a clear message naming the settings, exit 1."""

from __future__ import annotations

import socket

import pytest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on leaving: nothing listens there


def test_gateway_down_is_a_message_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    port = _closed_port()
    monkeypatch.setenv("QM_IBKR__HOST", "127.0.0.1")
    monkeypatch.setenv("QM_IBKR__PORT", str(port))
    assert main(["sync", "--broker", "ibkr"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"127.0.0.1:{port}" in err and "QM_IBKR__HOST" in err and "QM_IBKR__PORT" in err
