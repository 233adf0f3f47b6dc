"""One worker process per device (``--devices 0,1,2,3`` / ``all`` / ``cpu,cpu``).

Workers pull inputs from one shared queue (so fast devices take more), each with its own loaded
Classifier; the parent yields results in input order. A worker that dies fails only the file it was
working on (an error record naming the device and exit code); the others carry on with the rest.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator
from multiprocessing.connection import wait
from typing import Any

import torch

from ..errors import BackendError, FvdeployError
from ..records import VideoResult


def parse_devices(text: str) -> list[str]:
    """``all`` -> every CUDA device; ``0,1`` -> cuda:0, cuda:1; ``cpu,cpu`` -> two CPU workers."""
    text = text.strip().lower()
    if text == "all":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise BackendError("--devices all: no CUDA device is available here")
        return [f"cuda:{i}" for i in range(n)]
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part == "cpu":
            out.append("cpu")
        elif part.isdigit():
            out.append(f"cuda:{part}")
        elif part.startswith("cuda:") and part[5:].isdigit():
            out.append(part)
        else:
            raise ValueError(f"--devices takes 'all' or a comma-separated list of GPU indices or 'cpu', got {text!r}")
    if not out:
        raise ValueError("--devices is empty")
    return out


def _worker(wid: int, device: str, load_kwargs: dict, tasks, conn) -> None:
    # conn.send writes to the pipe before returning, so a worker that dies afterwards has still
    # said which file it was on (a Queue's feeder thread could lose that)
    from . import Classifier

    crash_on = os.environ.get("FVDEPLOY_TEST_WORKER_CRASH_ON")
    try:
        clf = Classifier.load(device=device, bound_heap=True, **load_kwargs)  # a CLI worker, as the CLI
    except FvdeployError as e:
        conn.send(("fatal", str(e)))
        return
    while True:
        task = tasks.get()
        if task is None:
            return
        index, path, png = task
        conn.send(("start", index))
        if crash_on and crash_on in path:  # test hook: a worker that dies mid-file
            os._exit(3)
        result = next(clf.classify_many([path], decode_workers=1, visualize=png))
        conn.send(("done", (index, result.to_dict())))


def classify_on_devices(
    paths: list[str],
    devices: list[str],
    load_kwargs: dict[str, Any],
    visualize: list[str | None] | None = None,
    on_result=None,
) -> Iterator[VideoResult]:
    """Classify ``paths`` with one worker process per entry of ``devices``; results in input order."""
    ctx = mp.get_context("spawn")  # CUDA cannot be re-initialised in a forked child
    tasks = ctx.Queue()
    for i, path in enumerate(paths):
        tasks.put((i, path, visualize[i] if visualize else None))
    procs, conns = [], []
    for wid, device in enumerate(devices):
        tasks.put(None)
        receiver, sender = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(wid, device, load_kwargs, tasks, sender), daemon=True)
        p.start()
        sender.close()  # the child holds the only write end: EOF here once it is gone
        procs.append(p)
        conns.append(receiver)
    done: dict[int, VideoResult] = {}
    current: dict[int, int] = {}  # worker -> index it is working on
    open_conns = set(range(len(procs)))
    fatal: list[str] = []

    def receive(wid: int) -> None:
        try:
            kind, payload = conns[wid].recv()
        except (EOFError, OSError):  # the worker has ended and everything it sent was read
            open_conns.discard(wid)
            if wid in current:  # it died on this file
                index = current.pop(wid)
                procs[wid].join(timeout=5)
                done[index] = VideoResult.failed(
                    paths[index],
                    f"{paths[index]}: the worker on {devices[wid]} died (exit code "
                    f"{procs[wid].exitcode}) while classifying this file",
                )
            return
        if kind == "fatal":
            fatal.append(payload)
        elif kind == "start":
            current[wid] = payload
        elif kind == "done":
            index, record = payload
            current.pop(wid, None)
            done[index] = VideoResult.from_dict(record)
            if on_result is not None:
                on_result()

    next_out = 0
    try:
        while next_out < len(paths):
            if next_out in done:
                yield done.pop(next_out)
                next_out += 1
                continue
            if not open_conns:  # every worker has ended
                if fatal and len(fatal) == len(procs):
                    raise BackendError(fatal[0])
                for index in range(next_out, len(paths)):
                    done.setdefault(
                        index, VideoResult.failed(paths[index], f"{paths[index]}: no worker left to classify it")
                    )
                continue
            for conn in wait([conns[w] for w in open_conns], timeout=1.0):
                receive(conns.index(conn))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
