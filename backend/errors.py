"""Errors caused by the user's input (bad spec, missing file, stale artifacts).

The CLI prints them as one line and the API turns them into 4xx answers, never a traceback.
"""


class PSSError(Exception):
    """A problem the user can fix; the message says what and how."""
