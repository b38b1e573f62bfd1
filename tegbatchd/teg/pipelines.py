"""The TEG report pipelines: job specs, the stages of each job, the requests of each stage, and the local
work after a stage (combined round reports, assembled tournament story notes).

A spec is a JSON-serializable dict fixed at submit time (TEGs and rounds, flags, absolute data file
paths). Later stages read the earlier stages' outputs from disk under the data root, so any process can
build the next stage after a restart. Output paths (relative to the data root):

    round reports   commentary/round_reports/TEG{n}_R{r}_story_notes.md      custom_id TEG{n}_R{r}_story_notes
                    commentary/round_reports/TEG{n}_R{r}_report.md           custom_id TEG{n}_R{r}_narrative
                    commentary/round_reports/teg_{n}_round_{r}_report.md     combined, written locally
    tournament      commentary/tournament_notes/TEG{n}_round_{r}.md          custom_id TEG{n}_round_{r}
                    commentary/tournament_notes/TEG{n}_synthesis.md          custom_id TEG{n}_synthesis
                    commentary/teg_{n}_story_notes.md                        assembled locally
                    commentary/drafts/teg_{n}_{main_report|brief_summary|satire}.md  custom_id TEG{n}_{kind}

Reuse rule: a round's story notes (and a tournament's round stories) that already exist are reused unless
the spec says force; narratives, syntheses and reports are always written for what the job covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tegbatchd.errors import InputError
from tegbatchd.teg.assemble import assembled_story_notes, combined_round_report, write_atomic
from tegbatchd.teg.ranges import describe, parse_numbers

if TYPE_CHECKING:  # the prompts, the score data and the facts are imported where a stage is built or
    from tegbatchd.teg.data import ScoreTable  # assembled: `tegbatchd list` never needs them
    from tegbatchd.writer import Written

SPEC_VERSION = 1
REPORT_KINDS = ("main_report", "brief_summary", "satire")


# --- output paths (relative to the data root) -------------------------------------------------------------
def story_notes_path(teg: int, r: int) -> str:
    return f"commentary/round_reports/TEG{teg}_R{r}_story_notes.md"


def narrative_path(teg: int, r: int) -> str:
    return f"commentary/round_reports/TEG{teg}_R{r}_report.md"


def combined_report_path(teg: int, r: int) -> str:
    return f"commentary/round_reports/teg_{teg}_round_{r}_report.md"


def round_story_path(teg: int, r: int) -> str:
    return f"commentary/tournament_notes/TEG{teg}_round_{r}.md"


def synthesis_path(teg: int) -> str:
    return f"commentary/tournament_notes/TEG{teg}_synthesis.md"


def tournament_notes_path(teg: int) -> str:
    return f"commentary/teg_{teg}_story_notes.md"


def report_path(teg: int, kind: str) -> str:
    return f"commentary/drafts/teg_{teg}_{kind}.md"


_LEGACY = (
    (re.compile(r"TEG(\d+)_R(\d+)_story_notes"), lambda m: story_notes_path(int(m[1]), int(m[2]))),
    (re.compile(r"TEG(\d+)_R(\d+)_narrative"), lambda m: narrative_path(int(m[1]), int(m[2]))),
    (re.compile(r"TEG(\d+)_round_(\d+)"), lambda m: round_story_path(int(m[1]), int(m[2]))),
    (re.compile(r"TEG(\d+)_synthesis"), lambda m: synthesis_path(int(m[1]))),
    (re.compile(r"TEG(\d+)_(main_report|brief_summary|satire)"), lambda m: report_path(int(m[1]), m[2])),
)


def legacy_output(custom_id: str) -> str | None:
    """The file the old scripts (and this tool) write for a TEG custom_id, relative to the data root; None
    for a custom_id of no TEG stage."""
    for pattern, path in _LEGACY:
        match = pattern.fullmatch(custom_id)
        if match:
            return path(match)
    return None


@dataclass(frozen=True)
class PlannedRequest:
    custom_id: str
    params: dict  # a full Messages API body
    output: str  # path relative to the data root


@dataclass
class StagePlan:
    requests: list[PlannedRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read(data_root: Path, rel: str) -> str | None:
    """The text of an earlier output, or None when it is missing or blank."""
    path = Path(data_root) / rel
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None
    return text if text.strip() else None


def _table(spec: dict) -> ScoreTable:
    from tegbatchd.teg.data import load_table

    return load_table(Path(spec["scores_file"]), Path(spec["rounds_file"]) if spec.get("rounds_file") else None)


def _pairs(spec: dict) -> list[tuple[int, int]]:
    return [(int(t), int(r)) for t, r in spec["pairs"]]


def _round_infos(table: ScoreTable, teg: int) -> dict[int, tuple[str | None, str | None]]:
    return {r: ((i.course or None), (i.date or None)) if (i := table.info(teg, r)) else (None, None)
            for r in table.rounds(teg)}


class RoundReports:
    """Round reports: story notes per round, then a live narrative report from them."""

    kind = "round-reports"

    def title(self, spec: dict) -> str:
        tegs = sorted({t for t, _ in _pairs(spec)})
        rounds = f" R{spec['rounds_label']}" if spec.get("rounds_label") else ""
        what = ("round story notes" if spec.get("story_notes_only")
                else "round reports from existing notes" if spec.get("reports_only") else "round reports")
        return f"TEG {describe(tegs)}{rounds} {what}"

    def stages(self, spec: dict) -> list[str]:
        return ["story_notes"] if spec.get("story_notes_only") else ["story_notes", "narrative"]

    def build_stage(self, spec: dict, index: int, data_root: Path, config, read=None) -> StagePlan:
        """Given a spec and a stage index, return that stage's requests and notes on what was skipped.

        `read(data_root, rel)` reads an earlier stage's output (an estimate passes stand-ins)."""
        read = read or _read
        from tegbatchd.teg import prompts
        from tegbatchd.teg.facts import round_facts

        stage = self.stages(spec)[index]
        plan = StagePlan(notes=list(spec.get("skipped", [])) if index == 0 else [])
        if stage == "story_notes" and spec.get("reports_only"):
            plan.notes.append("reports only: existing story notes are used")
            return plan
        table = _table(spec)
        system = prompts.load_prompt(stage, config, data_root)
        for teg, r in _pairs(spec):
            notes_rel = story_notes_path(teg, r)
            if stage == "story_notes":
                if not spec.get("force") and _read(data_root, notes_rel) is not None:
                    plan.notes.append(f"TEG{teg} R{r}: story notes exist, reused (--force rewrites them)")
                    continue
                text = prompts.story_notes_message(round_facts(table, teg, r))
                plan.requests.append(PlannedRequest(f"TEG{teg}_R{r}_story_notes",
                                                    prompts.request_params(stage, config, system, text), notes_rel))
            else:
                notes = read(data_root, notes_rel)
                if notes is None:
                    plan.notes.append(f"TEG{teg} R{r}: story notes missing, report skipped")
                    continue
                text = prompts.narrative_message(round_facts(table, teg, r), notes)
                plan.requests.append(PlannedRequest(f"TEG{teg}_R{r}_narrative",
                                                    prompts.request_params(stage, config, system, text),
                                                    narrative_path(teg, r)))
        return plan

    def planned_outputs(self, spec: dict) -> list[str]:
        """Every file the job means to write (relative to the data root), combined files included."""
        out = []
        for teg, r in _pairs(spec):
            if not spec.get("reports_only"):
                out.append(story_notes_path(teg, r))
            if not spec.get("story_notes_only"):
                out += [narrative_path(teg, r), combined_report_path(teg, r)]
        return out

    def after_stage(self, spec: dict, index: int, data_root: Path, config, write=None) -> list[Written]:
        """After the narrative stage: write the combined file of each round that has notes and a report
        (through `write`, the engine's writer, when given)."""
        from tegbatchd.teg.facts import round_facts

        if self.stages(spec)[index] != "narrative":
            return []
        table = _table(spec)
        written = []
        for teg, r in _pairs(spec):
            notes, report = _read(data_root, story_notes_path(teg, r)), _read(data_root, narrative_path(teg, r))
            if notes is None or report is None:
                continue
            text = combined_round_report(round_facts(table, teg, r), notes, report)
            written.append(write_atomic(Path(data_root) / combined_report_path(teg, r), text, root=data_root,
                                        write=write))
        return written


