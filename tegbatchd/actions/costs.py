"""costs: receipts from recorded usage, by job, stage, model, month or (for one job) request, with the cache hit
rate per stage."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from tegbatchd.costs import Cost, Usage, priced
from tegbatchd.errors import InputError

GROUPINGS = ("job", "stage", "model", "month", "request")


@dataclass
class CostLine:
    key: str
    label: str
    usage: Usage = field(default_factory=Usage)
    cost: Cost = field(default_factory=Cost)

    def add(self, usage: Usage, cost: Cost) -> None:
        self.usage, self.cost = self.usage + usage, self.cost + cost

    def as_dict(self) -> dict:
        u = self.usage
        return {"key": self.key, "label": self.label, "requests": u.requests, "input_tokens": u.input,
                "cache_write_5m_tokens": u.cache_write_5m, "cache_write_1h_tokens": u.cache_write_1h,
                "cache_read_tokens": u.cache_read, "output_tokens": u.output, "thinking_tokens": u.thinking,
                "cost_usd": round(self.cost.batch, 4), "standard_cost_usd": round(self.cost.standard, 4),
                "saved_usd": round(self.cost.saved, 4),
                "cache_hit_rate": None if u.hit_rate is None else round(u.hit_rate, 4),
                "unpriced_models": list(self.cost.unknown_models)}


@dataclass
class CostReport:
    by: str
    since: str | None
    lines: list[CostLine]
    total: CostLine
    stages: list[CostLine]     # every stage name, for its cache hit rate

    def as_dict(self) -> dict:
        return {"by": self.by, "since": self.since, "rows": [r.as_dict() for r in self.lines],
                "total": self.total.as_dict(), "stages": [s.as_dict() for s in self.stages]}


def parse_day(text: str | None) -> str | None:
    """A --since value (YYYY-MM-DD or YYYY-MM) as an ISO day; InputError when it is neither."""
    if text is None:
        return None
    try:
        return (datetime.date.fromisoformat(text + "-01") if len(text) == 7 else
                datetime.date.fromisoformat(text)).isoformat()
    except ValueError:
        raise InputError(f"--since {text!r} is not a date", next_step="give it as YYYY-MM-DD or YYYY-MM") from None


def _key(row: dict, by: str) -> tuple[str, str]:
    if by == "job":
        return row["job_id"], row["title"]
    if by == "stage":
        return row["stage"], row["stage"]
    if by == "model":
        return row["model"] or "unknown", row["model"] or "unknown"
    if by == "request":
        again = f" (attempt {row['attempt']})" if (row["attempt"] or 1) > 1 else ""
        return f"{row['stage']}/{row['custom_id']}/{row['attempt']}", f"{row['custom_id']}{again}"
    return row["day"][:7], row["day"][:7]


def receipts(ctx, *, since: str | None = None, by: str = "job", job: str | None = None) -> CostReport:
    """What the recorded work cost, grouped `by` job | stage | model | month | request (each attempt; one job
    only), each part priced with the table that held on the day its batch ran (batch discount applied; `--now`
    work at the standard price). `job`: a job id, batch id or unique prefix to limit it to."""
    if by not in GROUPINGS:
        raise InputError(f"--by {by!r} is not one of {', '.join(GROUPINGS)}", next_step="pick one of them")
    day = parse_day(since)
    job_id = None
    if job is not None:
        from tegbatchd.actions.targets import find_target

        job_id = find_target(ctx, job)[0]["id"]
    if by == "request" and job_id is None:
        raise InputError("--by request needs --job JOB (a job may hold 100,000 requests)",
                         next_step="tegbatchd costs --job JOB --by request (`tegbatchd list` shows the job ids)")
    lines: dict[str, CostLine] = {}
    stages: dict[str, CostLine] = {}
    total = CostLine("total", "total")
    rows = (ctx.store.request_receipts(job_id, since=day) if by == "request" and job_id is not None
            else ctx.store.usage_receipts(since=day, job_id=job_id))
    for row in rows:
        usage = Usage.of_row(row)
        cost = priced(ctx.config, row["model"], usage, row["day"], batch=row["mode"] != "now")
        key, label = _key(row, by)
        lines.setdefault(key, CostLine(key, label)).add(usage, cost)
        stages.setdefault(row["stage"], CostLine(row["stage"], row["stage"])).add(usage, cost)
        total.add(usage, cost)
    return CostReport(by, day, list(lines.values()), total, list(stages.values()))
