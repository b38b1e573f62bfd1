"""What work costs: the dated price tables, receipts from recorded usage, estimates before sending.

Prices are USD per million tokens at the standard API price; batch usage gets `batch_discount` off every
part of it (cache writes and reads included). A receipt is priced with the table that held on the day
its batch ran, so a later price change never rewrites what a finished job cost. The user's own
`prices` (config) win over the shipped tables, for every day.

Estimates are upper bounds: input counted at CHARS_PER_TOKEN characters a token of the request's JSON
(English prose runs nearer 4, so input is over by up to ~15%), output at max_tokens, and every request
with a cached prefix writing it (best-effort batch caching may read some instead) unless the stage is
primed (tegbatchd.caching), when one request writes it on the 1-hour cache and the others read it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

CHARS_PER_TOKEN = 3.5  # estimate before sending; the real count comes back in usage

# Multiples of the input price (Anthropic's pricing page; api-facts-2026-12.md).
CACHE_WRITE_5M = 1.25
CACHE_WRITE_1H = 2.0
CACHE_READ = 0.1

# (first day it held, {model family: (input, output)}) in date order. A model missing from the table of
# a day is priced with the latest earlier table that has it (else the earliest later one).
PRICE_TABLES: list[tuple[str, dict[str, tuple[float, float]]]] = [
    # The stored copy of Anthropic's docs (taken 2026-09): batch prices doubled back to standard ones.
    ("2026-09-01", {
        "claude-sonnet-5": (2.0, 10.0),
        "claude-sonnet-4-6": (3.0, 15.0),
        "claude-sonnet-4-5": (3.0, 15.0),
        "claude-opus-5": (5.0, 25.0),
        "claude-opus-4-8": (5.0, 25.0),
        "claude-haiku-4-5": (1.0, 5.0),
    }),
    # Anthropic's pricing page, 2026-12-01 (Sonnet 4.5 retired 2026-11-30).
    ("2026-12-01", {
        "claude-sonnet-5-5": (2.0, 10.0),
        "claude-sonnet-5": (2.0, 10.0),
        "claude-sonnet-4-6": (3.0, 15.0),
        "claude-opus-5-5": (4.0, 20.0),
        "claude-opus-5": (5.0, 25.0),
        "claude-opus-4-8": (5.0, 25.0),
        "claude-haiku-4-5": (1.0, 5.0),
    }),
]


@dataclass(frozen=True)
class Price:
    """USD per million tokens at the standard API price."""

    input: float
    output: float
    cache_write: float      # 5-minute cache write
    cache_write_1h: float
    cache_read: float

    @classmethod
    def of(cls, input_price: float, output_price: float, **given: float) -> Price:
        return cls(input_price, output_price, given.get("cache_write", input_price * CACHE_WRITE_5M),
                   given.get("cache_write_1h", input_price * CACHE_WRITE_1H),
                   given.get("cache_read", input_price * CACHE_READ))


def _family(model: str, names) -> str | None:
    """The name a model is priced under: itself, else the longest family name it starts with."""
    if model in names:
        return model
    return next((n for n in sorted(names, key=len, reverse=True) if model.startswith(n)), None)


def price_for(config, model: str | None, day: str | None = None) -> Price | None:
    """The price of a model on a day (YYYY-MM-DD; None: today): the user's own price, else the shipped
    table that held that day; None when nothing prices it."""
    model = model or ""
    day = day or datetime.date.today().isoformat()
    shipped: dict[str, float] = {}
    held = [t for since, t in PRICE_TABLES if since <= day][::-1] + [t for since, t in PRICE_TABLES if since > day]
    for table in held:
        name = _family(model, table)
        if name is not None:
            shipped = dict(zip(("input", "output"), table[name], strict=True))
            break
    own = config["prices"] if config is not None else {}
    name = _family(model, own)
    entry = {**shipped, **(own[name] if name is not None else {})}
    if "input" not in entry or "output" not in entry:
        return None
    return Price.of(entry["input"], entry["output"], **{k: v for k, v in entry.items() if k not in ("input", "output")})


@dataclass
class Usage:
    """Token counts, summed over some requests."""

    requests: int = 0
    input: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output: int = 0
    thinking: int = 0       # part of output (billed as output), where the usage reports it

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.requests + other.requests, self.input + other.input,
                     self.cache_write_5m + other.cache_write_5m, self.cache_write_1h + other.cache_write_1h,
                     self.cache_read + other.cache_read, self.output + other.output, self.thinking + other.thinking)

    @classmethod
    def of_row(cls, row: dict) -> Usage:
        """From a Store.usage_receipts row (cache_write there is every write, the 1-hour part included)."""
        one_hour = row.get("cache_write_1h") or 0
        return cls(row.get("requests") or 0, row["input"] or 0, (row["cache_write"] or 0) - one_hour, one_hour,
                   row["cache_read"] or 0, row["output"] or 0, row.get("thinking") or 0)

    @property
    def cacheable(self) -> int:
        """Prompt tokens in cached prefixes: written or read."""
        return self.cache_write_5m + self.cache_write_1h + self.cache_read

    @property
    def hit_rate(self) -> float | None:
        """Cache reads ÷ cacheable prompt tokens (None: nothing was cacheable)."""
        return self.cache_read / self.cacheable if self.cacheable else None


@dataclass
class Cost:
    batch: float = 0.0       # what it costs (or cost): the standard price for `--now` work
    standard: float = 0.0    # what the standard API would charge
    unknown_models: tuple[str, ...] = ()

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.batch + other.batch, self.standard + other.standard,
                    tuple(sorted(set(self.unknown_models) | set(other.unknown_models))))

    @property
    def saved(self) -> float:
        return self.standard - self.batch

    def describe(self) -> str:
        text = f"${self.batch:.4f} (standard API: ${self.standard:.4f})"
        if self.unknown_models:
            text += f" — no price for {', '.join(self.unknown_models)}"
        return text


def money(value: float) -> str:
    """Dollars as a person reads them: cents from $1 up, four decimals below."""
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"


def cost_sentence(cost: Cost, mode: str) -> str:
    """What a job cost and saved, for the end of its notification."""
    if mode == "now":
        return f"Cost {money(cost.batch)} at the standard API price"
    return f"Cost {money(cost.batch)}, saved {money(cost.saved)} against the standard API"


def priced(config, model: str | None, usage: Usage, day: str | None = None, *, batch: bool = True) -> Cost:
    """The cost of some usage of one model on a day, the standard price beside it."""
    price = price_for(config, model, day)
    if price is None:
        return Cost(unknown_models=(model or "unknown",))
    standard = (usage.input * price.input + usage.output * price.output + usage.cache_write_5m * price.cache_write
                + usage.cache_write_1h * price.cache_write_1h + usage.cache_read * price.cache_read) / 1_000_000
    return Cost(standard * (1 - config["batch_discount"]) if batch else standard, standard)


def recorded_cost(config, rows: list[dict]) -> Cost:
    """Cost of Store.usage_receipts rows: each priced on its day, `--now` jobs at the standard price."""
    total = Cost()
    for row in rows:
        total = total + priced(config, row["model"], Usage.of_row(row), row["day"], batch=row["mode"] != "now")
    return total


@dataclass
class EstimateItem:
    """What an estimate needs of one request."""

    model: str | None
    input_tokens: int             # the whole prompt, cached prefix included
    max_tokens: int
    prefix_key: str = ""          # its cached prefix ("" without one)
    prefix_tokens: int = 0
    prefix_1h: bool = False


@dataclass
class Estimate:
    """An upper bound for some requests: as sent, and with the stage primed."""

    requests: int = 0
    cost: Cost = field(default_factory=Cost)
    primed: Cost = field(default_factory=Cost)

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.requests + other.requests, self.cost + other.cost, self.primed + other.primed)


def _planned(item: EstimateItem, *, primed: bool, first: bool) -> Usage:
    """The usage an item is expected to have at most: its prefix written (or, primed, read by all but the first)."""
    if not item.prefix_key:
        return Usage(1, item.input_tokens, output=item.max_tokens)
    rest, cache = max(0, item.input_tokens - item.prefix_tokens), item.prefix_tokens
    if primed:
        return Usage(1, rest, cache_write_1h=cache, output=item.max_tokens) if first else \
            Usage(1, rest, cache_read=cache, output=item.max_tokens)
    if item.prefix_1h:
        return Usage(1, rest, cache_write_1h=cache, output=item.max_tokens)
    return Usage(1, rest, cache_write_5m=cache, output=item.max_tokens)


def estimate(config, items: list[EstimateItem], *, batch: bool = True, primed_keys: frozenset[str] = frozenset()
             ) -> Estimate:
    """Upper-bound cost of items as they are sent, and (`primed`) with the prefixes in `primed_keys` sent
    first on the 1-hour cache (one write, the others read). Usage is summed per model, then priced once
    (a price is linear in the tokens)."""
    as_sent: dict[str | None, Usage] = {}
    primed_usage: dict[str | None, Usage] = {}
    seen: set[str] = set()
    for item in items:
        model = item.model
        plain = _planned(item, primed=False, first=True)
        as_sent[model] = as_sent[model] + plain if model in as_sent else plain
        first = item.prefix_key not in seen
        seen.add(item.prefix_key)
        usage = _planned(item, primed=item.prefix_key in primed_keys, first=first)
        primed_usage[model] = primed_usage[model] + usage if model in primed_usage else usage
    out = Estimate(len(items))
    for model, usage in as_sent.items():
        out.cost = out.cost + priced(config, model, usage, batch=batch)
    for model, usage in primed_usage.items():
        out.primed = out.primed + priced(config, model, usage, batch=batch)
    return out
