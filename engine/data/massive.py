"""Massive (formerly Polygon.io) market data on the official ``massive`` client.

History is full-market daily bars, ONE request per trading day (``get_grouped_daily_aggs``), kept in the
bar store (``BarStore(settings.bar_store_dir, "massive")``). A session is never requested twice:

- a session is *done* when the bar store holds it, or when a ``BarDay`` row records it as empty
  (``symbols == 0``: the provider had no bars for an NYSE session, e.g. an unscheduled closure);
- an empty answer for a session less than ``SETTLE_DAYS`` old is not recorded: the provider may simply
  not have published it yet, so it is asked again next time;
- per-day atomicity: a fetched day goes first to the response cache (diskcache, a few ms), then, in
  batches (a month at most, or every ``flush_seconds``), to the bar store, and only after the store write
  to ``BarDay``. An exception flushes what was fetched; a SIGKILL loses at most the unflushed batch from
  the store, and those days come back from the cache without a request on the next run. A day found in
  the store without its ``BarDay`` row (killed between the two writes) gets the row on the next run.

Every HTTP attempt, retries included, passes the plan's rate limiter (``engine.data.ratelimit``) and is
counted. 429/5xx/timeouts are retried 2, 4, 8 s apart (a 429 waits its ``Retry-After``), by our own loop
around single urllib3 attempts (``massive_http``): a persistent 429 costs those 4 attempts, no more
(``Backoff`` does not retry spent attempts; it retries garbled bodies), and every failure surfaces as a
``DataSourceError`` with a readable message. Responses are
requested ``raw`` and decoded here: the client turns a malformed JSON body into an empty result without
telling anyone, which for a grouped day would look exactly like a holiday.

The API key goes to the client only (it sends it as a Bearer header, never in a URL); no message, log
line or database row contains it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd

from engine.config import Settings
from engine.data.barstore import BarStore
from engine.data.cache import DataCache
from engine.data.massive_bars import (
    DEFAULT_BACKFILL_DAYS,
    MAX_BACKFILL_DAYS,
    FillReport,
    last_completed_session,
)
from engine.data.massive_http import NEW_YORK, SOURCE, MassiveHttp, MassiveKeyMissing, default_retry
from engine.data.massive_parse import (
    grouped_to_table,
    snapshot_quotes,
    universal_option_results,
    universe_frame,
)
from engine.data.massive_reference import MassiveReference
from engine.data.massive_splits import MassiveSplits, SplitReport
from engine.data.ratelimit import MalformedResponse, RateLimiter

log = logging.getLogger(__name__)

UNIVERSAL_BATCH = 250  # tickers per universal snapshot request (the endpoint's limit)

__all__ = [
    "DEFAULT_BACKFILL_DAYS",
    "MAX_BACKFILL_DAYS",
    "NEW_YORK",
    "SOURCE",
    "FillReport",
    "MassiveHttp",
    "MassiveKeyMissing",
    "MassiveMarketData",
    "SplitReport",
    "default_retry",
    "grouped_to_table",
    "last_completed_session",
    "universe_frame",
]


class MassiveMarketData(MassiveSplits, MassiveReference):
    """MarketData on Massive. Construct with ``from_settings``; tests pass ``base=`` a local server.

    The parts: ``massive_http`` (client, limiter, retries, paging), ``massive_bars`` (grouped-daily
    history), ``massive_splits`` (splits, repairs), ``massive_reference`` (universe, contracts, sectors,
    dividends), ``massive_parse`` (pure parsers)."""

    # ``option_quotes`` answers listed contracts only, one request for up to 250 of them, while a chain is
    # every page of the underlying: quote a contract by its own ticker (the paper broker's quotes).
    quotes_by_contract = True

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MassiveMarketData:
        key = settings.massive_api_key.get_secret_value().strip() if settings.massive_api_key else ""
        if not key:
            raise MassiveKeyMissing(
                "data_source=massive needs an API key: set QM_MASSIVE_API_KEY (environment, .env or "
                ".streamlit/secrets.toml); get one at massive.com"
            )
        from engine.db import get_engine

        rpm = settings.massive_requests_per_minute
        options: dict[str, Any] = {
            "base": settings.massive_base_url,
            "store": BarStore(settings.bar_store_dir, SOURCE),
            "db": get_engine(settings.db_url),
            "cache": DataCache(settings.cache_dir),
            "limiter": RateLimiter.per_minute(rpm),
            # Free plan (a request every 12 s): one at a time. Paid plans: overlap network and parsing.
            "workers": 1 if rpm <= 60 else 4,
        }
        options.update(overrides)
        return cls(key, **options)


    # --- intraday ---------------------------------------------------------------------------------

    def quotes(self, symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        """Quotes from the whole-market stock snapshot (one request). Massive snapshots are live, so
        ``at`` only has to be timezone-aware; ``time`` says how fresh each quote is."""
        if at.tzinfo is None:
            raise ValueError("quotes() needs a timezone-aware datetime")
        wanted = list(symbols)
        tickers = wanted if 0 < len(wanted) <= 100 else None  # a short list keeps the response small
        body = self._call(
            "stock snapshot", lambda: self._rest.get_snapshot_all("stocks", tickers=tickers, raw=True)
        )
        rows = body.get("tickers") or []
        if not isinstance(rows, list):
            raise MalformedResponse("stock snapshot: 'tickers' is not a list")
        return snapshot_quotes(rows, wanted)

    def option_chain(
        self,
        underlying: str,
        at: datetime,
        expiry_from: date | None = None,
        expiry_to: date | None = None,
        strike_min: float | None = None,
        strike_max: float | None = None,
        r: float | None = None,
        q: float = 0.0,
        contract_type: str | None = None,
    ) -> pd.DataFrame:
        """The underlying's option chain snapshot (every page, one request per 250 contracts) in the
        normalised chain shape (``engine.options.chain``), the provider's IV and greeks kept. The
        expiry/strike band and ``contract_type`` ('call'/'put') are filtered by the server: a caller
        that needs 21-60 days and strikes near the money reads a few pages, not the whole chain. With a
        risk-free rate ``r`` (and dividend yield ``q``) our own BSM numbers are added beside them
        (``chain.enrich``: calc_iv, calc_delta, ..., quote_flag)."""
        from engine.options.chain import enrich, from_polygon_snapshot

        if at.tzinfo is None:
            raise ValueError("option_chain() needs a timezone-aware datetime")
        params: dict[str, Any] = {"limit": 250}
        if expiry_from is not None:
            params["expiration_date.gte"] = expiry_from.isoformat()
        if expiry_to is not None:
            params["expiration_date.lte"] = expiry_to.isoformat()
        if strike_min is not None:
            params["strike_price.gte"] = strike_min
        if strike_max is not None:
            params["strike_price.lte"] = strike_max
        if contract_type is not None:
            if contract_type not in ("call", "put"):
                raise ValueError(f"contract_type must be 'call' or 'put', got {contract_type!r}")
            params["contract_type"] = contract_type
        results: list[dict[str, Any]] = []
        for page in self._pages(
            f"option chain {underlying}",
            lambda: self._rest.list_snapshot_options_chain(underlying, params=dict(params), raw=True),
        ):
            results.extend(page)
        chain = from_polygon_snapshot(results, source=SOURCE)
        self._record_iv(underlying, chain, at)
        return chain if r is None else enrich(chain, r=r, q=q)

    def _record_iv(self, underlying: str, chain: pd.DataFrame, at: datetime) -> None:
        """Massive has no IV series: every chain fetched anyway (a signal's candidate band) records the
        day's 30-day ATM IV, so IV rank becomes known after ``ivrank.MIN_PERIODS`` sessions
        (``engine.options.ivrecord``). A failed write costs the record, not the chain."""
        if self.db is None or chain.empty:
            return
        from engine.options.ivrecord import record_fetched_chain_iv

        try:
            record_fetched_chain_iv(self.db, underlying, chain, at.astimezone(NEW_YORK).date(), SOURCE)
        except Exception as exc:
            log.warning("recording the ATM IV of %s: %s", underlying, exc)

    def option_quotes(self, occ_symbols: Sequence[str], at: datetime) -> pd.DataFrame:
        """Chain-shaped quotes for exactly these contracts (held positions), from the universal snapshot
        (``/v3/snapshot?ticker.any_of=``, 250 contracts a request) instead of paging whole chains."""
        from engine.options.chain import empty_chain, from_polygon_snapshot
        from engine.options.occ import parse_occ

        if at.tzinfo is None:
            raise ValueError("option_quotes() needs a timezone-aware datetime")
        wanted = list(dict.fromkeys(occ_symbols))
        if not wanted:
            return empty_chain()
        tickers = [parse_occ(o).polygon() for o in wanted]
        results: list[dict[str, Any]] = []
        for i in range(0, len(tickers), UNIVERSAL_BATCH):
            batch = tickers[i : i + UNIVERSAL_BATCH]
            for page in self._pages(
                f"option quotes {batch[0]} (+{len(batch) - 1})",
                lambda batch=batch: self._rest.list_universal_snapshots(  # type: ignore[misc]
                    type="options", ticker_any_of=batch, limit=UNIVERSAL_BATCH, raw=True
                ),
            ):
                results.extend(universal_option_results(page))
        return from_polygon_snapshot(results, source=SOURCE) if results else empty_chain()
