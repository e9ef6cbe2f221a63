"""Secrets out of text: the password part of any URL, and the values of every configured ``SecretStr``.

Used where text leaves the process or is stored: settings errors, log records (``install_log_redaction``),
job errors written to the database, alerts and pages. Pydantic already masks a ``SecretStr`` in ``repr``;
this catches the places where its plain value (or a URL carrying a password) ends up inside other text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

MASK = "***"
# scheme://user:password@host -> scheme://user:***@host (the user name stays: it helps find the setting)
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*:)(?P<pw>[^@\s'\"]+)(?=@)")
_known: set[str] = set()


def mask_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)


def secret_values(settings: Any) -> list[str]:
    """Plain values of every SecretStr field of ``settings`` (a pydantic model), nested models included."""
    out: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
        elif hasattr(type(value), "model_fields"):
            out.extend(secret_values(value))
    return out


def remember(secrets: Iterable[str]) -> None:
    """Mask these values from now on wherever ``redact`` runs (short ones would mask ordinary words)."""
    _known.update(s for s in secrets if s and len(s) >= 6)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    text = mask_url_passwords(text)
    for secret in sorted({*_known, *(s for s in secrets if s and len(s) >= 6)}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_value(value: Any, secret_fields: Mapping[str, Any] | Iterable[str] = ()) -> Any:
    """A copy of ``value`` fit to print: secret keys of dicts masked at any depth, URL passwords masked.

    ``secret_fields`` says where the secrets are: a tree like ``{"password": True, "broker": {"token": True}}``
    (a plain list of names is the flat tree)."""
    tree = _as_tree(secret_fields)
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {k: (MASK if tree.get(str(k)) is True else redact_value(v, _subtree(tree, k)))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, tree) for v in value)
    if isinstance(value, str):
        return redact(value)
    return value


def secrets_in(value: Any, secret_fields: Mapping[str, Any] | Iterable[str] | bool = ()) -> list[str]:
    """The plain secret values inside ``value`` (a raw settings input) at the places ``secret_fields`` names."""
    if secret_fields is True:
        if isinstance(value, SecretStr):
            return [value.get_secret_value()]
        return [str(value)] if isinstance(value, (str, int)) and str(value) else []
    tree = _as_tree(secret_fields)
    if isinstance(value, dict):
        return [s for k, v in value.items() if str(k) in tree for s in secrets_in(v, tree[str(k)])]
    return []


def _as_tree(secret_fields: Any) -> dict[str, Any]:
    if isinstance(secret_fields, Mapping):
        return dict(secret_fields)
    if isinstance(secret_fields, bool):
        return {}
    return dict.fromkeys(secret_fields, True)


def _subtree(tree: dict[str, Any], key: Any) -> dict[str, Any]:
    node = tree.get(str(key))
    return node if isinstance(node, dict) else {}


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's final message (arguments included) and its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(settings: Any = None) -> None:
    """Remember the settings' secrets and mask them on every handler of the root logger."""
    if settings is not None:
        remember(secret_values(settings))
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
