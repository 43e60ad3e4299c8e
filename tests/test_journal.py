"""The batch journal: records, replay, identity, torn and bad lines, the lock, v0.1 journals."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

import happyrobot_async as hr
from happyrobot_async._journal_records import jobs_fingerprint
from happyrobot_async._journal_writer import Appender
from happyrobot_async.journal import Journal, states_summary

M1, M2 = "m" * 24, "n" * 24


def make_jobs(count: int = 3, prefix: str = "job", keys: bool = False) -> list[hr.TrainingJob]:
    return [
        hr.TrainingJob(
            use_case_id="uc",
            name=f"{prefix}-{i}",
            from_model_id="f" * 24,
            train_sample_ids=["a"],
            test_sample_ids=["b"],
            key=f"k{i}" if keys else None,
        )
        for i in range(count)
    ]


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_replay_restores_each_job_state(tmp_path: Path) -> None:
    """After intent, created, status and done records, a reopen knows each job's state and times."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    with Journal.open(path, jobs) as journal:
        journal.intent(jobs[0])
        journal.created(jobs[0], M1)
        journal.status(jobs[0], M1, "training")
        journal.intent(jobs[1])
        journal.intent(jobs[2])
        journal.created(jobs[2], M2)
        journal.done(jobs[2], {"id": M2, "status": "active"}, None)

    with Journal.open(path, jobs) as replayed:
        first, second, third = (replayed.state(job) for job in jobs)
    assert (first.model_id, first.status, first.done, first.history) == (
        M1,
        "training",
        False,
        [M1],
    )
    assert first.created_at is not None and first.training_at is not None
    assert first.created_at <= first.training_at
    assert second.sent_at is not None and second.model_id is None and second.attempts == 1
    assert third.done and third.final_model == {"id": M2, "status": "active"}
    assert third.finished_at is not None and third.sent_at is None


def test_every_line_is_versioned_json_naming_the_job(tmp_path: Path) -> None:
    """Each record is one JSON object per line, version 2, naming its job by key or use case."""
    path = tmp_path / "run.journal"
    keyed, plain = make_jobs(1, keys=True)[0], make_jobs(1, prefix="plain")[0]
    with Journal.open(path, [keyed, plain]) as journal:
        journal.intent(keyed)
        journal.intent(plain)
    records = lines(path)
    assert [r["type"] for r in records] == ["header", "intent", "intent"]
    assert all(r["v"] == 2 for r in records)
    assert [r.get("job") for r in records[1:]] == [["k0"], ["uc", "plain-0"]]
    assert set(records[1]["content"]) >= {"from_model_id", "train_sample_ids"}  # type: ignore[arg-type]


def test_a_retry_opens_a_new_attempt_and_keeps_the_history(tmp_path: Path) -> None:
    """An intent after `done` starts a new attempt; every model id the job had is kept, in order."""
    path, (job,) = tmp_path / "run.journal", make_jobs(1)
    with Journal.open(path, [job]) as journal:
        journal.intent(job)
        journal.created(job, M1)
        journal.done(job, {"id": M1, "status": "failed"}, None)
        assert journal.state(job).failed
        journal.intent(job)
        journal.created(job, M2)
    with Journal.open(path, [job]) as replayed:
        state = replayed.state(job)
    assert (state.done, state.model_id, state.history, state.attempts) == (False, M2, [M1, M2], 2)


