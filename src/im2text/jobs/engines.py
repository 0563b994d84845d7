"""Run a sharded bulk job: `--engine local` (processes on this machine) or `--engine ray`.

Both are thin adapters over the shard protocol (`jobs/shards.py`): the driver lists the inputs
into the manifest, schedules the shards that have no record file yet, and each worker — a
process or a Ray actor that loads the model once — runs shard after shard with the task code
and publishes each shard's records itself. Only shard numbers and path lists travel to workers
and only counts come back, so memory and Ray's object store stay small however big the job.

Faults: a worker that dies mid-shard leaves at most a temp file (removed by the next run) and
its shard is run again on a fresh worker; a driver killed at any moment loses nothing written,
and a rerun runs only the missing shards.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from im2text.jobs.shards import (
    SUCCESS,
    JobSpec,
    Manifest,
    ShardCounts,
    Storage,
    count_records,
    job_items,
    run_shard,
    shard_status,
)

ENGINES = ("local", "ray")
MAX_ATTEMPTS = 3  # runs of one shard before the job gives up on it
# Fault injection for the exactly-once tests: a worker exits (os._exit) in the middle of the
# shard after this many, its records written to a temp file but not yet published.
FAULT_ENV = "IM2TEXT_FAULT_EXIT_AFTER_SHARDS"
_FORWARD_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "TRANSFORMERS_OFFLINE", FAULT_ENV)


@dataclass(frozen=True)
class EngineConfig:
    """How a sharded job runs (the `--engine` flags)."""

    engine: str = "local"  # "local": worker processes on this machine; "ray": a Ray cluster
    shard_size: int | None = None  # inputs a shard (default 1000; a rerun keeps the manifest's)
    workers: tuple[int, int] | None = None  # MIN,MAX workers (default: what the CPUs/GPUs fit)
    cpus_per_worker: float | None = None  # CPU threads a worker (default: all CPUs / workers)
    gpus_per_worker: float = 0.0  # GPUs a Ray worker (fractions share a GPU)
    ray_address: str | None = None  # "auto", HOST:PORT; None: $RAY_ADDRESS or a Ray in this process
    parquet: bool = False  # also write shard-N.parquet
    retry_errors: bool = False  # run again the inputs whose records hold an error
    progress: bool = True  # a progress bar of shards done / total, images/s


@dataclass
class JobSummary:
    """What a sharded run did; `failed` counts records with an error in the whole output."""

    output: str
    shards: int
    shards_run: int  # shards run this time
    records: int
    failed: int
    inputs_new: int  # inputs the listing added to the manifest this time
    seconds: float
    per_shard: list[ShardCounts] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


@dataclass(frozen=True)
class _Plan:
    """One run's work, as an engine receives it."""

    job: JobSpec
    load: dict[str, Any]  # im2text.load keywords for each worker
    storage: Storage
    manifest: Manifest
    todo: list[int]  # the shards to run
    config: EngineConfig

    def shard_args(self, shard: int) -> tuple[Any, ...]:
        """`ShardWorker.run`'s arguments for one shard (small: paths, not images)."""
        items = self.manifest.shard_items(shard)
        return (self.job, self.storage.root, shard, items, self.config.parquet,
                self.config.retry_errors)  # fmt: skip


def run_job(
    task: str,
    inputs: Iterable[Any],
    output: str | os.PathLike[str],
    *,
    model: str,
    load: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    config: EngineConfig = EngineConfig(),
) -> JobSummary:
    """Run `task` over `inputs` into the sharded folder `output`, resuming what is there.

    Args:
        inputs: `ImageSource`s (paths), or (source, question) pairs for "ask".
        model: preset, Hub id or model directory.
        load: `im2text.load` keywords for each worker (device, dtype, revision, batch_size, ...).
        params: the task's parameters and, for generating tasks, `GenerationSettings` fields;
            JSON values, since they name the job in its manifest.

    Raises:
        ManifestError: `output` holds another job's outputs.
        ValueError: an unknown engine or task, or invalid sizes.
    """
    from im2text.tasks import get_task

    if config.engine not in ENGINES:
        raise ValueError(f"unknown engine {config.engine!r}; choose from {', '.join(ENGINES)}")
    get_task(task)
    load = dict(load or {})
    if Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())  # workers may start elsewhere
    load["model"] = model
    # int8 / graph outputs are not float32 torch's: a shard folder holds one kind only.
    backend = {k: load[k] for k in ("backend", "quantize") if load.get(k) not in (None, "torch")}
    job = JobSpec(task, model, load.get("revision"), {**dict(params or {}), **backend})
    started = time.monotonic()
    storage = Storage(output)
    with storage.lock():  # one driver a folder: a second is refused, not run twice
        return _run_job(job, load, storage, inputs, config, started)


