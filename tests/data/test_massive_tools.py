"""The pieces around the Massive adapter: rate limiter, backoff, response cache, DataRun records,
`data status`, the `data` CLI commands and the data benchmark. No network: local fake servers only."""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
from sqlmodel import Session, select
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError, ResponseError

from engine.bench.data import GroupedDayGenerator, bench_data, letter_tickers
from engine.data.cache import Counters, DataCache, data_run, table_from_bytes, table_to_bytes
from engine.data.ratelimit import (
    Backoff,
    DataSourceAuthError,
    DataSourceUnavailable,
    MalformedResponse,
    RateLimiter,
    describe_error,
)
from engine.models import DataRun
from tests.data.fake_massive import API_KEY, FakeMassive

NY = ZoneInfo("America/New_York")


# --- rate limiter -----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_free_plan_allows_five_requests_in_any_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter.for_plan("free", clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(12):
        limiter.acquire()
        stamps.append(clock.now)
        clock.now += 1.0  # the request itself takes a second
    assert stamps[:5] == [0, 1, 2, 3, 4] and stamps[5] == 60 and stamps[10] == 120
    # Sliding window: never more than 5 starts in any 60 s span.
    starts = np.array(stamps)
    assert max(int(((starts >= t) & (starts < t + 60)).sum()) for t in starts) == 5
    assert limiter.waited_seconds == pytest.approx(sum(clock.sleeps))


def test_the_limiter_is_thread_safe() -> None:
    limiter = RateLimiter(5, window=0.25)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts = np.sort(np.array(stamps))
    assert len(starts) == 20 and limiter.acquired == 20
    # at most 5 in any window (a little slack for the clock read after acquire)
    assert max(int(((starts >= t) & (starts < t + 0.24)).sum()) for t in starts) <= 5


def test_an_unlimited_limiter_never_waits_and_bad_limits_are_refused() -> None:
    limiter = RateLimiter.unlimited()
    assert all(limiter.acquire() == 0 for _ in range(1000)) and limiter.delay() == 0
    with pytest.raises(ValueError, match="rate limit"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="unknown plan"):
        RateLimiter.for_plan("platinum")


# --- backoff and messages ---------------------------------------------------------------------------------


def _max_retry(reason: Exception) -> MaxRetryError:
    return MaxRetryError(None, "/v2/aggs/grouped/locale/us/market/stocks/2024-03-01", reason)  # type: ignore[arg-type]


def test_backoff_retries_transient_failures_then_explains() -> None:
    clock = FakeClock()
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _max_retry(ResponseError("too many 429 error responses"))
        return "ok"

    assert Backoff(delays=(15, 60), sleep=clock.sleep).call(flaky, "grouped daily bars") == "ok"
    assert clock.sleeps == [15, 60]

    def always() -> None:
        raise _max_retry(ResponseError("too many 429 error responses"))

    with pytest.raises(DataSourceUnavailable) as err:
        Backoff(delays=(1,), sleep=clock.sleep, requests_per_minute=5).call(always, "grouped daily bars 2024-03-01")
    message = str(err.value)
    assert "grouped daily bars 2024-03-01" in message and "HTTP 429" in message
    assert "5/min" in message and "QM_MASSIVE_REQUESTS_PER_MINUTE" in message and "2 attempts" in message


def test_backoff_does_not_retry_auth_or_client_errors() -> None:
    clock = FakeClock()
    for exc in (DataSourceAuthError("bad key"), ValueError("bug")):
        calls = []

        def fail(exc: Exception = exc, calls: list[int] = calls) -> None:
            calls.append(1)
            raise exc

        with pytest.raises(type(exc)):
            Backoff(delays=(1, 1), sleep=clock.sleep).call(fail)
        assert len(calls) == 1
    assert clock.sleeps == []


def test_error_descriptions_name_cause_and_fix() -> None:
    assert "timed out" in describe_error(_max_retry(ReadTimeoutError(None, "/x", "read timed out")), "GET x")  # type: ignore[arg-type]
    assert "cannot connect" in describe_error(_max_retry(NewConnectionError(None, "refused")), "GET x")  # type: ignore[arg-type]
    assert "server kept failing" in describe_error(_max_retry(ResponseError("too many 500 error responses")))
    assert describe_error(MalformedResponse("x: not JSON")) == "x: not JSON"


