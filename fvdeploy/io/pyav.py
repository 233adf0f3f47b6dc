"""Network streams through PyAV: every frame with the timestamp the stream carries.

``open_source`` reads every network URL (rtsp, rtmp, srt, udp, http(s) files, HLS playlists,
MJPEG cameras) with :class:`PyAVSource`; local files stay with OpenCV. Why not OpenCV for streams:
its ``CAP_PROP_POS_MSEC`` gives the first frames of an RTSP stream as 0.0, 0.0, 40.0 ms
(opencv/opencv#17999), so stream time could not be trusted there and the frames FFmpeg buffered
while probing came out in one burst stamped on arrival; and its read timeout cannot tell a stalled
server from the end of a stream (both are a failed ``read()``, one of them 10 s late). PyAV (its
wheel carries FFmpeg's libraries) gives each decoded frame's ``pts`` and raises on a read that
waits longer than the read timeout, so a stall is seen as a stall.

Times (``time_basis``):

- ``stream``, a finite URL (a file over http): pts minus the container's start time, the origin
  ``ffmpeg -ss`` uses (as for local files);
- ``stream``, a live stream: the stream's own timestamps from its first frame (0.0), so frames that
  FFmpeg buffered keep their own times; after a reconnection the new connection's first frame is
  placed at its arrival on the same clock, and times never go backwards;
- ``clock``, a live stream without timestamps (an MJPEG camera over http: FFmpeg's ``mpjpeg``
  demuxer invents them from a guessed 25 fps): arrival time since the source opened.

Stalls: a live stream that delivers nothing for ``stall_timeout_s`` (``LIVE_STALL_S`` = 3 s by
default; 75 frame durations at 25 fps) has stalled: the decoder's buffered frames are delivered
with their own times, then a ``Dropped`` marker, and bounded reconnections with backoff; when they
fail, a one-line ``VideoError``. A live HLS playlist that gets no new segment for
``HLS_HOLD_RELOADS`` reloads (FFmpeg reloads every half target duration: 2 target durations) has
ended: its producer died; the same reconnections follow, and a playlist that comes back stale
(the same segments again) is no new frame. A finite URL that stalls for ``open_timeout_s`` (10 s)
ends there: ``partial`` with the warning "the source stalled at 10.0 s after 250 frames; 500
announced"."""

from __future__ import annotations

import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np

from ..errors import VideoError
from .sources import (
    DAMAGE_RETRIES,
    Dropped,
    FrameBatch,
    FrameSource,
    Marker,
    Resumed,
    _Clock,
    hdr_warning,
    not_dash,
    why_unopened,
)
from .urls import is_live_url, redact
from .video import declared_fps

log = logging.getLogger(__name__)

LIVE_STALL_S = 3.0  # a live stream silent this long has stalled (a camera slower than 1 frame / 3 s: raise it)
HLS_READ_S = 30.0  # HLS: one read may wait a target duration for the next segment; stalls end by reloads
HLS_HOLD_RELOADS = 4  # live HLS: reloads without a new segment before the playlist counts as ended
NO_PTS_FORMATS = ("mpjpeg", "mjpeg", "image2pipe")  # demuxers that invent times from a guessed rate


def is_hls_url(url: str) -> bool:
    return urllib.parse.urlsplit(url).path.lower().endswith((".m3u8", ".m3u"))


class _Ended(Exception):
    """How a connection stopped delivering: ``stalled`` (no data for the read timeout), ``eof``
    (the stream ended) or ``error`` (a network or demuxer error: ``detail``)."""

    def __init__(self, how: str, detail: str = "") -> None:
        super().__init__(how)
        self.how, self.detail = how, detail


