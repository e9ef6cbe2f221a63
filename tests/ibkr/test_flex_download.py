"""Flex Web Service two-step protocol against a local HTTP server (SendRequest, GetStatement, 1019 polling)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from pydantic import SecretStr

from engine.ibkr.flex_download import FlexClient, FlexDownloadError
from tests.conftest import shared_data

TOKEN = "s3cr3t-token-123456"


class FakeFlexService:
    def __init__(self) -> None:
        self.statement = shared_data("ibkr_flex", "synthetic_ib-flex", "activity_backfill.xml").read_bytes()
        self.pending = 2  # GetStatement answers 1019 this many times first
        self.send_answer: bytes | None = None
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.url = ""

    def handler(self):  # type: ignore[no-untyped-def]
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                params = parse_qs(parsed.query)
                service.requests.append((parsed.path, params))
                if params.get("t") != [TOKEN]:
                    body = _resp("Fail", code="1012", message="Token has expired.")
                elif parsed.path.endswith("/SendRequest"):
                    body = service.send_answer or (
                        b'<FlexStatementResponse timestamp="01 December, 2026 08:00 AM EST"><Status>Success</Status>'
                        b"<ReferenceCode>7777</ReferenceCode><Url>" + service.url.encode() +
                        b"/FlexWebService/GetStatement</Url></FlexStatementResponse>")
                elif parsed.path.endswith("/GetStatement") and params.get("q") == ["7777"]:
                    if service.pending > 0:
                        service.pending -= 1
                        body = _resp("Warn", code="1019",
                                     message="Statement generation in progress. Please try again shortly.")
                    else:
                        body = service.statement
                else:
                    body = _resp("Fail", code="1014", message="Query is invalid.")
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _resp(status: str, code: str, message: str) -> bytes:
    return (f"<FlexStatementResponse><Status>{status}</Status><ErrorCode>{code}</ErrorCode>"
            f"<ErrorMessage>{message}</ErrorMessage></FlexStatementResponse>").encode()


@pytest.fixture
def service() -> Iterator[FakeFlexService]:
    svc = FakeFlexService()
    server = ThreadingHTTPServer(("127.0.0.1", 0), svc.handler())
    svc.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield svc
    server.shutdown()
    server.server_close()


def client(svc: FakeFlexService, token: str = TOKEN, attempts: int = 5) -> tuple[FlexClient, list[float]]:
    sleeps: list[float] = []
    return FlexClient(SecretStr(token), "123456", base_url=svc.url + "/FlexWebService", poll_attempts=attempts,
                      poll_wait_s=2.5, timeout_s=5, sleep=sleeps.append), sleeps


def test_two_steps_with_1019_polling(service: FakeFlexService) -> None:
    c, sleeps = client(service)
    body = c.download()
    assert body == service.statement
    paths = [p for p, _ in service.requests]
    assert paths == ["/FlexWebService/SendRequest"] + ["/FlexWebService/GetStatement"] * 3
    assert service.requests[0][1] == {"t": [TOKEN], "q": ["123456"], "v": ["3"]}
    assert service.requests[1][1]["q"] == ["7777"]
    assert sleeps == [2.5, 2.5]


def test_polling_is_bounded(service: FakeFlexService) -> None:
    service.pending = 99
    c, sleeps = client(service, attempts=3)
    with pytest.raises(FlexDownloadError, match="not ready after 3 attempts: code 1019"):
        c.download()
    assert len(service.requests) == 4 and len(sleeps) == 2


def test_errors_name_the_code_and_never_the_token(service: FakeFlexService) -> None:
    c, _ = client(service, token="wrong-token-999")
    with pytest.raises(FlexDownloadError) as exc:
        c.download()
    assert "1012" in str(exc.value) and "wrong-token-999" not in str(exc.value)
    assert "wrong-token-999" not in repr(c)


def test_unreachable_service_does_not_leak_the_token() -> None:
    c = FlexClient(SecretStr(TOKEN), "1", base_url="http://127.0.0.1:9/FlexWebService", timeout_s=1)
    with pytest.raises(FlexDownloadError) as exc:
        c.download()
    assert TOKEN not in str(exc.value)


def test_cli_flex_download_imports_the_statement(service: FakeFlexService, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main
    from engine.config import get_settings

    service.pending = 0
    monkeypatch.setenv("QM_IBKR__FLEX_TOKEN", TOKEN)
    monkeypatch.setenv("QM_IBKR__FLEX_QUERY_ID", "123456")
    monkeypatch.setenv("QM_IBKR__FLEX_URL", service.url + "/FlexWebService")
    get_settings.cache_clear()
    assert main(["flex", "download"]) == 0
    out = capsys.readouterr().out
    assert "       6 new" in out and TOKEN not in out
    sends = [p for p, _ in service.requests if p.endswith("/SendRequest")]
    assert len(sends) >= 3  # 2024-05-09 to yesterday: more than two years, 365 days a request
    assert main(["flex", "download"]) == 0
    assert " 0 new" in capsys.readouterr().out


def test_history_is_fetched_in_365_day_windows_and_resumes(service: FakeFlexService,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import date

    from engine.config import get_settings
    from engine.ibkr.sync import flex_history

    service.pending = 0
    monkeypatch.setenv("QM_IBKR__FLEX_TOKEN", TOKEN)
    monkeypatch.setenv("QM_IBKR__FLEX_QUERY_ID", "123456")
    monkeypatch.setenv("QM_IBKR__FLEX_URL", service.url + "/FlexWebService")
    get_settings.cache_clear()
    out = flex_history(get_settings(), today=date(2025, 6, 1))
    windows = [(q["fd"][0], q["td"][0]) for p, q in service.requests if p.endswith("/SendRequest")]
    assert windows == [("20240509", "20250508"), ("20250509", "20250531")]
    assert out["counts"]["Trade"] == {"read": 12, "new": 6}
    service.requests.clear()
    flex_history(get_settings(), today=date(2025, 6, 1))
    windows = [(q["fd"][0], q["td"][0]) for p, q in service.requests if p.endswith("/SendRequest")]
    assert windows == [("20241227", "20250531")]  # a week before the newest stored trade (3 Jan 2025)


def test_window_before_the_account_existed_is_empty(service: FakeFlexService) -> None:
    service.send_answer = _resp("Fail", code="1003", message="Statement is not available.")
    c, _ = client(service)
    with pytest.raises(FlexDownloadError) as exc:
        c.download()
    assert exc.value.code == "1003"
