"""Properties (hypothesis): the results parser writes exactly the first sound answer of each known request
and never crashes on a bad line; the output path resolver returns a path inside the data root or raises
InputError, whatever it is given."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tegbatchd.context import Context
from tegbatchd.errors import InputError
from tegbatchd.outputs import message_text, render_output, resolve_inside
from tegbatchd.paths import Paths
from tegbatchd.retrieval import _outcome, retrieve_batch

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4), max_leaves=12)
BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "thinking", "tool_use", "redacted_thinking"]),
                           "text": st.text(max_size=30) | st.none() | st.integers()}),
    JSON)
IDS = [f"req-{i}" for i in range(6)]


def expected_text(content) -> str:
    if not isinstance(content, list):
        return ""
    parts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


@given(st.lists(BLOCK, max_size=8) | JSON)
def test_message_text_joins_the_text_blocks_and_ignores_the_rest(content):
    assert message_text({"content": content}) == expected_text(content)


@given(st.dictionaries(st.sampled_from(["type", "error", "message"]), JSON, max_size=3)
       | st.fixed_dictionaries({"type": st.just("errored"), "error": st.dictionaries(
           st.sampled_from(["type", "error", "message"]), JSON | st.dictionaries(
               st.sampled_from(["type", "message"]), JSON, max_size=2), max_size=3)}))
def test_outcome_of_any_result_is_recordable(result):
    out = _outcome(result)
    assert out["outcome"] in ("errored", "canceled", "expired")
    for key in ("error_type", "error_message"):
        assert out.get(key) is None or isinstance(out[key], str)
    assert len(out.get("error_message") or "") <= 500


def succeeded(cid: str, content, **message) -> dict:
    return {"custom_id": cid, "result": {"type": "succeeded", "message": {"content": content, **message}}}


LINE = st.one_of(
    st.builds(succeeded, st.sampled_from(IDS + ["ghost"]), st.lists(BLOCK, max_size=3),
              usage=JSON, stop_reason=JSON),
    st.builds(lambda cid, kind: {"custom_id": cid, "result": {"type": kind}},
              st.sampled_from(IDS), st.sampled_from(["expired", "canceled", "errored", "weird"])),
    st.builds(lambda cid, err: {"custom_id": cid, "result": {"type": "errored", "error": err}},
              st.sampled_from(IDS), JSON),
    st.builds(lambda cid, res: {"custom_id": cid, "result": res}, st.sampled_from(IDS) | JSON, JSON),
    JSON,
).map(lambda obj: json.dumps(obj).encode()) | st.binary(max_size=40)


class FakeClient:
    """Serves given result lines (retrieval's only use of the API once a batch has ended)."""

    def __init__(self, lines: list[bytes]):
        self.lines = lines

    def result_lines(self, batch_id: str):
        yield from self.lines

    def retrieve(self, batch_id: str):  # pragma: no cover - the batch is recorded as ended
        raise AssertionError("no API call expected")


def _context(base: Path) -> tuple[Context, Path]:
    from tegbatchd.store import PlannedIntent

    data_root = base / "data"
    ctx = Context(paths=Paths(base / "state", base / "config", base / "logs"))
    store = ctx.store
    store.create_job("job_p", "requests", "t", {"source": "s"}, str(data_root), ["requests"])
    stage = store.stages("job_p")[0]
    rows = [(cid, str(data_root / "out" / f"{cid}.md"), "m", 5) for cid in IDS]
    (intent,) = store.record_stage(stage["id"], [PlannedIntent("archive", 1, rows)], [])
    counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
    store.attach_batch(intent, {"id": "msgbatch_p", "created_at": "2026-01-01T00:00:00Z",
                                "processing_status": "ended", "request_counts": counts})
    return ctx, data_root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, max_size=14))
@example([b"[" * 50_000, b'{"custom_id": "req-0", "result": {"type": "expired"}}'])  # nesting too deep
def test_any_results_stream_writes_each_first_sound_answer_once(lines):
    with tempfile.TemporaryDirectory() as tmp:
        ctx, data_root = _context(Path(tmp))
        try:
            report = retrieve_batch(ctx, FakeClient(lines), "msgbatch_p")
            expected: dict[str, str | None] = {}
            for raw in lines:
                try:
                    obj = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(obj, dict) or obj.get("custom_id") not in IDS or obj["custom_id"] in expected:
                    continue
                result = obj.get("result")
                if not isinstance(result, dict):
                    continue
                message = result.get("message")
                ok = result.get("type") == "succeeded" and isinstance(message, dict)
                expected[obj["custom_id"]] = message_text(message) if ok else None
            assert report.state == "retrieved"
            written = {p.stem: p.read_bytes().decode("utf-8") for p in (data_root / "out").glob("*")} \
                if (data_root / "out").exists() else {}
            assert written == {cid: text for cid, text in expected.items() if text is not None}
            assert [p for p in Path(tmp).rglob("*") if ".tmp-" in p.name] == []
            rows = ctx.store.requests_of_batch("msgbatch_p")
            assert all(r["outcome"] is not None for r in rows.values())  # every request has a record
            for cid, r in rows.items():
                assert (r["outcome"] == "succeeded") == (expected.get(cid) is not None)
                if cid not in expected:
                    assert r["error_type"] == "missing_result"
            again = retrieve_batch(ctx, FakeClient(lines), "msgbatch_p")
            assert again.state == "already" and again.written == 0
        finally:
            ctx.close()


SEGMENTS = st.sampled_from(["..", ".", "", "~", "link", "a file", "{custom_id}", "{index}", "{nope}", "x" * 300,
                            "\\..", "a\x00b", "/", "//", "commentary", "é", " ", "{custom_id}.md"])
TEMPLATE = st.lists(SEGMENTS | st.text(max_size=12), min_size=1, max_size=6).map("/".join) | st.text(max_size=40)


@pytest.fixture(scope="module")
def root_with_traps():
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "data"
        (root / "commentary").mkdir(parents=True)
        (base / "outside").mkdir()
        (root / "link").symlink_to(base / "outside")
        (root / "a file").write_text("x")
        yield root


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEMPLATE, st.text(max_size=70) | st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True),
       st.integers(0, 10**6))
def test_any_output_template_resolves_inside_the_data_root_or_is_refused(root_with_traps, template, cid, index):
    root = root_with_traps.resolve()
    try:
        path = resolve_inside(root_with_traps, render_output(template, custom_id=cid, index=index))
    except InputError as exc:
        assert exc.message
        return
    assert root in path.parents and path.is_absolute()
    assert os.path.realpath(path).startswith(str(root) + os.sep)
    assert len(f".{path.name}.tmp-4194304".encode()) <= 255  # its temp file can be written beside it
