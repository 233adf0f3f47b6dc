"""One exception family. The library raises these with a one-line message naming the input and the
problem; the CLI prints the message and exits 1 (never a traceback)."""


class FvdeployError(Exception):
    """Base class: a problem with the user's input, model, device or environment."""


class ModelError(FvdeployError):
    """A model folder (checkpoint or bundle) is missing, corrupt or inconsistent."""


class VideoError(FvdeployError):
    """A video cannot be found, opened or decoded."""


class BackendError(FvdeployError):
    """A requested backend, device or provider is not available."""


class ExportError(FvdeployError):
    """An export failed or did not validate."""


class InputError(FvdeployError, TypeError):
    """An argument of the wrong kind (``classify_many`` of something that is not an iterable of
    sources); a ``TypeError`` too, so code that catches that still does."""
