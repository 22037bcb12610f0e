"""The one exception type for user mistakes.

The command line turns a ``UserError`` into a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from typing import Iterable


class UserError(Exception):
    """Bad input from the user: unknown names, bad values, missing files."""


def unknown_choice(what: str, value: object, choices: Iterable[str]) -> UserError:
    """An error that names the bad value and lists the valid ones."""
    listed = ", ".join(sorted(choices))
    return UserError(f"unknown {what} {value!r}; valid choices: {listed}")
