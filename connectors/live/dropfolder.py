"""A watched drop folder for systems that can only write files.

The convention (connectors/live/README.md, docs/bad-input.md): write a file under a name that
does not end in `.jsonl` (say `x.jsonl.part` or `x.jsonl.tmp`) and rename it to `x.jsonl` when it
is complete; only `*.jsonl` names are picked up, and only once unchanged for `settle_s` seconds.

A ready file is first **claimed** by an atomic rename into `processing/` (so a writer still
holding it, or a second poller, cannot change which file is read), then opened without following
links and checked to be a regular file; symlinks, FIFOs, devices and directories are never read
but moved to `failed/` with a report saying why. Files over `max_file_bytes` are refused the
same way. Lines go through `broker.inbound` (the one validation path of publish, HTTP and this
folder) and are published through an `Intake`; the file then moves to `done/` (every line
accepted) or `failed/` (some line rejected: the good lines are still published) with
`NAME.report.json` (mode 0600) beside it: lines, accepted event ids, rejected lines and reasons.
Only the bytes present when the file was claimed are read: if it grew while being read, the
report says from which line on nothing was published and the file goes to `failed/`, so no line
reaches `done/` unpublished and unreported. When Kafka is unavailable the file stays in
`processing/` and is tried again at the next poll (as are files left there by a crash).

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
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.inbound import DEFAULT_LIMITS, Limits, Rejection, parse_line, read_lines
from broker.personal import PRIVATE_FILE_MODE
from connectors.ids import EventIds
from connectors.live.intake import KAFKA_UNAVAILABLE, MAX_BATCH, EventResult, Intake

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
"""Largest dropped file read; a larger one is refused whole (split it)."""
READY_SUFFIX = ".jsonl"


@dataclass
class FileReport:
    """What happened to one dropped file."""

    file: str
    lines: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)  # {"line", "event_id"}
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"line", "reason", "code"?}
    refused: str | None = None  # the whole file was not read: why

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "file": self.file,
            "lines": self.lines,
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "events": self.accepted,
            "rejections": self.rejected,
        }
        if self.refused is not None:
            answer["refused"] = self.refused
        return answer


def derived_event_id(ids: EventIds, line: bytes) -> str:
    """The keyed id of a dropped line without one: MAC of the agency and the line's SHA-256."""
    return ids(hashlib.sha256(line).hexdigest())


