"""The corruption benchmark's items on a Ray cluster (`--ray`; Ray is an optional extra:
pip install -e ".[ray]").

* One actor per worker slot (a CPU, or `gpus_per_worker` of a GPU) holds the segmenter:
  the model is loaded once per worker, not once per item. It travels once through
  Ray's object store, so workers need no checkpoint file and no shared filesystem.
* A task carries its sample (image, ground truth, scribbles) and returns the item's
  record and masks; the driver writes the cache as results arrive, so a killed driver
  loses at most the items in flight and a rerun resumes as a serial run does.
* Results equal the serial run's: the same pure `evaluate_item` with the same seeds.
* A failed item is reported with its image and condition and retried once; the sweep
  goes on. An actor that dies is replaced.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable

import torch

from eval.corruptions.items import Finished, Job, evaluate_item

try:
    import ray
except ImportError:  # the optional extra is not installed
    ray = None

TASKS_PER_WORKER = 2  # in flight per actor: one running, one queued


def connect(address: str | None) -> None:
    """Start a local Ray (address None) or join a cluster; ValueError when Ray is not
    installed or the address does not answer (checked first: ray.init would wait for
    minutes)."""
    if ray is None:
        raise ValueError('--ray needs Ray: pip install -e ".[ray]" (or pip install ray)')
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as err:
            raise ValueError(
                f"cannot reach a Ray cluster at {address!r} ({err}); start one with `ray start --head` and pass "
                "the address it prints, or give --ray without an address for a local Ray"
            ) from err
    if not ray.is_initialized():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)


def worker_count(gpus_per_worker: float) -> int:
    """Actors the cluster holds: one per CPU, or per `gpus_per_worker` of its GPUs."""
    resources = ray.cluster_resources()
    if gpus_per_worker > 0:
        if resources.get("GPU", 0) < gpus_per_worker:
            raise ValueError(
                f"--ray-gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {resources.get('GPU', 0):g} GPU(s); "
                "start GPU workers (ray start --num-gpus N) or leave the option out"
            )
        return max(1, int(resources.get("GPU", 0) / gpus_per_worker))
    return max(1, int(resources.get("CPU", 1)))


def make_worker_class(gpus_per_worker: float):
    @ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0)
    class Worker:
        """Holds the run's Job (segmenter loaded once) and evaluates items."""

        def __init__(self, job: Job) -> None:
            if gpus_per_worker > 0 and job.segmenter.model is not None:
                job.segmenter.model.to("cuda")
            torch.set_num_threads(1)
            self.job = job

        def evaluate(self, sample, condition: str, severity: int):
            return evaluate_item(sample, condition, severity, self.job)

    return Worker


def disconnect() -> None:
    """Stop the local Ray (or leave the cluster) that `connect` joined."""
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def evaluate(items: list, job: Job, gpus_per_worker: float, finished: Callable) -> list[tuple[tuple, str]]:
    """Evaluate (sample, condition, severity) items on the Ray that `connect` joined;
    `finished(sample, condition, severity, record, masks)` is called on the driver as
    each result arrives.

    Returns:
        the items that failed twice, with their last error.
    """
    job_ref = ray.put(job)
    worker_class = make_worker_class(gpus_per_worker)
    workers = [worker_class.remote(job_ref) for _ in range(min(worker_count(gpus_per_worker), len(items)))]
    queue = list(reversed(items))
    attempts: dict[int, int] = {}
    running: dict = {}  # object ref -> (item, worker index, the worker)
    failed = []

    def submit(index: int) -> None:
        if queue:
            item = queue.pop()
            running[workers[index].evaluate.remote(*item)] = (item, index, workers[index])

    for index in range(len(workers)):
        for _ in range(TASKS_PER_WORKER):
            submit(index)
    while running:
        done, _ = ray.wait(list(running), num_returns=1)
        item, index, worker = running.pop(done[0])
        try:
            record, masks = ray.get(done[0])
        except Exception as err:  # a task's or an actor's failure: report, retry once
            if isinstance(err, ray.exceptions.RayActorError) and workers[index] is worker:
                workers[index] = worker_class.remote(job_ref)  # replace a dead worker once
            attempts[id(item)] = attempts.get(id(item), 0) + 1
            sample, condition, severity = item
            message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            if attempts[id(item)] < 2:
                warnings.warn(
                    f"{sample.name} {condition} severity {severity} failed ({message}); retrying once", stacklevel=2
                )
                queue.append(item)
            else:
                failed.append((item, message))
        else:
            finished(*item, record, masks)
        submit(index)
    return failed


class Ray:
    """The executor that computes items on Ray (for `harness.run(executor=...)`).

    Args:
        address: a Ray cluster's address; None: $RAY_ADDRESS, else a local Ray started
            for the run.
        gpus_per_worker: > 0: one worker per that share of the cluster's GPUs, each
            moving the model there; 0: one worker per CPU.
    Entering joins the cluster (and checks that it has the GPUs asked for), leaving
    stops or leaves it.
    """

    name = "ray"
    loads_model_here = False  # workers place the model themselves

    def __init__(self, address: str | None = None, gpus_per_worker: float = 0.0) -> None:
        self.address, self.gpus_per_worker = address, gpus_per_worker

    def __enter__(self) -> Ray:
        connect(self.address)
        try:
            worker_count(self.gpus_per_worker)  # no GPUs for GPU workers: say so now
        except ValueError:
            disconnect()
            raise
        return self

    def __exit__(self, *exc) -> None:
        disconnect()

    def evaluate(self, items: list, job: Job, finished: Finished) -> list[tuple[tuple, str]]:
        return evaluate(items, job, self.gpus_per_worker, finished)
