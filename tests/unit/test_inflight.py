"""InFlight and the Slack Budget: work after an ack waits until every request has its answer."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from bot.adapters.slack.app import Budget
from bot.inflight import InFlight
from bot.web import YOUNG_THRESHOLD, tune_garbage_collector


async def test_quiet_returns_at_once_when_no_request_is_waiting() -> None:
    inflight = InFlight(patience=60)
    assert await inflight.quiet() is True
    assert inflight.held == 0


async def test_quiet_waits_for_the_last_request_in_flight() -> None:
    inflight = InFlight(patience=60)
    first, second = inflight.request(), inflight.request()
    first.__enter__()
    second.__enter__()
    waiter = asyncio.create_task(inflight.quiet())
    await asyncio.sleep(0)
    assert inflight.held == 1 and not waiter.done()
    first.__exit__(None, None, None)
    await asyncio.sleep(0)
    assert not waiter.done(), "one request is still waiting for its answer"
    second.__exit__(None, None, None)
    assert await waiter is True
    assert inflight.held == 0 and inflight.waiting == 0


async def test_quiet_waits_out_the_grace_after_the_last_answer() -> None:
    # The requests of a burst arrive a little apart: work started in a gap between them would
    # hold up the answers to the rest.
    inflight = InFlight(patience=60, grace=0.05)
    with inflight.request():
        pass
    waiter = asyncio.create_task(inflight.quiet())
    await asyncio.sleep(0)
    assert not waiter.done(), "quiet came before the grace after the answer"
    with inflight.request():  # the next of the burst, within the grace
        await asyncio.sleep(0.1)  # longer than the grace: only the answer in flight holds it
        assert not waiter.done(), "quiet came with a request still waiting for its answer"
    assert await waiter is True
    assert await inflight.quiet() is True  # and stays quiet while nothing comes


async def test_quiet_gives_up_after_its_patience() -> None:
    # A steady stream of requests must not hold the work back for ever.
    inflight = InFlight(patience=0)
    with inflight.request():
        assert await inflight.quiet() is False
    assert inflight.held == 0


async def test_one_bound_lets_every_waiter_of_a_busy_spell_go_together() -> None:
    inflight = InFlight(patience=0.05)
    with inflight.request():
        first = asyncio.create_task(inflight.quiet())
        await asyncio.sleep(0.03)
        later = asyncio.create_task(inflight.quiet())
        cancelled = asyncio.create_task(inflight.quiet())
        await asyncio.sleep(0)
        cancelled.cancel()
        # The first caller's patience bounds everyone's wait: the later one goes with it.
        assert await first is False and await later is False
        assert cancelled.cancelled() and inflight.held == 0
        # A new spell of waiting gets a bound of its own.
        again = asyncio.create_task(inflight.quiet())
        await asyncio.sleep(0.01)
        assert not again.done()
    assert await again is True


async def test_a_listeners_work_after_its_ack_waits_for_other_answers() -> None:
    inflight = InFlight(patience=60)
    budget = Budget(2.0, inflight)
    events: list[str] = []

    async def bolt_ack(**kwargs: Any) -> None:
        events.append("acked")

    async def listener(ack: Any, body: dict[str, Any], client: Any) -> None:
        assert await ack() is True
        events.append("work")

    with inflight.request():  # another request, still being answered
        await budget.wrap(listener)(ack=bolt_ack, body={}, client=None)
        # Bolt has its answer; the listener is parked until the other request has its own.
        assert events == ["acked"]
        assert inflight.held == 1
    await budget.settle()
    assert events == ["acked", "work"]


async def test_the_budget_answers_for_a_listener_that_is_slow_to_ack() -> None:
    inflight = InFlight(patience=60)
    budget = Budget(0.01, inflight)
    release = asyncio.Event()
    events: list[str] = []

    async def bolt_ack(**kwargs: Any) -> None:
        events.append("acked")

    async def listener(ack: Any, body: dict[str, Any], client: Any) -> None:
        await release.wait()
        events.append("late ack refused" if not await ack() else "acked twice")

    with inflight.request():
        # The budget's own ack does not wait for quiet (its request is the one in flight).
        await budget.wrap(listener)(ack=bolt_ack, body={}, client=None)
        assert events == ["acked"]
    release.set()
    await budget.settle()
    assert events == ["acked", "late ack refused"]


async def test_the_budget_keeps_each_requests_deadline_with_one_timer() -> None:
    budget = Budget(0.05)
    release = asyncio.Event()
    answered: list[str] = []

    def bolt_ack(name: str) -> Any:
        async def ack(**kwargs: Any) -> None:
            answered.append(name)

        return ack

    async def prompt(ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()

    async def slow(ack: Any, body: dict[str, Any], client: Any) -> None:
        await release.wait()

    loop = asyncio.get_running_loop()
    started = loop.time()
    await budget.wrap(prompt)(ack=bolt_ack("first"), body={}, client=None)
    await asyncio.sleep(0.02)
    # The second's budget runs from its own arrival, not from the first's.
    await budget.wrap(slow)(ack=bolt_ack("second"), body={}, client=None)
    assert loop.time() - started >= 0.02 + 0.05 - 0.005
    await budget.wrap(prompt)(ack=bolt_ack("third"), body={}, client=None)
    assert answered == ["first", "second", "third"]
    assert len(budget._deadlines) <= 2  # the answered ones are let go as new ones come
    release.set()
    await budget.settle()


async def test_bookkeeping_is_deferred_until_quiet_and_done_in_order() -> None:
    inflight = InFlight(patience=60, grace=0.01)
    done: list[int] = []

    def fails() -> None:
        raise RuntimeError("a metric that could not be recorded")

    with inflight.request():
        inflight.defer(lambda: done.append(1))
        inflight.defer(fails)
        inflight.defer(lambda: done.append(2))
        await asyncio.sleep(0.02)
        assert done == [], "bookkeeping was done with an answer still in flight"
    await asyncio.sleep(0)
    assert done == [], "bookkeeping was done before the grace after the last answer"
    assert await inflight.quiet() is True
    await asyncio.sleep(0)
    assert done == [1, 2]  # the failure logged, the rest done
    with inflight.request():
        inflight.defer(lambda: done.append(3))
        inflight.flush()  # the metrics page, and shutdown, do not wait
        assert done == [1, 2, 3]


def test_the_startup_heap_is_exempt_and_young_objects_are_collected_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD > thresholds[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
