"""The engine's pure decision (`next_step`) on plain rows, and the allowed moves of each state."""

from __future__ import annotations

import pytest

from tegbatchd.engine import states as st
from tegbatchd.engine.decide import (
    Assemble,
    Block,
    Build,
    Finish,
    Idle,
    IntentView,
    JobView,
    Retry,
    StageView,
    Wait,
    final_state,
    next_step,
)
from tegbatchd.engine.states import BatchState, IntentState, JobState, StageState

OPEN = IntentView(1, IntentState.OPEN)
RUNNING = IntentView(2, IntentState.CREATED, BatchState.SUBMITTED)
RETRIEVING = IntentView(3, IntentState.CREATED, BatchState.RETRIEVING)
SETTLED = IntentView(4, IntentState.CREATED, BatchState.RETRIEVED)
REFUSED = IntentView(5, IntentState.FAILED)
NOW_OPEN = IntentView(6, IntentState.NOW, unsettled=3)
NOW_DONE = IntentView(7, IntentState.NOW, unsettled=0)


def job(*stages: StageView, state=JobState.ACTIVE, mode="batch", **kw) -> JobView:
    return JobView("job_x", state, mode, tuple(stages), **kw)


def stage(seq: int, state: StageState, *intents: IntentView, **kw) -> StageView:
    return StageView(seq, f"s{seq}", state, tuple(intents), **kw)


def test_a_new_job_builds_its_first_stage():
    assert next_step(job(stage(0, StageState.WAITING), stage(1, StageState.WAITING))) == Build(0)


def test_stages_run_in_order_after_the_settled_ones():
    view = job(stage(0, StageState.DONE, SETTLED), stage(1, StageState.SKIPPED), stage(2, StageState.WAITING))
    assert next_step(view) == Build(2)


@pytest.mark.parametrize("intent", [OPEN, RUNNING, RETRIEVING])
def test_a_stage_with_anything_in_flight_is_waited_for(intent):
    view = job(stage(0, StageState.SUBMITTED, SETTLED, intent), stage(1, StageState.WAITING))
    assert next_step(view) == Wait(0, (intent.id,))


def test_recorded_requests_are_waited_for_even_when_the_stage_is_rebuilt_with_nothing_new():
    # the crash class of issue 10/1: a later stage reopened while its earlier intents still run
    view = job(stage(0, StageState.DONE, SETTLED), stage(1, StageState.SUBMITTED, RUNNING))
    assert next_step(view) == Wait(1, (RUNNING.id,))


@pytest.mark.parametrize("state", [StageState.SUBMITTED, StageState.ASSEMBLING])
def test_a_stage_whose_attempts_all_have_outcomes_is_assembled(state):
    view = job(stage(0, state, SETTLED, REFUSED), stage(1, StageState.WAITING))
    assert next_step(view) == Assemble(0)


def test_transient_failures_are_resubmitted_before_the_stage_is_assembled():
    view = job(stage(0, StageState.SUBMITTED, SETTLED, transient=3), stage(1, StageState.WAITING))
    assert next_step(view) == Retry(0)


def test_a_billing_failure_blocks_the_job_instead_of_retrying():
    view = job(stage(0, StageState.SUBMITTED, SETTLED, transient=2, billing=1))
    step = next_step(view)
    assert isinstance(step, Block) and step.kind == "billing" and "credit" in step.reason


def test_every_stage_settled_finishes_the_job_with_its_outcome():
    done = job(stage(0, StageState.DONE, SETTLED), stage(1, StageState.DONE, SETTLED), written=8)
    assert next_step(done) == Finish(JobState.DONE)
    partial = job(stage(0, StageState.DONE, SETTLED), written=6, failed=2)
    assert next_step(partial) == Finish(JobState.PARTIAL)
    failed = job(stage(0, StageState.DONE, SETTLED), written=0, failed=2)
    assert next_step(failed) == Finish(JobState.FAILED)


def test_a_canceled_job_builds_no_later_stage_and_ends_canceled_not_failed():
    view = job(stage(0, StageState.DONE, SETTLED), stage(1, StageState.WAITING), cancel_requested=True, failed=3)
    assert next_step(view) == Finish(JobState.CANCELED)
    # nor does it resubmit what its cancel left undone
    view = job(stage(0, StageState.SUBMITTED, SETTLED, transient=3), cancel_requested=True)
    assert next_step(view) == Assemble(0)
    assert final_state(job(cancel_requested=True, written=0, failed=5)) == JobState.CANCELED
    # a cancel too late to stop anything: every stage was built and nothing failed
    late = job(stage(0, StageState.DONE, SETTLED), stage(1, StageState.DONE, SETTLED), cancel_requested=True, written=8)
    assert next_step(late) == Finish(JobState.DONE)
    assert final_state(job(cancel_requested=True, written=8), cut_short=True) == JobState.CANCELED


