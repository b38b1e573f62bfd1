"""Outputs at write time: a folder swapped for a symlink after submit is refused (nothing written outside
the data root), hand edits are kept (the new answer goes beside them), one temp-file scheme, one mode."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.conftest import assert_own_answer, request_params, write_requests

TEMPLATE = "commentary/misc/{custom_id}.md"


def rows(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "state" / "state.db") as conn:
        return conn.execute("SELECT custom_id, outcome, error_type, output_sha256 FROM requests ORDER BY id").fetchall()


def events(home: Path, kind: str) -> list[str]:
    with sqlite3.connect(home / "state" / "state.db") as conn:
        return [r[0] for r in conn.execute("SELECT message FROM events WHERE kind=?", (kind,))]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _swap_misc(data_root: Path, outside: Path) -> None:
    (data_root / "commentary").mkdir()
    (data_root / "commentary" / "misc").symlink_to(outside, target_is_directory=True)


def _swap_commentary(data_root: Path, outside: Path) -> None:
    (outside / "misc").mkdir()
    (outside / "misc" / "victim.md").write_text("the person's own file\n")
    (data_root / "commentary").symlink_to(outside, target_is_directory=True)


def _swap_root(data_root: Path, outside: Path) -> None:
    data_root.rename(data_root.with_name("data-moved"))
    (outside / "commentary" / "misc").mkdir(parents=True)
    data_root.symlink_to(outside, target_is_directory=True)


def _swap_files(data_root: Path, outside: Path) -> None:
    folder = data_root / "commentary" / "misc"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"req-{i:05d}.md").symlink_to(outside / "victim.md")


@pytest.mark.parametrize("swap", [_swap_misc, _swap_commentary, _swap_root, _swap_files],
                         ids=["commentary-misc", "commentary", "data-root", "the-file-itself"])
def test_a_folder_swapped_for_a_symlink_after_submit_is_refused(api_cli, tmp_path, data_root, _isolated_home, swap):
    cli, emu = api_cli("--process-seconds", "0")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.md").write_text("the person's own file\n")
    batch = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output", TEMPLATE,
                "--json", check=True).json()["batch_ids"][0]
    swap(data_root, outside)
    before = tree(outside)
    report = cli("retrieve", batch, "--json", check=True).json()
    assert tree(outside) == before  # nothing created or replaced outside the data root
    assert report["written"] == 0 and report["written_sample"] == [] and len(report["unsafe"]) == 3
    assert {f["error_type"] for f in report["failures"]} == {"unsafe_path"}
    assert any("is a symlink now" in a for a in report["anomalies"])
    assert [r[1:3] for r in rows(_isolated_home)] == [("errored", "unsafe_path")] * 3
    assert events(_isolated_home, "unsafe_path")
    human = cli("retrieve", batch, check=True).out  # recorded as failed: nothing more to do, said plainly
    assert "Nothing new" in human and "unsafe_path" in human


def test_hand_edits_are_kept_and_the_new_answer_goes_beside(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    folder = data_root / "commentary" / "misc"
    folder.mkdir(parents=True)
    (folder / "req-00002.md").write_text("written by the old scripts\n")  # never recorded by us
    reqs = write_requests(tmp_path / "r.jsonl", 3)
    params = request_params(reqs)
    first = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    report = cli("retrieve", first, "--json", check=True).json()
    assert (folder / "req-00002.md").read_text() == "written by the old scripts\n"
    assert_own_answer((folder / "req-00002.new.md").read_text(), "req-00002", params["req-00002"])
    assert report["kept_edits"] == [str(folder / "req-00002.new.md")]
    (folder / "req-00000.md").write_text("my edit\n")  # edited after we wrote it
    own = (folder / "req-00001.md").read_bytes()
    second = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    out = cli("retrieve", second, check=True).out  # a later job writing the same outputs
    assert (folder / "req-00000.md").read_text() == "my edit\n"
    assert_own_answer((folder / "req-00000.new.md").read_text(), "req-00000", params["req-00000"])
    rewritten = (folder / "req-00001.md").read_bytes()   # ours, unchanged since: rewritten in place, not beside
    assert rewritten != own and not (folder / "req-00001.new.md").exists()   # (the new answer names its new tag)
    assert_own_answer(rewritten.decode(), "req-00001", params["req-00001"])
    assert "req-00000.md: the file was edited since it was written" in out
    assert len(events(_isolated_home, "kept_edit")) == 3  # old-scripts file in both jobs, the edit once
    assert not [p for p in data_root.rglob("*") if ".tmp-" in p.name]


def test_outputs_and_assembled_files_share_one_mode_and_state_files_stay_private(tmp_path):
    from tegbatchd.paths import write_private
    from tegbatchd.teg.assemble import write_atomic
    from tegbatchd.writer import Writer

    old = os.umask(0o022)
    try:
        root = tmp_path / "data"
        with Writer(root) as writer:
            writer.write(str(root / "a" / "b.md"), "x")
        write_atomic(root / "c" / "d.md", "y", root=root)
        write_private(tmp_path / "state" / "s.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "a" / "b.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "c" / "d.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "state" / "s.json").stat().st_mode) == 0o600


def test_temp_files_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    from tegbatchd.writer import Writer, temp_name

    root = tmp_path / "data"
    (root / "f").mkdir(parents=True)
    dead = root / "f" / ".x.md.tmp-4194303"   # above any pid this machine hands out by default
    dead.write_text("half")
    live = root / "f" / f".y.md.tmp-{os.getppid()}"
    live.write_text("about to be renamed")
    with Writer(root) as writer:
        writer.write(str(root / "f" / "z.md"), "z")
    assert not dead.exists() and live.exists()
    assert temp_name("z.md").startswith(".z.md.tmp-")


def test_a_force_rewrite_replaces_a_hand_edit(tmp_path):
    from tegbatchd.writer import Writer

    root = tmp_path / "data"
    root.mkdir()
    (root / "a.md").write_text("edited")
    with Writer(root, recorded=lambda p: set(), force=True) as writer:
        written = writer.write(str(root / "a.md"), "new")
    assert not written.beside and (root / "a.md").read_text() == "new" and not (root / "a.new.md").exists()
    with Writer(root, recorded=lambda p: set()) as writer:
        (root / "a.md").write_text("edited again")
        assert writer.write(str(root / "a.md"), "newer").path == str(root / "a.new.md")
    assert json.loads(json.dumps(sorted(os.listdir(root)))) == ["a.md", "a.new.md"]


def _until_done(cli, job_id: str) -> list[str]:
    """Poll until the job has finished; return every line the polls printed."""
    lines: list[str] = []
    for _ in range(6):
        lines += cli("poll", "--once", check=True).out.splitlines()
        if cli("status", job_id, "--json", check=True).json()["state"] != "active":
            return lines
    raise AssertionError(f"{job_id} did not finish: {lines}")


def test_edited_reports_and_combined_files_are_kept_and_the_person_is_told(api_cli, real_data, _isolated_home):
    """The issue's --reports-only case: the narrative and the combined file the person edited survive a
    rewrite; the new versions go beside them (an edited new version too), the poll, `status` and the notice
    say so; --force rewrites them."""
    cli, _ = api_cli("--process-seconds", "0")
    rr = real_data / "commentary" / "round_reports"
    first = cli("submit", "round-reports", "--teg", "16", "--round", "1", "--json", check=True).json()["job_id"]
    _until_done(cli, first)
    combined, narrative = rr / "teg_16_round_1_report.md", rr / "TEG16_R1_report.md"
    combined.write_text(combined.read_text() + "\nMY EDIT OF THE COMBINED FILE\n")
    narrative.write_text(narrative.read_text() + "\nMY EDIT OF THE REPORT\n")
    edited = {p: p.read_text() for p in (combined, narrative)}

    def reports_only(*extra: str) -> tuple[str, list[str]]:
        job = cli("submit", "round-reports", "--teg", "16", "--round", "1", "--reports-only", *extra, "--json",
                  check=True).json()["job_id"]
        return job, _until_done(cli, job)

    second, said = reports_only()
    assert {p: p.read_text() for p in (combined, narrative)} == edited            # nothing of theirs replaced
    new_combined, new_narrative = rr / "teg_16_round_1_report.new.md", rr / "TEG16_R1_report.new.md"
    assert "## Report" in new_combined.read_text() and "MY EDIT" not in new_narrative.read_text()
    assert "MY EDIT OF THE REPORT" in new_combined.read_text()   # the combined file is built from their report
    told = "\n".join(said)
    assert "you edited kept" in told and str(new_combined) in told and str(new_narrative) in told
    status = cli("status", second, check=True).out
    assert status.count("kept your edit:") == 2 and str(new_combined) in status
    notice = [n for n in _store_notices(_isolated_home) if n["job_id"] == second][0]
    assert "2 file(s) you had edited were kept" in notice["body"]

    new_combined.write_text("MY EDIT OF THE NEW VERSION\n")   # the person works on the new version too
    reports_only()
    assert new_combined.read_text() == "MY EDIT OF THE NEW VERSION\n"
    assert "## Report" in (rr / "teg_16_round_1_report.new2.md").read_text()
    assert combined.read_text() == edited[combined]

    reports_only("--force")   # the person asks for a rewrite: theirs is replaced, nothing more beside it
    assert "MY EDIT OF THE COMBINED FILE" not in combined.read_text() and "## Report" in combined.read_text()
    assert "MY EDIT OF THE REPORT" not in narrative.read_text()
    assert not (rr / "teg_16_round_1_report.new3.md").exists()


def _store_notices(home: Path) -> list[dict]:
    from tegbatchd.store import Store

    return Store.open(home / "state" / "state.db").notices()


def test_force_replaces_hand_edits_from_retrieve_and_submit_requests(api_cli, tmp_path, data_root, _isolated_home):
    from tegbatchd.store import Store

    cli, _ = api_cli("--process-seconds", "0")
    folder = data_root / "commentary" / "misc"
    reqs = write_requests(tmp_path / "r.jsonl", 2)
    params = request_params(reqs)

    def submit(*extra: str) -> str:
        return cli("submit", "requests", str(reqs), "--output", TEMPLATE, *extra, "--json",
                   check=True).json()["batch_ids"][0]

    cli("retrieve", submit(), check=True)
    (folder / "req-00000.md").write_text("my edit\n")
    cli("retrieve", submit(), "--force", check=True)
    assert_own_answer((folder / "req-00000.md").read_text(), "req-00000", params["req-00000"])
    (folder / "req-00000.md").write_text("my second edit\n")
    cli("retrieve", submit("--force"), check=True)
    assert_own_answer((folder / "req-00000.md").read_text(), "req-00000", params["req-00000"])
    assert sorted(p.name for p in folder.iterdir()) == ["req-00000.md", "req-00001.md"]   # nothing beside
    assert Store.open(_isolated_home / "state" / "state.db").pending_notices() == []   # retrieve showed its notice