# --- cache and run records ------------------------------------------------------------------------------


def test_the_cache_counts_hits_and_misses_and_memoises(tmp_path: Path) -> None:
    cache = DataCache(tmp_path / "cache")
    assert cache.get(("k", 1)) is None
    cache.set(("k", 1), {"a": 1}, tag="reference")
    assert cache.get(("k", 1)) == {"a": 1}
    computed = []
    for _ in range(3):
        assert cache.memo(("scan", "params-hash"), lambda: computed.append(1) or 42) == 42
    assert computed == [1]
    assert (cache.stats.cache_hits, cache.stats.cache_misses) == (3, 2)
    assert cache.stats.hit_rate == pytest.approx(0.6)
    assert cache.evict("reference") == 1 and not cache.contains(("k", 1))
    table = pa.table({"symbol": ["A", "B"], "close": [1.5, 2.5]})
    assert table_from_bytes(table_to_bytes(table)).equals(table)
    # Survives a reopen (a new process).
    cache.close()
    assert DataCache(tmp_path / "cache").get(("scan", "params-hash")) == 42


def test_data_run_records_counters_and_errors(migrated_sqlite) -> None:
    counters = Counters()

    def current() -> Counters:
        return Counters(counters.requests, counters.cache_hits, counters.cache_misses)

    with data_run(migrated_sqlite, "backfill", "massive", current) as run:
        counters.requests, counters.cache_hits, counters.cache_misses = 7, 3, 7
        run.days_stored = 7
    with pytest.raises(RuntimeError), data_run(migrated_sqlite, "update", "massive", current):
        counters.requests += 1
        raise RuntimeError("boom")
    with Session(migrated_sqlite) as session:
        rows = session.exec(select(DataRun).order_by(DataRun.id)).all()  # type: ignore[arg-type]
    assert [(r.kind, r.outcome, r.requests, r.cache_hits, r.cache_misses, r.days_stored) for r in rows] == [
        ("backfill", "ok", 7, 3, 7, 7), ("update", "error", 1, 0, 0, 0),
    ]
    assert rows[0].detail["hit_rate"] == 0.3 and "boom" in rows[1].detail["error"]
    assert rows[0].finished_at is not None


# --- status and CLI -------------------------------------------------------------------------------------


def _settings(fake: FakeMassive, monkeypatch: pytest.MonkeyPatch) -> Any:
    from engine.config import get_settings

    monkeypatch.setenv("QM_DATA_SOURCE", "massive")
    monkeypatch.setenv("QM_MASSIVE_API_KEY", API_KEY)
    monkeypatch.setenv("QM_MASSIVE_BASE_URL", fake.base)
    monkeypatch.setenv("QM_MASSIVE_REQUESTS_PER_MINUTE", "100000")
    get_settings.cache_clear()
    return get_settings()


def test_status_reports_coverage_gaps_and_hit_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.data.massive import MassiveMarketData
    from engine.data.status import data_status, format_status
    from engine.db import migrate

    with FakeMassive(grouped=GroupedDayGenerator(200, seed=5)) as fake:
        fake.empty_days = {"2024-02-20"}
        settings = _settings(fake, monkeypatch)
        assert data_status(settings)["database"].startswith("not initialised")
        migrate(settings.db_url)
        now = datetime(2024, 3, 8, 20, tzinfo=NY)
        market = MassiveMarketData.from_settings(settings, now=lambda: now, backoff=Backoff.none())
        market.backfill(days=3, end=date(2024, 2, 21))  # 02-16, (02-19 holiday), 02-20 empty, 02-21
        market.backfill(days=3, end=date(2024, 3, 1))  # 02-28 .. 03-01: 02-22 .. 02-27 are gaps
        market.backfill(days=3, end=date(2024, 3, 1))  # all stored: three hits, no request
    status = data_status(settings)
    assert (status["first"], status["last"], status["sessions_stored"]) == ("2024-02-16", "2024-03-01", 5)
    assert status["empty_sessions"] == 1 and status["expected_sessions"] == 10
    assert status["gap_dates"] == ["2024-02-22", "2024-02-23", "2024-02-26", "2024-02-27"] and status["gaps"] == 4
    assert status["symbols_last_day"] > 150 and status["requests_total"] == 6
    # The response cache was asked 6 times and never hit; the 3 stored sessions are avoided requests, not hits.
    assert status["cache_hit_rate"] == 0.0 and status["runs_recorded"] == 3
    assert status["requests_avoided_by_bar_store_total"] == 3
    assert [r["kind"] for r in status["recent_runs"]] == ["backfill"] * 3
    text = format_status(status)
    assert "gaps vs NYSE" in text and "4 of 10 sessions" in text and "0.0%" in text and "recent runs" in text