class _Snapshot:
    """A binary file read no further than the size it had when opened."""

    def __init__(self, handle: Any, size: int) -> None:
        self.handle = handle
        self.remaining = size

    def readline(self, limit: int = -1, /) -> bytes:
        if self.remaining <= 0:
            return b""
        limit = self.remaining if limit < 0 else min(limit, self.remaining)
        data: bytes = self.handle.readline(limit)
        self.remaining -= len(data)
        return data


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
        limits: Limits = DEFAULT_LIMITS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.directory = directory
        self.intake = intake
        self.agency_id = agency_id
        self.ids = EventIds(agency_id, id_secret)
        self.settle_s = settle_s
        self.limits = limits
        self.max_file_bytes = max_file_bytes
        self.processing = directory / "processing"
        self.done = directory / "done"
        self.failed = directory / "failed"
        for folder in (directory, self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def ready_files(self) -> list[Path]:
        """Dropped `*.jsonl` entries that have stopped changing, oldest first. Entries that are
        not regular files (symlinks included) are listed too, so that they are refused."""
        now = time.time()
        files = []
        for path in self.directory.iterdir():
            if not path.name.endswith(READY_SUFFIX) or path.name.startswith("."):
                continue  # still being written (x.jsonl.part, x.jsonl.tmp) or hidden
            try:
                info = path.lstat()  # the entry itself: a link is not followed
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode) and path.name in ("done", "failed", "processing"):
                continue
            regular = stat.S_ISREG(info.st_mode)
            if not regular or now - info.st_mtime >= self.settle_s:
                files.append((info.st_mtime, path.name, path))
        return [p for _, _, p in sorted(files)]

    def poll_once(self) -> list[FileReport]:
        """Publish files left claimed by an earlier poll, then every ready file; return the
        reports of the files moved."""
        reports = []
        claimed = sorted(p for p in self.processing.iterdir() if p.name.endswith(READY_SUFFIX))
        for path in self.ready_files():
            target = self.claim(path)
            if target is not None:
                claimed.append(target)
        for path in claimed:
            report = self.process(path)
            if report is not None:
                reports.append(report)
        return reports

    def claim(self, path: Path) -> Path | None:
        """Move a dropped entry into `processing/` by one atomic rename; None if it vanished
        (another poller claimed it). Renaming moves a link itself, never its target."""
        target = _free_name(self.processing / path.name)
        try:
            path.rename(target)
        except FileNotFoundError:
            return None
        return target

    def process(self, path: Path) -> FileReport | None:
        """Publish one claimed file and move it; None when it must be tried again later."""
        report = FileReport(path.name)
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            return self._refuse(path, report, _not_regular(path) or f"cannot open ({exc.strerror})")
        info = os.fstat(descriptor)
        refusal = None
        if not stat.S_ISREG(info.st_mode):
            refusal = _not_regular(path) or "not a regular file"
        elif info.st_size > self.max_file_bytes:
            refusal = (
                f"file of {info.st_size} bytes is over the limit of {self.max_file_bytes} "
                "bytes: split it into smaller files"
            )
        if refusal is not None:
            os.close(descriptor)
            return self._refuse(path, report, refusal)
        with os.fdopen(descriptor, "rb") as handle:
            last_line = 0
            numbers: list[int] = []
            events: list[Any] = []
            results: list[EventResult] = []
            for number, raw in read_lines(_Snapshot(handle, info.st_size), self.limits):
                last_line = number
                report.lines += 1
                event = raw if isinstance(raw, Rejection) else parse_line(raw, number, self.limits)
                if isinstance(event, Rejection):
                    report.rejected.append(_rejected(number, event.message, event.code))
                    continue
                if not event.get("event_id") and isinstance(raw, bytes):
                    event = {**event, "event_id": derived_event_id(self.ids, raw.strip())}
                numbers.append(number)
                events.append(event)
                if len(events) == MAX_BATCH:
                    results += self.intake.submit(events, client="drop-folder")
                    events = []
            if events:
                results += self.intake.submit(events, client="drop-folder")
            grown = os.fstat(descriptor).st_size > info.st_size
        if any(r.reason == KAFKA_UNAVAILABLE for r in results):
            log.warning("drop folder: Kafka unavailable; %s will be retried", path.name)
            return None
        for number, result in zip(numbers, results, strict=True):
            if result.accepted:
                report.accepted.append({"line": number, "event_id": result.event_id})
            else:
                report.rejected.append(_rejected(number, result.reason or "", result.code))
        if grown:
            report.rejected.append(
                _rejected(
                    last_line + 1,
                    "the file grew while it was being read: nothing from this line on was "
                    "published; write files as NAME.jsonl.part and rename them when complete, "
                    "and drop the missing lines again in a new file",
                    "appended_while_reading",
                )
            )
        report.rejected.sort(key=lambda r: int(r["line"]))
        return self._finish(path, report, self.failed if report.rejected else self.done)

    def _refuse(self, path: Path, report: FileReport, reason: str) -> FileReport:
        report.refused = reason
        return self._finish(path, report, self.failed)

    def _finish(self, path: Path, report: FileReport, target: Path) -> FileReport:
        destination = _free_name(target / path.name)
        path.replace(destination)
        report_path = destination.with_name(destination.name + ".report.json")
        descriptor = os.open(
            report_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE
        )
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(json.dumps(report.to_json(), indent=2) + "\n")
        log.info(
            "drop folder: %s: %d accepted, %d rejected%s -> %s",
            path.name,
            len(report.accepted),
            len(report.rejected),
            " (refused)" if report.refused else "",
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


def _rejected(line: int, reason: str, code: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"line": line, "reason": reason}
    if code is not None:
        entry["code"] = code
    return entry


def _not_regular(path: Path) -> str | None:
    """Why a claimed entry is not read, if it is not a regular file."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link: links are never followed; drop the file itself"
    if stat.S_ISREG(mode):
        return None
    return "not a regular file (a directory, FIFO, socket or device): drop regular files only"


def _free_name(path: Path) -> Path:
    """`path`, or `path` with a numeric suffix when a file of that name was already moved there."""
    if not path.exists():
        return path
    for n in range(1, 10_000):
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)
