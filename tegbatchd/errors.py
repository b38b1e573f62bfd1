"""Errors a person sees: one line naming the problem and the next step, and an exit code.

Exit codes (the README lists them): 0 ok; 1 some of the work failed or was interrupted; 2 bad input or
config; 3 not ready yet (a batch still running, another process busy); 4 the API is unreachable;
5 no API key, or the key was rejected; 6 recorded but not confirmed by the API (sent or reconciled by
the next poll, never twice); 7 the state database cannot be used; 70 an internal error (a bug).
"""

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_READY = 3
EXIT_UNAVAILABLE = 4
EXIT_AUTH = 5
EXIT_UNCONFIRMED = 6
EXIT_STATE = 7
EXIT_INTERNAL = 70


class UserError(Exception):
    """A problem the person can fix. Printed as one line (plus optional bullets), never a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, next_step: str | None = None, details: list[str] | None = None,
                 exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.next_step = next_step
        self.details = details or []
        if exit_code is not None:
            self.exit_code = exit_code

    def render(self) -> str:
        line = f"error: {self.message}"
        if self.next_step:
            line += f" — {self.next_step}"
        return "\n".join([line, *(f"  - {d}" for d in self.details)])


def listed(where: str, problems: list[str], many: str, tail: str = "") -> tuple[str, list[str]]:
    """(message, details) of an error about some problems: one problem is said on its one line ("WHERE:
    PROBLEM" and the tail), several under `many` as a list."""
    if len(problems) == 1:
        return f"{where}: {problems[0]}{tail}", []
    return many, problems


class ConfigError(UserError):
    """Bad configuration or bad command-line values (exit 2)."""

    exit_code = 2


class InputError(UserError):
    """Bad input file or arguments (exit 2)."""

    exit_code = 2
