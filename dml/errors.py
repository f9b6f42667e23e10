"""The one exception type that the CLI turns into a one-line message."""


class DmlError(Exception):
    """A problem with the user's input or settings: the message names it and the fix.

    The CLI prints it as a single line and exits non-zero, instead of a traceback.
    """