class Tournament:
    """Tournament story notes: a story per round, a synthesis per TEG, local assembly, then reports."""

    kind = "tournament"

    def title(self, spec: dict) -> str:
        span = f"TEG {describe(spec['tegs'])}"
        if spec.get("reports_only"):
            return f"{span} tournament reports"
        return f"{span} tournament story notes" + (" and reports" if spec.get("reports") else "")

    def stages(self, spec: dict) -> list[str]:
        if spec.get("reports_only"):
            return ["reports"]
        return ["round_story", "synthesis"] + (["reports"] if spec.get("reports") else [])

    def build_stage(self, spec: dict, index: int, data_root: Path, config, read=None) -> StagePlan:
        """Given a spec and a stage index, return that stage's requests and notes on what was skipped.

        `read(data_root, rel)` reads an earlier stage's output (an estimate passes stand-ins)."""
        read = read or _read
        from tegbatchd.teg import prompts
        from tegbatchd.teg.facts import round_facts, tournament_facts

        stage = self.stages(spec)[index]
        plan = StagePlan(notes=list(spec.get("skipped", [])) if index == 0 else [])
        if stage == "reports":
            self._reports(spec, data_root, config, plan, read)
            return plan
        table = _table(spec)
        system = prompts.load_prompt(stage, config, data_root)
        for teg in spec["tegs"]:
            rounds = [r for t, r in _pairs(spec) if t == teg]
            if stage == "round_story":
                for r in rounds:
                    rel = round_story_path(teg, r)
                    if not spec.get("force") and _read(data_root, rel) is not None:
                        plan.notes.append(f"TEG{teg} R{r}: round story exists, reused (--force rewrites it)")
                        continue
                    text = prompts.round_story_message(round_facts(table, teg, r))
                    plan.requests.append(PlannedRequest(f"TEG{teg}_round_{r}",
                                                        prompts.request_params(stage, config, system, text), rel))
                continue
            stories = {r: read(data_root, round_story_path(teg, r)) for r in rounds}
            missing = [r for r, text in stories.items() if text is None]
            if missing:
                plan.notes.append(f"TEG{teg}: round story for R{describe(missing)} missing, synthesis skipped")
                continue
            text = prompts.synthesis_message(tournament_facts(table, teg),
                                             {r: t for r, t in stories.items() if t is not None})
            plan.requests.append(PlannedRequest(f"TEG{teg}_synthesis",
                                                prompts.request_params(stage, config, system, text),
                                                synthesis_path(teg)))
        return plan

    def _reports(self, spec: dict, data_root: Path, config, plan: StagePlan, read) -> None:
        from tegbatchd.teg import prompts

        systems = {kind: prompts.load_prompt(kind, config, data_root) for kind in spec["reports"]}
        for teg in spec["tegs"]:
            notes = read(data_root, tournament_notes_path(teg))
            if notes is None:
                plan.notes.append(f"TEG{teg}: story notes missing ({tournament_notes_path(teg)}), reports skipped")
                continue
            for kind in spec["reports"]:
                text = prompts.report_message(teg, kind, notes)
                plan.requests.append(PlannedRequest(f"TEG{teg}_{kind}",
                                                    prompts.request_params(kind, config, systems[kind], text),
                                                    report_path(teg, kind)))

    def planned_outputs(self, spec: dict) -> list[str]:
        """Every file the job means to write (relative to the data root), assembled notes included."""
        out = []
        for teg in spec["tegs"]:
            if not spec.get("reports_only"):
                out += [round_story_path(teg, r) for t, r in _pairs(spec) if t == teg]
                out += [synthesis_path(teg), tournament_notes_path(teg)]
            out += [report_path(teg, kind) for kind in spec.get("reports") or ()]
        return out

    def after_stage(self, spec: dict, index: int, data_root: Path, config, write=None) -> list[Written]:
        """After the synthesis stage: assemble commentary/teg_{n}_story_notes.md for each TEG with a synthesis
        (through `write`, the engine's writer, when given)."""
        from tegbatchd.teg.facts import tournament_facts

        if self.stages(spec)[index] != "synthesis":
            return []
        table = _table(spec)
        written = []
        for teg in spec["tegs"]:
            synthesis = _read(data_root, synthesis_path(teg))
            if synthesis is None:
                continue
            text = assembled_story_notes(tournament_facts(table, teg), synthesis, _round_infos(table, teg))
            written.append(write_atomic(Path(data_root) / tournament_notes_path(teg), text, root=data_root,
                                        write=write))
        return written


