"""The one base class for errors a user can cause and fix.

A `BrokerError` message is printed as a single line by the command line, so it must name the
thing that is wrong and what to do about it, and must never contain personal data.
"""

from __future__ import annotations


class BrokerError(Exception):
    """An error the user can act on: bad config, bad file, unreachable Kafka, and so on."""

    exit_code: int = 2
