"""fvdeploy.export: ONNX and TensorRT export bundles (``MODEL/export/``) with a static-G clustering op.

    from fvdeploy.export import Exporter, ExportOptions
    Exporter("my_model", ExportOptions(formats=("onnx",)))()

See docs/export.md for the bundle format.
"""

from .exporter import FORMATS, Exporter, ExportOptions, ExportResult, export_formats
from .record import ExportBundle, open_bundle

__all__ = ["FORMATS", "ExportBundle", "ExportOptions", "ExportResult", "Exporter", "export_formats", "open_bundle"]
