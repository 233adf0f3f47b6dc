"""Classify a corpus on a Ray cluster with Ray Data (``pip install 'fvdeploy[ray]'``).

    import fvdeploy.distributed as fd
    fd.connect("auto")                                   # or ray.init(...) yourself
    ds = fd.classify_dataset(["s3://bucket/videos/", "more/*.mp4"], num_gpus=1, actors=8)
    ds.write_parquet("s3://bucket/results/")             # lazy: nothing runs before this

Each actor of a Ray Data actor pool loads the model once (``Classifier.load``) and classifies
batches of a few paths: it decodes the videos itself, from a path every node sees (a shared
filesystem) or from object storage (``s3://``, ``gs://``, ``file://``, ... through ``pyarrow.fs``:
copied to node-local temporary space, deleted after). Only paths go to the actors and only result
rows (``runtime.arrow.RESULT_SCHEMA``) come back: no decoded frame leaves its process.

Faults: a bad video is a row with ``error`` set, never a failed job. A worker process that dies
(killed, out of memory) is restarted by Ray and its batch retried (``max_restarts`` and
``max_task_retries``; -1 = no limit), so each input is in the output exactly once.

The model folder is read here and shipped to the actors through Ray's object store, so the nodes
need fvdeploy installed but not the model. ``FVDEPLOY_TEST_ACTOR_CRASH_ON=TEXT`` (a test hook, read
where the dataset is built) makes the first actor that classifies a path containing TEXT kill its
own process once, after that video.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid
import warnings
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BackendError, FvdeployError, VideoError

if TYPE_CHECKING:
    import ray.data


RAY_EXTRA = "pip install 'fvdeploy[ray]'"
PATH_COLUMN = "path"
INPUT_ERROR_COLUMN = "_fvdeploy_input_error"  # errors known before decoding (nothing matched a glob, ...)
CRASH_ENV = "FVDEPLOY_TEST_ACTOR_CRASH_ON"
# URLs the decoder opens itself (streams and HTTP files); any other scheme://... goes through pyarrow.fs.
DECODER_SCHEMES = {"http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# train_state/ (optimizer, RNG) is not needed to classify and can be large
_MODEL_SKIP = {"train_state"}
FETCH_THREADS = 4
MAX_BLOCKS = 10_000  # blocks of a path list: each is one actor task (ray.put each on the driver)


def require_ray():
    """Import Ray and Ray Data, or raise BackendError naming the extra."""
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise BackendError(f"Ray is not installed ({e.name or 'ray'} is missing): {RAY_EXTRA}") from None
    return ray


def connect(address: str | None = "auto", *, num_cpus: int | None = None) -> None:
    """Join a Ray cluster (``auto``: the one this machine belongs to, or ``RAY_ADDRESS``; else an
    address such as ``ray://head:10001``), or start one on this machine (``None`` or ``local``).
    Nothing happens when Ray is already initialised in this process. Workers' own output stays in
    Ray's log files. Raises BackendError when Ray is missing or no cluster answers."""
    ray = require_ray()
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address in (None, "local"):
        kwargs.update(address="local", include_dashboard=False, num_cpus=num_cpus)
        # a new local cluster enables token auth by default and says so at WARNING on every start
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_drop_token_notice)
    else:
        kwargs.update(address=address)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"--ray {address}: cannot connect to a Ray cluster ({first})") from None
    # Ray Data announces each execution at INFO, and a failed job at ERROR with a stack trace; fvdeploy
    # says what ran and what failed (iter_results) in one line
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    for name in ("ray.data.exceptions", "ray.data._internal.execution.streaming_executor_state"):
        logging.getLogger(name).addFilter(_drop_job_failure_report)  # a logger's filter sees its own records only


def _drop_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _drop_job_failure_report(record: logging.LogRecord) -> bool:
    msg = record.getMessage()
    return not (
        msg.startswith("An exception was raised from a task of operator")
        or msg.startswith("Exception occurred in user code")
    )


def _scheme(path: str) -> str | None:
    m = _SCHEME.match(path)
    return m.group(1).lower() if m else None


def is_object_uri(path: str) -> bool:
    """A ``scheme://`` path that is read through ``pyarrow.fs`` (not a stream URL, not a local path)."""
    s = _scheme(path)
    return s is not None and s not in DECODER_SCHEMES


