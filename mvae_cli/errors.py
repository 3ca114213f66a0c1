"""Errors a user can cause: shown as one line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input from the user: a path, a value, a file that is not what it should be.

    The CLI prints ``str(error)`` on one line and exits with code 2. Anything else
    that escapes is a bug and keeps its traceback.
    """
