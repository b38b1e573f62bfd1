"""The model catalogue as dated data (`models.json`, or `--models FILE`): lookups, lifecycle on a day, and
the `ModelInfo` objects of `GET /v1/models`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tegbatchd.errors import InputError

DEFAULT_CATALOGUE = Path(__file__).resolve().parent / "models.json"
ACTIVE, DEPRECATED, RETIRED = "active", "deprecated", "retired"
REJECTABLE = ("manual_thinking", "sampling")


@dataclass(frozen=True)
class Model:
    id: str
    display_name: str
    created: date
    context_window: int
    max_output_tokens: int
    aliases: tuple[str, ...] = ()
    line: str | None = None
    deprecated: date | None = None
    retires: date | None = None
    retired: date | None = None
    rejects: frozenset[str] = frozenset()

    def lifecycle(self, day: date) -> str:
        if self.retired is not None and day >= self.retired:
            return RETIRED
        if self.deprecated is not None and day >= self.deprecated:
            return DEPRECATED
        return ACTIVE


def _day(value: Any, where: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a YYYY-MM-DD date, got {value!r}") from None


def _model(item: Any, index: int) -> Model:
    where = f"models[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    for key in ("id", "display_name"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ValueError(f"{where}.{key}: expected a non-empty string")
    for key in ("context_window", "max_output_tokens"):
        value = item.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}.{key}: expected a whole number >= 1, got {value!r}")
    rejects = item.get("rejects", [])
    if not isinstance(rejects, list) or any(r not in REJECTABLE for r in rejects):
        raise ValueError(f"{where}.rejects: expected a list of {', '.join(REJECTABLE)}")
    created = _day(item.get("created"), f"{where}.created")
    if created is None:
        raise ValueError(f"{where}.created: expected a YYYY-MM-DD date")
    return Model(item["id"], item["display_name"], created, item["context_window"], item["max_output_tokens"],
                 tuple(item.get("aliases", ())), item.get("line"), _day(item.get("deprecated"), f"{where}.deprecated"),
                 _day(item.get("retires"), f"{where}.retires"), _day(item.get("retired"), f"{where}.retired"),
                 frozenset(rejects))


class Catalogue:
    """The models known to the emulator, newest first, found by id or alias."""

    def __init__(self, models: list[Model]) -> None:
        self.models = sorted(models, key=lambda m: (m.created, m.id), reverse=True)
        self._by_name: dict[str, Model] = {}
        for model in self.models:
            for name in (model.id, *model.aliases):
                self._by_name[name] = model

    def get(self, name: str) -> Model | None:
        return self._by_name.get(name)


def load_catalogue(path: str | None = None) -> Catalogue:
    """Read the catalogue (the shipped one by default). Raise InputError naming the problem."""
    source = Path(path) if path else DEFAULT_CATALOGUE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        items = data["models"] if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise ValueError('expected {"models": [ ... ]} with at least one model')
        return Catalogue([_model(item, i) for i, item in enumerate(items)])
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the model catalogue {source}: {exc}",
                         next_step="fix the file (see tegbatchd/emulator/models.json for the format)") from exc


def day_of(epoch: float) -> date:
    return datetime.fromtimestamp(epoch, UTC).date()


def _midnight(day: date | None) -> str | None:
    return None if day is None else f"{day.isoformat()}T00:00:00Z"


def model_info(model: Model, day: date) -> dict[str, Any]:
    """Return the `ModelInfo` JSON object of `model` as seen on `day`."""
    lifecycle = model.lifecycle(day)
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.display_name,
        "created_at": _midnight(model.created),
        "lifecycle": lifecycle,
        "deprecated_at": _midnight(model.deprecated) if lifecycle != ACTIVE else None,
        "retires_at": _midnight(model.retired or model.retires) if lifecycle != ACTIVE else None,
        "line": model.line,
        "max_input_tokens": model.context_window,
        "max_tokens": model.max_output_tokens,
        "capabilities": None,
    }
