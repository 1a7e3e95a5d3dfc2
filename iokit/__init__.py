"""iokit: a hands-on kit on I/O for language-model training data.

The notebooks in ``notebooks/`` import from here; every measurement they show is made by these
modules on the learner's own machine.
"""

from iokit.corpus import Document, ensure_corpus, iter_documents, resolve_scale
from iokit.errors import CorpusError, FormatError, IokitError, ParameterError, StorageError

__version__ = "0.1.0"

__all__ = [
    "CorpusError",
    "Document",
    "FormatError",
    "IokitError",
    "ParameterError",
    "StorageError",
    "ensure_corpus",
    "iter_documents",
    "resolve_scale",
]