def test_torn_last_line_is_dropped_and_a_whole_one_kept(tmp_path: Path) -> None:
    """Half a line (a crash mid-write) is dropped and cut; a whole one without newline stays."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    with Journal.open(path, jobs) as journal:
        journal.intent(jobs[0])
    with path.open("a") as file:
        file.write('{"v":2,"type":"created","job":["uc","job-0"],"mod')
    with Journal.open(path, jobs) as reopened:
        assert reopened.state(jobs[0]).model_id is None
        reopened.created(jobs[0], M1)
    with Journal.open(path, jobs) as replayed:
        assert replayed.state(jobs[0]).model_id == M1
    whole = '{"v":2,"type":"created","job":["uc","job-1"],"model_id":"' + M2 + '","at":null}'
    with path.open("a") as file:
        file.write(whole)  # a hand edit without the final newline
    with Journal.open(path, jobs) as replayed:
        assert replayed.state(jobs[1]).model_id == M2
    assert path.read_text().endswith(whole + "\n")


def test_blank_lines_are_accepted(tmp_path: Path) -> None:
    """A blank last line (or blank lines anywhere) is not an error."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    with Journal.open(path, jobs) as journal:
        journal.intent(jobs[0])
    with path.open("a") as file:
        file.write("\n   \n")
    with Journal.open(path, jobs) as replayed:
        replayed.created(jobs[0], M1)
    with Journal.open(path, jobs) as replayed:
        assert replayed.state(jobs[0]).model_id == M1


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        ("not json", "not JSON"),
        ('{"v":2,"type":"created","job":["k"],"model_id":"m","at":null,"x":1}', "unknown field"),
        ('{"v":3,"type":"created","job":["k"],"model_id":"m","at":null}', "newer"),
        ('{"v":2,"type":"teleport","job":["k"]}', "unknown record type"),
        ('{"v":2,"type":"created","job":"k","model_id":"m","at":null}', "job:"),
        ('{"v":2,"type":"created","job":["k"],"at":null}', "model_id"),
        ('{"v":2,"type":"status","job":["k"],"model_id":"m","status":"x","at":"noon"}', "at:"),
        ('{"v":1,"type":"created","job":0,"model_id":"m"}', "version 1 created record"),
        ('{"v":2,"type":"header","at":"2024-01-01T00:00:00+00:00"}', "header"),
    ],
)
def test_a_bad_line_names_its_number(tmp_path: Path, bad_line: str, why: str) -> None:
    """A bad line that is not the last is a JournalError naming the line and what is wrong."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    Journal.open(path, jobs).close()
    with path.open("a") as file:
        file.write(bad_line + "\n")
        file.write('{"v":2,"type":"created","job":["k"],"model_id":"m","at":null}\n')
    with pytest.raises(hr.JournalError, match="line 2") as info:
        Journal.open(path, jobs)
    assert why in str(info.value)
    assert "\n" not in str(info.value)


def test_jobs_are_found_by_identity_whatever_the_list(tmp_path: Path) -> None:
    """Adding, removing and reordering jobs between opens keeps each job's state."""
    path, jobs = tmp_path / "run.journal", make_jobs(4, keys=True)
    with Journal.open(path, jobs) as journal:
        journal.intent(jobs[1])
        journal.created(jobs[1], M1)
        journal.intent(jobs[3])
    changed = [*make_jobs(6, keys=True)[4:], jobs[3], jobs[1], jobs[0]]  # k2 removed
    with Journal.open(path, changed) as journal:
        assert journal.state(jobs[1]).model_id == M1
        assert journal.state(jobs[3]).sent_at is not None
        assert journal.removed(changed) == []  # k2 was never sent: the journal never knew it
        summary = states_summary(journal, changed)
    assert summary == {"done": 0, "created": 1, "sent": 1, "new": 3, "removed": 0}
    with Journal.open(path, changed[:3]) as journal:
        assert journal.removed(changed[:3]) == ["k1"]


def test_a_job_changed_after_it_was_sent_is_refused_by_name(tmp_path: Path) -> None:
    """A sent job whose content changed is refused, naming it and the fields; unsent may change."""
    path, jobs = tmp_path / "run.journal", make_jobs(3, keys=True)
    with Journal.open(path, jobs) as journal:
        journal.intent(jobs[0])
    unsent_changed = hr.TrainingJob(**{**_fields(jobs[1]), "from_model_id": "g" * 24})
    Journal.open(path, [jobs[0], unsent_changed]).close()
    sent_changed = hr.TrainingJob(**{**_fields(jobs[0]), "train_sample_ids": ["z"], "name": "x"})
    with pytest.raises(hr.JournalError) as info:
        Journal.open(path, [sent_changed, jobs[2]])
    message = str(info.value)
    assert "1 job(s) changed after their create was sent: k0 (name, train_sample_ids)" in message
    assert "new key" in message and "fresh" not in message and "another journal" not in message


def _fields(job: hr.TrainingJob) -> dict[str, object]:
    return {
        "use_case_id": job.use_case_id,
        "name": job.name,
        "from_model_id": job.from_model_id,
        "train_sample_ids": list(job.train_sample_ids),
        "test_sample_ids": list(job.test_sample_ids),
        "key": job.key,
    }


def test_a_second_runner_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """While a journal is open, opening it again is a JournalError naming this pid; after: fine."""
    path, jobs = tmp_path / "run.journal", make_jobs()
    journal = Journal.open(path, jobs)
    with pytest.raises(hr.JournalError, match=rf"in use by another runner \(pid {os.getpid()}\)"):
        Journal.open(path, jobs)
    journal.close()
    Journal.open(path, jobs).close()


