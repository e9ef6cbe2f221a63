"""A local tastytrade API for tests, served through ``httpx2.MockTransport`` (no network).

Bodies are built from the recorded and documented shapes in ``../shared/data/tastytrade/`` (accounts
capture, balance and position frames, the order frame, the dry-run and transactions documentation), with
their values changed to the scenario at hand. Faults are switched on per test: an expired or revoked
token, 429s, 5xx, a timeout after the order was created, error bodies on the dry run.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx2

from tests.conftest import shared_data

ACCOUNT = "SENTINEL-5WX00042"
TT = ("tastytrade", "joaquinbejar")


def _load(*parts: str) -> Any:
    return json.loads(shared_data(*TT, *parts).read_text())


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


@dataclass
class FakeTastytrade:
    account_number: str = ACCOUNT
    accounts: int = 1
    token_lifetime: int = 900
    revoked: bool = False
    fill_mode: str = "immediate"  # immediate | never | partial
    clock: Callable[[], datetime] = lambda: datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    dry_run_errors: list[dict[str, str]] = field(default_factory=list)
    dry_run_warnings: list[dict[str, str]] = field(default_factory=list)
    fee_per_contract: Decimal = Decimal("1.142")  # commission 1.00 + clearing 0.10 + regulatory 0.042
    cash: Decimal = Decimal("100000")
    positions: list[dict[str, Any]] = field(default_factory=list)
    quotes: dict[str, Decimal] = field(default_factory=dict)  # leg fill prices, per share
    per_page: int = 2  # small pages so pagination is exercised
    # fault switches
    rate_limit_next: int = 0
    server_error_next_get: int = 0
    fail_next_place: str | None = None  # timeout_after_create | timeout_before_create | 500_after_create
    replace_returns_old: bool = True  # the PUT answer names the old order, as the SDK's replace does
    # records
    requests: list[httpx2.Request] = field(default_factory=list)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    token_requests: int = 0
    replace_bodies: list[dict[str, Any]] = field(default_factory=list)
    # (event loop, thread) each request was served on: the adapter must bridge the async SDK through one loop
    loops: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = field(default_factory=list)
    _next_id: int = 1000
    _txn_id: int = 252700000
    _token: str = ""

    # --- plumbing -----------------------------------------------------------------------------------

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def expire_token(self) -> None:
        """The access token stops working before its stated lifetime (revoked session, clock skew)."""
        self._token = "expired-" + self._token

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        # MockTransport calls this inside the adapter's coroutine: the running loop is the adapter's loop
        self.loops.append((asyncio.get_running_loop(), threading.current_thread()))
        path = request.url.path
        if path == "/oauth/token":
            return self._oauth(request)
        if request.headers.get("Authorization") != f"Bearer {self._token}" or not self._token:
            return self._error(401, "token_invalid", "This token is invalid or has expired")
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return httpx2.Response(429, headers={"Retry-After": "0"},
                                   json={"error": {"code": "rate_limit", "message": "Too many requests"}})
        if request.method == "GET" and self.server_error_next_get > 0:
            self.server_error_next_get -= 1
            return httpx2.Response(503, text="<html>Service Unavailable</html>")
        a = f"/accounts/{self.account_number}"
        if path == "/customers/me/accounts" and request.method == "GET":
            return self._accounts()
        if path == f"/customers/me/accounts/{self.account_number}":
            return self._data(self._account_body())
        if path == f"{a}/balances/USD":
            return self._data(self._balances())
        if path == f"{a}/positions":
            return self._data({"items": self.positions})
        if path == f"{a}/orders/dry-run":
            return self._dry_run(json.loads(request.content))
        if path == f"{a}/orders" and request.method == "POST":
            return self._place(request)
        if path == f"{a}/orders" and request.method == "GET":
            return self._paged(self._history(request), request)
        if path == f"{a}/orders/live":
            # as documented: today's orders and the ones still working (an older filled order is history only)
            today = self.clock().date().isoformat()
            return self._data({"items": [o for o in self.orders.values()
                                         if o["received-at"][:10] == today or o["status"] == "Live"]})
        if path.startswith(f"{a}/orders/"):
            oid = int(path.rsplit("/", 1)[1])
            if oid not in self.orders:
                return self._error(404, "record_not_found", f"order {oid} not found")
            if request.method == "DELETE":
                return self._cancel(oid)
            if request.method == "PUT":
                return self._replace(oid, json.loads(request.content))
            return self._data(self.orders[oid])
        if path == f"{a}/transactions":
            return self._transactions(request)
        return self._error(404, "not_found", f"no route {request.method} {path}")

    def _data(self, data: Any, status: int = 200) -> httpx2.Response:
        return httpx2.Response(status, json={"data": data, "context": "fake"})

    def _error(self, status: int, code: str, message: str, errors: list[dict[str, str]] | None = None
               ) -> httpx2.Response:
        body: dict[str, Any] = {"code": code, "message": message}
        if errors:
            body["errors"] = errors
        return httpx2.Response(status, json={"error": body})

    def _oauth(self, request: httpx2.Request) -> httpx2.Response:
        self.token_requests += 1
        body = json.loads(request.content)
        if self.revoked or body.get("grant_type") != "refresh_token":
            return httpx2.Response(400, json={"error": "invalid_grant", "error_description": "Grant revoked"})
        self._token = f"access-{self.token_requests}"
        return httpx2.Response(200, json={"access_token": self._token, "token_type": "Bearer",
                                          "expires_in": self.token_lifetime})

    # --- account --------------------------------------------------------------------------------------

    def _account_body(self, number: str | None = None) -> dict[str, Any]:
        acct = copy.deepcopy(_load("captures", "accounts.json")["items"][0]["account"])
        acct.update({"account-number": number or self.account_number, "nickname": "Individual",
                     "account-type-name": "Individual", "margin-or-cash": "Margin",
                     "suitable-options-level": "No Restrictions", "investment-objective": "SPECULATION"})
        return acct

    def _accounts(self) -> httpx2.Response:
        numbers = [self.account_number] + [f"{self.account_number}-{i}" for i in range(1, self.accounts)]
        return self._data({"items": [{"account": self._account_body(n), "authority-level": "owner"}
                                     for n in numbers]})

    def _balances(self) -> dict[str, Any]:
        body = copy.deepcopy(_load("streamer_frames", "account-balance.derived.json")["data"])
        body["account-number"] = self.account_number
        market = sum((Decimal(p["quantity"]) * Decimal(p["close-price"]) * Decimal(p["multiplier"])
                      * (-1 if p["quantity-direction"] == "Short" else 1) for p in self.positions), Decimal(0))
        nlv = self.cash + market
        body.update({"cash-balance": str(self.cash), "net-liquidating-value": str(nlv),
                     "derivative-buying-power": str(self.cash), "equity-buying-power": str(self.cash * 2)})
        return body

    def position(self, symbol: str, quantity: int, average_open_price: str, close_price: str,
                 instrument_type: str = "Equity Option", underlying: str | None = None) -> None:
        body = copy.deepcopy(_load("streamer_frames", "current-position.derived.json")["data"])
        body.update({"account-number": self.account_number, "symbol": symbol, "instrument-type": instrument_type,
                     "underlying-symbol": underlying or symbol.split()[0], "quantity": str(abs(quantity)),
                     "quantity-direction": "Long" if quantity > 0 else "Short",
                     "average-open-price": average_open_price,
                     "close-price": close_price, "multiplier": 100 if instrument_type == "Equity Option" else 1,
                     "cost-effect": "Debit" if quantity > 0 else "Credit"})
        self.positions.append(body)

    # --- orders ---------------------------------------------------------------------------------------

    @staticmethod
    def _multiplier(leg: dict[str, Any]) -> int:
        return 100 if leg["instrument-type"] == "Equity Option" else 1

    def _units(self, legs: list[dict[str, Any]]) -> int:
        return math.gcd(*[int(leg["quantity"]) for leg in legs])

    def _fees(self, legs: list[dict[str, Any]]) -> Decimal:
        contracts = sum(int(leg["quantity"]) for leg in legs if leg["instrument-type"] == "Equity Option")
        return self.fee_per_contract * contracts

    def _bp_change(self, body: dict[str, Any]) -> Decimal:
        """Debit: what is paid; credit: the widest spread's width minus the credit (Reg T), plus fees."""
        legs = body["legs"]
        units = self._units(legs)
        price = Decimal(body["price"]) * (1 if body.get("price-effect") == "Debit" else -1)
        fees = self._fees(legs)
        if any(leg["instrument-type"] == "Equity" for leg in legs):
            stock = next(leg for leg in legs if leg["instrument-type"] == "Equity")
            return price * int(stock["quantity"]) + fees
        if price > 0:
            return price * 100 * units + fees
        strikes: dict[str, list[Decimal]] = {}
        for leg in legs:
            sym = leg["symbol"]
            strikes.setdefault(sym[12], []).append(Decimal(sym[13:]) / 1000)
        width = max((max(k) - min(k) for k in strikes.values()), default=Decimal(0))
        return (width * 100 + price * 100) * units + fees

    def _dry_run(self, body: dict[str, Any]) -> httpx2.Response:
        if self.dry_run_errors:
            return self._error(422, "preflight_check_failure", "One or more preflight checks failed",
                               self.dry_run_errors)
        doc = copy.deepcopy(_load("doc_examples", "order_dry_run.json")["data"])
        doc["order"].update({"account-number": self.account_number, "price": body["price"],
                             "price-effect": body.get("price-effect", "None"), "legs": body["legs"],
                             "time-in-force": body["time-in-force"]})
        change = self._bp_change(body)
        fees = self._fees(body["legs"])
        current = self.cash
        bpe = doc["buying-power-effect"]
        bpe.update({"change-in-buying-power": str(abs(change)),
                    "change-in-buying-power-effect": "Debit" if change >= 0 else "Credit",
                    "current-buying-power": str(current), "new-buying-power": str(current - change),
                    "impact": str(abs(change)), "effect": "Debit" if change >= 0 else "Credit"})
        fc = doc["fee-calculation"]
        fc.update({"total-fees": str(fees), "commission": str(fees), "clearing-fees": "0.0",
                   "regulatory-fees": "0.0"})
        doc["warnings"] = self.dry_run_warnings
        return self._data(doc, 201)

    def _new_order(self, body: dict[str, Any], replaces: int | None = None) -> dict[str, Any]:
        self._next_id += 1
        frame = copy.deepcopy(_load("streamer_frames", "order.documented.json")["data"])
        now = _iso(self.clock())
        underlying = body["legs"][0]["symbol"].split()[0]
        frame.update({
            "id": self._next_id, "account-number": self.account_number, "time-in-force": body["time-in-force"],
            "order-type": body["order-type"], "size": self._units(body["legs"]), "underlying-symbol": underlying,
            "price": body["price"], "price-effect": body.get("price-effect", "None"), "status": "Live",
            "cancellable": True, "editable": True, "received-at": now, "updated-at": now, "live-at": now,
            "in-flight-at": now, "terminal-at": None,
            "legs": [{**leg, "remaining-quantity": leg["quantity"], "fills": []} for leg in body["legs"]],
        })
        if body.get("external-identifier"):
            frame["external-identifier"] = body["external-identifier"]
        if replaces is not None:
            frame["replaces-order-id"] = replaces
        frame.pop("terminal-at")
        self.orders[frame["id"]] = frame
        return frame

    def _place(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        mode, self.fail_next_place = self.fail_next_place, None
        if mode == "timeout_before_create":
            raise httpx2.ReadTimeout("timed out", request=request)
        order = self._new_order(body)
        if self.fill_mode != "never":
            self.fill(order["id"], partial=self.fill_mode == "partial")
        if mode == "timeout_after_create":
            raise httpx2.ReadTimeout("timed out", request=request)
        if mode == "500_after_create":
            return httpx2.Response(502, text="Bad Gateway")
        doc = copy.deepcopy(_load("doc_examples", "order_dry_run.json")["data"])
        doc["order"] = order
        return self._data(doc, 201)

    def fill(self, order_id: int, partial: bool = False) -> None:
        """Fill the order at its limit (legs priced from ``quotes``, the first leg absorbing the rest)."""
        order = self.orders[order_id]
        units = self._units(order["legs"])
        take = max(1, units // 2) if partial else units - self._filled_units(order)
        if take <= 0:
            return
        net = Decimal(order["price"]) * (1 if order["price-effect"] == "Debit" else -1)
        legs = order["legs"]
        ratio = [int(leg["quantity"]) // units for leg in legs]
        prices = [self.quotes.get(leg["symbol"], Decimal(0)) for leg in legs]
        mult = 100 if any(leg["instrument-type"] == "Equity Option" for leg in legs) else 1

        def signed(i: int) -> Decimal:
            return Decimal(1 if "Buy" in legs[i]["action"] else -1) * ratio[i] * self._multiplier(legs[i])

        rest = net * mult - sum((signed(i) * prices[i] for i in range(1, len(legs))), Decimal(0))
        prices[0] = rest / signed(0)
        now = self.clock()
        for i, leg in enumerate(legs):
            qty = ratio[i] * take
            fill_id = f"{order_id}-{i}-{len(leg['fills'])}"
            leg["fills"].append({"ext-group-fill-id": "0", "ext-exec-id": fill_id, "fill-id": fill_id,
                                 "quantity": qty, "fill-price": str(prices[i]), "filled-at": _iso(now),
                                 "destination-venue": "TEST_A"})
            leg["remaining-quantity"] = int(leg["remaining-quantity"]) - qty
            sign = 1 if "Buy" in leg["action"] else -1
            value = -sign * prices[i] * qty * self._multiplier(leg)
            fees = self._fees([{**leg, "quantity": qty}])
            self.cash += value - fees
            self._book(leg, qty, prices[i], value, fees, order_id, now, fill_id)
            self._move_position(leg, sign * qty, prices[i])
        if self._filled_units(order) >= units:
            order.update({"status": "Filled", "cancellable": False, "editable": False, "terminal-at": _iso(now)})

    def _move_position(self, leg: dict[str, Any], change: int, price: Decimal) -> None:
        """The account's position in this instrument after a fill (average open price of what remains)."""
        current = next((p for p in self.positions if p["symbol"] == leg["symbol"]), None)
        held = 0 if current is None else int(current["quantity"]) * (-1 if current["quantity-direction"] == "Short"
                                                                        else 1)
        avg = Decimal(current["average-open-price"]) if current is not None else Decimal(0)
        after = held + change
        if current is not None:
            self.positions.remove(current)
        if after == 0:
            return
        if held == 0 or (held > 0) != (after > 0):
            avg = price
        elif abs(after) > abs(held):
            avg = (avg * abs(held) + price * abs(change)) / abs(after)
        self.position(leg["symbol"], after, str(avg), str(price), leg["instrument-type"], leg["symbol"].split()[0])

    def _filled_units(self, order: dict[str, Any]) -> int:
        first = order["legs"][0]
        ratio = int(first["quantity"]) // self._units(order["legs"])
        return sum(int(f["quantity"]) for f in first["fills"]) // ratio

    def _book(self, leg: dict[str, Any], qty: int, price: Decimal, value: Decimal, fees: Decimal, order_id: int,
              at: datetime, exec_id: str) -> None:
        self._txn_id += 1
        self.transactions.append({
            "id": self._txn_id, "account-number": self.account_number, "symbol": leg["symbol"],
            "instrument-type": leg["instrument-type"], "underlying-symbol": leg["symbol"].split()[0],
            "transaction-type": "Trade", "transaction-sub-type": leg["action"],
            "description": f"{leg['action']} {qty} {leg['symbol']} @ {price}", "action": leg["action"],
            "quantity": str(qty), "price": str(abs(price)), "executed-at": _iso(at),
            "transaction-date": at.date().isoformat(), "value": str(abs(value)),
            "value-effect": "Credit" if value >= 0 else "Debit", "net-value": str(abs(value - fees)),
            "net-value-effect": "Credit" if value - fees >= 0 else "Debit", "commission": str(fees),
            "commission-effect": "Debit", "clearing-fees": "0.0", "clearing-fees-effect": "Debit",
            "regulatory-fees": "0.0", "regulatory-fees-effect": "Debit", "is-estimated-fee": True,
            "order-id": order_id, "ext-exec-id": exec_id})

    def _cancel(self, oid: int) -> httpx2.Response:
        order = self.orders[oid]
        if order["status"] in ("Filled", "Cancelled", "Rejected", "Expired"):
            return self._error(422, "order_not_cancellable", f"order {oid} is {order['status']}")
        order.update({"status": "Cancelled", "cancellable": False, "editable": False,
                      "terminal-at": _iso(self.clock())})
        return self._data(order)

    def _replace(self, oid: int, body: dict[str, Any]) -> httpx2.Response:
        old = self.orders[oid]
        if old["status"] != "Live":
            return self._error(422, "order_not_editable", f"order {oid} is {old['status']}")
        kept = [{k: v for k, v in leg.items() if k not in ("fills", "remaining-quantity")} for leg in old["legs"]]
        if body.get("legs"):  # a replacement may carry fewer contracts (what remains), never other legs
            if [(leg["symbol"], leg["action"]) for leg in body["legs"]] != [(k["symbol"], k["action"]) for k in kept]:
                return self._error(422, "invalid_legs", "a replacement cannot change the legs")
            kept = [{**k, "quantity": leg["quantity"]} for k, leg in zip(kept, body["legs"], strict=True)]
        self.replace_bodies.append(body)
        new_body = {**body, "legs": kept}
        new_body.pop("external-identifier", None)  # the broker keeps the link, not our identifier
        new = self._new_order(new_body, replaces=oid)
        old.update({"status": "Cancelled", "replacing-order-id": new["id"], "cancellable": False,
                    "editable": False, "terminal-at": _iso(self.clock())})
        return self._data(old if self.replace_returns_old else new)

    # --- lists ----------------------------------------------------------------------------------------

    def _paged(self, items: list[dict[str, Any]], request: httpx2.Request) -> httpx2.Response:
        q = parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query)
        per_page = min(int(q.get("per-page", ["250"])[0]), self.per_page)
        offset = int(q.get("page-offset", ["0"])[0])
        pages = max(1, math.ceil(len(items) / per_page))
        page = items[offset * per_page:(offset + 1) * per_page]
        return httpx2.Response(200, json={"data": {"items": page}, "context": "fake", "pagination": {
            "per-page": per_page, "page-offset": offset, "item-offset": offset * per_page,
            "total-items": len(items), "total-pages": pages, "current-item-count": len(page),
            "previous-link": None, "next-link": None, "paging-link-template": None}})

    def _history(self, request: httpx2.Request) -> list[dict[str, Any]]:
        q = parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query)
        items = sorted(self.orders.values(), key=lambda o: o["id"])
        if "start-date" in q:
            items = [o for o in items if o["received-at"][:10] >= q["start-date"][0]]
        return items

    def _transactions(self, request: httpx2.Request) -> httpx2.Response:
        q = parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query)
        items = sorted(self.transactions, key=lambda t: (t["executed-at"], t["id"]))
        if "start-date" in q:
            items = [t for t in items if t["transaction-date"] >= q["start-date"][0]]
        types = q.get("types[]") or q.get("types")
        if types:
            items = [t for t in items if t["transaction-type"] in types]
        if q.get("sort", ["Desc"])[0] == "Desc":
            items = items[::-1]
        return self._paged(items, request)

    def seed_recorded_transactions(self) -> None:
        """The three documented transactions (a dividend reinvestment pair and a cash dividend)."""
        self.transactions.extend(copy.deepcopy(_load("doc_examples", "transactions_listing.json")["data"]["items"]))
