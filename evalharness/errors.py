"""The one exception type that means "the user must fix something"."""


class UserError(Exception):
    """A problem the user caused and can fix (bad YAML, missing file, ...).

    The CLI prints its message as one line and exits with status 2, without a traceback.
    The message must name what to fix: the file, the YAML key, the value.
    """


class RankFailure(RuntimeError):
    """Under torchrun: a rank failed for a reason other than user input (out of memory, a crash,
    a hung peer). Raised on every rank alike; the CLI prints it on rank 0 and exits with status 1."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A library exception's message cut to one line, for a one-line UserError."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
