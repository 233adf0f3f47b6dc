"""fvdeploy.training: datasets, the Move4 generator and the trainer.

- :mod:`.datasets`: folder-per-class and list-file sources, full-video samples, padding and lengths
- :mod:`.augment`: TSM's multi-scale crop and label-aware flip, one draw per video
- :mod:`.move4`: the Move4 generator (``fvdeploy make-move4``)
- :mod:`.loop`: ``train`` (``fvdeploy train``, DDP via torchrun) and ``evaluate`` (``fvdeploy eval``)
- :mod:`.measure`: FLOPs and saved-for-backward bytes per video (Table 1)
"""

from .datasets import Batch, VideoDataset, VideoList, VideoRecord, collate, open_source
from .loop import EvalResult, TrainConfig, TrainSummary, evaluate, evaluate_model, train

__all__ = [
    "Batch",
    "EvalResult",
    "TrainConfig",
    "TrainSummary",
    "VideoDataset",
    "VideoList",
    "VideoRecord",
    "collate",
    "evaluate",
    "evaluate_model",
    "open_source",
    "train",
]
