"""Storage errors (shared by the database, its row conversions and the writer)."""

from __future__ import annotations


class StorageError(Exception):
    """The database cannot be used as asked (wrong schema version, not WAL, closed)."""


class JournalError(StorageError):
    """A journal write was refused: it would lose or contradict what is recorded."""
