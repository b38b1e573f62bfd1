"""Cost from usage and the price table (USD per million tokens), with the batch discount."""

from __future__ import annotations

from dataclasses import dataclass

CHARS_PER_TOKEN = 3.5  # estimate before sending; the real count comes back in usage


@dataclass
class Cost:
    batch: float = 0.0
    standard: float = 0.0
    unknown_models: tuple[str, ...] = ()

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.batch + other.batch, self.standard + other.standard,
                    tuple(sorted(set(self.unknown_models) | set(other.unknown_models))))

    def describe(self) -> str:
        text = f"${self.batch:.4f} (standard API: ${self.standard:.4f})"
        if self.unknown_models:
            text += f" — no price for {', '.join(self.unknown_models)}"
        return text


def usage_cost(config, model: str | None, input_t: int, output_t: int, cache_write: int, cache_read: int,
               *, batch: bool = True) -> Cost:
    """Cost of some usage of one model; the standard price beside the batch price."""
    price = config.price(model or "")
    if price is None:
        return Cost(unknown_models=(model or "unknown",))
    standard = (input_t * price["input"] + output_t * price["output"] + cache_write * price["cache_write"]
                + cache_read * price["cache_read"]) / 1_000_000
    return Cost(standard * (1 - config["batch_discount"]) if batch else standard, standard)


def recorded_cost(config, usage_rows: list[dict], *, batch: bool = True) -> Cost:
    """Cost of rows from Store.usage_by_model."""
    total = Cost()
    for row in usage_rows:
        if row["input"] or row["output"] or row["cache_write"] or row["cache_read"]:
            total = total + usage_cost(config, row["model"], row["input"], row["output"], row["cache_write"],
                                       row["cache_read"], batch=batch)
    return total


def estimate(config, items: list[tuple[str | None, float, int | None]]) -> Cost:
    """Upper-bound estimate for (model, params_bytes, max_tokens) items: input from size, output = max_tokens."""
    total = Cost()
    per_model: dict[str | None, list[int]] = {}
    for model, size, max_tokens in items:
        acc = per_model.setdefault(model, [0, 0])
        acc[0] += int(size / CHARS_PER_TOKEN)
        acc[1] += max_tokens or 0
    for model, (inp, out) in per_model.items():
        total = total + usage_cost(config, model, inp, out, 0, 0)
    return total
