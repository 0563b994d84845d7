"""Dynamic batching: concurrent requests to one model become one forward pass.

Requests wait in a bounded queue. The oldest waits at most `max_wait` for others with the same
task and settings (its *group key*) to join it, up to `max_batch_size` items; the group then runs
as one call of the model in the model's own worker thread, so the event loop never blocks and two
calls never share a model at once. While a batch computes, new requests queue up and form the
next batch at once: under load, batches fill by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("im2text.serve")

# (task, params, inputs) -> one result per input, in order; runs in the worker thread.
RunBatch = Callable[[str, dict[str, Any], list[Any]], list[Any]]
# (task, batch size, seconds) -> None; called after every forward pass (metrics).
OnBatch = Callable[[str, int, float], None]


class QueueFullError(Exception):
    """The model's queue has no room for this request (-> 429)."""


class ClosedError(Exception):
    """The batcher is shutting down and takes no new work (-> 503)."""


@dataclass(eq=False)
class _Job:
    task: str
    key: Hashable  # jobs with equal (task, key) may share one forward pass
    params: dict[str, Any]  # the call's keyword arguments, the same for every job of a key
    inputs: list[Any]  # one entry per image (or per text)
    future: asyncio.Future[list[Any]]
    arrived: float = field(default_factory=time.monotonic)

    @property
    def group(self) -> tuple[str, Hashable]:
        return self.task, self.key


class Batcher:
    """Groups requests to one model into batches and runs them in a worker thread.

    Args:
        name: the model's id (thread name, logs).
        run_batch: runs one batch on the model; see `RunBatch`.
        max_batch_size: items per forward pass (a larger single request still runs whole).
        max_wait_s: how long the oldest queued request waits for company.
        max_queue: items allowed to wait; `submit` raises QueueFullError beyond it.
        on_batch: called after each forward pass with (task, size, seconds).
        on_queue: called with the number of queued items whenever it changes.
    """

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: OnBatch | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.batches = 0  # forward passes run so far
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._pending: deque[_Job] = deque()
        self._queued = 0  # items in _pending
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"im2text-{name}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False

    @property
    def worker(self) -> ThreadPoolExecutor:
        """The model's one worker thread: work submitted here runs between batches, never
        beside one (the model never runs two calls at once)."""
        return self._executor

    @property
    def queued(self) -> int:
        """Items waiting (not yet in a running batch)."""
        return self._queued

    def has_room(self, n: int) -> bool:
        return self._queued + n <= self.max_queue

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # First use, or a new event loop (test clients may start one per session).
            self._loop = loop
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"batcher-{self.name}")

    async def submit(
        self, task: str, key: Hashable, params: dict[str, Any], inputs: list[Any]
    ) -> list[Any]:
        """Queue `inputs` and wait for their results (one per input, in order).

        Raises:
            QueueFullError: no room in the queue.
            ClosedError: shutting down.
            Exception: whatever the model call raised (the whole group shares the failure).
        """
        if self._closing:
            raise ClosedError(f"model {self.name!r} is shutting down")
        if not self.has_room(len(inputs)):
            raise QueueFullError(
                f"model {self.name!r} is busy ({self._queued} images queued, limit "
                f"{self.max_queue}); retry shortly"
            )
        self._ensure_started()
        assert self._loop is not None and self._wake is not None
        job = _Job(task, key, params, inputs, self._loop.create_future())
        self._pending.append(job)
        self._set_queued(self._queued + len(inputs))
        self._wake.set()
        # A cancelled wait (client gone, timeout) cancels the future: the job is then skipped.
        return await job.future

    def _set_queued(self, n: int) -> None:
        self._queued = n
        if self._on_queue:
            self._on_queue(n)

    def _group_size(self, group: tuple[str, Hashable]) -> int:
        return sum(len(j.inputs) for j in self._pending if j.group == group)

    def _drop_done(self) -> None:
        while self._pending and self._pending[0].future.done():
            self._set_queued(self._queued - len(self._pending.popleft().inputs))

    async def _run(self) -> None:
        assert self._wake is not None and self._loop is not None
        loop = self._loop
        while True:
            self._drop_done()
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._pending[0]
            deadline = head.arrived + self.max_wait_s
            while not self._closing and self._group_size(head.group) < self.max_batch_size:
                delay = deadline - time.monotonic()
                if delay <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    break
            jobs = self._take(head.group)
            if jobs:
                await self._compute(loop, jobs)

    def _take(self, group: tuple[str, Hashable]) -> list[_Job]:
        """Remove and return the oldest jobs of `group` that fit one batch (at least one)."""
        taken: list[_Job] = []
        size = 0
        keep: deque[_Job] = deque()
        for job in self._pending:
            if job.future.done():
                self._set_queued(self._queued - len(job.inputs))
            elif job.group == group and (
                not taken or size + len(job.inputs) <= self.max_batch_size
            ):
                taken.append(job)
                size += len(job.inputs)
            else:
                keep.append(job)
        self._pending = keep
        self._set_queued(self._queued - size)
        return taken

    async def _compute(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        head = jobs[0]
        inputs = [x for j in jobs for x in j.inputs]
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._executor, self._run_batch, head.task, head.params, inputs
            )
            if len(results) != len(inputs):
                raise RuntimeError(f"model returned {len(results)} results for {len(inputs)}")
        except Exception as e:
            log.exception("batch of %d for %s/%s failed", len(inputs), self.name, head.task)
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        finally:
            self.batches += 1
            if self._on_batch:
                self._on_batch(head.task, len(inputs), time.perf_counter() - start)
        log.debug(
            "%s/%s: batch of %d from %d requests", self.name, head.task, len(inputs), len(jobs)
        )
        i = 0
        for j in jobs:
            part, i = results[i : i + len(j.inputs)], i + len(j.inputs)
            if not j.future.done():
                j.future.set_result(part)

    async def close(self, timeout: float = 30.0) -> None:
        """Stop taking work, finish what is queued (up to `timeout`), stop the worker thread."""
        self._closing = True
        if self._task is not None and not self._task.done():
            if self._wake is not None:
                self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(ClosedError(f"model {self.name!r} shut down"))
        self._pending.clear()
        self._set_queued(0)
        self._executor.shutdown(wait=False, cancel_futures=True)
