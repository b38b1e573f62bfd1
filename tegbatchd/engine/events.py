"""What the engine did, as typed values (the CLI and the daemon's log render them; nobody greps them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSubmitted:
    job_title: str
    stage: str
    requests: int
    batch_ids: tuple[str, ...]
    deferred: tuple[str, ...] = ()   # why an intent is not confirmed yet (it is sent or reconciled later)
    notes: tuple[str, ...] = ()      # what the build left out and why ("story notes exist, reused")
    held: int = 0                    # cache priming: requests sent once these have finished

    def __str__(self) -> str:
        where = f" as batch {', '.join(self.batch_ids)}" if self.batch_ids else ""
        note = f" ({'; '.join(self.deferred)})" if self.deferred else ""
        held = f"; {self.held} more once it has finished (cache priming)" if self.held else ""
        return f"{self.job_title}: submitted stage {self.stage}{where} ({self.requests} requests{held}){note}"


@dataclass(frozen=True)
class StagePlanned:
    """A stage was built: what it will send, and what it left out and why (before anything is sent)."""

    job_title: str
    stage: str
    requests: int
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "\n".join(f"note: {n}" for n in self.notes) if self.notes else f"{self.job_title}: stage {self.stage}"


@dataclass(frozen=True)
class StageSkipped:
    job_title: str
    stage: str
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.job_title}: stage {self.stage} has nothing to send"


@dataclass(frozen=True)
class Resubmitted:
    job_title: str
    stage: str
    requests: int
    automatic: bool

    def __str__(self) -> str:
        how = "resubmitted by itself" if self.automatic else "resubmitted"
        return f"{self.job_title}: {self.requests} failed request(s) of stage {self.stage} {how}"


@dataclass(frozen=True)
class Assembled:
    job_title: str
    stage: str
    files: int
    kept_edits: tuple[str, ...] = ()   # written beside a hand-edited file (NAME.new.md), which was kept

    def __str__(self) -> str:
        text = f"{self.job_title}: assembled {self.files} file(s) after {self.stage}"
        return text + kept_sentence(self.kept_edits)


def kept_sentence(paths) -> str:
    """What the person is told of hand-edited files kept: '' when none."""
    paths = list(paths)
    if not paths:
        return ""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return f"; {len(paths)} file(s) you edited kept, the new version beside each: {shown}"


@dataclass(frozen=True)
class JobFinished:
    job_id: str
    title: str           # the notification's title: "TEG 10–17 round reports ready — 96 files"
    state: str

    def __str__(self) -> str:
        return self.title


@dataclass(frozen=True)
class JobBlocked:
    job_id: str
    job_title: str
    reason: str
    next_step: str

    def __str__(self) -> str:
        return f"{self.job_title}: cannot go on ({self.reason}) — {self.next_step}"


Event = StagePlanned | StageSubmitted | StageSkipped | Resubmitted | Assembled | JobFinished | JobBlocked
