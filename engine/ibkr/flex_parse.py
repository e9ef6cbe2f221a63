"""Flex Query XML -> plain records, without trusting the statement to follow any one schema version.

The ``ibflex`` package raises on a section or attribute it does not know, and IBKR adds both without
notice; one unknown element must not cost the trader a year of history. So this parser reads the XML
directly: the six record types the lot engine and the ledger need are parsed into ``FlexRecord``; sections
we know but do not use are skipped silently; anything else (an unknown section, an unknown attribute on a
parsed record) is skipped with a warning that names it.

Dates: real statements use both ``2025-01-13;13:30:47`` / ``2025-01-13`` and ``20250101;133047`` /
``20250101`` (plus ``, `` or a space as the separator, and times with or without colons).
"""

from __future__ import annotations

import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")  # Flex times are the account's report time zone, US/Eastern by default

# Record tags we parse, by the section that holds them ("OptionEAE" is both section and row).
RECORD_TAGS = ("Trade", "Lot", "OpenPosition", "CashTransaction", "CorporateAction", "OptionEAE")
RECORD_SECTIONS = {"Trades": ("Trade", "Lot"), "OpenPositions": ("OpenPosition",),
                   "CashTransactions": ("CashTransaction",), "CorporateActions": ("CorporateAction",),
                   "OptionEAE": ("OptionEAE",)}
# Summary rows inside <Trades> that repeat what the executions say.
IGNORED_IN_TRADES = frozenset({"Order", "SymbolSummary", "AssetSummary", "WashSale"})
# Sections of IBKR's Flex reference that carry nothing the ledger or the lot engine uses.
KNOWN_IGNORED_SECTIONS = frozenset({
    "AccountInformation", "EquitySummaryInBase", "ChangeInNAV", "CashReport", "TradeConfirms", "FxTransactions",
    "ChangeInDividendAccruals", "OpenDividendAccruals", "InterestAccruals", "Transfers", "ComplexPositions",
    "NetStockPositionSummary", "FxPositions", "TradeTransfers", "PriorPeriodPositions", "TransactionTaxes",
    "FIFOPerformanceSummaryInBase", "MTMPerformanceSummaryInBase", "FdicInsuredDepositsByBank", "StmtFunds",
    "CommissionCredits", "ChangeInPositionValues", "HKIPOOpenSubscriptions", "PendingExcercises",
    "UnsettledTransfers", "UnbookedTrades", "RoutingCommissions", "UnbundledCommissionDetails",
    "IBGNoteTransactions", "HKIPOSubscriptionActivity", "StockGrantActivities", "DebitCardActivities",
    "SalesTaxes", "CFDCharges", "TierInterestDetails", "HardToBorrowDetails", "SLBOpenContracts",
    "SLBActivities", "SLBFees", "SecuritiesInfo", "ConversionRates", "MTMPerformanceSummaryUnderlying",
    "FIFOPerformanceSummaryUnderlying", "EquitySummaryByReportDateInBase", "CashReportCurrency",
    "InterestAccrualsCurrency", "StatementOfFundsLine", "ChangeInDividendAccrual", "OpenDividendAccrual",
    "ChangeInPositionValue", "ConversionRate", "SecurityInfo", "FxLot", "FxTransaction", "Transfer",
    "TransferLot", "TradeTransfer", "TransactionTax", "SalesTax", "SLBActivity", "DebitCardActivity",
    "AssetSummary", "SymbolSummary", "Order", "TradeConfirm", "FxPosition", "NetStockPosition",
    "PriorPeriodPosition", "SLBOpenContract", "SLBFee", "HardToBorrowDetail",
    "UnbundledCommissionDetail", "RoutingCommission", "CommissionCredit", "TierInterestDetail",
    "IncentiveCouponAccrualDetails", "ModelInformation", "MTDYTDPerformanceSummary",
    "MTDYTDPerformanceSummaryUnderlying", "SoftDollarActivities", "ClientFees", "ClientFeesDetail",
    "TransferLots",
})
# Attributes of IBKR's Flex reference for the six parsed record types (anything else warns once).
KNOWN_ATTRIBUTES = frozenset(
    """
accountId accruedInt acctAlias actionDescription actionID actionType amount assetCategory availableForTradingDate
brokerageOrderID buySell capitalGainsPnl changeInPrice changeInQuantity clearingFirmID clientReference closePrice
code commisionsAndTax commodityType conid cost costBasis costBasisMoney costBasisPrice currency cusip date
dateTime deliveryType description exDate exchOrderId exchange execID expiry extExecID fifoPnlRealized
fifoPnlUnrealized figi fineness fxPnl fxRateToBase holdingPeriodDateTime ibCommission ibCommissionCurrency
ibExecID ibOrderID initialInvestment isAPIOrder isin issuer issuerCountryCode levelOfDetail listingExchange
markPrice model mtmPnl multiplier netCash notes openCloseIndicator openDateTime openPrice orderPlacementTime
orderReference orderTime orderType origOrderID origTradeDate origTradeID origTradePrice origTransactionID
originatingOrderID originatingTransactionID percentOfNAV position positionActionID positionValue
principalAdjustFactor proceeds putCall quantity realizedPnl relatedTradeID relatedTransactionID reportDate rtn
securityID securityIDType serialNumber settleDate settleDateTarget side strike subCategory symbol taxes
tradeDate tradeID tradeMoney tradePrice tradeTime traderID transactionID transactionType type underlyingConid
underlyingListingExchange underlyingSecurityID underlyingSymbol value vestingDate volatilityOrderLink weight
whenRealized whenReopened accruedInterest bonusProceeds sedol subAccountId strikeCurrency
""".split()  # noqa: SIM905 (a word list reads better than 120 quoted strings)
)

