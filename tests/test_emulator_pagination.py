"""Listing 250 batches through the emulator: newest first, both cursors, SDK auto-pagination."""

from __future__ import annotations

import pytest

from tests.support.emulator import running_emulator, sdk_client

COUNT = 250
ONE = [{"custom_id": "only", "params": {"model": "m", "max_tokens": 5,
                                          "messages": [{"role": "user", "content": "hi"}]}}]


@pytest.fixture(scope="module")
def listing():
    """An emulator holding 250 batches; yields (client, ids newest first)."""
    with running_emulator("--process-seconds", "0") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        created = [client.messages.batches.create(requests=ONE).id for _ in range(COUNT)]
        yield client, created[::-1]


def test_default_page_is_the_20_newest(listing):
    client, newest_first = listing
    page = client.messages.batches.list()
    assert [b.id for b in page.data] == newest_first[:20]
    assert page.has_more is True
    assert (page.first_id, page.last_id) == (newest_first[0], newest_first[19])
    assert all(b.processing_status == "ended" for b in page.data)


def test_paging_older_with_after_id(listing):
    client, newest_first = listing
    seen, after, pages = [], None, []
    while True:
        page = client.messages.batches.list(limit=100, **({"after_id": after} if after else {}))
        pages.append((len(page.data), page.has_more))
        seen += [b.id for b in page.data]
        if not page.has_more:
            break
        after = page.last_id
    assert pages == [(100, True), (100, True), (50, False)]
    assert seen == newest_first


def test_paging_newer_with_before_id(listing):
    client, newest_first = listing
    oldest = newest_first[-1]
    page = client.messages.batches.list(limit=100, before_id=oldest)
    assert [b.id for b in page.data] == newest_first[-101:-1]  # the 100 just newer, newest first
    assert page.has_more is True
    seen = [b.id for b in page.data]
    while page.has_more:
        page = client.messages.batches.list(limit=100, before_id=page.first_id)
        seen = [b.id for b in page.data] + seen
    assert len(page.data) == 49 and page.first_id == newest_first[0]
    assert seen == newest_first[:-1]
    empty = client.messages.batches.list(before_id=newest_first[0])
    assert (empty.data, empty.has_more, empty.first_id, empty.last_id) == ([], False, None, None)


def test_sdk_auto_pagination_in_both_directions(listing):
    client, newest_first = listing
    assert [b.id for b in client.messages.batches.list(limit=7)] == newest_first
    assert [b.id for b in client.messages.batches.list(limit=1000)] == newest_first
    backwards = [b.id for b in client.messages.batches.list(limit=30, before_id=newest_first[-1])]
    assert sorted(backwards) == sorted(newest_first[:-1])
    pages = list(client.messages.batches.list(limit=100).iter_pages())
    assert [len(p.data) for p in pages] == [100, 100, 50]


def test_cursor_on_a_deleted_batch_still_pages():
    with running_emulator("--process-seconds", "0") as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        ids = [client.messages.batches.create(requests=ONE).id for _ in range(5)][::-1]
        client.messages.batches.delete(ids[2])
        page = client.messages.batches.list(after_id=ids[2])
        assert [b.id for b in page.data] == ids[3:]
        assert [b.id for b in client.messages.batches.list()] == ids[:2] + ids[3:]
