"""The gate that caps requests in flight: first come, first served, no place ever lost."""

from __future__ import annotations

import asyncio

from happyrobot_async._gate import Gate


async def enter(gate: Gate, name: str, entered: list[str]) -> None:
    """Pass the gate (at once or in turn) and note it."""
    if not gate.take():
        await gate.wait()
    entered.append(name)


async def test_places_are_taken_at_once_until_none_is_free() -> None:
    """`take` succeeds `size` times, then refuses."""
    gate = Gate(2)
    assert [gate.take(), gate.take(), gate.take()] == [True, True, False]
    gate.give()
    assert gate.free == 1


async def test_waiters_get_places_in_the_order_they_came() -> None:
    """A place given back goes to the longest waiter, not to whoever asks next."""
    gate = Gate(1)
    assert gate.take()
    entered: list[str] = []
    tasks = [asyncio.create_task(enter(gate, name, entered)) for name in "abc"]
    await asyncio.sleep(0)
    gate.give()
    assert not gate.take()  # the place went to "a", not to a newcomer
    await asyncio.sleep(0)
    gate.give()
    await asyncio.sleep(0)
    gate.give()
    await asyncio.gather(*tasks)
    assert entered == ["a", "b", "c"]
    assert gate.free == 0


async def two_waiters(gate: Gate, entered: list[str]) -> tuple[asyncio.Task[None], ...]:
    """Fill the gate, then queue "first" and "second" behind it."""
    assert gate.take()
    waiters = tuple(asyncio.create_task(enter(gate, name, entered)) for name in ("first", "second"))
    await asyncio.sleep(0)
    return waiters


async def test_a_cancelled_waiter_is_passed_by() -> None:
    """A waiter cancelled while waiting takes no place; the next one gets it."""
    gate, entered = Gate(1), list[str]()
    first, second = await two_waiters(gate, entered)
    first.cancel()
    await asyncio.sleep(0)
    gate.give()
    await second
    assert entered == ["second"]
    gate.give()
    assert gate.free == 1


async def test_a_place_handed_to_a_waiter_cancelled_before_it_ran_is_passed_on() -> None:
    """Handed a place and cancelled in the same loop turn: the place is not lost."""
    gate, entered = Gate(1), list[str]()
    first, second = await two_waiters(gate, entered)
    gate.give()  # hands the place to "first"...
    first.cancel()  # ...which is cancelled before it resumes
    await asyncio.gather(first, return_exceptions=True)
    await second
    assert entered == ["second"]
    gate.give()
    assert gate.free == 1


async def test_cancelled_waiters_leave_the_queue_at_once() -> None:
    """Waits cancelled behind a full gate (request timeouts) hold no place in the queue."""
    gate = Gate(1)
    assert gate.take()
    tasks = [asyncio.create_task(gate.wait()) for _ in range(100)]
    await asyncio.sleep(0)
    assert gate.waiting == 100
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks[1:], return_exceptions=True)
    assert gate.waiting == 1
    gate.give()
    await tasks[0]
    assert (gate.waiting, gate.free) == (0, 0)


async def test_a_waiter_passed_by_before_its_cancellation_ran_ends_cancelled() -> None:
    """Cancelled, then passed by by a `give` before it resumes: it ends cancelled, no error."""
    gate, entered = Gate(1), list[str]()
    first, second = await two_waiters(gate, entered)
    first.cancel()
    gate.give()  # passes the cancelled "first" by, hands the place to "second"
    (outcome,) = await asyncio.gather(first, return_exceptions=True)
    assert isinstance(outcome, asyncio.CancelledError)
    await second
    assert (entered, gate.waiting, gate.free) == (["second"], 0, 0)
