"""LLM prices: the table shipped with AOS (``aos/skills/llm_pricing.json``) plus ``AOS_LLM_PRICING``.

Prices are USD per million input / output tokens. A model is found by its exact
name, else by the longest table entry that prefixes it at a ``-``, ``@`` or ``:``
boundary, so a dated snapshot (``claude-sonnet-4-5-20250929``) costs what its
family costs while ``gpt-4o`` never prices ``gpt-4oxyz``. A model with no price
is not a failure: its cost is recorded as 0 and the caller gets a warning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

_BOUNDARIES = ("-", "@", ":")


class PricingError(ValueError):
    """An entry of AOS_LLM_PRICING is malformed; the message names it."""


@dataclass(frozen=True)
class Price:
    entry: str               # the table key that matched
    input_per_mtok: float
    output_per_mtok: float

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        cost = (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000
        # rounding keeps float noise out of checkpoints and golden files
        return round(cost, 10)


def _parse_entry(name: str, value: Any, source: str) -> tuple[float, float]:
    if not isinstance(value, Mapping):
        raise PricingError(f"{source}: price of {name!r} must be an object "
                           "{input_per_mtok, output_per_mtok}")
    out = []
    for key in ("input_per_mtok", "output_per_mtok"):
        v = value.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise PricingError(f"{source}: {name}.{key} must be a number >= 0 (USD per million tokens)")
        out.append(float(v))
    return out[0], out[1]


@lru_cache(maxsize=1)
def packaged_prices() -> dict[str, tuple[float, float]]:
    """The table shipped as package data, read once."""
    text = resources.files("aos.skills").joinpath("llm_pricing.json").read_text(encoding="utf-8")
    models = json.loads(text)["models"]
    return {name.lower(): _parse_entry(name, v, "llm_pricing.json") for name, v in models.items()}


def price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, tuple[float, float]]:
    """The shipped table merged with ``overrides`` (AOS_LLM_PRICING); overrides win."""
    table = dict(packaged_prices())
    for name, value in (overrides or {}).items():
        table[str(name).lower()] = _parse_entry(str(name), value, "AOS_LLM_PRICING")
    return table


def lookup(model: str, table: Mapping[str, tuple[float, float]]) -> Price | None:
    """The price of ``model``: exact entry, else the longest entry prefixing it at a boundary."""
    name = model.lower()
    if name in table:
        return Price(name, *table[name])
    best = None
    for entry in table:
        if name.startswith(entry) and name[len(entry)] in _BOUNDARIES:
            if best is None or len(entry) > len(best):
                best = entry
    return Price(best, *table[best]) if best is not None else None