def expand_paths(names: Iterable[str | Path]):
    """What the user named -> ``runtime.inputs.Input`` list: local files, folders and globs as
    ``fvdeploy classify`` expands them; object-storage folders (``s3://bucket/prefix/``) listed
    recursively for video files. A listing that fails is an Input with its error set."""
    from .io.video import VIDEO_EXTENSIONS
    from .runtime.inputs import Input, expand_inputs

    out: list[Input] = []
    for name in map(str, names):
        if not is_object_uri(name):
            out.extend(expand_inputs([name]))
            continue
        import pyarrow.fs as pafs

        try:
            fs, root = pafs.FileSystem.from_uri(name)
            info = fs.get_file_info(root)
            if info.type != pafs.FileType.Directory:
                out.append(Input(name))  # a file, or missing: the actor reports it
                continue
            found = sorted(
                i.path
                for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
                if i.type == pafs.FileType.File and Path(i.path).suffix.lower() in VIDEO_EXTENSIONS
            )
        except (OSError, ValueError, NotImplementedError) as e:  # pyarrow's errors are OSError/ArrowInvalid(ValueError)
            out.append(Input(name, f"{name}: cannot list ({_first_line(e)})"))
            continue
        if not found:
            out.append(Input(name, f"{name}: directory contains no video files"))
        # pyarrow lists "bucket/key" for s3/gs and "/abs/path" for file: both follow "scheme://"
        out.extend(Input(f"{_scheme(name)}://{p}") for p in found)
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _pack_model(model: str | Path | None) -> tuple[str, dict[str, bytes]]:
    """The model folder's files (relative path -> bytes) and their digest; raises ModelError for a
    folder that is not a model (read here, once, before any actor starts)."""
    from .bundle import read_config, resolve_model_path

    path = resolve_model_path(model)
    read_config(path)
    files: dict[str, bytes] = {}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and rel.parts[0] not in _MODEL_SKIP:
            files[rel.as_posix()] = f.read_bytes()
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16], files


