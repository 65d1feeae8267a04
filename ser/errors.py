"""The root of every exception the package raises on purpose.

Each error class of ``ser`` derives from :class:`SerError` and, where it resembles one, from the
builtin it resembles too (an unreadable audio file is also a ``ValueError``, an output folder that
cannot be written also an ``OSError``), so ``except SerError`` catches everything the pipeline
reports as a one-line error, and older ``except ValueError`` code keeps working.
"""
from __future__ import annotations


class SerError(Exception):
    """Something the pipeline refuses or cannot do; its message is one line for the user."""
