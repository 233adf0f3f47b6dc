"""Benchmarks behind ``fvdeploy bench``: measured figures, never asserted in tests.

Each benchmark prints a human summary on stderr and, as its last stdout line, one JSON object.
One module per benchmark (``memory``, ``throughput``, ``model``, ``corpus``, ``precision``,
``onnx``, ``watch``, ``startup``), shared pieces in ``clips`` (generated videos) and ``gpu`` (the
one GPU-utilisation sampler, in percent); ``cli`` registers the ``fvdeploy bench`` commands.
This package sits above the runtime and export rooms; nothing below it imports it.
"""