def _unpack_model(digest: str, files: dict[str, bytes]) -> Path:
    """Write the model once per node (atomically, keyed by content) and return its folder."""
    root = Path(tempfile.gettempdir()) / "fvdeploy-models"
    target = root / digest
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=_mkdir(root)))
    for name, data in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    try:
        os.rename(tmp, target)
    except OSError:  # another actor on this node got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def fetch(uri: str, folder: str) -> str:
    """Copy an object-storage file into ``folder`` (node-local); returns the local path. Raises
    VideoError with the URI when it cannot be read."""
    import pyarrow.fs as pafs

    local = os.path.join(folder, f"{uuid.uuid4().hex[:8]}-{Path(uri.split('?')[0]).name or 'video'}")
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        with fs.open_input_stream(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
    except (OSError, ValueError, NotImplementedError) as e:
        if os.path.exists(local):
            os.remove(local)
        raise VideoError(f"{uri}: cannot read ({_first_line(e)})") from None
    return local


class ActorLoadError(FvdeployError):
    """An actor could not load the model: the job cannot go on."""


class ClassifyActor:
    """The Ray Data UDF: one loaded Classifier per actor process; ``__call__`` classifies one batch
    of paths (a ``pyarrow.Table`` with a path column) into result rows."""

    def __init__(
        self,
        model_digest: str,
        model_files: dict[str, bytes],
        load_kwargs: dict[str, Any],
        device: str,
        threads: int | None,
        path_column: str,
        crash_on: str | None = None,
        crash_marker: str | None = None,
        model_name: str | None = None,
    ) -> None:
        import torch

        from .runtime import Classifier

        if threads:
            torch.set_num_threads(threads)
        model_dir = _unpack_model(model_digest, model_files)
        # A load error (no such backend on this node, ...) is raised by the first call, not here: Ray
        # would restart an actor whose constructor fails, printing a traceback each time.
        self.clf, self.load_error = None, None
        try:
            self.clf = Classifier.load(model_dir, device=device, **load_kwargs)
        except FvdeployError as e:
            self.load_error = (
                f"{str(e).replace(str(model_dir), model_name or str(model_dir))} (on {socket.gethostname()})"
            )
        self.path_column = path_column
        self.crash_on, self.crash_marker = crash_on, crash_marker
        self.pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fvdeploy-fetch")

    def _crash_once(self, path: str) -> None:
        if not (self.crash_on and self.crash_marker and self.crash_on in path):
            return
        try:  # the marker makes it once per run, across the restarted actor processes
            os.close(os.open(self.crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(3)

    def __call__(self, batch):
        from .records import VideoResult
        from .runtime.arrow import results_to_table

        if self.load_error is not None:
            raise ActorLoadError(self.load_error)
        paths = batch.column(self.path_column).to_pylist()
        known = (
            batch.column(INPUT_ERROR_COLUMN).to_pylist()
            if INPUT_ERROR_COLUMN in batch.column_names
            else [None] * len(paths)
        )
        results: list[VideoResult | None] = [None] * len(paths)
        todo = []
        for i, (p, err) in enumerate(zip(paths, known)):
            if err is not None or not isinstance(p, str) or not p:
                results[i] = VideoResult.failed(
                    p if isinstance(p, str) else None, err or f"{p!r}: not a path (column {self.path_column!r})"
                )
            else:
                todo.append(i)
        with tempfile.TemporaryDirectory(prefix="fvdeploy-fetch-") as scratch:
            # every object-storage copy of the batch starts now; the model reads them in order
            futures = {i: self.pool.submit(fetch, paths[i], scratch) for i in todo if is_object_uri(paths[i])}
            fed: deque[tuple[int, str]] = deque()

            def sources():
                for i in todo:
                    local = paths[i]
                    if i in futures:
                        try:
                            local = futures[i].result()
                        except FvdeployError as e:
                            results[i] = VideoResult.failed(paths[i], str(e))
                            continue
                    fed.append((i, local))
                    yield local

            for r in self.clf.classify_many(sources()):
                i, local = fed.popleft()
                if local != paths[i]:
                    os.remove(local)
                    r.path = paths[i]
                    if r.error:
                        r.error = r.error.replace(local, paths[i])
                results[i] = r
                self._crash_once(paths[i])
        return results_to_table(results)


def _load_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    from .runtime.classifier import LEGACY_NAMES
    from .runtime.options import ClassifyOptions

    allowed = (set(ClassifyOptions.__dataclass_fields__) | set(LEGACY_NAMES) | {"concurrent_finish"}) - {
        "model",
        "device",
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise FvdeployError(
            f"unknown Classifier.load option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}


def classify_dataset(
    inputs: "str | Path | Iterable[str | Path] | ray.data.Dataset",
    *,
    model: str | Path | None = None,
    device: str = "auto",
    actors: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    threads: int | None = None,
    batch_size: int = 4,
    path_column: str = PATH_COLUMN,
    max_restarts: int = -1,
    max_task_retries: int = -1,
    ray_remote_args: dict[str, Any] | None = None,
    **load_options: Any,
) -> "ray.data.Dataset":
    """A lazy ``ray.data.Dataset`` of classification results, one row per input.

    ``inputs``: paths, folders, globs or object-storage URIs (``s3://bucket/prefix/`` is listed
    for video files) as ``fvdeploy classify`` takes them, or a ``ray.data.Dataset`` with a string
    column ``path_column``. Rows have ``runtime.arrow.RESULT_SCHEMA`` (VideoResult's fields:
    segments and topk as lists of structs, run/timings as maps, seconds as float64, no NaN); an
    input that fails is a row with ``error`` set. Row order is not input order.

    ``model`` and ``load_options`` (``backend``, ``precision``, ``max_memory_mib``, ``mode``, ...)
    are ``Classifier.load``'s. ``device``: ``auto`` means ``cuda`` when ``num_gpus > 0``, else
    ``cpu``. Each of ``actors`` actors (or ``(min, max)`` for an autoscaling pool) holds
    ``num_gpus`` GPUs and ``num_cpus`` CPUs and runs torch on ``threads`` threads (default:
    ``num_cpus`` on a CPU actor); ``batch_size`` paths go to an actor at a time. ``max_restarts``
    (actor restarts) and ``max_task_retries`` (retries of a batch whose actor died) follow Ray's
    meaning, -1 = unlimited.

    Raises BackendError without Ray (naming the extra), ModelError for a bad model folder,
    FvdeployError for an unknown option. Errors of the work itself surface when the dataset runs.
    """
    ray = require_ray()
    import pyarrow as pa

    from .runtime.arrow import RESULT_SCHEMA  # noqa: F401  (fails early, naming the extra, without pyarrow)

    load_kwargs = _load_kwargs(load_options)
    if batch_size < 1:
        raise FvdeployError(f"batch_size must be >= 1, got {batch_size}")
    sizes = actors if isinstance(actors, tuple) else (actors, actors)
    if min(sizes) < 1 or sizes[0] > sizes[1]:
        raise FvdeployError(f"actors must be >= 1 (or (min, max) with 1 <= min <= max), got {actors}")
    if device == "auto":
        device = "cuda" if num_gpus > 0 else "cpu"
    elif device.startswith("cuda") and num_gpus <= 0:
        raise BackendError(
            f"--device {device} needs a GPU per actor (--ray-gpus-per-actor / num_gpus > 0): "
            "Ray hides every GPU from an actor that asked for none"
        )
    if threads is None and num_gpus == 0:
        threads = max(1, int(num_cpus))
    digest, files = _pack_model(model)

    if isinstance(inputs, ray.data.Dataset):
        if path_column not in inputs.columns():
            raise FvdeployError(f"the dataset has no column {path_column!r} (columns: {', '.join(inputs.columns())})")
        # a block is one task for one actor: blocks of batch_size rows spread the work and a retry redoes
        # little. The streaming repartition runs as small CPU tasks: leave a CPU beyond the actors.
        ds = inputs.select_columns([path_column]).repartition(target_num_rows_per_block=batch_size)
    else:
        names = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        items = expand_paths(names)
        if not items:
            raise FvdeployError("no inputs: name video files, folders, globs or object-storage URIs")
        table = pa.table(
            {path_column: [i.path for i in items], INPUT_ERROR_COLUMN: pa.array([i.error for i in items], pa.string())}
        )
        # blocks made here (no task, so no CPU beyond the actors' is needed), at most MAX_BLOCKS of them
        rows = max(batch_size, -(-len(items) // MAX_BLOCKS))
        ds = ray.data.from_arrow([table.slice(i, rows) for i in range(0, len(items), rows)])

    crash_on = os.environ.get(CRASH_ENV) or None
    crash_marker = os.path.join(tempfile.gettempdir(), f"fvdeploy-crash-{uuid.uuid4().hex}") if crash_on else None
    remote = dict(ray_remote_args or {})
    # Ray Data's actor pools default to max_restarts=-1, max_task_retries=-1: pass only other values
    if max_restarts != -1:
        remote["max_restarts"] = max_restarts
    if max_task_retries != -1 and max_restarts != 0:
        remote["max_task_retries"] = max_task_retries
    with warnings.catch_warnings():
        # Ray 2.60 deprecates **ray_remote_args but has no named parameter for restarts and retries yet
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(
            ClassifyActor,
            fn_constructor_kwargs=dict(
                model_digest=digest,
                model_files=files,
                load_kwargs=load_kwargs,
                device=device,
                threads=threads,
                path_column=path_column,
                crash_on=crash_on,
                crash_marker=crash_marker,
                model_name=str(model) if model else None,
            ),
            batch_format="pyarrow",
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(min_size=sizes[0], max_size=sizes[1]),
            num_gpus=num_gpus or None,
            num_cpus=num_cpus,
            **remote,
        )


def iter_results(ds: "ray.data.Dataset", *, progress: bool = True):
    """Run ``ds`` (from ``classify_dataset``) and yield VideoResults as their batches finish.
    ``progress``: Ray Data's own progress bars (rich, in a terminal). A failure of the job itself
    (an actor that cannot load the model, retries exhausted) raises FvdeployError with its cause."""
    ray = require_ray()
    from .runtime.arrow import table_to_results

    # the dataset runs with the context it copied when it was built, so set the progress bars there:
    # rich (a dependency of fvdeploy) rather than tqdm, which Ray Data would need installed
    ds.context.enable_progress_bars = ds.context.enable_rich_progress_bars = progress
    ds.context.use_ray_tqdm = False
    try:
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            yield from table_to_results(table)
    except ray.exceptions.RayError as e:
        raise FvdeployError(f"the Ray job failed: {_ray_cause(e)}") from None


def _ray_cause(e: BaseException) -> str:
    """The message of the FvdeployError behind a Ray error (an actor's load error, raised in a
    worker and printed into Ray's error text as ``fvdeploy.<module>.<Class>: message``), else the
    first line of Ray's error."""
    chain, x = [], e
    while x is not None and x not in chain:
        chain.append(x)
        if isinstance(x, FvdeployError):
            return str(x)
        cause = getattr(x, "cause", None)
        x = cause if isinstance(cause, BaseException) else (x.__cause__ or x.__context__)
    found = re.findall(r"^\s*fvdeploy\.[\w.]*(?:Error|Exception): (.+)$", "\n".join(map(str, chain)), re.MULTILINE)
    return found[-1] if found else _first_line(e)
