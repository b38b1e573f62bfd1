"""The pipelines a job can follow: the stages of each job kind, each stage's requests (built from the spec
and what earlier stages wrote), the local step after a stage, and the files a job plans to write.

A pipeline knows nothing of states or batches: the engine (tegbatchd.engine) decides when to call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Pipeline(Protocol):
    kind: str

    def title(self, spec: dict) -> str: ...
    def stages(self, spec: dict) -> list[str]: ...
    def build_stage(self, spec: dict, index: int, data_root: Path, config: Any, read: Any = None) -> Any: ...
    def after_stage(self, spec: dict, index: int, data_root: Path, config: Any, write: Any = None) -> list[Any]: ...
    def planned_outputs(self, spec: dict) -> list[str] | None: ...


class RequestsFile:
    """A job of one stage whose requests come from a JSONL file and an output template (both in the spec)."""

    kind = "requests"

    def title(self, spec: dict) -> str:
        return f"{spec.get('label') or 'requests'} from {Path(spec['source']).name}"

    def stages(self, spec: dict) -> list[str]:
        return ["requests"]

    def build_stage(self, spec: dict, index: int, data_root: Path, config: Any, read: Any = None) -> Any:
        """The requests of the file, read again (a submit killed before it recorded them is rebuilt so)."""
        from tegbatchd.submission import read_requests_file
        from tegbatchd.teg.pipelines import PlannedRequest, StagePlan

        items = read_requests_file(Path(spec["source"]), spec["output"], data_root)
        import json

        return StagePlan(requests=[PlannedRequest(i.custom_id, json.loads(i.line)["params"],
                                                  str(Path(i.output).relative_to(data_root.resolve())))
                                   for i in items])

    def after_stage(self, spec: dict, index: int, data_root: Path, config: Any, write: Any = None) -> list[Any]:
        return []

    def planned_outputs(self, spec: dict) -> list[str] | None:
        return None  # what the file held when it was recorded: the requests table says


class ImportedBatch:
    """A batch the old scripts created, adopted by `tegbatchd import`: one stage, recorded as submitted with
    its batch; its requests are learned from its results, each written where `output_for` says."""

    kind = "import"

    def title(self, spec: dict) -> str:
        return f"{spec['label']} (imported {spec['batch_id']})"

    def stages(self, spec: dict) -> list[str]:
        return ["imported"]

    def build_stage(self, spec: dict, index: int, data_root: Path, config: Any, read: Any = None) -> Any:
        from tegbatchd.teg.pipelines import StagePlan

        return StagePlan()  # never built: the batch exists already

    def after_stage(self, spec: dict, index: int, data_root: Path, config: Any, write: Any = None) -> list[Any]:
        return []

    def planned_outputs(self, spec: dict) -> list[str] | None:
        return None

    def output_for(self, spec: dict, custom_id: str) -> str | None:
        """Where a result goes (relative to the data root): the --output template, else the old scripts'
        place for a TEG custom_id; None for a custom_id neither knows."""
        if spec.get("output"):
            from tegbatchd.outputs import render_output

            return render_output(spec["output"], custom_id=custom_id, index=0)
        from tegbatchd.teg.pipelines import legacy_output

        return legacy_output(custom_id)


def estimate_plans(kind: str, spec: dict, data_root: Path, config: Any) -> list[tuple[str, Any, bool]]:
    """(stage name, its planned requests, built from stand-ins) for every stage of a job, as an estimate sees
    them: the first stage as it would be sent; a later one from its planned prompts, each earlier output
    this job will write stood in by text as long as its stage's max_tokens allows (an upper bound)."""
    pipeline = get_pipeline(kind)
    if kind == "requests":
        return [("requests", pipeline.build_stage(spec, 0, data_root, config), False)]
    from tegbatchd.teg.pipelines import stand_in_reader

    read = stand_in_reader(spec, config)
    return [(name, pipeline.build_stage(spec, index, data_root, config, read=read if index else None), index > 0)
            for index, name in enumerate(pipeline.stages(spec))]


def get_pipeline(kind: str) -> Pipeline:
    """The pipeline object for a job kind."""
    if kind == "requests":
        return RequestsFile()
    if kind == "import":
        return ImportedBatch()
    from tegbatchd.teg.pipelines import PIPELINES

    return PIPELINES[kind]
