"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""


class PrunesearchError(Exception):
    """Base class for errors caused by what the user asked for (bad input, unsupported model, ...)."""


class ArchitectureError(PrunesearchError):
    """A malformed, out-of-range or inconsistent architecture."""


class BudgetError(PrunesearchError):
    """A budget that cannot be met (negative, or more than the space can remove)."""


class UnsupportedModelError(PrunesearchError):
    """A checkpoint whose architecture prunesearch cannot prune."""


class DataError(PrunesearchError):
    """An unknown data set or split, or data that is not installed."""