def _run_job(
    job: JobSpec,
    load: dict[str, Any],
    storage: Storage,
    inputs: Iterable[Any],
    config: EngineConfig,
    started: float,
) -> JobSummary:
    manifest, new = Manifest.open(storage, job, job_items(inputs), config.shard_size)
    storage.remove_temp_files()
    todo = shard_status(storage, manifest, retry_errors=config.retry_errors)
    counts: list[ShardCounts] = []
    if todo:
        storage.delete(SUCCESS)
        run = _run_ray if config.engine == "ray" else _run_local
        counts = run(_Plan(job, load, storage, manifest, todo, config))
    storage.remove_temp_files()  # left by workers that died mid-shard
    missing = shard_status(storage, manifest, retry_errors=False)
    if missing:  # an engine returned without publishing every shard: never report success
        raise RuntimeError(f"shards {missing[:5]} are not done; rerun to finish them")
    totals = count_records(storage, manifest)
    seconds = time.monotonic() - started
    from im2text import __version__

    success = {**totals, "fingerprint": manifest.fingerprint, "im2text": __version__}
    storage.write(SUCCESS, (json.dumps(success) + "\n").encode())
    return JobSummary(
        storage.root,
        totals["shards"],
        len(counts),
        totals["records"],
        totals["failed"],
        new,
        seconds,
        counts,
    )


# --- the worker ------------------------------------------------------------------------------


class ShardWorker:
    """Loads the model once and runs shard after shard (a Ray actor, or one per process)."""

    def __init__(self, load: dict[str, Any], threads: int | None):
        if threads:
            import torch

            torch.set_num_threads(max(1, threads))
        import im2text

        self.error: Exception | None = None
        try:
            self.model = im2text.load(**load)
        except Exception as e:  # handed to the driver, which raises it as the CLI would
            self.error = e
        self.done = 0
        fault = os.environ.get(FAULT_ENV)
        self.exit_after = int(fault) if fault else None

    def ready(self) -> Exception | None:
        """None once the model is loaded, else the error that stopped it."""
        return self.error

    def run(
        self,
        job: JobSpec,
        root: str,
        shard: int,
        items: list[dict[str, Any]],
        parquet: bool,
        retry_errors: bool,
    ) -> ShardCounts:
        if self.error is not None:
            raise self.error
        hook = None
        if self.exit_after is not None and self.done >= self.exit_after:
            hook = _die  # mid-shard: the records are in a temp file, not yet published
        counts = run_shard(
            self.model,
            job,
            Storage(root),
            shard,
            items,
            parquet=parquet,
            retry_errors=retry_errors,
            before_publish=hook,
        )
        self.done += 1
        return counts


def _die() -> None:
    os._exit(17)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _progress(total: int, done: int, config: EngineConfig) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=done,
        unit="shard",
        desc=f"shards ({config.engine})",
        disable=not config.progress,
        dynamic_ncols=True,
    )


class _Progress:
    """Shards done / total and images/s of this run."""

    def __init__(self, manifest: Manifest, todo: list[int], config: EngineConfig):
        self.bar = _progress(len(manifest.shards), len(manifest.shards) - len(todo), config)
        self.started = time.monotonic()
        self.images = 0

    def update(self, counts: ShardCounts) -> None:
        self.images += counts.ran
        rate = self.images / max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{rate:.2f} img/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --- local: worker processes -----------------------------------------------------------------

