"""Problems found in agreement files, and the error that carries them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BrokerError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an agreement file: where it is and what to do about it."""

    file: Path
    line: int | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        return f"{where}: {self.message}; fix: {self.fix}"


class AgreementError(BrokerError):
    """Agreements could not be loaded or changed; `problems` says exactly why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        first = str(self.problems[0]) if self.problems else "no details"
        more = len(self.problems) - 1
        suffix = f" (and {more} more; run `broker agreements check` to list them)" if more else ""
        super().__init__(f"{first}{suffix}")