_DATE_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TIME = re.compile(r"^(\d{2}):?(\d{2}):?(\d{2})$")


class FlexFormatError(ValueError):
    """The file is not a Flex statement at all (not XML, or no statement in it)."""


def parse_flex_date(value: str | None) -> date | None:
    """``2025-01-13``, ``20250113``, or the date part of a date-time; None for '' and 'MULTI'."""
    if value is None:
        return None
    text = value.strip()
    if not text or text.upper() == "MULTI":
        return None
    head = re.split(r"[;, ]", text, maxsplit=1)[0]
    m = _DATE_ISO.match(head) or _DATE_COMPACT.match(head)
    if m is None:
        raise ValueError(f"not a Flex date: {value!r} (expected YYYY-MM-DD or YYYYMMDD)")
    return date(int(m[1]), int(m[2]), int(m[3]))


def parse_flex_datetime(value: str | None, default_time: tuple[int, int, int] = (0, 0, 0)) -> datetime | None:
    """``2025-01-13;13:30:47``, ``20250101;133047``, ``2013-03-05, 19:45:00``, ``20250101 133047`` or a bare date,
    read as US/Eastern and returned in UTC."""
    day = parse_flex_date(value)
    if day is None:
        return None
    assert value is not None
    parts = [p for p in re.split(r"[;, ]+", value.strip()) if p]
    hh, mm, ss = default_time
    if len(parts) > 1:
        t = _TIME.match(parts[1])
        if t is None:
            raise ValueError(f"not a Flex date-time: {value!r} (bad time {parts[1]!r})")
        hh, mm, ss = int(t[1]), int(t[2]), int(t[3])
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=NEW_YORK).astimezone(UTC)


def to_decimal(value: str | None, name: str = "value") -> Decimal | None:
    """Flex numbers, including thousands separators (``21,792.73``); None for ''."""
    if value is None:
        return None
    text = value.strip().replace(",", "")
    if text in ("", "--", "N/A"):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name}={value!r} is not a number") from None


@dataclass(frozen=True)
class FlexRecord:
    """One parsed row: its tag, the statement's account, its stable key and every attribute as received."""

    kind: str  # Trade | Lot | OpenPosition | CashTransaction | CorporateAction | OptionEAE
    account: str
    key: str  # stable across re-downloads: IBKR's id where it has one, else a content hash
    attrs: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.attrs.get(name, default) or default

    def dec(self, name: str) -> Decimal | None:
        return to_decimal(self.attrs.get(name), name)

    @property
    def when(self) -> datetime | None:
        """The event time: dateTime, else tradeDate+tradeTime, else date/reportDate at noon-free midnight."""
        for name in ("dateTime",):
            if self.attrs.get(name):
                return parse_flex_datetime(self.attrs[name])
        if self.attrs.get("tradeDate"):
            stamp = self.attrs["tradeDate"] + (";" + self.attrs["tradeTime"] if self.attrs.get("tradeTime") else "")
            return parse_flex_datetime(stamp)
        for name in ("date", "reportDate", "settleDate"):
            if self.attrs.get(name):
                return parse_flex_datetime(self.attrs[name])
        return None

    @property
    def day(self) -> date | None:
        for name in ("tradeDate", "dateTime", "date", "reportDate"):
            if self.attrs.get(name):
                return parse_flex_date(self.attrs[name])
        return None


@dataclass
class FlexStatementData:
    records: list[FlexRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)
    skipped: Counter[str] = field(default_factory=Counter)  # known sections not used, by tag

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.records))

    def of(self, kind: str) -> list[FlexRecord]:
        return [r for r in self.records if r.kind == kind]


# IBKR's own ids, most specific first. A Lot row shares its closing Trade's tradeID, so Lots key on
# their open time as well.
_ID_FIELDS = ("transactionID", "tradeID", "execID", "ibExecID", "actionID")
# Content that identifies a row when IBKR gives it no id (real statements often omit every id field).
_HASH_FIELDS = ("assetCategory", "symbol", "conid", "dateTime", "tradeDate", "tradeTime", "date", "reportDate",
                "buySell", "quantity", "tradePrice", "proceeds", "ibCommission", "amount", "type", "description",
                "transactionType", "position", "openDateTime", "currency", "code")
