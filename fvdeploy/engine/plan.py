"""One memory model for every driver: what a frame costs, and how ``--max-memory`` is split.

``--max-memory`` bounds what the runtime holds beyond the loaded model, decoded frames included
(docs/design.md, Memory). The costs per frame are the same wherever frames are computed, so they
are written once here (:func:`frame_costs`) and read by classify's :func:`plan_video` and by the
watcher's per-stream reservation; both size stem + ``layer1`` by ``features_precision``, the
precision those layers actually run in (their signs feed the clustering).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FvdeployError

MAX_CHUNK = 64  # frames per stem + layer1 call: more gains nothing measurable and delays the first result
DECODE_QUEUE_BATCHES = 3  # decoded batches waiting for the model (classify; a source may ask for fewer)
STEM_CHANNELS = 64  # every ResNet stem (torchvision's resnet18/50 and the tiny test arch) is this wide or narrower
_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


class FrameTooLarge(FvdeployError):
    """A decoded frame cannot fit the memory budget."""


@dataclass(frozen=True)
class FrameCosts:
    """Bytes per frame inside the model, at the precision of stem + ``layer1``.

    ``feature``: one ``layer1`` map ``[C, h, w]`` (what rings, stores and slots hold per frame);
    ``work``: the peak activations of one frame in stem + ``layer1`` (its float input, the stem's
    ``conv1`` output at half the crop, and a few ``layer1`` maps); ``crop``: one uint8 crop
    ``[crop, crop, 3]``, the size a frame has after the decode thread shrank it."""

    feature: int
    work: int
    crop: int


def frame_costs(
    feature_shape: tuple[int, int, int], crop: int, features_precision: str, stepped: bool = False
) -> FrameCosts:
    """The costs of one frame for a model whose ``layer1`` maps are ``feature_shape`` ``(C, h, w)``,
    on ``crop`` x ``crop`` inputs, with stem + ``layer1`` in ``features_precision``. ``stepped``:
    the backend runs stem + ``layer1`` a few frames at a time in buffers it keeps (the torch
    backend on the CPU, ``models.inference.StepBuffers``, counted with the model), so a chunk's
    frames hold only their input, their ``layer1`` output and one map in flight: chunks can then be
    as long as ``MAX_CHUNK`` (at 224 px the whole-activation count gave 10-frame chunks, whose
    2 x halo recomputed frames cost 0.9 s of 3.4 on 300 frames)."""
    esize = _ELEMENT_BYTES.get(features_precision, 4)
    c, h, w = feature_shape
    feature = esize * c * h * w
    if stepped:
        work = esize * 3 * crop * crop + 2 * feature
    else:
        work = esize * (3 * crop * crop + 3 * STEM_CHANNELS * (crop // 2) ** 2) + 6 * feature
    return FrameCosts(feature=feature, work=work, crop=3 * crop * crop)


@dataclass
class MemoryPlan:
    """How classify spends ``budget`` bytes on one video: ``chunk_frames`` per stem + ``layer1``
    call, ``decode_frames`` per decoded batch (``queue_frames`` of them may wait), ``store_bytes`` of
    ``layer1`` maps kept verbatim, else ``slot_bytes`` of slot sums (never both at once)."""

    budget: int
    chunk_frames: int
    decode_frames: int
    store_bytes: int
    slot_bytes: int
    queue_frames: int = 0  # 0: DECODE_QUEUE_BATCHES batches

    @property
    def queue(self) -> int:
        return self.queue_frames or DECODE_QUEUE_BATCHES * self.decode_frames


def decode_bytes(frame_bytes: int, costs: FrameCosts, batch: int, queued: int, shrunk: bool) -> int:
    """Host memory of decoding: the batch being read (whole frames), the ``queued`` frames waiting
    (crops when the decode thread shrinks them, else whole frames) and the batch the model thread
    converts (float: 4 bytes a value)."""
    waiting = costs.crop if shrunk else frame_bytes
    return batch * frame_bytes + queued * waiting + batch * waiting * 4


def check_frame_fits(
    frame_bytes: int, costs: FrameCosts, budget: int, shrunk: bool, *, width: int, height: int, name: str
) -> None:
    """Decoding one frame at a time (its batch, the queue, the conversion: :func:`decode_bytes`)
    may take at most half of ``budget`` bytes, the other half being the model's working memory and
    the slot sums; else :class:`FrameTooLarge`, a one-line error naming the frame and the budget
    (a 198 KB file of 8192x8192 frames must not grow to gigabytes within a 16 MiB budget)."""
    need = decode_bytes(frame_bytes, costs, 1, DECODE_QUEUE_BATCHES, shrunk)
    if 2 * need > budget:
        raise FrameTooLarge(
            f"{name}: a decoded {width}x{height} frame takes {frame_bytes / 2**20:.1f} MiB and decoding needs "
            f"{need / 2**20:.1f} MiB, more than half of --max-memory {budget / 2**20:.0f} MiB; raise --max-memory "
            f"to at least {-(-2 * need // 2**20)} MiB"
        )


def plan_video(
    budget: int,
    costs: FrameCosts,
    halo: int,
    frame_bytes: int,
    *,
    parallel: int = 1,
    share: int = 1,
    shrunk: bool = False,
    chunk_size: int | None = None,
    queue_batches: int = DECODE_QUEUE_BATCHES,
) -> MemoryPlan:
    """Split ``budget`` bytes for one video: 20% stem + ``layer1`` working memory, 10% decoding
    (more when one frame is big, taken from the store), 50% verbatim ``layer1`` maps, else 25% slot
    sums. ``parallel`` videos decoding at once share the decoding part; ``share`` videos computing
    at once share all of it. ``shrunk``: the decode thread shrinks each batch to crop size."""
    budget //= share
    chunk = max(1, min(MAX_CHUNK, int(0.2 * budget) // costs.work - 2 * halo))
    if chunk_size:
        chunk = chunk_size
    per_video = max(1, parallel // share)
    decode_share = int(0.1 * budget) // per_video
    one = decode_bytes(frame_bytes, costs, 1, queue_batches, shrunk)
    decode = max(1, min(chunk, 32, decode_share // max(1, one)))
    used = decode_bytes(frame_bytes, costs, decode, queue_batches * decode, shrunk) * per_video
    # a big frame's decoding may use more than its 10%; what it takes beyond comes out of the store
    store = int(0.5 * budget) - max(0, used - int(0.1 * budget))
    return MemoryPlan(
        budget,
        chunk,
        decode,
        store_bytes=max(0, store),
        slot_bytes=int(0.25 * budget),
        queue_frames=queue_batches * decode,
    )
