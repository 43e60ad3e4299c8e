"""The batch journal: durable records, replay, torn lines, corruption and foreign job lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import happyrobot_async as hr
from happyrobot_async.journal import Journal, jobs_fingerprint


def make_jobs(count: int = 3, prefix: str = "job") -> list[hr.TrainingJob]:
    return [
        hr.TrainingJob(
            use_case_id="uc",
            name=f"{prefix}-{i}",
            from_model_id="f" * 24,
            train_sample_ids=["a"],
            test_sample_ids=["b"],
        )
        for i in range(count)
    ]


def test_replay_restores_each_job_state(tmp_path: Path) -> None:
    """After intent, created, status and done records, a reopen knows each job's state."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    journal = Journal.open(path, jobs)
    journal.intent(0)
    journal.created(0, "m" * 24)
    journal.status(0, "m" * 24, "training")
    journal.intent(1)
    journal.intent(2)
    journal.created(2, "n" * 24)
    journal.done(2, {"id": "n" * 24}, None)
    journal.close()

    with Journal.open(path, jobs) as replayed:
        states = replayed.states
    assert (states[0].model_id, states[0].status, states[0].done) == ("m" * 24, "training", False)
    assert states[1].intent_at is not None and states[1].model_id is None
    assert states[2].done and states[2].final_model == {"id": "n" * 24}


def test_every_line_is_versioned_json(tmp_path: Path) -> None:
    """Each record is one JSON object per line, with a version and a type."""
    path = tmp_path / "run.journal"
    journal = Journal.open(path, make_jobs())
    journal.intent(0)
    journal.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in records] == ["header", "intent"]
    assert all(r["v"] == 1 for r in records)
    assert records[0]["fingerprint"] == jobs_fingerprint(make_jobs())


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    """A crash mid-write leaves half a line; replay ignores it and later appends stay clean."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    journal = Journal.open(path, jobs)
    journal.intent(0)
    journal.close()
    with path.open("a") as file:
        file.write('{"v":1,"type":"created","job":0,"mod')
    reopened = Journal.open(path, jobs)
    assert reopened.states[0].model_id is None
    reopened.created(0, "m" * 24)
    reopened.close()
    with Journal.open(path, jobs) as replayed:
        assert replayed.states[0].model_id == "m" * 24


@pytest.mark.parametrize(
    "bad_line",
    [
        "not json",
        '{"v":1,"type":"created","job":0,"model_id":"m","extra":1}',
        '{"v":2,"type":"created","job":0,"model_id":"m"}',
        '{"v":1,"type":"teleport","job":0}',
        '{"v":1,"type":"created","job":99,"model_id":"m"}',
        '{"v":1,"type":"created","job":"zero","model_id":"m"}',
    ],
)
def test_corrupt_middle_line_names_its_number(tmp_path: Path, bad_line: str) -> None:
    """A bad line that is not the last is a JournalError naming the line."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    journal = Journal.open(path, jobs)
    journal.close()
    with path.open("a") as file:
        file.write(bad_line + "\n")
        file.write('{"v":1,"type":"created","job":1,"model_id":"m"}\n')
    with pytest.raises(hr.JournalError, match="line 2"):
        Journal.open(path, jobs)


def test_journal_of_other_jobs_is_refused(tmp_path: Path) -> None:
    """Replaying a journal against a different job list is refused with a clear message."""
    path = tmp_path / "run.journal"
    Journal.open(path, make_jobs()).close()
    with pytest.raises(hr.JournalError, match="different job list"):
        Journal.open(path, make_jobs(prefix="other"))
    with pytest.raises(hr.JournalError, match="different job list"):
        Journal.open(path, make_jobs(count=4))


def test_fingerprint_is_order_sensitive_and_stable() -> None:
    """The same jobs give the same fingerprint; reordered jobs do not."""
    jobs = make_jobs()
    assert jobs_fingerprint(jobs) == jobs_fingerprint(make_jobs())
    assert jobs_fingerprint(jobs) != jobs_fingerprint(jobs[::-1])
