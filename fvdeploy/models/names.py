"""The architectures the registry builds (``--arch``), torch-free so the command line can offer
them without loading torch. ``registry.list_models()`` must equal ``sorted(ARCHS)`` (tested):
registering a new builder means naming it here too."""

from __future__ import annotations

ARCHS: tuple[str, ...] = ("resnet18", "resnet50", "tiny")