ASSEMBLED_FACTOR = 1.25   # assembled story notes: the synthesis plus the factual sections computed locally


def stand_in_reader(spec: dict, config):
    """A reader for estimates: an earlier output as it is on disk, else (one this job will write) a
    stand-in as long as its stage's max_tokens allows: the upper bound of what that stage writes."""
    from tegbatchd.costs import CHARS_PER_TOKEN

    def chars(stage: str, factor: float = 1.0) -> int:
        return int(config.stage(stage)["max_tokens"] * CHARS_PER_TOKEN * factor)

    def read(data_root: Path, rel: str) -> str | None:
        found = _read(data_root, rel)
        if found is not None and not spec.get("force"):
            return found
        name = rel.rsplit("/", 1)[-1]
        if rel.startswith("commentary/round_reports/") and name.endswith("_story_notes.md"):
            size = chars("story_notes")
        elif rel.startswith("commentary/tournament_notes/"):
            size = chars("synthesis") if name.endswith("_synthesis.md") else chars("round_story")
        elif name.endswith("_story_notes.md"):
            size = chars("synthesis", ASSEMBLED_FACTOR)
        else:
            return found
        return "x" * size

    return read


PIPELINES: dict[str, RoundReports | Tournament] = {"round-reports": RoundReports(), "tournament": Tournament()}


