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
    def build_stage(self, spec: dict, index: int, data_root: Path, config: Any) -> Any: ...
    def after_stage(self, spec: dict, index: int, data_root: Path, config: Any) -> list[Path]: ...
    def planned_outputs(self, spec: dict) -> list[str] | None: ...


class RequestsFile:
    """A job of one stage whose requests come from a JSONL file and an output template (both in the spec)."""

    kind = "requests"

    def title(self, spec: dict) -> str:
        return f"{spec.get('label') or 'requests'} from {Path(spec['source']).name}"

    def stages(self, spec: dict) -> list[str]:
        return ["requests"]

    def build_stage(self, spec: dict, index: int, data_root: Path, config: Any) -> Any:
        """The requests of the file, read again (a submit killed before it recorded them is rebuilt so)."""
        from tegbatchd.submission import read_requests_file
        from tegbatchd.teg.pipelines import PlannedRequest, StagePlan

        items = read_requests_file(Path(spec["source"]), spec["output"], data_root)
        import json

        return StagePlan(requests=[PlannedRequest(i.custom_id, json.loads(i.line)["params"],
                                                  str(Path(i.output).relative_to(data_root.resolve())))
                                   for i in items])

    def after_stage(self, spec: dict, index: int, data_root: Path, config: Any) -> list[Path]:
        return []

    def planned_outputs(self, spec: dict) -> list[str] | None:
        return None  # what the file held when it was recorded: the requests table says


def get_pipeline(kind: str) -> Pipeline:
    """The pipeline object for a job kind."""
    if kind == "requests":
        return RequestsFile()
    from tegbatchd.teg.pipelines import PIPELINES

    return PIPELINES[kind]