def _cli(argv: list[str]) -> int:
    from engine.data.cli_data import add_data_commands

    parser = argparse.ArgumentParser(prog="python -m engine")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_backfill_update_and_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeMassive(grouped=GroupedDayGenerator(100, seed=2)) as fake:
        _settings(fake, monkeypatch)
        assert _cli(["data", "backfill", "--days", "4"]) == 0
        out, err = capsys.readouterr()
        report = json.loads(out.strip().splitlines()[-1])
        assert report["days_stored"] + len(report["not_yet_published"]) + report["empty_sessions_recorded"] == 4
        assert "backfill daily bars [" in err and "done in" in err  # the progress bar
        assert _cli(["data", "update", "--quiet", "--no-splits"]) == 0
        assert json.loads(capsys.readouterr().out.strip())["sessions_wanted"] == 0
        assert _cli(["data", "status"]) == 0
        assert "sessions" in capsys.readouterr().out
        assert _cli(["data", "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["requests_total"] == 4


def test_cli_without_a_key_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.config import get_settings

    monkeypatch.setenv("QM_DATA_SOURCE", "massive")
    get_settings.cache_clear()
    assert _cli(["data", "backfill", "--days", "2", "--quiet"]) == 2
    assert "QM_MASSIVE_API_KEY" in capsys.readouterr().err


def test_cli_with_a_bad_key_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeMassive(grouped=GroupedDayGenerator(100, seed=2), api_key="the-right-one") as fake:
        _settings(fake, monkeypatch)
        assert _cli(["data", "backfill", "--days", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad or unauthorised API key" in err and API_KEY not in err


def test_cli_backfills_the_simulated_market_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.config import get_settings

    monkeypatch.setenv("QM_SIM_SYMBOLS", "50")
    get_settings.cache_clear()
    assert _cli(["data", "backfill", "--days", "5", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["sessions_written"] == 5


# --- benchmark ------------------------------------------------------------------------------------------


def test_the_generator_is_deterministic_and_in_the_recorded_shape() -> None:
    assert letter_tickers(30)[:3] == ["A", "AA", "AB"] and len(set(letter_tickers(32_345))) == 32_345
    gen = GroupedDayGenerator(1000, seed=9)
    body = gen.body(date(2024, 3, 1))
    assert body == GroupedDayGenerator(1000, seed=9).body(date(2024, 3, 1))
    doc = json.loads(body)
    assert set(doc) == {"queryCount", "resultsCount", "adjusted", "results", "status", "request_id", "count"}
    assert set(doc["results"][0]) == {"T", "v", "vw", "o", "c", "h", "l", "t", "n"}
    assert all(r["l"] <= min(r["o"], r["c"]) and r["h"] >= max(r["o"], r["c"]) for r in doc["results"])


def test_bench_data_small(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench_data(symbols=500, days=6, server_process=False)
    assert result["requests_first_run"] == 6 and result["requests_second_run"] == 0
    assert result["cache_hit_rate_second_run"] == 1.0 and result["cache_hits_second_run"] == 6
    assert result["requests_store_run"] == 0 and result["requests_avoided_by_store_run"] == 6
    # 15,000 contracts at 250 a page; a candidate build reads a band, a cycle one request per position.
    assert result["chain_contracts"] == 15_000 and result["chain_requests_candidates_before"] == 60
    assert result["chain_requests_candidates"] <= 4 and result["chain_requests_cycle"] == 10
    assert result["chain_requests_cycle_before"] == 600 and all(result["targets_met"].values())
    assert result["panel_shape"] == [6, 500] and result["store_mb"] >= 0 and result["load_seconds"] < 1
    assert "massive backfill" in capsys.readouterr().out