def missing_story_notes(spec: dict, data_root: Path) -> list[str]:
    """Story notes a reports-only job needs that are not on disk (paths relative to the data root).

    Round reports: each round's notes; tournament: each TEG's assembled story notes.
    """
    if spec["kind"] == "round-reports":
        wanted = [story_notes_path(t, r) for t, r in _pairs(spec)]
    else:
        wanted = [tournament_notes_path(t) for t in spec["tegs"]]
    return [rel for rel in wanted if _read(data_root, rel) is None]


# --- specs ------------------------------------------------------------------------------------------------
def _select_tegs(table: ScoreTable, teg_text) -> tuple[list[int], list[str]]:
    requested = parse_numbers(teg_text, "TEG")
    present = [t for t in requested if t in table.tegs()]
    if not present:
        raise InputError(f"TEG {describe(requested)} is not in {table.source.name} "
                         f"(available: TEG {describe(table.tegs())})",
                         next_step="pick TEGs from the available ones")
    return present, [f"TEG{t}: not in the data, skipped" for t in requested if t not in present]


def _files(table: ScoreTable) -> dict:
    return {"scores_file": str(Path(table.source).resolve()),
            "rounds_file": str(Path(table.rounds_source).resolve()) if table.rounds_source else None}


def parse_round_reports_args(table: ScoreTable, teg: str, rounds: str | None = None, *,
                             story_notes_only: bool = False, reports_only: bool = False,
                             force: bool = False) -> dict:
    """Given the loaded table and `--teg`/`--round` values, return a round-reports spec.

    Rounds not played in a TEG (TEG 2 had three) are skipped with a note. Raise InputError for a bad or
    backwards range, a range wholly outside the data, or both --story-notes-only and --reports-only.
    """
    if story_notes_only and reports_only:
        raise InputError("--story-notes-only and --reports-only exclude each other", next_step="use one of them")
    tegs, skipped = _select_tegs(table, teg)
    wanted = parse_numbers(rounds, "round") if rounds is not None else None
    pairs = []
    for t in tegs:
        available = table.rounds(t)
        for r in wanted if wanted is not None else available:
            if r in available:
                pairs.append([t, r])
            else:
                skipped.append(f"TEG{t} R{r}: not in the data, skipped")
    if not pairs:
        raise InputError(f"round {describe(wanted or [])} is not in the data for TEG {describe(tegs)}",
                         next_step="; ".join(f"TEG {t} has round {describe(table.rounds(t))}" for t in tegs))
    every_round = all(set(wanted or []) >= set(table.rounds(t)) for t in tegs)
    return {"kind": "round-reports", "version": SPEC_VERSION, "tegs": sorted({p[0] for p in pairs}),
            "rounds": wanted, "rounds_label": None if wanted is None or every_round else describe(wanted),
            "pairs": pairs, "skipped": skipped, "story_notes_only": story_notes_only,
            "reports_only": reports_only, "force": force, **_files(table)}


def parse_tournament_args(table: ScoreTable, teg: str | None = None, range_: tuple | list | None = None, *,
                          reports: list[str] | tuple = (), reports_only: bool = False,
                          force: bool = False) -> dict:
    """Given the loaded table and `--teg A-B` or `--range A B`, return a tournament spec.

    `reports` lists any of main_report, brief_summary, satire; reports-only with none means all three.
    Raise InputError for bad or backwards ranges, TEGs wholly outside the data, or unknown report kinds.
    """
    if (teg is None) == (range_ is None):
        raise InputError("give the tournaments with either --teg A-B or --range A B", next_step="e.g. --range 3 17")
    text = teg if teg is not None else f"{range_[0]}-{range_[1]}" if range_ is not None else ""
    tegs, skipped = _select_tegs(table, text)
    unknown = [k for k in reports if k not in REPORT_KINDS]
    if unknown:
        raise InputError(f"unknown report kind(s): {', '.join(unknown)}", next_step=f"use {', '.join(REPORT_KINDS)}")
    chosen = [k for k in REPORT_KINDS if k in reports] or (list(REPORT_KINDS) if reports_only else [])
    pairs = [[t, r] for t in tegs for r in table.rounds(t)]
    return {"kind": "tournament", "version": SPEC_VERSION, "tegs": tegs, "pairs": pairs, "skipped": skipped,
            "reports": chosen, "reports_only": reports_only, "force": force, **_files(table)}
