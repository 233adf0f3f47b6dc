"""``fvdeploy classify --ray``: the same job on a Ray cluster's actors (``fvdeploy.distributed``).
Inputs, error records, output files, ``--resume`` and exit codes are the local run's; results
come in the order they finish."""

from __future__ import annotations

from typing import Any


def classify_on_ray(
    inputs,
    writer,
    as_json: bool,
    *,
    show_progress: bool,
    address: str,
    device: str,
    actors: int,
    num_gpus: float,
    num_cpus: float,
    batch_size: int,
    retries: int,
    decode_workers: int | None,
    load_kwargs: dict[str, Any],
) -> tuple[int, list]:
    """Classify ``inputs`` (``runtime.inputs.Input``; those with an error are reported without
    running) and report each through ``report.emit``; returns (failed count, good results)."""
    from .. import distributed
    from .report import emit

    failed, rows = 0, []
    for item in inputs:
        if item.error is not None:
            failed += emit(item.path, None, item.error, writer, as_json, rows)
    good = [i.path for i in inputs if i.error is None]
    if not good:
        return failed, rows
    distributed.connect(address)
    options = {k: v for k, v in load_kwargs.items() if k != "model"}
    if decode_workers is not None:
        options["decode_workers"] = decode_workers
    ds = distributed.classify_dataset(
        good,
        model=load_kwargs.get("model"),
        device=device,
        actors=actors,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        batch_size=batch_size,
        max_restarts=retries,
        max_task_retries=retries,
        **options,
    )
    for result in distributed.iter_results(ds, progress=show_progress):
        failed += emit(result.path, result, result.error, writer, as_json, rows)
    return failed, rows
