"""`tegbatchd import`: a batch the old scripts made (their batch_<id>_info.json, or a bare id with --kind and
--output) becomes a job; the poller retrieves it into the old paths; importing twice records one job; bad
input is one line and records nothing. The batches are made on the emulator through the real SDK, as the
old scripts made them on the API, from the old workflow's real requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, TEST_KEY, assert_own_answer
from tests.support.emulator import sdk_client

MODEL = "claude-sonnet-5-5"  # the fixture's claude-sonnet-4-5 is retired on the emulator's day


def old_requests(count: int, stage: str = "narrative") -> list[dict]:
    """The first `count` real narrative requests of the old workflow (custom_ids TEG3_R1_narrative...), on a
    current model; with stage="story_notes" the same requests named as story notes."""
    out = []
    with (FIXTURES / "anthropic" / "requests-narrative-60.jsonl").open() as fh:
        for line in fh:
            request = json.loads(line)
            request["params"]["model"] = MODEL
            request["custom_id"] = request["custom_id"].replace("_narrative", f"_{stage}")
            out.append(request)
            if len(out) == count:
                break
    return out


def old_batch(emu, requests: list[dict]) -> str:
    """Create the batch as the old scripts did (the SDK, straight to the API); return its id."""
    return sdk_client(emu.url, api_key=TEST_KEY).messages.batches.create(requests=requests).id


def info_file(folder: Path, batch_id: str, batch_type: str = "round_narrative_reports") -> Path:
    """The old scripts' batch_results/batch_<id>_info.json, shaped as the real one in the fixtures."""
    info = json.loads((FIXTURES / "anthropic" / "info-narrative.json").read_text())
    info.update(batch_id=batch_id, batch_type=batch_type)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"batch_{batch_id}_info.json"
    path.write_text(json.dumps(info, indent=2))
    return path


@pytest.fixture
def api(api_cli):
    return api_cli("--process-seconds", "0")


def jobs(cli) -> list[dict]:
    return cli("list", "--json", check=True).json()["jobs"]


def test_an_info_file_is_adopted_once_and_retrieved_into_the_old_paths(api, tmp_path, data_root):
    cli, emu = api
    requests = old_requests(4)
    batch_id = old_batch(emu, requests)
    info = info_file(tmp_path / "streamlit" / "commentary" / "batch_results", batch_id)

    first = cli("import", str(info), "--json", check=True).json()["imported"]
    assert [(i["batch_id"], i["new"], i["requests"]) for i in first] == [(batch_id, True, 4)]
    assert first[0]["title"] == f"round reports (imported {batch_id})"
    again = cli("import", str(info))  # idempotent
    assert again.code == 0 and f"{batch_id} is recorded already (job {first[0]['job_id']}): nothing to do" in again.out
    assert [j["id"] for j in jobs(cli)] == [first[0]["job_id"]]

    poll = cli("poll", "--once", check=True)
    assert f"batch {batch_id}: retrieved 4/4 successful, 4 file(s) written" in poll.out
    folder = data_root / "commentary" / "round_reports"
    assert sorted(p.name for p in folder.iterdir()) == ["TEG3_R1_report.md", "TEG3_R2_report.md",
                                                        "TEG3_R3_report.md", "TEG3_R4_report.md"]
    for request in requests:
        teg, rnd = request["custom_id"].split("_")[:2]
        assert_own_answer((folder / f"{teg}_{rnd}_report.md").read_text(), request["custom_id"], request["params"])
    [job] = jobs(cli)
    assert job["state"] == "done" and job["written"] == 4
    assert cli("import", str(info.parent), check=True).out.startswith(f"{batch_id} is recorded already")
    assert "Nothing pending." in cli("poll", "--once", check=True).out


def test_a_running_batch_waits_and_the_story_notes_land_in_their_place(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "100000")
    requests = old_requests(2, stage="story_notes")
    batch_id = old_batch(emu, requests)
    folder = tmp_path / "batch_results"
    info_file(folder, batch_id, "round_story_notes")
    out = cli("import", str(folder), check=True).out
    assert "as job" in out and "round story notes" in out and "in_progress" in out
    cli("poll", "--once", check=True)
    assert not (data_root / "commentary").exists()  # still running: nothing written, nothing refused
    emu.finish(batch_id)
    cli("poll", "--once", check=True)
    notes = data_root / "commentary" / "round_reports"
    assert sorted(p.name for p in notes.iterdir()) == ["TEG3_R1_story_notes.md", "TEG3_R2_story_notes.md"]
    assert_own_answer((notes / "TEG3_R1_story_notes.md").read_text(), requests[0]["custom_id"],
                      requests[0]["params"])