class PyAVSource(FrameSource):
    """A network URL decoded by PyAV, each frame's time from its own ``pts`` (see the module docstring).

    ``url``: rtsp/rtmp/srt/udp/... (live), http(s) (finite: a file; live: an MJPEG camera or a live
    HLS playlist), ``live`` overrides that. ``fps`` overrides the declared rate; ``threads``: FFmpeg
    decoding threads (0: FFmpeg's choice); ``retries``/``retry_delay_s``: reconnection of a live
    source (delays doubling, at most 10 s); ``open_timeout_s``: opening (and, for a finite URL,
    reading) timeout; ``stall_timeout_s``: a live stream silent this long has stalled (default
    ``LIVE_STALL_S``); ``frame_check(width, height, name)`` raises to refuse a frame size before
    a frame is decoded (the engine's memory budget). Batches are BGR ``uint8 [k, H, W, 3]``. Raises ``VideoError`` (one line) when
    the URL cannot be opened (why: the server's status, unreachable, no byte ranges), is a DASH
    manifest, has no video, or no frame decodes."""

    decoder = "pyav"
    kind = "url"
    threaded = True  # PyAV releases the GIL while it demuxes and decodes

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        live: bool | None = None,
        fps: float | None = None,
        threads: int = 0,
        retries: int = 5,
        retry_delay_s: float = 1.0,
        open_timeout_s: float = 10.0,
        stall_timeout_s: float | None = None,
        loops: int = 1,  # files only (benchmarks); a URL is read once
        frame_check: Callable[[int, int, str], None] | None = None,
    ) -> None:
        import av  # noqa: F401  (a core dependency; imported here so that files never load it)

        shown = redact(url)
        not_dash(url, shown)
        self.hls = is_hls_url(url)
        scheme_live = is_live_url(url)
        super().__init__(name or shown, live=scheme_live if live is None else live)
        self.path, self.target = shown, url
        self.threads, self.retries, self.retry_delay_s, self.open_timeout_s = (
            threads,
            retries,
            retry_delay_s,
            open_timeout_s,
        )
        if stall_timeout_s is None:
            stall_timeout_s = HLS_READ_S if self.hls else LIVE_STALL_S if self.live else open_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.clock0 = time.perf_counter()
        self._open()
        container, stream = self._container, self._stream
        if container.format.name == "dash" or "dash" in container.format.name.split(","):
            self.close()
            not_dash(url + ".mpd", shown)
        self.fps = fps or declared_fps((stream.average_rate or stream.guessed_rate or 0) if stream else 0)
        self.frame_count_hint = max(0, int(stream.frames or 0))
        self.no_pts = container.format.name in NO_PTS_FORMATS
        if live is None and not self.live:
            # an IP camera's endless multipart JPEG stream, or a live playlist (no end, no duration)
            self.live = self.no_pts or (self.hls and container.duration is None)
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        self._ask_size(frame_check)  # before a frame is decoded: a stream of huge frames is refused from its header
        self.origin = container.start_time / 1e6 if container.start_time is not None else None
        self._hdr = hdr_warning(self.describe(), stream.codec_context.color_trc, stream.codec_context.color_primaries)
        # The first frames prove the source decodes and decide the time basis.
        self._prefetch: list[tuple[np.ndarray, float, float]] = []
        try:
            for _ in range(2):
                self._prefetch.append(next(self._frames_it))
        except StopIteration:
            pass
        except _Ended as e:
            self._pending_end = e
        if not self._prefetch:
            self.close()
            how = getattr(self, "_pending_end", None)
            if how is not None and how.how == "stalled":
                raise VideoError(
                    f"{self.describe()}: the source stalled before its first frame (no data for {self.stall_timeout_s:g} s)"
                )
            raise VideoError(f"{self.describe()}: no frames could be decoded (zero frames, or a corrupt video)")
        header = (self.width, self.height)
        self.height, self.width = self._prefetch[0][0].shape[:2]
        if header != (self.width, self.height):  # the header had no size, or not the displayed one (rotation)
            self._ask_size(frame_check)
        has_pts = any(math.isfinite(p[1]) for p in self._prefetch) and not self.no_pts
        if has_pts:
            self.time_basis = "stream"
        elif self.live:
            self.time_basis = "clock"
        else:
            self.time_basis = "fps" if self.fps else None

    # -- one connection --------------------------------------------------------------------------
    def _options(self) -> dict[str, str]:
        scheme = self.target.split("://", 1)[0].lower()
        options: dict[str, str] = {}
        if scheme in ("http", "https") and not self.live and not self.hls:
            # a connection closed early is reopened at its offset (FFmpeg's own reconnect): nothing lost
            options.update(reconnect="1", reconnect_on_network_error="1", reconnect_delay_max="2")
            # no read of the file's end at open to estimate its duration (an MPEG-TS's last timestamps):
            # a server that stalls there would stall the open, and a failed read at open poisons the
            # connection for the frames before it (seen: a TS served half-way opened, then gave none)
            options["skip_estimate_duration_from_pts"] = "1"
        if self.hls:
            options["m3u8_hold_counters"] = str(HLS_HOLD_RELOADS)
        # FFmpeg's own socket timeout too, in microseconds: PyAV's read timeout is an interrupt callback
        # that FFmpeg polls, and a test of an RTSP server stopped and resumed under load once waited
        # 240 s in FFmpeg's poll() without it firing; the socket timeout ends such a read by itself.
        if self.live:
            micros = str(int(self.stall_timeout_s * 1e6))
            options["timeout" if scheme in ("rtsp", "rtsps") else "rw_timeout"] = micros
        return options

    def _open(self) -> None:
        import av

        t0 = time.perf_counter()
        try:
            container = av.open(
                self.target,
                options=self._options(),
                timeout=(self.open_timeout_s, self.stall_timeout_s),
            )
        except av.error.ExitError:
            raise VideoError(
                f"{self.name}: cannot open {'the stream' if self.live else 'this URL'} "
                f"(no answer within {self.open_timeout_s:g} s)"
            ) from None
        except av.error.ProtocolNotFoundError:
            scheme = self.target.split("://", 1)[0].lower()
            raise VideoError(
                f"{self.name}: cannot open the stream ({scheme}:// is not supported: the FFmpeg in PyAV's wheel "
                f"has no {scheme} protocol)"
            ) from None
        except (av.error.FFmpegError, OSError, ValueError) as e:
            if time.perf_counter() - t0 >= 0.95 * self.open_timeout_s:  # interrupted: FFmpeg's error says less
                raise VideoError(
                    f"{self.name}: cannot open {'the stream' if self.live else 'this URL'} "
                    f"(no answer within {self.open_timeout_s:g} s)"
                ) from None
            raise VideoError(
                f"{self.name}: cannot open {'the stream' if self.live else 'this URL'} ({why_unopened(self.target, e)})"
            ) from None
        if not container.streams.video:
            container.close()
            raise VideoError(f"{self.name}: no video stream in this URL")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE" if self.live else "AUTO"  # frame threads would delay a live frame
        if self.threads > 0:
            stream.codec_context.thread_count = self.threads
        self._container, self._stream = container, stream
        self._frames_it = self._decode(container, stream)

    def _decode(self, container: Any, stream: Any) -> Iterator[tuple[np.ndarray, float, float]]:
        """(BGR frame, pts in seconds (nan: none), arrival) for one connection; raises ``_Ended``
        when it stalls or fails (after the frames the decoder still held); returns at its end."""
        import av

        errors = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:  # a damaged packet: ffmpeg decodes on past it
                    errors += 1
                    self._damaged += 1
                    if errors > DAMAGE_RETRIES:
                        raise _Ended("error", "too many damaged packets in a row") from None
                    continue
                errors = 0
                for frame in frames:
                    yield self._convert(frame)
        except (av.error.ExitError, av.error.TimeoutError):  # nothing arrived for stall_timeout_s
            yield from self._flush(stream)
            raise _Ended("stalled") from None
        except (av.error.FFmpegError, OSError) as e:
            yield from self._flush(stream)
            raise _Ended("error", str(e).split(";")[0]) from None

    def _flush(self, stream: Any) -> Iterator[tuple[np.ndarray, float, float]]:
        try:
            for frame in stream.codec_context.decode(None):
                yield self._convert(frame)
        except Exception:  # noqa: BLE001  (a decoder that cannot flush holds nothing we could use)
            return

    def _convert(self, frame: Any) -> tuple[np.ndarray, float, float]:
        image = frame.to_ndarray(format="bgr24")
        if frame.rotation:  # displayed as the ffmpeg CLI shows it (OpenCV does the same for files)
            image = np.ascontiguousarray(np.rot90(image, k=round(frame.rotation / 90) % 4))
        pts = frame.pts if frame.pts is not None else frame.dts
        seconds = float(pts * frame.time_base) if pts is not None and frame.time_base is not None else math.nan
        return image, seconds, time.perf_counter()

    # -- reading ---------------------------------------------------------------------------------
    _container: Any = None  # the open connection (av.container.InputContainer), None when closed
    _stream: Any = None
    _frames_it: Any = None  # this connection's frames (see _decode)
    _damaged = 0
    _pending_end: _Ended | None = None

    def _batches(self, max_frames: int) -> Iterator[FrameBatch | Marker]:
        batch = 1 if self.live else max_frames
        clock = _Clock(self.fps)
        step = 1.0 / self.fps if self.fps else 0.04
        index = 0
        frames: list[np.ndarray] = []
        pts: list[float] = []
        arrival: list[float] = []
        shape = self._prefetch[0][0].shape
        conn_raw0: float | None = None  # live: the first raw time of this connection ...
        conn_at = 0.0  # ... and where it sits on this source's clock
        first_arrival: float | None = None
        last_raw = -math.inf  # the last raw time delivered (a stale HLS playlist replays up to it)
        replay_until = -math.inf
        damaged_seen = 0
        # the first frames may lack a pts (RTSP's first frame before its clock is set): one step before the next
        if len(self._prefetch) == 2 and math.isnan(self._prefetch[0][1]) and math.isfinite(self._prefetch[1][1]):
            f0, _, a0 = self._prefetch[0]
            self._prefetch[0] = (f0, self._prefetch[1][1] - step, a0)
        try:
            while not self.stopping.is_set():
                try:
                    if self._prefetch:
                        item = self._prefetch.pop(0)
                    elif self._pending_end is not None:
                        raise self._pending_end
                    else:
                        item = next(self._frames_it)
                except (StopIteration, _Ended) as e:
                    ended = e if isinstance(e, _Ended) else _Ended("eof")
                    self._pending_end = None
                    if frames:
                        yield self._batch(frames, index, pts, arrival)
                        frames, pts, arrival = [], [], []
                    if not self.live:
                        self._finite_end(ended, index, clock)
                        return
                    replay_until = last_raw if self.hls else -math.inf
                    resumed = yield from self._reconnect(index, ended, replay_until)
                    if resumed is None:
                        return
                    conn_raw0, conn_at = None, max(resumed.at - (first_arrival or resumed.at), clock.prev + step)
                    resumed.pts = conn_at
                    yield resumed
                    continue
                frame, raw, arrived = item
                if raw <= replay_until:  # a stale playlist's segments again: already delivered
                    continue
                if frame.shape != shape:
                    raise VideoError(
                        f"{self.describe()}: frame {index} has size {frame.shape[1]}x{frame.shape[0]}, earlier "
                        f"frames {shape[1]}x{shape[0]} (a size change mid-stream is not supported)"
                    )
                if first_arrival is None:
                    first_arrival = arrived
                if math.isnan(raw) and self.time_basis == "stream":
                    raw = (last_raw if math.isfinite(last_raw) else 0.0) + clock.usual_step()
                t = self._time(index, raw, arrived, conn_raw0, conn_at)
                if self.live and self.time_basis == "stream" and conn_raw0 is None:
                    conn_raw0 = raw
                    t = conn_at
                if self._damaged > damaged_seen:  # packets were lost before this frame: count them from the gap
                    gap = raw - last_raw if math.isfinite(last_raw) else math.nan
                    usual = clock.usual_step()
                    lost = max(1, round(gap / usual) - 1) if math.isfinite(gap) and usual > 0 else 1
                    self.lost_frames += lost
                    self.warn(
                        f"{self.describe()}: decode error at frame {index} ({clock.prev + usual:.2f} s): "
                        f"{lost} frame(s) lost, decoding resumed"
                    )
                    damaged_seen = self._damaged
                last_raw = max(last_raw, raw) if math.isfinite(raw) else last_raw
                frames.append(frame)
                pts.append(clock.place(t))
                arrival.append(arrived)
                index += 1
                if len(frames) >= batch:
                    yield self._batch(frames, index, pts, arrival)
                    frames, pts, arrival = [], [], []
            if frames:
                yield self._batch(frames, index, pts, arrival)
        finally:
            if self._hdr and self._hdr not in self.warnings:
                self.warn(self._hdr)
            self.close()

    def _time(self, index: int, raw: float, arrived: float, conn_raw0: float | None, conn_at: float) -> float:
        if self.time_basis == "stream":
            if self.live:
                return conn_at + (raw - conn_raw0) if conn_raw0 is not None else conn_at
            return raw - (self.origin if self.origin is not None else 0.0)
        if self.time_basis == "fps":
            return index / self.fps if self.fps else math.nan
        if self.time_basis == "clock":
            return arrived - self.clock0
        return math.nan

    def _finite_end(self, ended: _Ended, frames: int, clock: _Clock) -> None:
        """A finite URL ended: at its end (nothing to say), or it stalled or failed (partial)."""
        if ended.how == "eof":
            return
        at = clock.prev + clock.usual_step() if math.isfinite(clock.prev) else 0.0
        announced = f"{self.frame_count_hint} announced" if self.frame_count_hint else "no length announced"
        what = (
            f"the source stalled at {at:.1f} s after {frames} frames (no data for {self.stall_timeout_s:g} s)"
            if ended.how == "stalled"
            else f"the connection failed at {at:.1f} s after {frames} frames ({ended.detail})"
        )
        self.incomplete = True
        self.warn(f"{self.describe()}: {what}; {announced}")

    def _reconnect(self, index: int, ended: _Ended, replay_until: float) -> Generator[Dropped, None, Resumed | None]:
        """Reopen a live source with bounded, logged retries and backoff: yields ``Dropped``,
        returns the ``Resumed`` to send once a new frame came (None: the source is being stopped);
        a one-line VideoError when every attempt failed."""
        what = {
            "stalled": f"stalled (no data for {self.stall_timeout_s:g} s)",
            "eof": f"stalled (its live playlist listed no new segment in {HLS_HOLD_RELOADS} reloads)"
            if self.hls
            else "ended",
            "error": f"failed ({ended.detail})",
        }[ended.how]
        dropped_at = time.perf_counter()
        yield Dropped(f"{self.name}: the stream {what} after {index} frames", dropped_at)
        self.close()
        delay = self.retry_delay_s
        for attempt in range(1, self.retries + 1):
            log.warning(
                "%s: stream %s; reconnecting (attempt %d of %d) in %.1f s",
                self.name,
                what,
                attempt,
                self.retries,
                delay,
            )
            if self.stopping.wait(delay):
                return None
            delay = min(10.0, delay * 2)
            try:
                self._open()
            except VideoError as e:
                log.warning("%s", e)
                continue
            first = None
            try:
                for item in self._frames_it:
                    if self.stopping.is_set():
                        return None
                    if item[1] > replay_until or math.isnan(item[1]):
                        first = item
                        break
            except _Ended:
                pass
            if first is None:  # nothing new: a stale playlist, or it stalled again
                self.close()
                continue
            self._prefetch = [first]
            self.reconnects += 1
            log.warning(
                "%s: reconnected after %.1f s (attempt %d)", self.name, time.perf_counter() - dropped_at, attempt
            )
            return Resumed(first[2], attempt, 0.0)
        raise VideoError(f"{self.name}: the stream {what} and {self.retries} reconnection attempts failed")

    @staticmethod
    def _batch(frames: list[np.ndarray], end: int, pts: list[float], arrival: list[float]) -> FrameBatch:
        return FrameBatch(
            np.stack(frames),
            np.arange(end - len(frames), end, dtype=np.int64),
            np.asarray(pts, np.float64),
            np.asarray(arrival, np.float64),
        )

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001  (closing a broken connection: nothing left to release)
                pass
            self._container = None
