"""User-facing errors.

Anything the user can fix (a bad model name, a malformed data file, a layer out of
range, an existing output) raises a subclass of :class:`DftlensError`. The CLI turns
these into one plain sentence on stderr and exit code 2, without a traceback; any
other exception is a bug in dftlens and keeps its traceback.
"""


class DftlensError(Exception):
    """An error the user can fix; its message says what is wrong and what to do."""

    exit_code = 2


class ModelNotAvailable(DftlensError):
    """The named model is neither local, nor cached, nor downloadable."""


class DataError(DftlensError):
    """A data file is missing, malformed, or lacks a requested language."""


class LayerError(DftlensError):
    """A layer index or hook name does not exist in the model."""


class OutputExists(DftlensError):
    """An earlier result would be overwritten without --overwrite."""


class OutputBusy(DftlensError):
    """Another process is writing the same output directory."""


class NonFiniteError(DftlensError):
    """A NaN or infinity in activations, logits, a loss or a setting; the run stops (see :mod:`dftlens.numerics`)."""
