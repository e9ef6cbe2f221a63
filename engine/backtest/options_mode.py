"""ATR Matrix backtest, options (or stock) mode: an in-memory day loop over the live code's functions.

Per session t, in causal order (nothing reads a bar after the moment it acts at):

1. exits decided at the close of t-1 fill at the open of t (09:30 quotes), through ``engine.risk.evaluate``
   (reduce-only); option expiries settle at the close of the expiry day itself;
2. entries (pre-market rule): signals from the close of t-1 (``atr_matrix.entry_rule`` on full-series
   indicators computed once per run, ranked as the scan ranks), option structures chosen by
   ``engine.options.selection.select_candidates`` on the chain of t at 10:00 (IV rank from ATM IV of
   sessions before t only), sized by ``engine.options.candidates.entry_spec`` (the risk gate's sizing
   rule), checked by ``engine.risk.evaluate`` against the in-memory portfolio, filled by the paper
   broker's pricing (mid plus a fraction of the half spread against us, never better than mid, never
   worse than the quote's natural) and fee model. Equity, cash and free slots are those before the
   close of t (marks of t-1), so the close of t cannot change the entries of t;
3. manage open positions at the close of t: ``engine.portfolio.manager.decide`` on the close of t,
   SMA50/ATR of t and the structure's mark from the chain quoted at the close; stop moves apply now,
   closes and scale-outs become orders for the next open (step 1);
4. mark to market at the close of t.

Fills come from historical EOD chains when the source has them (``chains.EodChains``), else from the
simulated surface; every trade says which (``fill_source``). Stock mode expresses the same signals in
shares (stop distance as the risk), with the same manager rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine import indicators as ind
from engine.backtest.chains import NY, SIM, ChainSource, EodChains, LayeredChains, SimChains, SurfaceChains
from engine.backtest.metrics import compute_metrics
from engine.config import ExitSettings, RiskSettings, load_settings
from engine.data.panel import Panel
from engine.execution.brokers.paper import PaperBroker, PaperConfig
from engine.execution.brokers.quotes import InstrumentQuote
from engine.execution.ports import AssetType, Leg, Side
from engine.models import Signal
from engine.options.candidates import entry_spec
from engine.options.chain import enrich
from engine.options.ivrank import iv_rank
from engine.options.selection import OptionParams, select_candidates
from engine.portfolio.manager import MarketView, PositionView, decide
from engine.risk import Intent, PortfolioRisk, ProposedOrder, evaluate
from engine.strategies.atr_matrix import ATRMatrixParams, entry_rule, levels, score_values

__all__ = ["option_param_defaults", "run_options_backtest"]

OPEN_TIME, ENTRY_TIME, CLOSE_TIME = time(9, 30), time(10, 0), time(16, 0)
_GROUPS = (("strategy", ATRMatrixParams), ("risk", RiskSettings), ("exits", ExitSettings), ("options", OptionParams))


def _scalar_fields(cls: type) -> dict[str, Any]:
    inst = cls()
    names = cls.model_fields if hasattr(cls, "model_fields") else [f.name for f in fields(cls)]
    return {n: getattr(inst, n) for n in names if isinstance(getattr(inst, n), int | float) }


def option_param_defaults(mode: str) -> dict[str, Any]:
    """Every tunable number: strategy, risk, exit and option-selection settings, plus run settings."""
    out: dict[str, Any] = {}
    for _, cls in _GROUPS:
        out.update(_scalar_fields(cls))
    return out | {"capital": 100_000.0, "spread_fraction": 0.25, "max_entries_per_day": 5}


def _split(params: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {g: {} for g, _ in _GROUPS}
    run: dict[str, Any] = {}
    owners = {n: g for g, cls in _GROUPS for n in _scalar_fields(cls)}
    for k, v in params.items():
        (groups[owners[k]] if k in owners else run)[k] = v
    return groups, run


@dataclass
class _Position:
    symbol: str
    structure: str
    legs: tuple[Leg, ...]
    quantity: int
    initial: int
    entry_price: Decimal  # net per unit, quote terms
    multiplier: int
    underlying_entry: float
    entry_atr: float
    stop: float
    targets: tuple[float, ...]
    expiry: date | None
    entry_day: date
    risk_per_unit: Decimal
    fill_source: str
    sector: str
    delta_dollars_per_unit: float
    targets_hit: int = 0
    highest_close: float = 0.0
    cash_flow: Decimal = Decimal(0)  # everything paid (-) and received (+), fees included
    exit_value: Decimal = Decimal(0)  # sum of exit price x units
    exit_units: int = 0
    exit_reason: str = ""
    exit_day: date | None = None
    mark: Decimal | None = None
    # every fill, entry and exits: date, intent, units, price (per unit), source (sim | eod | bars), reason
    fills: list[dict[str, Any]] = field(default_factory=list)


def _quote_map(q: pd.DataFrame) -> dict[str, InstrumentQuote]:
    out = {}
    for occ, bid, ask, vol, oi, spot in zip(q["occ_symbol"], q["bid"], q["ask"], q["volume"], q["open_interest"],
                                            q["underlying_price"], strict=True):
        if not (np.isfinite(bid) and np.isfinite(ask)):
            continue
        out[str(occ)] = InstrumentQuote(Decimal(str(round(float(bid), 4))), Decimal(str(round(float(ask), 4))),
                                        int(vol) if np.isfinite(vol) else 0, int(oi) if np.isfinite(oi) else 0,
                                        Decimal(str(spot)) if np.isfinite(spot) else None)
    return out


def _closing_legs(pos: _Position) -> tuple[Leg, ...]:
    return tuple(leg.reversed() for leg in pos.legs)


def _exit_label(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head else "close"


class _Run:
    entry_time = ENTRY_TIME  # when entries are chosen, sized and checked (live timing: the 08:30 pre-market)
    fill_time: time | None = None  # when they fill, if later (live timing: the first intraday cycle, 09:35)

    def __init__(self, spec: Any, panel: Panel, first_day: int, chains: ChainSource, market: Any,
                 progress: Callable[[int, int], None] | None) -> None:
        groups, run = _split(spec.params)
        self.p = ATRMatrixParams(**groups["strategy"])
        self.risk = RiskSettings(**groups["risk"])
        self.exits = ExitSettings(**groups["exits"])
        self.opts = OptionParams(**groups["options"])
        self.capital = Decimal(str(run.get("capital", 100_000.0)))
        self.max_entries = int(run.get("max_entries_per_day", 5))
        frac = float(run.get("spread_fraction", 0.25))
        if not 0 <= frac <= 1:
            raise ValueError(f"spread_fraction must be in [0, 1], got {frac}")
        self.settings = load_settings(risk=self.risk, options=self.opts, exits=self.exits)
        self.venue_cfg = PaperConfig(
            slippage_frac_of_half_spread=Decimal(str(frac)),
            option_commission_open=self.settings.fees.commission_open_per_contract,
            option_commission_close=self.settings.fees.commission_close_per_contract,
            option_commission_cap_per_leg=self.settings.fees.commission_cap_per_leg,
            option_fee_per_contract=self.settings.fees.fee_per_contract)
        self.spec, self.panel, self.first_day, self.chains, self.market = spec, panel, first_day, chains, market
        self.progress = progress
        self.stock = spec.mode == "stock"
        self.cash = self.capital
        self.open: list[_Position] = []
        self.closed: list[_Position] = []
        self.fees = Decimal(0)
        self.slippage = Decimal(0)
        self.traded = 0.0
        self.iv_cache: dict[str, pd.Series] = {}
        # exits decided at a close, filled at the next open: (position, units, reason, targets_hit after)
        self.pending: list[tuple[_Position, int, str, int | None]] = []
        self.sectors = self._sectors()
        self._indicators()

    # ------------------------------------------------------------------ setup
    def _sectors(self) -> dict[str, str]:
        if self.market is None:
            return {}
        u = self.market.universe()
        return dict(zip(u["symbol"], u["sector"], strict=True))

    def _indicators(self) -> None:
        pn, p = self.panel, self.p
        h, lo, c, v = (pn.high.astype(np.float64), pn.low.astype(np.float64), pn.close.astype(np.float64),
                       pn.volume.astype(np.float64))
        self.c, self.o = c, pn.open.astype(np.float64)
        self.atr = ind.atr(h, lo, c, p.atr_period)
        s20, s50, s100, s200 = (ind.sma(c, k) for k in (p.sma_fast, p.sma_trend, p.sma_mid, p.sma_slow))
        self.sma50 = s50
        ema10 = ind.ema(c, p.ema_period)
        hi, low = ind.rolling_max(h, p.range_period), ind.rolling_min(lo, p.range_period)
        dv = ind.sma(c * v, p.volume_period)
        rule = entry_rule(c, self.atr, s20, s50, s100, s200, ema10, hi, low, dv, p)
        history = np.cumsum(~np.isnan(c), axis=0)
        self.signal = rule["signal"] & (history >= p.min_history)
        self.distance = rule["atr_distance"]
        self.score = score_values(rule["atr_distance"], rule["aligned"], rule["range_pos"], rule["atr_pct"], p)

    # ------------------------------------------------------------------ helpers
    def _venue(self) -> PaperBroker:
        if not hasattr(self, "_paper"):
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="qm-bt-venue-")
            # The paper venue's pricing and fee functions; its books are not used (state stays here).
            self._paper = PaperBroker(Path(self._tmp.name) / "venue.sqlite", quotes=None,  # type: ignore[arg-type]
                                      clock=lambda: datetime.now(UTC), config=self.venue_cfg)
        return self._paper

    def _price(self, legs: tuple[Leg, ...], quotes: list[InstrumentQuote]) -> Any:
        return self._venue()._price(legs, quotes)

    def _charges(self, legs: tuple[Leg, ...], units: int, opening: bool,
                 charged: list[Decimal] | None = None) -> Decimal:
        """Commissions and fees of one fill. ``charged``: commission already charged per leg of the same
        order (the venue's cap is per leg of one order), updated in place; None for a one-fill order."""
        total = Decimal(0)
        for i, leg in enumerate(legs):
            held = 0 if opening else (-leg.sign) * leg.ratio * units
            before = charged[i] if charged is not None else Decimal(0)
            commission, fees = self._venue()._leg_charges(leg, leg.ratio * units, held, before)
            if charged is not None:
                charged[i] += commission
            total += commission + fees
        return total

    def _took(self, legs: tuple[Leg, ...], units: int) -> None:
        """Called after every fill; live timing counts the day's contracts for the participation cap."""

    def _portfolio(self, equity: Decimal, day_start: Decimal) -> PortfolioRisk:
        by_symbol: dict[str, Decimal] = {}
        by_sector: dict[str, float] = {}
        for pos in self.open:
            r = pos.risk_per_unit * pos.quantity
            by_symbol[pos.symbol] = by_symbol.get(pos.symbol, Decimal(0)) + r
            by_sector[pos.sector] = by_sector.get(pos.sector, 0.0) + pos.delta_dollars_per_unit * pos.quantity
        return PortfolioRisk(equity=equity, buying_power=self.cash, day_start_equity=day_start,
                             open_positions=len(self.open), heat=sum(by_symbol.values(), Decimal(0)),
                             risk_by_symbol=by_symbol, delta_dollars_by_sector=by_sector)

    def _iv_rank(self, symbol: str, day: date, t: int, j: int) -> float | None:
        if self.market is not None and hasattr(self.market, "atm_iv_series"):
            if symbol not in self.iv_cache:
                start = self.panel.dates[0].astype(object)
                self.iv_cache[symbol] = self.market.atm_iv_series(symbol, start, self.spec.end)
            s = self.iv_cache[symbol]
            s = s[s.index < pd.Timestamp(day)]  # sessions before the decision day only
        else:
            lr = np.diff(np.log(self.c[: t, j]))  # closes before day t: realised vol as the IV proxy
            s = pd.Series(lr, index=pd.DatetimeIndex(self.panel.dates[1:t])).rolling(20).std() * math.sqrt(252)
        rank = iv_rank(s.dropna(), as_of=day)
        return None if math.isnan(rank) else rank

    def _stock_quote(self, price: float) -> dict[str, InstrumentQuote]:
        px = Decimal(str(round(price, 2)))
        return {"stock": InstrumentQuote(px, px, 10**9, 0, px)}

    # ------------------------------------------------------------------ entries
    def _enter(self, t: int, day: date, equity: Decimal, day_start: Decimal) -> None:
        prev = t - 1
        cand = np.flatnonzero(self.signal[prev])
        held = {pos.symbol for pos in self.open}
        cand = [j for j in cand if self.panel.symbols[j] not in held and np.isfinite(self.o[t, j])]
        cand.sort(key=lambda j: (-self.score[prev, j], self.distance[prev, j], j))
        entered = 0
        for j in cand:
            if entered >= self.max_entries or len(self.open) >= self.risk.max_open_positions:
                break
            symbol = str(self.panel.symbols[j])
            close, atr, sma50 = float(self.c[prev, j]), float(self.atr[prev, j]), float(self.sma50[prev, j])
            lv = levels(close, atr, sma50, self.p)
            sig = Signal(id=t * 100_000 + j, strategy="atr_matrix", symbol=symbol, data_date=self.panel.dates[prev]
                         .astype(object), score=float(self.score[prev, j]), zone="entry", entry_price=close, atr=atr,
                         stop=lv.stop, targets=list(lv.targets))
            if self._enter_one(sig, t, j, day, lv, equity, day_start):
                entered += 1

    def _enter_one(self, sig: Signal, t: int, j: int, day: date, lv: Any, equity: Decimal, day_start: Decimal) -> bool:
        symbol = sig.symbol
        sector = self.sectors.get(symbol, "")
        portfolio = self._portfolio(equity, day_start)
        if self.stock:
            price = float(self.o[t, j])
            per_share = Decimal(str(round(max(price - lv.stop, 0.01), 4)))
            from engine.risk import size_for_risk

            qty = size_for_risk(per_share, Decimal(0), portfolio, self.risk, symbol)
            legs = (Leg(symbol, Side.buy, 1, AssetType.stock, symbol),)
            limit = Decimal(str(round(price, 2)))
            order = ProposedOrder(f"bt-{sig.id}", symbol, sector, Intent.open, legs, qty, limit, per_share, limit,
                                  delta_dollars_per_unit=price)
            quotes, source, kind = self._stock_quote(price), "bars", "stock"
        else:
            chain, source = self.chains.chain(symbol, day, self.entry_time)
            if chain.empty:
                return False
            # The symbol's own dividend yield where the source knows it (CSV/vendor chains: none known).
            q = self.market.dividend_yield(symbol, day) if self.market is not None else 0.0
            chain = enrich(chain, r=self.settings.risk_free_rate, q=q)
            rank = self._iv_rank(symbol, day, t, j)
            view = {"symbol": symbol, "close": sig.entry_price, "atr": sig.atr, "stop": sig.stop,
                    "targets": sig.targets, "zone": sig.zone}
            sel = select_candidates(view, chain, self.opts, iv_rank=rank)
            if sel.chosen is None:
                return False
            fees_leg = self.settings.fees.open_cost_per_contract_leg
            spec, _why = entry_spec(sig, 0, sel.chosen, sector, self.settings, portfolio, fees_leg)
            structure = sel.chosen
            if spec is None and structure.kind == "long_call":  # as live: a defined smaller risk instead
                sel = select_candidates(view, chain, self.opts, iv_rank=rank, kinds=["call_debit_spread"])
                if sel.chosen is None:
                    return False
                structure = sel.chosen
                spec, _why = entry_spec(sig, 0, structure, sector, self.settings, portfolio, fees_leg)
            if spec is None:
                return False
            order = ProposedOrder(f"bt-{sig.id}", symbol, sector, Intent.open, spec.legs, spec.quantity,
                                  spec.limit_price, spec.max_loss_per_unit, spec.buying_power_per_unit,
                                  spec.delta_dollars_per_unit, spec.fees_per_unit)
            quotes, kind = _quote_map(chain), structure.kind
            if self.fill_time is not None:  # sent later than decided: filled at the quotes of that moment
                q, source = self.chains.quotes(symbol, [leg.instrument for leg in spec.legs], day, self.fill_time)
                quotes = _quote_map(q)
        decision = evaluate(order, portfolio, self.risk, datetime.combine(day, self.entry_time, NY))
        if not decision.approved:
            return False
        return self._fill_open(order, quotes, source, kind, sig, lv, day, sector) > 0

    def _fill_open(self, order: ProposedOrder, quotes: dict[str, InstrumentQuote], source: str, kind: str,
                   sig: Signal, lv: Any, day: date, sector: str, into: _Position | None = None,
                   charged: list[Decimal] | None = None) -> int:
        """One attempt to fill an entry; returns the units filled (0: none). A new position is appended to
        ``self.open``; with ``into`` (the rest of a partly filled order) the fill is merged into it."""
        legs = order.legs
        if self.stock:
            q = [quotes["stock"]]
        else:
            if any(leg.instrument not in quotes for leg in legs):
                return 0
            q = [quotes[leg.instrument] for leg in legs]
        priced = self._price(legs, q)
        if priced.fill > order.limit_price or any(p <= 0 for p in priced.leg_prices):
            return 0  # not marketable at the limit: the order would expire unfilled
        units = min(order.quantity, priced.max_units)
        if units <= 0:
            return 0  # the contract's share of today's volume is used up (live timing's cumulative cap)
        mult = 1 if self.stock else 100
        charges = self._charges(legs, units, opening=True, charged=charged)
        cost = priced.fill * mult * units + charges
        if cost > self.cash and priced.fill > 0:
            return 0  # buying power
        self._took(legs, units)
        self.cash -= cost
        self.fees += charges
        self.slippage += (priced.fill - priced.mid) * mult * units
        self.traded += float(abs(priced.fill) * mult * units)
        if into is not None:  # one order filled in parts: one position at the average price, as the broker's
            opened = into.initial + units
            into.entry_price = ((into.entry_price * into.initial + priced.fill * units) / opened).quantize(
                Decimal("0.0001"))
            into.quantity += units
            into.initial = opened
            into.cash_flow -= cost
            first = into.fills[0]
            first["units"], first["price"] = opened, float(into.entry_price)
            return units
        expiry = min((leg.expiry for leg in legs if leg.expiry is not None), default=None)
        pos = _Position(sig.symbol, kind, legs, units, units, priced.fill, mult, sig.entry_price, sig.atr, lv.stop,
                        tuple(lv.targets), expiry, day, order.max_loss_per_unit + order.fees_per_unit, source,
                        sector, order.delta_dollars_per_unit, highest_close=sig.entry_price, cash_flow=-cost)
        pos.fills.append({"date": day.isoformat(), "intent": "open", "units": units, "price": float(priced.fill),
                          "source": source, "reason": "atr_matrix entry signal"})
        self.open.append(pos)
        return units

    # ------------------------------------------------------------------ management
    def _marks(self, pos: _Position, day: date, t: int, j: int) -> tuple[dict[str, InstrumentQuote], str]:
        if self.stock:
            return self._stock_quote(float(self.c[t, j])), "bars"
        occ = [leg.instrument for leg in pos.legs]
        q, source = self.chains.quotes(pos.symbol, occ, day, CLOSE_TIME)
        return _quote_map(q), source

    def _mark_value(self, pos: _Position, quotes: dict[str, InstrumentQuote]) -> Decimal | None:
        if self.stock:
            return quotes["stock"].mid
        if any(leg.instrument not in quotes for leg in pos.legs):
            return None
        return sum((leg.sign * leg.ratio * quotes[leg.instrument].mid for leg in pos.legs), Decimal(0))

    def _manage(self, t: int, day: date) -> None:
        col = {s: j for j, s in enumerate(self.panel.symbols)}
        for pos in list(self.open):
            j = col[pos.symbol]
            close = float(self.c[t, j])
            if not math.isfinite(close):
                continue
            quotes, source = self._marks(pos, day, t, j)
            mark = self._mark_value(pos, quotes)
            if mark is not None:
                pos.mark = mark
            mkt = MarketView(today=day, price=close, close=close, sma50=float(self.sma50[t, j]),
                             atr=float(self.atr[t, j]), mark=mark)
            view = PositionView(pos.quantity, pos.initial, pos.entry_price, pos.underlying_entry, pos.entry_atr,
                                pos.stop, pos.targets, pos.targets_hit, pos.highest_close, pos.expiry,
                                pos.structure)
            expired = pos.expiry is not None and pos.expiry <= day
            actions = decide(view, mkt, self.p, self.exits.premium_stop_pct, self.exits.close_at_dte)
            if expired and not any(a.kind == "close_all" for a in actions):
                actions = [replace(actions[0], kind="close_all", quantity=pos.quantity, reason="expiry: settled")
                           ] if actions else []
            for a in actions:
                if a.kind == "move_stop" and a.new_stop is not None:
                    pos.stop = a.new_stop
                    pos.targets_hit = a.targets_hit if a.targets_hit is not None else pos.targets_hit
                elif a.kind in ("close_all", "scale_out"):
                    if expired:  # settled at the expiry day's close: the contract does not exist tomorrow
                        self._close(pos, a.quantity, a.reason, quotes, day, source)
                        if a.targets_hit is not None:
                            pos.targets_hit = a.targets_hit
                    else:  # decided on the close of t: an order for the open of t+1
                        self.pending.append((pos, a.quantity, a.reason, a.targets_hit))
            pos.highest_close = max(pos.highest_close, close)

    def _manage_day(self, t: int, day: date) -> None:
        """The day's management: at the close of t here; on the intraday cycles in live timing."""
        if self.open:
            self._manage(t, day)

    def _fill_pending(self, t: int, day: date) -> None:
        """Yesterday's exit decisions at today's open quotes; one without a quote is dropped (the next
        close decides again, as a working order that expired would be re-sent)."""
        col = {s: j for j, s in enumerate(self.panel.symbols)}
        pending, self.pending = self.pending, []
        for pos, units, reason, targets_hit in pending:
            if pos not in self.open:
                continue
            j = col[pos.symbol]
            if self.stock:
                price = float(self.o[t, j])
                if not math.isfinite(price):
                    continue
                quotes, source = self._stock_quote(price), "bars"
            else:
                q, source = self.chains.quotes(pos.symbol, [leg.instrument for leg in pos.legs], day, OPEN_TIME)
                quotes = _quote_map(q)
            if self._close(pos, units, reason, quotes, day, source) and targets_hit is not None:
                pos.targets_hit = targets_hit

    def _close(self, pos: _Position, units: int, reason: str, quotes: dict[str, InstrumentQuote], day: date,
               source: str) -> bool:
        units = min(units, pos.quantity)
        if units <= 0:
            return False
        legs = _closing_legs(pos)
        if not self.stock and any(leg.instrument not in quotes for leg in legs):
            return False  # no quote for a leg today: try again tomorrow (as a working order would)
        priced = self._price(legs, self._leg_quotes(legs, quotes))
        if not self._exit_approved(pos, legs, units, priced.fill, day):
            return False
        self._book_exit(pos, legs, units, priced, reason, day, source)
        return True

    def _leg_quotes(self, legs: tuple[Leg, ...], quotes: dict[str, InstrumentQuote]) -> list[InstrumentQuote]:
        return [quotes["stock"]] if self.stock else [quotes[leg.instrument] for leg in legs]

    def _exit_approved(self, pos: _Position, legs: tuple[Leg, ...], units: int, limit: Decimal, day: date) -> bool:
        order = ProposedOrder(f"bt-close-{id(pos)}-{day}", pos.symbol, pos.sector, Intent.close, legs, units,
                              limit, Decimal(0), Decimal(0), position_quantity=pos.quantity)
        return evaluate(order, self._portfolio(self.cash, self.cash), self.risk).approved

    def _book_exit(self, pos: _Position, legs: tuple[Leg, ...], units: int, priced: Any, reason: str, day: date,
                   source: str, charged: list[Decimal] | None = None,
                   record: dict[str, Any] | None = None) -> dict[str, Any]:
        """Book ``units`` of an exit at ``priced``; returns its fill record. With ``record`` (an earlier part
        of the same exit order) the part is merged into it at the average price, as the broker's order
        reports one average fill price; ``charged``: commission already charged per leg of that order."""
        charges = self._charges(legs, units, opening=False, charged=charged)
        self._took(legs, units)
        proceeds = -priced.fill * pos.multiplier * units - charges  # selling a debit structure: fill < 0
        self.cash += proceeds
        self.fees += charges
        self.slippage += (priced.fill - priced.mid) * pos.multiplier * units
        self.traded += float(abs(priced.fill) * pos.multiplier * units)
        pos.cash_flow += proceeds
        pos.exit_value += -priced.fill * units
        pos.exit_units += units
        pos.quantity -= units
        intent = "close" if pos.quantity == 0 else "scale_out"
        if record is None:
            record = {"date": day.isoformat(), "intent": intent, "units": units, "price": float(-priced.fill),
                      "source": source, "reason": reason}
            pos.fills.append(record)
        else:
            total = record["units"] + units
            record["price"] = round((record["price"] * record["units"] + float(-priced.fill) * units) / total, 6)
            record["units"], record["intent"] = total, intent
        if pos.quantity == 0:
            pos.exit_reason, pos.exit_day = _exit_label(reason), day
            self.open.remove(pos)
            self.closed.append(pos)
        return record

    # ------------------------------------------------------------------ loop
    def run(self) -> tuple[np.ndarray, np.ndarray]:
        days = self.panel.n_days
        dates = self.panel.dates.astype("datetime64[D]").astype(object)
        equity = np.full(days, float(self.capital))
        exposure = np.zeros(days)
        day_start = self.capital
        for t in range(self.first_day, days):
            day = dates[t]
            if t > 0:
                if self.pending:
                    self._fill_pending(t, day)
                # entries before anything that reads the close of t (equity on the marks of t-1)
                self._enter(t, day, self._equity(), day_start)
                self._manage_day(t, day)
                # positions opened today are marked at today's close
                col = {s: j for j, s in enumerate(self.panel.symbols)}
                for pos in self.open:
                    if pos.entry_day == day:
                        j = col[pos.symbol]
                        m = self._mark_value(pos, self._marks(pos, day, t, j)[0])
                        pos.mark = m if m is not None else pos.entry_price
            eq = self._equity()
            equity[t] = float(eq)
            exposure[t] = float(sum(abs(p.mark or 0) * p.multiplier * p.quantity for p in self.open))
            day_start = eq
            if self.progress is not None:
                self.progress(t + 1 - self.first_day, days - self.first_day)
        return equity[self.first_day:], exposure[self.first_day:]

    def _equity(self) -> Decimal:
        return self.cash + sum(((p.mark if p.mark is not None else p.entry_price) * p.multiplier * p.quantity
                                for p in self.open), Decimal(0))

    def trades(self, last_day: date) -> pd.DataFrame:
        rows = []
        for pos in self.closed + self.open:
            open_units = pos.quantity
            mark = pos.mark if pos.mark is not None else pos.entry_price
            exit_value = pos.exit_value + mark * open_units
            exit_price = exit_value / pos.initial if pos.initial else Decimal(0)
            pnl = pos.cash_flow + mark * pos.multiplier * open_units
            rows.append({
                "symbol": pos.symbol, "entry_date": pd.Timestamp(pos.entry_day), "entry_price": float(pos.entry_price),
                "exit_date": pd.Timestamp(pos.exit_day or last_day), "exit_price": float(exit_price),
                "quantity": pos.initial, "exit_reason": pos.exit_reason if open_units == 0 else "open",
                "entry_reason": f"{pos.structure}: atr_matrix entry signal", "stop": pos.stop,
                "risk": float(pos.risk_per_unit * pos.initial), "pnl": float(pnl), "fill_source": pos.fill_source,
                "detail": {"structure": pos.structure, "legs": [leg.instrument for leg in pos.legs],
                           "sides": [leg.side.value for leg in pos.legs], "underlying_entry": pos.underlying_entry,
                           "expiry": None if pos.expiry is None else pos.expiry.isoformat(), "fills": pos.fills},
            })
        cols = ["symbol", "entry_date", "entry_price", "exit_date", "exit_price", "quantity", "exit_reason",
                "entry_reason", "stop", "risk", "pnl", "fill_source", "detail"]
        return pd.DataFrame(rows, columns=cols).sort_values(["entry_date", "symbol"], kind="stable").reset_index(
            drop=True)


def _chain_source(spec: Any, panel: Panel, eod_dir: Path | None) -> tuple[ChainSource, Any]:
    market = None
    if spec.source == "sim":
        from engine.data.sim import SimMarket

        market = SimMarket(seed=spec.seed, n_symbols=max(spec.symbols or panel.n_symbols, panel.n_symbols))
        fallback: ChainSource = SimChains(market)
    else:
        fallback = SurfaceChains(panel)
    eod = EodChains.from_dir(eod_dir) if eod_dir is not None and Path(eod_dir).is_dir() else None
    return LayeredChains(eod, fallback), market


def run_options_backtest(spec: Any, panel: Panel, first_day: int, *, progress: Callable[[int, int], None] | None = None,
                         eod_dir: Path | None = None, chains: ChainSource | None = None,
                         timing: str = "fast", cycle_minutes: int = 5) -> Any:
    """The ATR Matrix backtest (options or stock mode) on ``panel`` from ``first_day``.

    ``timing="fast"`` (default): entries at 10:00, management at the close with exits at the next open.
    ``timing="live"``: the scheduler's day (``engine.backtest.live_timing``), for paper validation."""
    from engine.backtest.runner import BacktestResult

    if spec.strategy != "atr_matrix":
        raise ValueError(f"strategy {spec.strategy!r} has no {spec.mode} mode here; ref_sma_atr runs in stock mode")
    source, market = _chain_source(spec, panel, eod_dir)
    if timing not in ("fast", "live"):
        raise ValueError(f"timing must be 'fast' or 'live', got {timing!r}")
    if timing == "live":
        from engine.backtest.live_timing import LiveTimingRun

        run: _Run = LiveTimingRun(spec, panel.astype(np.float64), first_day, chains or source, market, progress,
                                  cycle_minutes=cycle_minutes)
    else:
        run = _Run(spec, panel.astype(np.float64), first_day, chains or source, market, progress)
    equity, exposure = run.run()
    dates = panel.dates[first_day:]
    trades = run.trades(dates[-1].astype(object))
    metrics = compute_metrics(dates, equity, trades, exposure, run.traded, float(run.fees), float(run.slippage))
    metrics["fills_by_source"] = trades["fill_source"].value_counts().to_dict() if len(trades) else {}
    return BacktestResult(spec=spec, trades=trades, dates=dates, equity=equity, gross_exposure=exposure,
                          metrics=metrics, data_start=panel.dates[0].astype(object),
                          data_end=panel.dates[-1].astype(object), n_symbols=panel.n_symbols,
                          bars=int((~np.isnan(panel.close)).sum()), extra={"sim_surface": SIM})