def test_a_bare_batch_id_with_kind_and_output(api, tmp_path, data_root):
    cli, emu = api
    requests = [{"custom_id": f"note-{i}", "params": {"model": MODEL, "max_tokens": 100,
                                                     "messages": [{"role": "user", "content": f"note {i}"}]}}
                for i in range(3)]
    batch_id = old_batch(emu, requests)
    missing = cli("import", batch_id)
    assert missing.code == 2 and "a bare batch id needs --kind NAME and --output TEMPLATE" in missing.err
    assert len(missing.err.strip().splitlines()) == 1
    done = cli("import", batch_id, "--kind", "notes", "--output", "misc/{custom_id}.md", "--json", check=True)
    assert done.json()["imported"][0]["title"] == f"notes (imported {batch_id})"
    cli("poll", "--once", check=True)
    for request in requests:
        assert_own_answer((data_root / "misc" / f"{request['custom_id']}.md").read_text(), request["custom_id"],
                          request["params"])


@pytest.mark.parametrize(("content", "message"), [
    ("not json at all", "is not JSON (a batch info file is)"),
    ('{"status": "ended"}', 'names no batch id ("batch_id": "msgbatch_...")'),
    ('{"batch_id": "../../etc"}', 'names no batch id ("batch_id": "msgbatch_...")'),
])
def test_a_bad_info_file_is_one_line_and_records_nothing(api, tmp_path, content, message, _isolated_home):
    cli, emu = api
    good = info_file(tmp_path / "ok", old_batch(emu, old_requests(1)))
    bad = tmp_path / "batch_x_info.json"
    bad.write_text(content)
    result = cli("import", str(good), str(bad))
    assert result.code == 2
    assert result.err.strip() == f"error: {bad} {message}; nothing was imported — give a " \
                                 "batch_results/batch_<id>_info.json file, or a batch id"
    assert jobs(cli) == []


def test_a_batch_the_api_does_not_know_is_refused(api, tmp_path):
    cli, _ = api
    info = info_file(tmp_path, "msgbatch_01325H2W3UYtLHB2EGXLJHx7")  # the real one: not on this emulator
    result = cli("import", str(info))
    assert result.code == 2 and "batch msgbatch_01325H2W3UYtLHB2EGXLJHx7" in result.err
    assert "is not known to the API; nothing was imported" in result.err
    assert len(result.err.strip().splitlines()) == 1 and jobs(cli) == []
    nothing = cli("import", str(tmp_path / "nope.json"))
    assert nothing.code == 2 and "is neither a file nor a batch id" in nothing.err


def test_the_real_info_file_reads_as_the_batch_it_names(tmp_path):
    from tegbatchd.actions.importing import sources

    copy = tmp_path / "batch_msgbatch_01325H2W3UYtLHB2EGXLJHx7_info.json"
    shutil.copy(FIXTURES / "anthropic" / "info-narrative.json", copy)
    [source] = sources([str(copy)], None, None)
    assert (source.batch_id, source.label, source.batch_type) == ("msgbatch_01325H2W3UYtLHB2EGXLJHx7",
                                                                 "round reports", "round_narrative_reports")


def test_failed_requests_of_an_imported_batch_end_the_job_instead_of_blocking_it(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0", "--error-rate", "1", "--error-type", "overloaded_error")
    batch_id = old_batch(emu, old_requests(2))
    job_id = cli("import", str(info_file(tmp_path, batch_id)), "--json", check=True).json()["imported"][0]["job_id"]
    cli("poll", "--once", check=True)
    [job] = jobs(cli)
    assert job["state"] == "failed" and not job["blocked_reason"]  # transient, but never resent by itself
    retry = cli("retry", job_id)
    assert "2 request(s) cannot be resent" in retry.out, retry.out + retry.err
