"""Structural guards that keep personal values out of logs, reprs and exception text.

Personal data (names, dates of birth, postcodes, descriptions) must never reach a log line, an
exception message, a metric label or quarantine detail. Rather than relying on care at each call
site, values travel in containers that refuse to turn into text: like Faust's `Secret` fields.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Generic, NoReturn, TypeVar

REDACTED = "<redacted>"

T = TypeVar("T")


class Personal(Generic[T]):
    """One personal value; `str`, `repr` and f-strings show `<redacted>`, `reveal()` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        """The value itself, for code that must use it (never for logging)."""
        return self._value

    def __repr__(self) -> str:
        return f"Personal({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Personal) and bool(self._value == other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("personal values are not pickled; reveal() deliberately if you must")


class PersonalDict(dict[str, Any]):
    """A dict of field name -> personal value whose text form shows the names only.

    It is a real `dict` (JSON encoders and expression evaluators accept it), but printing,
    logging or formatting it into an exception message reveals no value.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"PersonalDict({{{', '.join(f'{k!r}: {REDACTED}' for k in self)}}})"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def copy(self) -> PersonalDict:
        """A shallow copy that keeps the guard."""
        return PersonalDict(self)


PRIVATE_FILE_MODE = 0o600


def open_private(path: Path, *, append: bool = True) -> IO[str]:
    """Open (creating it 0600) a text file that will hold personal data; an existing file is
    narrowed to 0600 too, so a file first made by someone's umask does not stay world-readable."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), PRIVATE_FILE_MODE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)
    except OSError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "a" if append else "w", encoding="utf-8")
