"""The root of the errors the host expects: the CLI turns these into one plain line and exit 1.

Anything else reaching the CLI is a bug and keeps its traceback. Messages of these errors are shown
to the operator, so they carry references, serials, KCVs and status words, never key material.
"""


class KeyloadError(Exception):
    """An expected failure, with a message meant for the operator."""
