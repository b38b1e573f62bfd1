"""One job per output: the files a job still means to write are claimed until it finishes."""

from __future__ import annotations

from pathlib import Path


def claimed_outputs(store) -> dict[str, dict]:
    """Absolute output path → the active or blocked job that will write it (recorded or planned)."""
    from tegbatchd.pipelines import get_pipeline

    claims: dict[str, dict] = {}
    for job in store.claiming_jobs():
        root = Path(job["data_root"])
        planned = get_pipeline(job["kind"]).planned_outputs(job["spec"]) or []
        for path in [str(root / rel) for rel in planned] + sorted(store.job_output_paths(job["id"])):
            claims.setdefault(path, job)
    return claims


def conflicts(store, outputs: list[str]) -> list[tuple[dict, int]]:
    """(job, how many of `outputs` it claims) for each active job that would write the same files."""
    claims = claimed_outputs(store)
    found: dict[str, list] = {}
    for path in outputs:
        job = claims.get(path)
        if job is not None:
            entry = found.setdefault(job["id"], [job, 0])
            entry[1] += 1
    return [(job, count) for job, count in found.values()]