# A cash transaction's own identity. Its actionID names the corporate event, not the row: a dividend, its
# withholding, and a later statement's reversals and re-charges of that withholding all share it. So the
# key is the row's content (ids included when present), stable across overlapping statements.
_CASH_FIELDS = ("type", "dateTime", "date", "reportDate", "settleDate", "amount", "currency", "description",
                "symbol", "conid", "actionID", "transactionID")


def _digest(account: str, attrs: dict[str, str], fields: tuple[str, ...]) -> str:
    payload = "|".join(f"{n}={attrs.get(n, '')}" for n in fields)
    return hashlib.sha256(f"{account}|{payload}".encode()).hexdigest()[:24]


def cash_content_key(account: str, attrs: dict[str, str]) -> str:
    """The base key of a CashTransaction row (before the per-statement counter of identical rows)."""
    return "CashTransaction:c:" + _digest(account, attrs, _CASH_FIELDS)


def _record_key(kind: str, account: str, attrs: dict[str, str], seen: Counter[str]) -> str:
    if kind == "CashTransaction":
        base = cash_content_key(account, attrs)
    else:
        for name in _ID_FIELDS:
            value = (attrs.get(name) or "").strip()
            if value and value not in ("0", "N/A"):
                if kind == "Lot":
                    value += "@" + (attrs.get("openDateTime") or attrs.get("tradeDate") or "") + ":" + (
                        attrs.get("quantity") or "")
                if kind == "CorporateAction" and name == "actionID":
                    value += ":" + (attrs.get("symbol") or "") + ":" + (attrs.get("dateTime") or "")
                base = f"{kind}:{name}:{value}"
                break
        else:
            base = f"{kind}:h:" + _digest(account, attrs, _HASH_FIELDS)
    if kind == "OpenPosition":
        # A position row is a snapshot: the same conid on each report date is a different record.
        base += ":" + (attrs.get("reportDate") or "") + ":" + (attrs.get("conid") or attrs.get("symbol") or "")
    # Identical rows in one statement (two fills at the same price and fee, no ids) stay distinct and
    # keep the same keys on every re-import of the same or an overlapping statement.
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}#{seen[base]}"


def parse_flex(source: str | bytes | Path) -> FlexStatementData:
    """Parse a Flex statement (a whole FlexQueryResponse, one FlexStatement, or one record fragment)."""
    try:
        root = ET.parse(source).getroot() if isinstance(source, Path) else ET.fromstring(source)
    except ET.ParseError as exc:
        raise FlexFormatError(f"not Flex XML ({source if isinstance(source, Path) else 'input'}): {exc}") from None
    out = FlexStatementData()
    warned_attrs: set[tuple[str, str]] = set()
    seen: Counter[str] = Counter()
    if root.tag == "FlexQueryResponse":
        containers = root.findall("FlexStatements")
        statements = [s for c in containers for s in c.findall("FlexStatement")] + root.findall("FlexStatement")
        for child in root:
            if child.tag not in ("FlexStatements", "FlexStatement"):
                _section(child, "", out, warned_attrs, seen)
    elif root.tag == "FlexStatement":
        statements = [root]
    elif root.tag in RECORD_TAGS or root.tag in RECORD_SECTIONS or root.tag in KNOWN_IGNORED_SECTIONS:
        _section(root, root.get("accountId", ""), out, warned_attrs, seen)
        return out
    else:
        raise FlexFormatError(f"not a Flex statement: root element <{root.tag}>")
    for statement in statements:
        account = statement.get("accountId", "")
        if account:
            out.accounts.add(account)
        for section in statement:
            _section(section, account, out, warned_attrs, seen)
    return out


def _section(el: ET.Element, account: str, out: FlexStatementData, warned: set[tuple[str, str]],
             seen: Counter[str]) -> None:
    tag = el.tag
    if tag in RECORD_TAGS and el.attrib:
        _record(el, account, out, warned, seen)
        return
    if tag in RECORD_SECTIONS:
        for row in el:
            if row.tag in RECORD_SECTIONS[tag]:
                _record(row, account, out, warned, seen)
            elif tag == "Trades" and row.tag in IGNORED_IN_TRADES:
                out.skipped[row.tag] += 1
            else:
                _warn(out, f"unknown <{row.tag}> in <{tag}> skipped")
        return
    if tag in KNOWN_IGNORED_SECTIONS:
        out.skipped[tag] += 1
        return
    _warn(out, f"unknown section <{tag}> skipped")


def _record(el: ET.Element, account: str, out: FlexStatementData, warned: set[tuple[str, str]],
            seen: Counter[str]) -> None:
    attrs = dict(el.attrib)
    for name in list(attrs):
        if name not in KNOWN_ATTRIBUTES:
            if (el.tag, name) not in warned:
                warned.add((el.tag, name))
                _warn(out, f"unknown attribute {name!r} on <{el.tag}> skipped")
            del attrs[name]
    acct = attrs.get("accountId") or account
    if acct:
        out.accounts.add(acct)
    out.records.append(FlexRecord(el.tag, acct, _record_key(el.tag, acct, attrs, seen), attrs))


def _warn(out: FlexStatementData, message: str) -> None:
    log.warning("flex: %s", message)
    out.warnings.append(message)
