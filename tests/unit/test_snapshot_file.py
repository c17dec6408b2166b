"""A snapshot file (deployments/snapshot.py) as plan reads it back: what it may show."""

from __future__ import annotations

import pytest

from deployments.snapshot import Snapshot, SnapshotError, without_credentials


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://admin:pw@prefect.example:8443/api?token=t", "https://prefect.example:8443/api"),
        ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200/api"),
        ("http://[::1]:4200/api", "http://[::1]:4200/api"),
    ],
)
def test_the_server_address_keeps_no_credential(url: str, shown: str) -> None:
    assert without_credentials(url) == shown


def test_a_snapshot_reads_back_as_it_was_written(tmp_path) -> None:
    taken = Snapshot(
        server="http://127.0.0.1:4200/api",
        taken="2026-12-06T07:00:00+00:00",
        records={"project": {"record": {"variable": {"x": {"id": "1", "fields": {}}}}}},
        objects={"variable": [{"key": "x", "id": "1", "fields": {"value": 1}, "tags": []}]},
        trigger_ids=[],
    )
    path = tmp_path / "snapshot.json"
    path.write_text(taken.to_json())
    assert Snapshot.load(path) == taken
    assert Snapshot.load(path).others_ids("another-project") == {"1"}
    assert Snapshot.load(path).others_ids("project") == set()


@pytest.mark.parametrize("content", ["{not json", '{"format": 0}', '{"format": 1}'])
def test_a_file_that_is_no_snapshot_is_named(tmp_path, content: str) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(content)
    with pytest.raises(SnapshotError, match=str(path)):
        Snapshot.load(path)
