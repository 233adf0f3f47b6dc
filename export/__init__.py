"""fvdeploy.export: ONNX and TensorRT export bundles (``MODEL/export/``) with a static-G clustering op.

    from fvdeploy.export import Exporter, ExportOptions
    Exporter("my_model", ExportOptions(formats=("onnx",)))()

See docs/export.md for the bundle format.
"""

from fvdeploy.export_record import ExportBundle, open_bundle

from .exporter import FORMATS, Exporter, ExportOptions, ExportResult, export_formats

__all__ = ["FORMATS", "ExportBundle", "ExportOptions", "ExportResult", "Exporter", "export_formats", "open_bundle"]
