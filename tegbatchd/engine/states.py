"""Every state value of jobs, stages, intents, batches and request outcomes, and the allowed moves.

The only module that names a state: the store writes these values (compare-and-set against the allowed
predecessors below), the engine decides which move to make. A move that is not listed is a bug, and the
store refuses it rather than write it.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    ACTIVE = "active"        # the engine moves it on (the daemon, `poll`, or its `--now` process)
    BLOCKED = "blocked"      # waits for the person: a recorded reason and one notice say why and what next
    DONE = "done"            # every output written
    PARTIAL = "partial"      # some outputs failed for good (retry can still send them)
    FAILED = "failed"        # nothing written
    CANCELED = "canceled"    # the person canceled it (or a `--now` run was interrupted)


class StageState(StrEnum):
    WAITING = "waiting"          # to be built from the spec and the earlier stages' outputs
    SUBMITTED = "submitted"      # its requests are recorded (one transaction with the intents)
    ASSEMBLING = "assembling"    # every attempt has an outcome; the local step after it is running
    DONE = "done"
    SKIPPED = "skipped"          # nothing to send and nothing was ever sent


class IntentState(StrEnum):
    OPEN = "open"          # recorded, create not confirmed: sent or reconciled by the next poll
    CREATED = "created"    # its batch id is recorded
    FAILED = "failed"      # refused for good (its requests carry the reason as failures)
    NOW = "now"            # sent by a `--now` process through the Messages API, never as a batch
    HELD = "held"          # recorded, sent (moved to open) once its stage's priming request has finished


class BatchState(StrEnum):
    SUBMITTED = "submitted"      # running on the API, or ended and not yet retrieved
    RETRIEVING = "retrieving"
    RETRIEVED = "retrieved"      # every request of it has an outcome


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    CANCELED = "canceled"
    EXPIRED = "expired"


# error_type values the tool itself records for a request (beside the API's own error types)
ARCHIVED = "archived"                # results archived (29 days) before they were retrieved
MISSING_RESULT = "missing_result"    # the results stream had no line for it
BATCH_GONE = "batch_gone"            # the API no longer knows its batch
ARCHIVE_MISSING = "archive_missing"  # its archived request line is gone, it cannot be sent
CREATE_REFUSED = "create_refused"    # the batch create was refused for good
UNSAFE_PATH = "unsafe_path"          # its output folder was swapped for a link after submit
BILLING = "billing"                  # credit exhausted or a spend limit (a kind, from the message)
CANCELED_BEFORE_SENT = "canceled_before_sent"   # a held intent's requests when the job was canceled first

# why a job is blocked (jobs.blocked_kind) beside billing
BUDGET = "budget"    # a chained stage or automatic retry would pass a budget: waits for `resume JOB --max-cost`

# failures that heal by themselves: poll resubmits them (up to retry.max_attempts attempts per output)
TRANSIENT_ERRORS = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error", MISSING_RESULT})
# failures `tegbatchd retry` resends without --all-errors
RETRYABLE_ERRORS = TRANSIENT_ERRORS | {ARCHIVED, BATCH_GONE, CANCELED_BEFORE_SENT}

JOB_MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.ACTIVE: frozenset({JobState.BLOCKED, JobState.DONE, JobState.PARTIAL, JobState.FAILED,
                                JobState.CANCELED}),
    JobState.BLOCKED: frozenset({JobState.ACTIVE, JobState.CANCELED}),
    JobState.DONE: frozenset({JobState.ACTIVE}),       # a retry (e.g. --truncated) reopens it
    JobState.PARTIAL: frozenset({JobState.ACTIVE}),
    JobState.FAILED: frozenset({JobState.ACTIVE}),
    JobState.CANCELED: frozenset({JobState.ACTIVE}),
}
STAGE_MOVES: dict[StageState, frozenset[StageState]] = {
    StageState.WAITING: frozenset({StageState.SUBMITTED, StageState.SKIPPED}),
    StageState.SUBMITTED: frozenset({StageState.ASSEMBLING, StageState.WAITING}),
    StageState.ASSEMBLING: frozenset({StageState.DONE, StageState.SUBMITTED, StageState.WAITING}),
    StageState.DONE: frozenset({StageState.SUBMITTED, StageState.WAITING}),    # reopened by a retry
    StageState.SKIPPED: frozenset({StageState.SUBMITTED, StageState.WAITING}),
}
INTENT_MOVES: dict[IntentState, frozenset[IntentState]] = {
    IntentState.OPEN: frozenset({IntentState.CREATED, IntentState.FAILED}),
    IntentState.CREATED: frozenset({IntentState.OPEN}),   # the batch reconcile adopted proved foreign: sent again
    IntentState.FAILED: frozenset(),
    IntentState.NOW: frozenset(),
    IntentState.HELD: frozenset({IntentState.OPEN, IntentState.FAILED}),   # failed: the job was canceled first
}
BATCH_MOVES: dict[BatchState, frozenset[BatchState]] = {
    BatchState.SUBMITTED: frozenset({BatchState.RETRIEVING, BatchState.RETRIEVED}),
    BatchState.RETRIEVING: frozenset({BatchState.RETRIEVED}),
    BatchState.RETRIEVED: frozenset({BatchState.RETRIEVING}),   # a recorded file went missing: written again
}

FINISHED_JOB_STATES = frozenset({JobState.DONE, JobState.PARTIAL, JobState.FAILED, JobState.CANCELED})
SETTLED_STAGE_STATES = frozenset({StageState.DONE, StageState.SKIPPED})


def predecessors(moves: dict, target) -> tuple[str, ...]:
    """The states from which `target` may be reached (for a compare-and-set UPDATE)."""
    return tuple(sorted(str(s) for s, targets in moves.items() if target in targets))


def is_billing(error_type: str | None, message: str | None) -> bool:
    """A failure that money fixes: credit exhausted or a spend limit. Never retried by itself."""
    text = (message or "").lower()
    return error_type == BILLING or "credit balance" in text or "spend limit" in text \
        or "enforced_spend_limit" in text


def failure_kind(outcome: str | None, error_type: str | None, message: str | None = None, *,
                 user_canceled: bool = False) -> str:
    """How a failed attempt is treated: 'transient' (resubmitted by poll), 'billing' (the job pauses),
    'canceled' (the person canceled it), 'retryable' (sent again by `retry`) or 'permanent'."""
    if outcome == Outcome.EXPIRED:
        return "transient"
    if outcome == Outcome.CANCELED:
        return "canceled" if user_canceled else "transient"
    if is_billing(error_type, message):
        return "billing"
    if error_type in TRANSIENT_ERRORS:
        return "transient"
    if error_type in RETRYABLE_ERRORS:
        return "retryable"
    return "permanent"
