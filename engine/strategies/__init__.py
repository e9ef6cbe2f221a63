"""Strategy registry: several strategies can run side by side over the same panel.

A strategy is any object with a ``name``, a ``params_model`` (a pydantic model class whose
defaults are the strategy's defaults) and ``scan(panel, params) -> DataFrame`` (one row per
symbol for the panel's last day). Built-in strategies register themselves when first looked up.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import pandas as pd
from pydantic import BaseModel

from engine.data.panel import Panel

__all__ = ["BUILTIN_MODULES", "Strategy", "available", "get", "register"]

# Modules that define (and register) the built-in strategies; imported lazily to avoid cycles.
BUILTIN_MODULES = ("engine.strategies.atr_matrix",)

_REGISTRY: dict[str, Strategy] = {}
_builtins_loaded = False


@runtime_checkable
class Strategy(Protocol):
    name: str
    params_model: type[BaseModel]

    def scan(self, panel: Panel, params: Any = None) -> pd.DataFrame:
        """One row per symbol for ``panel``'s last day; ``params`` None means the defaults."""
        ...


def register(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Add ``strategy`` under its name. Registering the same object twice is a no-op; another
    object under a taken name raises ValueError unless ``replace``."""
    if not isinstance(strategy, Strategy):
        raise TypeError(f"{strategy!r} lacks name, params_model or scan()")
    name = strategy.name
    if not isinstance(name, str) or not name:
        raise ValueError("a strategy needs a non-empty string name")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not strategy and not replace:
        raise ValueError(f"a strategy named {name!r} is already registered")
    _REGISTRY[name] = strategy
    return strategy


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def get(name: str) -> Strategy:
    """The strategy registered as ``name``; KeyError naming the available ones otherwise."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; available: {available()}") from None


def available() -> list[str]:
    """Names of the registered strategies, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)
