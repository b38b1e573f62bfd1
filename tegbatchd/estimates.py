"""The estimate of a whole job before it is sent: every stage, later ones from their planned prompts.

The first stage is estimated from the requests it would send. A later stage is built from its planned
prompts with each earlier output this job will write stood in by text as long as that stage's max_tokens
allows (pipelines.estimate_plans). Every figure is an upper bound (costs.estimate): input at
costs.CHARS_PER_TOKEN characters a token, output at max_tokens, each cached prefix written by every
request, or, primed, once on the 1-hour cache and read by the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tegbatchd import caching, costs


@dataclass
class StageEstimate:
    name: str
    requests: int
    estimate: costs.Estimate
    from_plan: bool = False       # a later stage: its prompts built with stand-ins for earlier outputs
    primed: bool = False          # cache priming would send one request of it first


@dataclass
class JobEstimate:
    stages: list[StageEstimate] = field(default_factory=list)
    now: bool = False             # `--now`: the standard price, no batch, no priming

    @property
    def total(self) -> costs.Estimate:
        out = costs.Estimate()
        for stage in self.stages:
            out = out + stage.estimate
        return out

    @property
    def priming_helps(self) -> bool:
        return any(s.primed for s in self.stages)


def priming_on(config) -> bool:
    """cache_priming: auto (a bare YAML `on` reads as true: the same)."""
    return config["cache_priming"] in ("auto", True)


def items_estimate(config, items, *, batch: bool = True) -> tuple[costs.Estimate, bool]:
    """(estimate, whether priming applies) of validated items (submission.Item)."""
    shapes = [caching.item_shape(i) for i in items]
    keys = caching.primable(shapes) if batch and priming_on(config) else frozenset()
    return costs.estimate(config, shapes, batch=batch, primed_keys=keys), bool(keys)


def job_estimate(config, kind: str, spec: dict, data_root: Path, *, now: bool = False) -> JobEstimate:
    """Every stage of a job, estimated before anything is sent."""
    from tegbatchd.pipelines import estimate_plans
    from tegbatchd.submission import items_from_plan

    out = JobEstimate(now=now)
    for name, plan, from_plan in estimate_plans(kind, spec, data_root, config):
        items = items_from_plan(plan.requests, data_root)
        estimate, primed = items_estimate(config, items, batch=not now)
        out.stages.append(StageEstimate(name, len(items), estimate, from_plan, primed))
    return out


HOW = ("an upper bound: input at {cpt} characters a token, output at max_tokens, every cached prefix written; "
       "later stages from their planned prompts, each earlier answer taken at its stage's max_tokens")


def how() -> str:
    return HOW.format(cpt=costs.CHARS_PER_TOKEN)