_WORKER: ShardWorker | None = None


def _init_process(load: dict[str, Any], threads: int) -> None:
    global _WORKER
    _watch_parent()
    _WORKER = ShardWorker(load, threads)


def _watch_parent() -> None:
    """Exit when the driver is gone (a SIGKILLed driver never tells its workers): a worker
    process never outlives its job, holding a model's memory."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="im2text-parent-watch", daemon=True).start()


def _run_in_process(*args: Any) -> ShardCounts:
    assert _WORKER is not None
    return _WORKER.run(*args)


def _run_local(plan: _Plan) -> list[ShardCounts]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    config, todo = plan.config, plan.todo
    cores = _cpu_count()
    _, hi = config.workers or (1, max(1, cores // 4))
    workers = max(1, min(hi, len(todo)))
    threads = int(config.cpus_per_worker or max(1, cores // workers))
    pending = deque(todo)
    attempts: dict[int, int] = {}
    out: list[ShardCounts] = []
    bar = _Progress(plan.manifest, todo, config)
    context = mp.get_context("spawn")  # fresh interpreters: no forked torch/OpenMP state
    try:
        while pending:
            running: dict[Future[ShardCounts], int] = {}
            with ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_init_process,
                initargs=(plan.load, threads),
            ) as pool:
                try:
                    while pending or running:
                        while pending and len(running) < 2 * workers:  # bounded work in flight
                            shard = pending.popleft()
                            attempts[shard] = attempts.get(shard, 0) + 1
                            fut = pool.submit(_run_in_process, *plan.shard_args(shard))
                            running[fut] = shard
                        done, _ = wait(running, return_when=FIRST_COMPLETED)
                        for fut in done:
                            out.append(fut.result())  # raises BrokenProcessPool: still running
                            del running[fut]
                            bar.update(out[-1])
                except BrokenProcessPool:
                    # A worker died: the shards it and its queue held run again in a new pool.
                    lost = sorted(running.values())
                    if any(attempts[s] >= MAX_ATTEMPTS for s in lost):
                        raise RuntimeError(
                            f"a shard of {lost} failed {MAX_ATTEMPTS} times: a worker process "
                            "died running it (out of memory?)"
                        ) from None
                    pending.extendleft(reversed(lost))
                    _warn(f"a worker process died; running shard(s) {lost} again")
    finally:
        bar.close()
    return out


# --- Ray: actors -----------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray engine needs Ray: pip install 'im2text[ray]'") from None
    return ray


def _run_ray(plan: _Plan) -> list[ShardCounts]:
    ray = _import_ray()
    env = {k: os.environ[k] for k in _FORWARD_ENV if k in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        # No address: RAY_ADDRESS (set inside Ray jobs), else a new Ray in this process, never
        # whatever cluster Ray's own discovery would find on the machine.
        address = plan.config.ray_address or os.environ.get("RAY_ADDRESS") or "local"
        # A Ray of our own: no dashboard, and no idle workers prestarted for every CPU (each
        # is a Python process competing with the actors' start on a small machine).
        local: dict[str, Any] = {}
        if address == "local":
            local = {
                "include_dashboard": False,
                "_system_config": {"enable_worker_prestart": False},
            }
        ray.init(
            address=address,
            runtime_env={"env_vars": env} if env else None,
            log_to_driver=False,
            logging_level="ERROR",
            **local,
        )
    try:
        return _RayScheduler(ray, plan).run()
    finally:
        if started_here:
            ray.shutdown()


class _RayScheduler:
    """Gives each ready actor one shard at a time; replaces actors that die; adds actors while
    the cluster has room, up to MAX."""

    def __init__(self, ray: Any, plan: _Plan):
        from ray.exceptions import RayActorError, RayTaskError

        self.ray, self.plan, self.config = ray, plan, plan.config
        config, todo = plan.config, plan.todo
        self.actor_died, self.task_failed = RayActorError, RayTaskError
        self.gpus = config.gpus_per_worker or 0.0
        self.cpus = config.cpus_per_worker or self._default_cpus()
        resources = ray.cluster_resources()
        fit = int(resources.get("CPU", 1) // self.cpus)
        if self.gpus:
            fit = min(fit, int(resources.get("GPU", 0) // self.gpus))
        lo, hi = config.workers or (1, max(1, fit))
        self.hi = max(1, min(hi, len(todo)))
        self.lo = max(1, min(lo, self.hi))
        self.actor_cls = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)(
            ShardWorker
        )
        self.pending = deque(todo)
        self.attempts: dict[int, int] = {}
        self.inflight: dict[Any, tuple[Any, int | None]] = {}  # ref -> (actor, shard|None)
        self.actors: set[Any] = set()
        self.out: list[ShardCounts] = []
        self.bar = _Progress(plan.manifest, todo, config)

    def _default_cpus(self) -> float:
        """All of the smallest node's CPUs, up to 4 (CPU inference scales to about that many
        threads); 1 with GPUs, where the CPU only feeds the GPU."""
        if self.gpus:
            return 1.0
        nodes = [n["Resources"].get("CPU", 0) for n in self.ray.nodes() if n.get("Alive")]
        return float(max(1, min(4, int(min(nodes or [1])))))

    def run(self) -> list[ShardCounts]:
        if self.hi > self.lo:
            self._request_resources()
        for _ in range(self.lo):
            self._start()
        try:
            while self.inflight:
                ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=2.0)
                if ready:
                    self._finished(ready[0])
                elif self._all_busy() and self.pending and self._room():
                    self._start()
        finally:
            self.bar.close()
            for actor in self.actors:
                self.ray.kill(actor)
        return self.out

    def _start(self) -> None:
        actor = self.actor_cls.remote(self.plan.load, math.ceil(self.cpus))
        self.actors.add(actor)
        self.inflight[actor.ready.remote()] = (actor, None)

    def _give(self, actor: Any) -> None:
        if not self.pending:
            self.actors.discard(actor)
            self.ray.kill(actor)
            return
        shard = self.pending.popleft()
        self.attempts[shard] = self.attempts.get(shard, 0) + 1
        ref = actor.run.remote(*self.plan.shard_args(shard))
        self.inflight[ref] = (actor, shard)

    def _finished(self, ref: Any) -> None:
        actor, shard = self.inflight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.task_failed as e:  # the shard's own code raised: a bug, not a lost worker
            raise RuntimeError(f"shard {shard} failed: {e}") from None
        except self.actor_died as e:
            self._died(actor, shard, e)
            return
        if shard is None and result is not None:
            raise result  # the worker could not load the model
        if shard is not None:
            self.out.append(result)
            self.bar.update(result)
        self._give(actor)

    def _died(self, actor: Any, shard: int | None, error: BaseException) -> None:
        self.actors.discard(actor)
        if shard is None:
            raise RuntimeError(f"a Ray worker died while loading the model: {error}")
        if self.attempts[shard] >= MAX_ATTEMPTS:
            raise RuntimeError(f"shard {shard} failed {MAX_ATTEMPTS} times: its worker died")
        self.pending.appendleft(shard)
        _warn(f"a Ray worker died running shard {shard}; running it again on a new one")
        self._start()

    def _all_busy(self) -> bool:
        return all(shard is not None for _, shard in self.inflight.values())

    def _room(self) -> bool:
        if len(self.actors) >= self.hi:
            return False
        free = self.ray.available_resources()
        return bool(free.get("CPU", 0) >= self.cpus and free.get("GPU", 0) >= self.gpus)

    def _request_resources(self) -> None:
        """Ask the autoscaler (KubeRay, the cluster launcher) for room for MAX workers."""
        try:
            from ray.autoscaler.sdk import request_resources

            bundle = {"CPU": self.cpus, **({"GPU": self.gpus} if self.gpus else {})}
            request_resources(bundles=[bundle] * self.hi)
        except Exception:  # a fixed cluster has no autoscaler to ask
            pass


def _warn(message: str) -> None:
    import sys

    print(f"im2text: {message}", file=sys.stderr, flush=True)
