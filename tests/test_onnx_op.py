"""A smoke test that the clustering op stays traceable with a dynamic T (full export: export/)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from fvdeploy.ops import aggregate_clusters, cluster_ids

ort = pytest.importorskip("onnxruntime")


class ClusterOp(torch.nn.Module):
    def __init__(self, g: int, method: str):
        super().__init__()
        self.g, self.method = g, method

    def forward(self, x, lengths):
        ids = cluster_ids(x, self.g, self.method, lengths)
        return aggregate_clusters(x, ids, self.g, lengths), ids


@pytest.mark.parametrize("method", ["cumulative", "slope", "uniform"])
def test_op_exports_with_dynamic_t_and_matches_torch(tmp_path, method):
    g = 8
    op = ClusterOp(g, method)
    path = tmp_path / "op.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            op,
            (torch.randn(1, 16, 8, 4, 4), torch.tensor([16])),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x", "lengths"],
            output_names=["means", "ids"],
            dynamic_axes={"x": {0: "N", 1: "T"}, "lengths": {0: "N"}, "means": {0: "N"}, "ids": {0: "N", 1: "T"}},
        )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for t, lengths in [(g, [g]), (37, [37]), (300, [300]), (37, [1, 5, 37])]:
        x = torch.randn(len(lengths), t, 8, 4, 4)
        lens = torch.tensor(lengths)
        means, ids = sess.run(None, {"x": x.numpy(), "lengths": lens.numpy()})
        ref_means, ref_ids = op(x, lens)
        np.testing.assert_array_equal(ids, ref_ids.numpy())
        np.testing.assert_allclose(means, ref_means.numpy(), rtol=1e-5, atol=1e-5)
