"""A local fake of Discord's webhook endpoint, scripted per request.

``FakeDiscord`` serves ``POST /api/webhooks/<id>/<token>`` on 127.0.0.1. Each request takes the next scripted
:class:`Reply` for its webhook (or the global script, or the default: 200 with a message id when
``wait=true``, else 204) and is recorded with its JSON body and what was answered.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Reply:
    status: int = 204
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (a timeout when longer than the client's)
    text: str | None = None  # a non-JSON body (e.g. Cloudflare's HTML page), sent as text/html


OK = Reply(200)
NO_CONTENT = Reply(204)
SERVER_ERROR = Reply(500, {"message": "Internal Server Error", "code": 0})
UNKNOWN_WEBHOOK = Reply(404, {"message": "Unknown Webhook", "code": 10015})
BAD_REQUEST = Reply(400, {"message": "Invalid Form Body", "code": 50035})


def rate_limited(retry_after: float, header: str | None = None, is_global: bool = False) -> Reply:
    headers = {"Retry-After": header} if header is not None else {}
    return Reply(
        429, {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}, headers
    )


def too_slow(seconds: float) -> Reply:
    return Reply(200, delay=seconds)


@dataclass
class Received:
    webhook: str  # "<id>/<token>"
    query: dict[str, list[str]]
    body: dict[str, Any]
    reply: Reply
    answered_ok: bool  # a 2xx answered without a deliberate delay
    path: str = ""  # as requested, e.g. /api/v10/webhooks/<id>/<token>


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeDiscord:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self._script: dict[str | None, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._message_ids = 0
        self.on_request: Any = None  # optional callback(Received) run after answering
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                webhook = re.sub(r"^/api(/v\d+)?/webhooks/", "", parts.path)
                reply = fake._next_reply(webhook)
                query = parse_qs(parts.query)
                record = Received(
                    webhook, query, json.loads(raw or b"{}"), reply, 200 <= reply.status < 300 and not reply.delay,
                    parts.path,
                )
                with fake._lock:
                    fake.received.append(record)
                    fake._message_ids += 1
                    message_id = fake._message_ids
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body
                if reply.status == 200 and body is None and query.get("wait") == ["true"]:
                    body = {"id": str(10**17 + message_id), "channel_id": "1", "content": ""}
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    data = json.dumps(body).encode() if body is not None and reply.status != 204 else b""
                    if reply.text is not None:
                        data = reply.text.encode()
                        self.send_header("Content-Type", "text/html; charset=UTF-8")
                    elif data:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout)
                if fake.on_request is not None:
                    fake.on_request(record)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def url(self, webhook: str = "1/token-abcdefghijklmnop") -> str:
        return f"http://127.0.0.1:{self.port}/api/webhooks/{webhook}"

    def script(self, *replies: Reply, webhook: str | None = None) -> None:
        """Queue replies for the next requests (to ``webhook`` only, or to any webhook)."""
        with self._lock:
            self._script[webhook].extend(replies)

    def _next_reply(self, webhook: str) -> Reply:
        with self._lock:
            for key in (webhook, None):
                if self._script[key]:
                    return self._script[key].popleft()
        return OK

    def bodies(self, webhook: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.received if webhook is None or r.webhook == webhook]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeDiscord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
