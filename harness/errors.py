"""Bad input: the one base class of every error a user can fix, which the command line turns into
exit status 2 and a one-line message. Anything else raised is a bug, and shows as one."""

from __future__ import annotations

from typing import Any

__all__ = ["BadInput", "UnknownName"]

_UNSET: Any = object()


class BadInput(ValueError):
    """Input that cannot be used as given: a file, a key in it, a value, and the valid choices.

    The message says what failed and how to fix it; `source` (a file or folder), `key` (where in
    it), `value` and `choices` are kept apart for callers that want them. str() is the whole
    message: '<source>: <key>: <message>', the parts that are known.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None,
                 value: Any = _UNSET, choices: tuple | list | None = None) -> None:
        self.message, self.source, self.key = message, source, key
        self.value = None if value is _UNSET else value
        self.choices = tuple(choices) if choices is not None else None
        where = "".join(f"{part}: " for part in (source, key) if part)
        super().__init__(f"{where}{message}")

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class UnknownName(BadInput, KeyError):
    """A name (model, framework, suite, mode, ...) that is not one of the valid choices. Also a
    KeyError, for callers that look names up like keys."""

    def __init__(self, what: str, name: Any, choices: tuple | list, *, source: str | None = None,
                 key: str | None = None, hint: str = "") -> None:
        super().__init__(f"unknown {what} {name!r}{hint}; valid: {', '.join(map(str, choices))}", source=source,
                         key=key, value=name, choices=choices)
