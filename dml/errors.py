"""The one exception type that the CLI turns into a one-line message."""


class DmlError(Exception):
    """A problem with the user's input or settings: the message names it and the fix.

    The CLI prints it as a single line and exits non-zero, instead of a traceback.
    """


class RunInterrupted(DmlError):
    """Ctrl-C or SIGTERM stopped a run after saving a checkpoint; the message says how to
    resume. A sweep stops at it too, instead of going on to its next job."""


def one_line(error: DmlError) -> str:
    """The message alone, also when a DataLoader worker re-raised the error.

    A worker's error comes back as ``DmlError("Caught DmlError in DataLoader worker ...
    Original Traceback ...: <message>")``; the user needs only the last part.
    """
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split("DmlError: ", 1)[-1]
    return text
