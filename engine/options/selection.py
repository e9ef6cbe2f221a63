"""Turn a long signal into option structures, contract filters per DESIGN §5, with every rejection explained.

Which structures (``select_candidates``):
- zone in ``params.directional_zones`` ('entry'): a long call; with IV rank >= 50 a call debit spread
  instead; with IV rank >= 70 a bull put credit spread first (preferred; short put at or below the
  signal's stop), the call debit spread after it;
- zone in ``params.condor_zones`` ('extended') with IV rank >= 70: an iron condor, short legs |delta|
  0.15-0.25 (``condor_delta_*``), wings 0.05-0.20 further out;
- anything else: nothing (the notes say why).
- ``kinds=["covered_call"]`` (the pre-market's covered-call step, for held shares: ``options.covered``):
  one short call at |delta| 0.25-0.35 (``covered_delta_*``) expiring in 30-45 days (the target window),
  paired with 100 shares at the signal's ``close`` in the structure (the shares are already held).

Every leg must pass: a clean quote (``quote_flag == 'ok'``), dte in [21, 60], no earnings date between the
quote date and expiry, open interest >= 500, volume >= 50, bid-ask spread <= 10% of mid, and |delta| in
its role's band (long 0.55-0.70, short 0.20-0.35, wing 0.05-0.20).  Delta is the provider's when it has
one, else ours (``calc_delta`` from ``chain.enrich``).

Ties are broken deterministically: closest |delta| to the role's target, then dte distance to the
30-45 target window, then the tighter spread (% of mid), then strike and symbol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from engine.options.chain import quote_flags
from engine.options.structures import (
    Structure,
    bull_put_credit_spread,
    call_debit_spread,
    covered_call,
    iron_condor,
    long_call,
    stock_leg,
)

__all__ = ["ROLES", "STANDARD_DELIVERABLE", "OptionParams", "Selection", "planned_kinds", "select_candidates"]

STANDARD_DELIVERABLE = 100  # shares per standard US equity option contract


@dataclass(frozen=True)
class OptionParams:
    dte_min: int = 21
    dte_max: int = 60
    dte_target_min: int = 30
    dte_target_max: int = 45
    long_delta_min: float = 0.55
    long_delta_max: float = 0.70
    long_delta_target: float = 0.60
    short_delta_min: float = 0.20
    short_delta_max: float = 0.35
    short_delta_target: float = 0.30
    wing_delta_min: float = 0.05      # the bought protection of credit spreads and condors
    wing_delta_max: float = 0.20
    wing_delta_target: float = 0.10
    condor_delta_min: float = 0.15    # DESIGN §5: the iron condor's short legs, a neutral view
    condor_delta_max: float = 0.25
    condor_delta_target: float = 0.20
    covered_delta_min: float = 0.25   # DESIGN §5: the call written on held shares
    covered_delta_max: float = 0.35
    covered_delta_target: float = 0.30
    min_open_interest: float = 500
    min_volume: float = 50
    max_spread_pct: float = 10.0      # (ask - bid) / mid * 100
    iv_rank_debit_spread: float = 50.0
    iv_rank_credit_spread: float = 70.0
    iv_rank_iron_condor: float = 70.0
    credit_short_at_or_below_stop: bool = True
    directional_zones: tuple[str, ...] = ("entry",)
    condor_zones: tuple[str, ...] = ("extended",)
    # Adjusted contracts (after a split or merger: root AAPL1, 150 shares, or shares plus cash) are
    # excluded unless allowed; allowed ones are priced and sized with their own deliverable.
    allow_nonstandard_deliverables: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.dte_min <= self.dte_target_min <= self.dte_target_max <= self.dte_max):
            raise ValueError("need 0 <= dte_min <= dte_target_min <= dte_target_max <= dte_max")
        for name in ("long", "short", "wing", "condor", "covered"):
            lo, hi, tgt = (getattr(self, f"{name}_delta_{k}") for k in ("min", "max", "target"))
            if not (0 <= lo <= tgt <= hi <= 1):
                raise ValueError(f"need 0 <= {name}_delta_min <= target <= max <= 1")
        if self.max_spread_pct <= 0:
            raise ValueError("max_spread_pct must be positive")

    def band(self, role: str) -> tuple[float, float, float]:
        kind = role.split("_")[0]  # long_call -> long, short_put -> short, wing_call -> wing, condor_put -> condor
        return (getattr(self, f"{kind}_delta_min"), getattr(self, f"{kind}_delta_max"),
                getattr(self, f"{kind}_delta_target"))


@dataclass(frozen=True)
class Selection:
    symbol: str
    zone: str | None
    iv_rank: float | None
    structures: tuple[Structure, ...]
    rejected: pd.DataFrame          # occ_symbol, reason: every chain contract not used by a structure
    eligible: pd.DataFrame          # occ_symbol, role, rank, abs_delta, dte, spread_pct: passed all filters
    notes: tuple[str, ...] = field(default=())

    @property
    def chosen(self) -> Structure | None:
        return self.structures[0] if self.structures else None


ROLES = {
    "long_call": ("long_call",),
    "call_debit_spread": ("long_call", "short_call"),
    "bull_put_credit_spread": ("short_put", "wing_put"),
    "iron_condor": ("wing_put", "condor_put", "condor_call", "wing_call"),
    "covered_call": ("covered_call",),
}


def _get(signal: Any, key: str, default: Any = None) -> Any:
    if isinstance(signal, Mapping):
        return signal.get(key, default)
    return getattr(signal, key, default)


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def planned_kinds(zone: str | None, iv_rank: float | None, params: OptionParams | None = None) -> list[str]:
    """The structures ``select_candidates`` would try for this zone and IV rank (the same rule)."""
    return _plan(zone, iv_rank, params or OptionParams())[0]


def _plan(zone: str | None, iv_rank: float | None, p: OptionParams) -> tuple[list[str], list[str]]:
    ivr = float(iv_rank) if _finite(iv_rank) else None
    shown = "unknown" if ivr is None else f"{ivr:.1f}"
    if zone in p.directional_zones:
        if ivr is None or ivr < p.iv_rank_debit_spread:
            why = "unknown" if ivr is None else f"{shown} < {p.iv_rank_debit_spread:g}"
            return ["long_call"], [f"iv rank {why}: long call"]
        if ivr >= p.iv_rank_credit_spread:
            # Rich premium: sell it (DESIGN §5 prefers the credit spread); the debit spread if none qualifies.
            return ["bull_put_credit_spread", "call_debit_spread"], [
                f"iv rank {shown} >= {p.iv_rank_credit_spread:g}: bull put credit spread preferred "
                "(sells rich premium), call debit spread if no put spread qualifies"]
        return ["call_debit_spread"], [
            f"iv rank {shown} in [{p.iv_rank_debit_spread:g}, {p.iv_rank_credit_spread:g}): call debit spread "
            "(a short call pays part of the rich premium)"]
    if zone in p.condor_zones:
        if ivr is not None and ivr >= p.iv_rank_iron_condor:
            return ["iron_condor"], [f"zone {zone}, iv rank {shown} >= {p.iv_rank_iron_condor:g}: iron condor "
                                     "(extended: no new long; a neutral view sells the rich premium)"]
        return [], [f"zone {zone}: iron condor needs iv rank >= {p.iv_rank_iron_condor:g} (have {shown})"]
    return [], [f"zone {zone!r}: no option structure for this zone"]


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)


def _prepare(chain: pd.DataFrame) -> pd.DataFrame:
    df = chain.drop_duplicates("occ_symbol", keep="first").reset_index(drop=True).copy()
    if "quote_flag" not in df:
        df["quote_flag"] = quote_flags(df["bid"], df["ask"])
    bid, ask = _column(df, "bid"), _column(df, "ask")
    mid = _column(df, "mid")
    mid = np.where(np.isfinite(mid), mid, (bid + ask) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["_spread_pct"] = np.where(mid > 0, (ask - bid) / mid * 100.0, np.inf)
    delta = _column(df, "delta")
    df["_abs_delta"] = np.abs(np.where(np.isfinite(delta), delta, _column(df, "calc_delta")))
    df["_dte"] = _column(df, "dte")
    df["_deliverable"] = _column(df, "shares_per_contract")
    df["_root"] = df["occ_symbol"].astype(str).str[:6].str.strip()  # padded OCC: the root is 6 wide
    return df


def _dte_distance(dte: np.ndarray, p: OptionParams) -> np.ndarray:
    return np.maximum(np.maximum(p.dte_target_min - dte, dte - p.dte_target_max), 0.0)


def _base_reasons(df: pd.DataFrame, p: OptionParams, symbol: str, earnings_date: date | None,
                  rights_used: set[str], kinds: list[str], zone: str | None) -> np.ndarray:
    """First failing contract-level rule per row ('' where all pass)."""
    n = len(df)
    reason = np.full(n, "", dtype=object)

    def put(mask: np.ndarray, texts) -> None:
        m = mask & (reason == "")
        if m.any():
            reason[m] = texts[m] if isinstance(texts, np.ndarray) else texts

    if "underlying" in df:
        put((df["underlying"] != symbol).to_numpy(), f"underlying is not {symbol}")
    if not p.allow_nonstandard_deliverables and n:
        spc = df["_deliverable"].to_numpy()
        root = df["_root"].to_numpy()
        put(np.isfinite(spc) & (spc != STANDARD_DELIVERABLE),
            np.array([f"non-standard deliverable: {v:g} shares per contract" for v in spc], dtype=object))
        put(root != symbol, np.array([f"non-standard deliverable: adjusted contract root {r}" for r in root],
                                     dtype=object))
    right = df["right"].to_numpy()
    if not kinds:
        put(np.ones(n, dtype=bool), f"no structure for zone {zone!r}")
    for r_, name in (("C", "call"), ("P", "put")):
        if r_ not in rights_used:
            put(right == r_, f"{name} not used by {', '.join(kinds)}")
    flags = df["quote_flag"].to_numpy().astype(str)
    put(flags != "ok", np.char.add("quote ", flags).astype(object))
    dte = df["_dte"].to_numpy()
    put(~np.isfinite(dte), "dte unknown")
    if n:
        put(dte < p.dte_min, np.array([f"dte {v:g} < {p.dte_min}" for v in dte], dtype=object))
        put(dte > p.dte_max, np.array([f"dte {v:g} > {p.dte_max}" for v in dte], dtype=object))
    if earnings_date is not None and n:
        expiry = df["expiry"].to_numpy()
        crosses = np.array([
            e is not None and earnings_date <= e
            and (not np.isfinite(d) or earnings_date >= e - timedelta(days=int(d)))
            for e, d in zip(expiry, dte, strict=True)
        ])
        put(crosses, np.array([f"expiry {e} after earnings {earnings_date}" for e in expiry], dtype=object))
    for col, label, minimum in (("open_interest", "open_interest", p.min_open_interest),
                                ("volume", "volume", p.min_volume)):
        v = _column(df, col)
        put(~np.isfinite(v), f"{label} unknown")
        if n:
            put(v < minimum, np.array([f"{label} {x:g} < {minimum:g}" for x in v], dtype=object))
    sp = df["_spread_pct"].to_numpy()
    if n:
        put(sp > p.max_spread_pct,
            np.array([f"spread {v:.1f}% of mid > {p.max_spread_pct:g}%" for v in sp], dtype=object))
    return reason


def _rank_key(df: pd.DataFrame, idx: np.ndarray, target: float, p: OptionParams) -> np.ndarray:
    """Indices ``idx`` sorted by (|delta - target|, dte distance, spread %, strike, symbol)."""
    if idx.size == 0:
        return idx
    sub = df.iloc[idx]
    order = np.lexsort((
        sub["occ_symbol"].to_numpy().astype(str),
        pd.to_numeric(sub["strike"]).to_numpy(),
        sub["_spread_pct"].to_numpy(),
        _dte_distance(sub["_dte"].to_numpy(), p),
        np.abs(sub["_abs_delta"].to_numpy() - target),
    ))
    return idx[order]


def select_candidates(signal: Any, chain: pd.DataFrame, params: OptionParams | None = None,
                      iv_rank: float | None = None, earnings_date: date | None = None,
                      kinds: Sequence[str] | None = None) -> Selection:
    """Choose structures for ``signal`` (symbol, close, atr, stop, targets, zone) from ``chain``.

    ``chain`` is a normalised chain (``chain.CHAIN_COLUMNS``), ideally passed through ``chain.enrich``
    so that contracts without provider greeks have ``calc_delta``.
    """
    p = params or OptionParams()
    symbol = str(_get(signal, "symbol"))
    zone = _get(signal, "zone")
    stop = _get(signal, "stop")
    stop = float(stop) if _finite(stop) else math.nan
    if kinds is None:
        kinds, notes = _plan(zone, iv_rank, p)
    else:  # the caller asks for these structures (e.g. a spread when one long call is over the risk budget)
        unknown = [k for k in kinds if k not in ROLES]
        if unknown:
            raise ValueError(f"unknown structure kinds {unknown}; known: {sorted(ROLES)}")
        kinds, notes = list(kinds), [f"requested: {', '.join(kinds)}"]
    df = _prepare(chain)
    roles_needed = sorted({r for k in kinds for r in ROLES[k]})
    rights_used = {"C" if r.endswith("call") else "P" for r in roles_needed}
    reason = _base_reasons(df, p, symbol, earnings_date, rights_used, kinds, zone)

    # role eligibility (delta bands, and the credit spread's short put at or below the stop)
    absd = df["_abs_delta"].to_numpy()
    right = df["right"].to_numpy()
    strike = pd.to_numeric(df["strike"]).to_numpy(dtype=np.float64) if len(df) else np.array([])
    passed = reason == ""
    role_ok: dict[str, np.ndarray] = {}
    for role in roles_needed:
        lo, hi, _ = p.band(role)
        ok = passed & (right == ("C" if role.endswith("call") else "P")) & (absd >= lo) & (absd <= hi)
        if (role == "short_put" and "bull_put_credit_spread" in kinds
                and p.credit_short_at_or_below_stop and np.isfinite(stop)):
            ok &= strike <= stop
        if role == "covered_call":  # DESIGN §5: a 30-45 day call, the target window itself
            dte = df["_dte"].to_numpy()
            ok &= (dte >= p.dte_target_min) & (dte <= p.dte_target_max)
        role_ok[role] = ok
    for i in np.flatnonzero(passed):
        if any(role_ok[r][i] for r in roles_needed):
            continue
        if not np.isfinite(absd[i]):
            reason[i] = "delta unknown"
            continue
        mine = [r for r in roles_needed if r.endswith("call" if right[i] == "C" else "put")]
        bands = []
        for r in mine:
            lo, hi, _ = p.band(r)
            bands.append(f"{r.split('_')[0]} {lo:.2f}-{hi:.2f}")
            if r == "short_put" and lo <= absd[i] <= hi and strike[i] > stop:
                reason[i] = f"strike {strike[i]:g} above stop {stop:g} (short put of the credit spread)"
            dte_i = float(df.at[i, "_dte"])
            if r == "covered_call" and lo <= absd[i] <= hi and not p.dte_target_min <= dte_i <= p.dte_target_max:
                reason[i] = (f"dte {dte_i:g} outside {p.dte_target_min}-{p.dte_target_max} "
                             "(the covered call's window)")
        if not reason[i]:
            reason[i] = f"|delta| {absd[i]:.2f} outside {' / '.join(bands)}"

    ranked = {role: _rank_key(df, np.flatnonzero(role_ok[role]), p.band(role)[2], p) for role in roles_needed}
    structures: list[Structure] = []
    used: set[int] = set()
    expiry = df["expiry"].to_numpy()
    row = lambda i: df.iloc[i].to_dict()  # noqa: E731

    for kind in kinds:
        built = None
        if kind == "long_call":
            if ranked["long_call"].size:
                i = ranked["long_call"][0]
                built, legs = long_call(row(i)), [i]
        elif kind == "covered_call":
            close = _get(signal, "close")
            if ranked["covered_call"].size and _finite(close):
                i = ranked["covered_call"][0]
                built, legs = covered_call(stock_leg(symbol, float(close)), row(i), symbol=symbol), [i]
        elif kind == "call_debit_spread":
            for i in ranked["long_call"]:
                shorts = [j for j in ranked["short_call"] if expiry[j] == expiry[i] and strike[j] > strike[i]]
                if shorts:
                    built, legs = call_debit_spread(row(i), row(shorts[0])), [i, shorts[0]]
                    break
        elif kind == "bull_put_credit_spread":
            for i in ranked["short_put"]:
                wings = [j for j in ranked["wing_put"] if expiry[j] == expiry[i] and strike[j] < strike[i]]
                if wings:
                    built, legs = bull_put_credit_spread(row(i), row(wings[0])), [i, wings[0]]
                    break
        elif kind == "iron_condor":
            dte_of = dict(zip(expiry, df["_dte"].to_numpy(), strict=True))
            common = {expiry[i] for i in ranked["condor_put"]} & {expiry[i] for i in ranked["condor_call"]}
            exps = sorted(common, key=lambda e: (float(_dte_distance(np.array([dte_of[e]]), p)[0]), e))
            for e in exps:
                sp = [i for i in ranked["condor_put"] if expiry[i] == e]
                sc = [i for i in ranked["condor_call"] if expiry[i] == e and strike[i] >= strike[sp[0]]]
                if not sc:
                    continue
                wp = [i for i in ranked["wing_put"] if expiry[i] == e and strike[i] < strike[sp[0]]]
                wc = [i for i in ranked["wing_call"] if expiry[i] == e and strike[i] > strike[sc[0]]]
                if wp and wc:
                    legs = [wp[0], sp[0], sc[0], wc[0]]
                    built = iron_condor(*(row(i) for i in legs))
                    break
        if built is not None:
            spc = df["_deliverable"].to_numpy()[list(legs)]
            known = spc[np.isfinite(spc)]
            if known.size and len(set(known.tolist())) > 1:
                notes.append(f"{kind}: legs deliver different share counts {sorted(set(known.tolist()))}")
                continue
            if known.size and known[0] != STANDARD_DELIVERABLE:  # allowed adjusted contract: its legs carry it
                built = replace(built, notes=(*built.notes, f"deliverable {known[0]:g} shares per contract"))
        if built is None:
            need = " + ".join(ROLES[kind])
            notes.append(f"{kind}: no eligible combination of {need} in one expiry")
            continue
        structures.append(built)
        used.update(int(i) for i in legs)

    eligible_rows = []
    for role in roles_needed:
        for rank, i in enumerate(ranked[role], start=1):
            eligible_rows.append((df.at[i, "occ_symbol"], role, rank, absd[i], df.at[i, "_dte"],
                                  df.at[i, "_spread_pct"]))
            if i not in used and reason[i] == "":
                reason[i] = f"not chosen: {role} ranked {rank} of {ranked[role].size}"
    eligible = pd.DataFrame(eligible_rows, columns=["occ_symbol", "role", "rank", "abs_delta", "dte", "spread_pct"])
    keep = np.array([i not in used for i in range(len(df))], dtype=bool)
    rejected = pd.DataFrame({"occ_symbol": df["occ_symbol"].to_numpy()[keep], "reason": reason[keep]})
    return Selection(symbol=symbol, zone=zone, iv_rank=float(iv_rank) if _finite(iv_rank) else None,
                     structures=tuple(structures), rejected=rejected.reset_index(drop=True),
                     eligible=eligible, notes=tuple(notes))
