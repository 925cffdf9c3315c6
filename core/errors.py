"""The one base class of errors a user can act on.

A `PotluckError`'s message says what happened and what to do, in plain words, without secrets. The command line
prints it as one line and exits with code 2; the node turns it into an error event for the app. Everything else
that escapes is a bug (exit code 1, with its type name). Standard library only.
"""

from __future__ import annotations


class PotluckError(Exception):
    """A problem the user can fix (a bad argument, a missing model, a used invite code, a full cache, …)."""
