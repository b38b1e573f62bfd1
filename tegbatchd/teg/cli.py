"""`tegbatchd teg summary`, and the flags and spec building the `submit round-reports|tournament` commands use."""

from __future__ import annotations

import argparse
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
from tegbatchd.teg.summary import build_summary, render_summary


def register(sub) -> None:
    from tegbatchd.cli import add_data_dir, add_json

    teg = sub.add_parser("teg", help="look at the TEG scores before paying for a batch")
    tsub = teg.add_subparsers(dest="teg_command", metavar="ACTION")
    tsub.required = True
    summary = tsub.add_parser("summary", help="winners, totals and round facts of one tournament",
                              description="Print the facts the reports are built from, to check them first.")
    summary.add_argument("--teg", required=True, metavar="N", help="tournament number, e.g. 17")
    summary.add_argument("--round", metavar="R", help="also show the facts of this round")
    _add_data_files(summary)
    add_data_dir(summary)
    add_json(summary)
    summary.set_defaults(func=cmd_summary)


def _add_data_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", metavar="FILE",
                        help="scores table, CSV or Parquet (default: config scores_file, else "
                             "all-scores.parquet / all-scores.csv in the data root)")
    parser.add_argument("--rounds", metavar="FILE",
                        help="rounds table with dates and courses (default: config rounds_file, else rounds.csv)")


def _single(text: str, what: str) -> int:
    numbers = parse_numbers(text, what)
    if len(numbers) != 1:
        raise InputError(f"--{what.lower()} takes one number here, not {text!r}", next_step=f"e.g. --{what.lower()} 17")
    return numbers[0]


def load_for_args(args, data_root: Path, config) -> ScoreTable:
    """Resolve --scores/--rounds (else config, else the data root) and load the validated table."""
    scores = resolve_scores_path(getattr(args, "scores", None), data_root, config["scores_file"])
    rounds = resolve_rounds_path(getattr(args, "rounds", None), data_root, config["rounds_file"], scores)
    return load_table(scores, rounds)


def cmd_summary(args, ctx) -> int:
    teg = _single(args.teg, "TEG")
    round_no = _single(args.round, "round") if args.round is not None else None
    table = load_for_args(args, ctx.data_root, ctx.config)
    payload = build_summary(table, teg, round_no)
    if ctx.json_output:
        ctx.emit_json(payload)
    else:
        print(render_summary(payload))
    return 0


# --- used by the `submit` command ------------------------------------------------------------------------
def add_round_reports_args(parser: argparse.ArgumentParser) -> None:
    """The old generate_round_report.py flags (without --use-batch/--submit-only, which submit owns)."""
    parser.add_argument("--teg", required=True, metavar="TEGS", help="TEG number or range, e.g. 17 or 10-17")
    parser.add_argument("--round", metavar="ROUNDS",
                        help="round number or range, e.g. 2 or 1-4 (default: every round in the data)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--story-notes-only", action="store_true", help="write the story notes, no reports")
    only.add_argument("--reports-only", action="store_true",
                      help="write the reports from story notes already on disk")
    parser.add_argument("--force", action="store_true", help="rewrite story notes that already exist")
    _add_data_files(parser)


def add_tournament_args(parser: argparse.ArgumentParser) -> None:
    """The old generate_tournament_commentary_v2.py flags (without --use-batch/--submit-only)."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--teg", metavar="TEGS", help="TEG number or range, e.g. 17 or 3-17")
    which.add_argument("--range", nargs=2, metavar=("FIRST", "LAST"), help="TEGs FIRST to LAST, e.g. --range 3 17")
    parser.add_argument("--batch-reports", action="store_true",
                        help="after the story notes, write all three reports (main, brief, satire)")
    parser.add_argument("--main-report", action="store_true", help="write the main tournament report")
    parser.add_argument("--brief-summary", action="store_true", help="write the brief summary")
    parser.add_argument("--satire", action="store_true", help="write the satirical report")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--story-notes-only", action="store_true", help="write the story notes, no reports")
    only.add_argument("--reports-only", action="store_true",
                      help="write reports from story notes already on disk (all three unless some are chosen)")
    parser.add_argument("--force", action="store_true", help="rewrite round stories that already exist")
    _add_data_files(parser)


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
        writers = sorted({(busy or {}).get(str(data_root / rel)) for rel in missing} - {None})
        if writers:
            raise InputError(f"the story notes these reports need are still being written by job {writers[0]}",
                             next_step="wait for it: it goes on by itself (`tegbatchd list` shows how far it is)")
        if missing:
            raise InputError(f"--reports-only needs {len(missing)} story notes file(s) that are missing "
                             f"under {data_root}",
                             next_step="run without --reports-only to write them first", details=missing)
    return spec