@pytest.mark.parametrize("state", [JobState.BLOCKED, JobState.DONE, JobState.PARTIAL, JobState.FAILED,
                                   JobState.CANCELED])
def test_a_job_that_is_not_active_is_left_alone(state):
    assert next_step(job(stage(0, StageState.WAITING), state=state)) == Idle()


def test_the_poller_leaves_now_jobs_to_their_process_and_now_never_resubmits_by_itself():
    view = job(stage(0, StageState.WAITING), mode="now")
    assert next_step(view) == Idle()
    assert next_step(view, driver="now") == Build(0)
    assert next_step(job(stage(0, StageState.SUBMITTED, NOW_OPEN), mode="now"), driver="now") == Wait(0, (6,))
    done = job(stage(0, StageState.SUBMITTED, NOW_DONE, transient=2), mode="now")
    assert next_step(done, driver="now") == Assemble(0)


def test_an_intent_refused_for_good_is_not_in_flight():
    assert not REFUSED.in_flight and not SETTLED.in_flight and OPEN.in_flight and NOW_OPEN.in_flight


# --- failure kinds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome,error_type,message,user_canceled,kind", [
    ("expired", None, None, False, "transient"),
    ("canceled", None, None, False, "transient"),        # canceled by the batch's expiry
    ("canceled", None, None, True, "canceled"),          # canceled by the person
    ("errored", "overloaded_error", "Overloaded", False, "transient"),
    ("errored", "api_error", "Internal", False, "transient"),
    ("errored", "missing_result", "", False, "transient"),
    ("errored", "invalid_request_error", "max_tokens: too large", False, "permanent"),
    ("errored", "not_found_error", "model: claude-x", False, "permanent"),
    ("errored", "invalid_request_error", "Your credit balance is too low to access the Anthropic API.", False,
     "billing"),
    ("errored", "archived", "", False, "retryable"),
    ("errored", "batch_gone", "", False, "retryable"),
])
def test_failure_kinds(outcome, error_type, message, user_canceled, kind):
    assert st.failure_kind(outcome, error_type, message, user_canceled=user_canceled) == kind


# --- transitions -----------------------------------------------------------------------------------------
def test_every_state_has_its_moves_listed_and_targets_are_states():
    for moves, enum in ((st.JOB_MOVES, JobState), (st.STAGE_MOVES, StageState), (st.INTENT_MOVES, IntentState),
                        (st.BATCH_MOVES, BatchState)):
        assert set(moves) == set(enum)
        assert all(target in enum for targets in moves.values() for target in targets)


def test_predecessors_are_what_the_store_compares_against():
    assert set(st.predecessors(st.JOB_MOVES, JobState.BLOCKED)) == {"active"}
    assert set(st.predecessors(st.STAGE_MOVES, StageState.SUBMITTED)) == {"waiting", "assembling", "done", "skipped"}
    assert "retrieved" in st.predecessors(st.BATCH_MOVES, BatchState.RETRIEVING)


def test_the_store_refuses_a_move_the_engine_does_not_allow(tmp_path):
    from tegbatchd.store import Store

    store = Store.open(tmp_path / "s.db")
    store.create_job("job_a", "requests", "t", {}, str(tmp_path), ["one", "two"])
    first, second = store.stages("job_a")
    assert not store.move_stage(first["id"], StageState.DONE)          # waiting → done skips the work
    assert store.move_stage(first["id"], StageState.SKIPPED)
    assert not store.move_job("job_a", JobState.ACTIVE)                 # already active
    assert store.move_job("job_a", JobState.BLOCKED, reason="disk full", kind="error")
    assert not store.move_job("job_a", JobState.DONE)                   # a blocked job cannot just finish
    assert store.get_job("job_a")["blocked_reason"] == "disk full"
    assert store.reopen_job("job_a") and store.get_job("job_a")["blocked_reason"] is None


def test_no_module_outside_the_engine_names_a_state_in_a_write():
    """State values are written only through the store's compare-and-set moves with the engine's enums."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1] / "tegbatchd"
    pattern = re.compile(r"(move_\w+|set_\w*state)\([^)]*[\"'](active|blocked|done|partial|failed|canceled|waiting|"
                         r"submitted|assembling|skipped|open|created|retrieving|retrieved)[\"']")
    offenders = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py") if "emulator" not in p.parts
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
    sql = re.compile(r"SET (local_)?state='")
    offenders = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py") if "emulator" not in p.parts
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if sql.search(line) and "MIGRATIONS" not in line and p.name != "store.py"]
    assert offenders == []
