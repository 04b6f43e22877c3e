"""The root of the errors the host expects: the CLI turns these into one plain line and exit 1.
Their messages carry references, serials, KCVs and status words, never key material."""


class KeyloadError(Exception):
    """An expected failure, with a message meant for the operator."""
