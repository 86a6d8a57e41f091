"""The exceptions of dataset loading; each message says what is wrong and what to do about it.

Every loader of :mod:`dfa_lib.data` raises these, so that a caller (the command line, a
notebook) catches one family, :class:`DatasetError`, whichever dataset it loads.
"""

from __future__ import annotations


class DatasetError(RuntimeError):
    """Base class of every dataset problem; the message says what to do about it."""


class KaggleCredentialsError(DatasetError):
    """No Kaggle API credentials were found, or Kaggle refused them."""


class DatasetDownloadError(DatasetError):
    """The download failed (network, server); nothing was extracted."""


class DatasetArchiveError(DatasetError):
    """The archive is corrupt, unsafe or not the expected dataset; nothing was kept."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A folder, CSV, manifest or audio file the dataset needs does not exist."""


class DatasetLayoutError(DatasetError):
    """A folder exists but not in the layout expected (FoR layout, or a dataset as distributed)."""


class DatasetFormatError(DatasetError, ValueError):
    """A CSV lacks columns or has values (labels, splits) that cannot be understood."""


class UnknownDatasetError(DatasetError, ValueError):
    """A dataset name is neither a known name nor an existing folder or CSV."""
