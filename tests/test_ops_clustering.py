"""The clustering op against a direct, loop-by-loop transcription of the issue's formulas."""

from __future__ import annotations

from fractions import Fraction
from math import ceil

import pytest
import torch

from fvdeploy.ops import (
    aggregate_clusters,
    cluster_ids,
    cluster_ids_from_distances,
    cluster_segments,
    frame_distances,
)

METHODS = ["cumulative", "slope", "uniform"]


# ---- reference: the formulas of the core issue, one video, plain Python --------------------------
def ref_distances(x: torch.Tensor) -> list[int]:
    b = (x > 0).reshape(x.shape[0], -1).tolist()
    return [sum(p != q for p, q in zip(b[t], b[t + 1])) for t in range(len(b) - 1)]


def ref_repair(raw: list[int], g: int) -> list[int]:
    t = len(raw)
    s = [next((i for i, r in enumerate(raw) if r >= k), t) for k in range(g)]
    fixed = [0]
    for k in range(1, g):
        fixed.append(min(max(s[k], fixed[-1] + 1), t - g + k))
    return [sum(1 for k in range(1, g) if fixed[k] <= i) for i in range(t)]


def ref_ids(d: list[int], length: int, g: int, method: str) -> list[int]:
    """ids for the first max(length, G) positions of one video, from its neighbour distances."""
    L = max(length, g)
    d = d[: L - 1]
    uniform = [i * g // L for i in range(L)]
    if method == "uniform":
        raw = uniform
    elif method == "cumulative":
        c = [0]
        for v in d:
            c.append(c[-1] + v)
        total = c[L - 1]
        raw = uniform if total == 0 else [max(1, ceil(Fraction(g * ci, total))) - 1 for ci in c]
    else:
        order = sorted(range(L - 1), key=lambda t: (-d[t], t))[: g - 1]
        raw = [sum(1 for b in order if b < i) for i in range(L)]
    return ref_repair(raw, g)


def signs_with_distances(d: list[int], width: int = 64) -> torch.Tensor:
    """Frames [T, width, 1, 1] of +-1 whose neighbour Hamming distances are exactly ``d``."""
    frame = -torch.ones(width)
    frames, used = [frame.clone()], 0
    for v in d:
        frame = frame.clone()
        frame[used : used + v] *= -1  # flip fresh positions, so each step differs by exactly v
        used += v
        frames.append(frame)
    assert used <= width
    return torch.stack(frames)[:, :, None, None]


def check_invariants(ids: torch.Tensor, g: int, valid: int) -> None:
    row = ids.tolist()
    assert all(v == -1 for v in row[valid:])
    head = row[:valid]
    assert head[0] == 0 and head[-1] == g - 1
    assert all(b - a in (0, 1) for a, b in zip(head, head[1:])), head  # non-decreasing, contiguous
    assert sorted(set(head)) == list(range(g))  # exactly G clusters, none empty


# ---- hand-made cases ----------------------------------------------------------------------------
def test_distances_are_hamming_counts():
    x = signs_with_distances([3, 0, 7, 1])[None]
    assert frame_distances(x).tolist() == [[3, 0, 7, 1]]
    assert frame_distances(x).dtype == torch.long


def test_jump_that_would_empty_clusters_is_repaired():
    # All change happens between the last two frames: raw cumulative ids are 0,...,0,3, so
    # clusters 1 and 2 would be empty. The repair hands them single frames before the jump.
    d = [0] * 8 + [50]
    x = signs_with_distances(d)[None]
    ids = cluster_ids(x, 4, "cumulative")[0].tolist()
    assert ids == [0, 0, 0, 0, 0, 0, 0, 1, 2, 3]
    assert ids == ref_ids(d, 10, 4, "cumulative")


def test_paper_figure3_cumulative_splits_total_distance_evenly():
    d = [1, 1, 1, 4, 1, 1, 4, 1, 1]  # cumulative 0,1,2,3,7,8,9,13,14,15 ; thirds at 5 and 10
    x = signs_with_distances(d)[None]
    assert cluster_ids(x, 3, "cumulative")[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    # slope: the two largest steps (t=3 and t=6) start new clusters at frames 4 and 7
    assert cluster_ids(x, 3, "slope")[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_identical_frames():
    x = torch.ones(1, 10, 2, 2, 2)
    uniform = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert cluster_ids(x, 4, "uniform")[0].tolist() == uniform
    assert cluster_ids(x, 4, "cumulative")[0].tolist() == uniform  # C_total == 0 -> uniform
    # slope ties all rank the earlier t first: boundaries after t = 0, 1, 2
    assert cluster_ids(x, 4, "slope")[0].tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 3, 3]


@pytest.mark.parametrize("method", METHODS)
def test_t_equals_g_gives_one_frame_per_cluster(method):
    x = torch.randn(2, 6, 3, 2, 2)
    assert cluster_ids(x, 6, method).tolist() == [list(range(6))] * 2


@pytest.mark.parametrize("method", METHODS)
def test_short_and_single_frame_videos_in_a_batch(method):
    x = torch.randn(3, 9, 3, 4, 4)
    lengths = torch.tensor([1, 3, 9])
    ids = cluster_ids(x, 5, method, lengths)
    assert ids[0].tolist() == [0, 1, 2, 3, 4, -1, -1, -1, -1]
    assert ids[1].tolist() == [0, 1, 2, 3, 4, -1, -1, -1, -1]
    assert ids[2].tolist() == ref_ids(ref_distances(x[2]), 9, 5, method)
    # means of a short video: positions >= length read as its last valid frame
    means = aggregate_clusters(x, ids, 5, lengths)
    torch.testing.assert_close(means[0], x[0, :1].expand(5, -1, -1, -1))
    torch.testing.assert_close(means[1, :3], x[1, :3])
    torch.testing.assert_close(means[1, 3:], x[1, 2:3].expand(2, -1, -1, -1))


def test_too_few_frames_and_bad_method_are_clear_errors():
    with pytest.raises(ValueError, match="at least num_clusters=8"):
        cluster_ids(torch.randn(1, 5, 2, 2, 2), 8)
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster_ids(torch.randn(1, 9, 2, 2, 2), 8, "kmeans")


# ---- random inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("g", [1, 2, 4, 8])
def test_random_inputs_match_the_reference(method, g):
    gen = torch.Generator().manual_seed(g)
    for _ in range(6):
        t = int(torch.randint(g, 40, (1,), generator=gen))
        # a few channels so that distances are small and ties and jumps are common
        x = torch.randn(3, t, 2, 2, 2, generator=gen) + torch.randn(3, t, 1, 1, 1, generator=gen)
        lengths = torch.randint(1, t + 1, (3,), generator=gen)
        lengths[0] = t
        ids = cluster_ids(x, g, method, lengths)
        for n in range(3):
            valid = max(int(lengths[n]), g)
            if int(lengths[n]) >= g:
                assert ids[n, :valid].tolist() == ref_ids(ref_distances(x[n]), int(lengths[n]), g, method)
            check_invariants(ids[n], g, valid)


@pytest.mark.parametrize("method", METHODS)
def test_distances_form_equals_activation_form(method):
    x = torch.randn(2, 30, 4, 3, 3)
    lengths = torch.tensor([30, 17])
    assert torch.equal(
        cluster_ids(x, 8, method, lengths), cluster_ids_from_distances(frame_distances(x), 8, method, lengths)
    )


# ---- padding invariance ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_padded_batch_equals_video_alone(method):
    g = 4
    videos = [torch.randn(t, 6, 3, 3) for t in (2, 4, 11, 23)]
    t_max = 30
    batch = torch.stack([torch.cat([v, 100 * torch.randn(t_max - len(v), 6, 3, 3)]) for v in videos])
    lengths = torch.tensor([len(v) for v in videos])
    ids = cluster_ids(batch, g, method, lengths)
    means = aggregate_clusters(batch, ids, g, lengths)
    for n, v in enumerate(videos):
        alone = v if len(v) >= g else torch.cat([v, v[-1:].expand(g - len(v), -1, -1, -1)])
        ids_alone = cluster_ids(alone[None], g, method)
        valid = max(len(v), g)
        assert ids[n, :valid].tolist() == ids_alone[0].tolist()
        assert (ids[n, valid:] == -1).all()
        torch.testing.assert_close(means[n], aggregate_clusters(alone[None], ids_alone, g)[0], rtol=1e-6, atol=1e-6)


# ---- aggregation ----------------------------------------------------------------------------------
def test_uniform_with_t_multiple_of_g_averages_fixed_blocks():
    x = torch.randn(2, 12, 5, 3, 3)
    ids = cluster_ids(x, 4, "uniform")
    means = aggregate_clusters(x, ids, 4)
    torch.testing.assert_close(means, x.reshape(2, 4, 3, 5, 3, 3).mean(2))


def test_gradient_of_each_frame_is_its_cluster_mean_gradient_over_size():
    x = torch.randn(2, 13, 3, 2, 2, requires_grad=True)
    ids = cluster_ids(x.detach(), 4, "cumulative")
    means = aggregate_clusters(x, ids, 4)
    upstream = torch.randn_like(means)
    (means * upstream).sum().backward()
    for n in range(2):
        sizes = torch.bincount(ids[n], minlength=4)
        for t in range(13):
            k = int(ids[n, t])
            torch.testing.assert_close(x.grad[n, t], upstream[n, k] / sizes[k])


def test_segments_from_ids():
    ids = torch.tensor([[0, 0, 1, 2, 2, 2, -1], [0, 1, 1, 1, 2, 2, 2]])
    assert cluster_segments(ids) == [[(0, 2), (2, 3), (3, 6)], [(0, 1), (1, 4), (4, 7)]]
