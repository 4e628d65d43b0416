"""Running a service (router, alerts) in the test's own process, shared by the integration tests.

Importable from any test: `tests/` is on the path, as for `ops_tools`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol, TypeVar


class Service(Protocol):
    """What `running_service` needs: `run` until `stop` is called (from another thread)."""

    def run(self) -> object: ...
    def stop(self) -> object: ...


S = TypeVar("S", bound=Service)


@contextlib.contextmanager
def running_service(service: S, name: str) -> Iterator[S]:
    """`service` running in a thread called `name` until the block ends, then stopped.

    The block's test fails if the service did not stop within 60 s, or if `run` raised
    (surfaced here, not lost in the thread)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # surfaced in the test
            failure.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(timeout=60)
    assert not thread.is_alive(), f"{name} did not stop"
    assert not failure, failure
