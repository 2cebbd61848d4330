"""Errors that the CLI reports in one line, with their exit codes."""


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


class UserError(Exception):
    """A failure the user can fix, reported in one line with `code` as exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
