"""The one exception type that means "the user must fix something"."""


class UserError(Exception):
    """A problem the user caused and can fix (bad YAML, missing file, ...).

    The CLI prints its message as one line and exits with status 2, without a traceback.
    The message must name what to fix: the file, the YAML key, the value.
    """
