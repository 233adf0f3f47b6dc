"""Cost per video, as Table 1 reports it: forward FLOPs, and training activation memory measured as
the bytes autograd saves for the backward pass.

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one inference forward (it counts a
  multiply-add as 2 FLOPs; the paper's "FLOPs" are multiply-adds, i.e. half of this figure).
- Saved bytes: every tensor autograd packs during one training forward (``saved_tensors_hooks``),
  counted once per storage, parameters excluded (they are the model, not activations). The input
  frames are counted in every configuration: with activation checkpointing they are what the
  checkpoint keeps to recompute stem + layer1 (its own hooks hide the recomputed tensors from ours).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def forward_flops(model: nn.Module, frames: Tensor) -> int:
    """FLOPs of ``model(frames)`` (eval mode) for ``frames: [N, T, 3, H, W]``, divided by N."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(frames)
    return counter.get_total_flops() // frames.shape[0]


def saved_activation_bytes(model: nn.Module, frames: Tensor, labels: Tensor) -> int:
    """Bytes held for backward by one training forward + loss, divided by the N videos in ``frames``."""
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    storages: dict[int, int] = {frames.untyped_storage().data_ptr(): frames.untyped_storage().nbytes()}

    def pack(t: Tensor) -> Tensor:
        if t.layout == torch.strided and t.device.type != "meta":
            st = t.untyped_storage()
            if st.data_ptr() not in params:
                storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out = model(frames)
        loss = F.cross_entropy(out.logits, labels)
    del loss, out
    return sum(storages.values()) // frames.shape[0]
