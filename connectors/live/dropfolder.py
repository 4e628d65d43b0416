"""A watched drop folder for systems that can only write files.

Every `*.jsonl` file (one EVENTS.md event per line) put in the folder is published once it has
not changed for `settle_s` seconds, then moved to `done/` (every line accepted) or `failed/`
(some line rejected; the good lines are still published) with `NAME.report.json` beside it:
lines, accepted event ids, rejected lines and reasons. Write files under another name (say
`x.jsonl.part`) and rename them when complete. When Kafka is unavailable the file stays where it
is and is tried again at the next poll.

A line without an `event_id` gets one derived from the agency and the line's bytes, so a file
dropped (or retried) twice publishes nothing new: the router de-duplicates by event id. The id
is keyed with the agency's event id secret (connectors/ids.py): a line's bytes are not secret
enough to hash openly, since a recipient granted every field but the subject could rebuild a
small line for each candidate child id and match the event id it receives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.ids import EventIds
from connectors.live.intake import KAFKA_UNAVAILABLE, MAX_BATCH, EventResult, Intake

log = logging.getLogger(__name__)


@dataclass
class FileReport:
    """What happened to one dropped file."""

    file: str
    lines: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)  # {"line", "event_id"}
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"line", "reason"}

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "lines": self.lines,
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "events": self.accepted,
            "rejections": self.rejected,
        }


def derived_event_id(ids: EventIds, line: bytes) -> str:
    """The keyed id of a dropped line without one: MAC of the agency and the line's SHA-256."""
    return ids(hashlib.sha256(line).hexdigest())


class DropFolder:
    """Polls one folder and publishes the files dropped there through an `Intake`."""

    def __init__(
        self,
        directory: Path,
        intake: Intake,
        *,
        agency_id: str,
        id_secret: bytes,
        settle_s: float = 1.0,
    ) -> None:
        self.directory = directory
        self.intake = intake
        self.agency_id = agency_id
        self.ids = EventIds(agency_id, id_secret)
        self.settle_s = settle_s
        self.done = directory / "done"
        self.failed = directory / "failed"
        for folder in (directory, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def ready_files(self) -> list[Path]:
        """Dropped files that have stopped changing, oldest first."""
        now = time.time()
        files = []
        for path in self.directory.glob("*.jsonl"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if path.is_file() and now - stat.st_mtime >= self.settle_s:
                files.append((stat.st_mtime, path.name, path))
        return [p for _, _, p in sorted(files)]

    def poll_once(self) -> list[FileReport]:
        """Publish every ready file; return the reports of the files moved."""
        reports = []
        for path in self.ready_files():
            report = self.process(path)
            if report is not None:
                reports.append(report)
        return reports

    def process(self, path: Path) -> FileReport | None:
        """Publish one file and move it; None when it must be tried again later."""
        report = FileReport(path.name)
        lines: list[int] = []
        events: list[Any] = []
        try:
            raw_lines = path.read_bytes().splitlines()
        except OSError as exc:
            log.warning("drop folder: cannot read %s (%s)", path.name, exc.strerror)
            return None
        for number, raw in enumerate(raw_lines, start=1):
            if not raw.strip():
                continue
            report.lines += 1
            try:
                event = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                report.rejected.append({"line": number, "reason": "not valid JSON: fix the line"})
                continue
            if isinstance(event, dict) and not event.get("event_id"):
                event = {**event, "event_id": derived_event_id(self.ids, raw.strip())}
            lines.append(number)
            events.append(event)
        results: list[EventResult] = []
        for start in range(0, len(events), MAX_BATCH):
            results += self.intake.submit(events[start : start + MAX_BATCH], client="drop-folder")
        if any(r.reason == KAFKA_UNAVAILABLE for r in results):
            log.warning("drop folder: Kafka unavailable; %s will be retried", path.name)
            return None
        for number, result in zip(lines, results, strict=True):
            if result.accepted:
                report.accepted.append({"line": number, "event_id": result.event_id})
            else:
                report.rejected.append({"line": number, "reason": result.reason})
        report.rejected.sort(key=lambda r: int(r["line"]))
        target = self.failed if report.rejected else self.done
        destination = _free_name(target / path.name)
        path.replace(destination)
        report_path = destination.with_name(destination.name + ".report.json")
        report_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        log.info(
            "drop folder: %s: %d accepted, %d rejected -> %s",
            path.name,
            len(report.accepted),
            len(report.rejected),
            target.name,
        )
        return report

    def run(self, stop: threading.Event, *, poll_s: float = 1.0) -> None:
        """Poll until `stop` is set."""
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep watching; the next poll retries
                log.exception("drop folder: poll failed")
            stop.wait(poll_s)


def _free_name(path: Path) -> Path:
    """`path`, or `path` with a numeric suffix when a file of that name was already moved there."""
    if not path.exists():
        return path
    for n in range(1, 10_000):
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)
