"""The clustering methods (``--method``), torch-free so the command line can offer them without
loading torch."""

from __future__ import annotations

METHODS: tuple[str, ...] = ("cumulative", "slope", "uniform")
