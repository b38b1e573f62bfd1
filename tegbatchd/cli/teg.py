"""`tegbatchd teg summary`, and the TEG flags of `submit round-reports|tournament`."""

from __future__ import annotations

import argparse

from tegbatchd.cli.options import add_data_dir, add_json


def register(sub) -> None:
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


def cmd_summary(args, ctx) -> int:
    from tegbatchd.teg.specs import summary_for_args
    from tegbatchd.teg.summary import render_summary

    payload = summary_for_args(args, ctx.data_root, ctx.config)
    if ctx.json_output:
        ctx.emit_json(payload)
    else:
        print(render_summary(payload))
    return 0


def add_round_reports_args(parser: argparse.ArgumentParser) -> None:
    """The old generate_round_report.py flags (without --use-batch/--submit-only, which submit owns)."""
    parser.add_argument("--teg", required=True, metavar="TEGS", help="TEG number or range, e.g. 17 or 10-17")
    parser.add_argument("--round", metavar="ROUNDS",
                        help="round number or range, e.g. 2 or 1-4 (default: every round in the data)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--story-notes-only", action="store_true", help="write the story notes, no reports")
    only.add_argument("--reports-only", action="store_true",
                      help="write the reports from story notes already on disk")
    parser.add_argument("--force", action="store_true", help="rewrite story notes that already exist, and replace "
                        "files you edited (kept by default: the new version goes beside them as NAME.new.md)")
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
    parser.add_argument("--force", action="store_true", help="rewrite round stories that already exist, and replace "
                        "files you edited (kept by default: the new version goes beside them as NAME.new.md)")
    _add_data_files(parser)