async def test_a_killed_runner_leaves_no_stale_lock(tmp_path: Path) -> None:
    """A process holding the journal is SIGKILLed; the journal opens at once afterwards."""
    path = tmp_path / "run.journal"
    script = (
        "import sys, happyrobot_async as hr\n"
        "from happyrobot_async.journal import Journal\n"
        "job = hr.TrainingJob(use_case_id='uc', name='x', from_model_id='f' * 24,\n"
        "                     train_sample_ids=['a'], test_sample_ids=['b'])\n"
        "journal = Journal.open(sys.argv[1], [job])\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), timeout=30) == b"locked\n"
    with pytest.raises(hr.JournalError, match=f"pid {process.pid}"):
        Journal.open(path, make_jobs(1, prefix="x"))
    process.kill()
    await process.wait()
    Journal.open(path, []).close()


def _v1_journal(path: Path, jobs: list[hr.TrainingJob], records: list[dict[str, object]]) -> None:
    header = {"v": 1, "type": "header", "fingerprint": jobs_fingerprint(jobs), "jobs": len(jobs)}
    path.write_text("".join(json.dumps({"v": 1, **r}) + "\n" for r in [header, *records]))


def test_a_v01_journal_opens_and_is_upgraded(tmp_path: Path) -> None:
    """A v0.1 journal opens with its job list; only refused POSTs stay closed; the file is v2."""
    path, jobs = tmp_path / "run.journal", make_jobs(4)
    at = "2024-05-01T10:00:00+00:00"
    _v1_journal(
        path,
        jobs,
        [
            {"type": "intent", "job": 0, "at": at},
            {"type": "created", "job": 0, "model_id": M1},
            {"type": "status", "job": 0, "model_id": M1, "status": "training"},
            {"type": "done", "job": 0, "model": {"id": M1, "status": "active"}, "error": None},
            {"type": "intent", "job": 1, "at": at},
            {"type": "done", "job": 1, "model": None, "error": "POST /models: 422 Unprocessable"},
            {"type": "intent", "job": 2, "at": at},
            {"type": "done", "job": 2, "model": None, "error": "POST /models: 401 Unauthorized"},
            {"type": "intent", "job": 3, "at": at},
            {"type": "done", "job": 3, "model": None, "error": "GET /models: 401 Unauthorized"},
        ],
    )
    with Journal.open(path, jobs) as journal:
        states = [journal.state(job) for job in jobs]
    assert states[0].done and states[0].history == [M1]
    assert states[1].refused  # a refused POST is proof
    assert [s.done for s in states[2:]] == [False, False]  # a 401 proves nothing: reopened
    assert all(s.sent_at is not None for s in states[2:])  # to be reconciled before any POST
    assert {r["v"] for r in lines(path)} == {2}
    with Journal.open(path, list(reversed(jobs))) as journal:  # upgraded: order no longer matters
        assert journal.state(jobs[0]).done


def test_a_v01_journal_of_other_jobs_is_refused_clearly(tmp_path: Path) -> None:
    """A v0.1 journal opened with another job list is refused, saying how to upgrade it."""
    path, jobs = tmp_path / "run.journal", make_jobs(3)
    _v1_journal(path, jobs, [{"type": "intent", "job": 0, "at": "2024-05-01T10:00:00+00:00"}])
    with pytest.raises(hr.JournalError) as info:
        Journal.open(path, [*jobs, *make_jobs(1, prefix="more")])
    message = str(info.value)
    assert "happyrobot-async 0.1" in message and "3-job list" in message
    assert "Run it once with that jobs file to upgrade it" in message
    assert (
        "fresh" not in message and "another journal" not in message and "new journal" not in message
    )
    assert lines(path)[0]["v"] == 1  # untouched


async def test_a_failed_write_fails_the_wait_with_a_journal_error(tmp_path: Path) -> None:
    """A write the disk refuses (ENOSPC, via /dev/full) is a JournalError saying nothing is lost."""
    journal = Journal(tmp_path / "run.journal", {}, Appender(Path("/dev/full")))
    (job,) = make_jobs(1)
    with pytest.raises(hr.JournalError, match="No space left on device; nothing is lost"):
        await journal.wait(journal.intent(job))
    with pytest.raises(hr.JournalError, match="No space left"):
        journal.close()
