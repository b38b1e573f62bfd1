"""From parsed flags to what the TEG commands need: the loaded score table, `teg summary`'s facts, and a
validated job spec for `submit round-reports|tournament`."""

from __future__ import annotations

from pathlib import Path

from tegbatchd.errors import InputError
from tegbatchd.teg import prompts
from tegbatchd.teg.data import ScoreTable, load_table, resolve_rounds_path, resolve_scores_path
from tegbatchd.teg.pipelines import (
    PIPELINES,
    REPORT_KINDS,
    missing_story_notes,
    parse_round_reports_args,
    parse_tournament_args,
)
from tegbatchd.teg.ranges import parse_numbers
from tegbatchd.teg.summary import build_summary


def _single(text: str, what: str) -> int:
    numbers = parse_numbers(text, what)
    if len(numbers) != 1:
        raise InputError(f"--{what.lower()} takes one number here, not {text!r}", next_step=f"e.g. --{what.lower()} 17")
    return numbers[0]


def summary_for_args(args, data_root: Path, config) -> dict:
    """The facts `teg summary --teg N [--round R]` shows."""
    teg = _single(args.teg, "TEG")
    round_no = _single(args.round, "round") if args.round is not None else None
    return build_summary(load_for_args(args, data_root, config), teg, round_no)


def load_for_args(args, data_root: Path, config) -> ScoreTable:
    """Resolve --scores/--rounds (else config, else the data root) and load the validated table."""
    scores = resolve_scores_path(getattr(args, "scores", None), data_root, config["scores_file"])
    rounds = resolve_rounds_path(getattr(args, "rounds", None), data_root, config["rounds_file"], scores)
    return load_table(scores, rounds)


def _chosen_reports(args) -> list[str]:
    if getattr(args, "batch_reports", False):
        return list(REPORT_KINDS)
    return [k for k in REPORT_KINDS if getattr(args, k, False)]


def spec_from_args(kind: str, args, data_root: Path, config, *, busy: dict[str, str] | None = None) -> dict:
    """Given the pipeline kind and parsed submit flags, return a validated, JSON-serializable job spec.

    Loads and validates the data, checks ranges and that the prompt templates load, and for
    --reports-only that the story notes exist (or says to wait for the job in `busy`, output path → job id,
    that is writing them). Raise InputError/ConfigError before anything is sent.
    """
    if kind not in PIPELINES:
        raise InputError(f"unknown report kind {kind!r}", next_step=f"use one of {', '.join(PIPELINES)}")
    table = load_for_args(args, data_root, config)
    if kind == "round-reports":
        spec = parse_round_reports_args(table, args.teg, getattr(args, "round", None),
                                        story_notes_only=getattr(args, "story_notes_only", False),
                                        reports_only=getattr(args, "reports_only", False),
                                        force=getattr(args, "force", False))
    else:
        reports = _chosen_reports(args)
        if getattr(args, "story_notes_only", False) and reports:
            raise InputError("--story-notes-only excludes the report flags", next_step="drop one of them")
        spec = parse_tournament_args(table, getattr(args, "teg", None), getattr(args, "range", None),
                                     reports=reports, reports_only=getattr(args, "reports_only", False),
                                     force=getattr(args, "force", False))
    pipeline = PIPELINES[kind]
    for stage in pipeline.stages(spec):
        for name in spec["reports"] if stage == "reports" else [stage]:
            prompts.load_prompt(name, config, data_root)
    if spec["reports_only"]:
        missing = missing_story_notes(spec, data_root)
        claims = busy or {}
        writers = sorted({claims[str(data_root / rel)] for rel in missing if str(data_root / rel) in claims})
        if writers:
            raise InputError(f"the story notes these reports need are still being written by job {writers[0]}",
                             next_step="wait for it: it goes on by itself (`tegbatchd list` shows how far it is)")
        if missing:
            raise InputError(f"--reports-only needs {len(missing)} story notes file(s) that are missing "
                             f"under {data_root}",
                             next_step="run without --reports-only to write them first", details=missing)
    return spec
