"""Errors of the council connectors that stop a whole file (a bad row never does)."""

from __future__ import annotations

from broker.errors import BrokerError


class Ssda903Error(BrokerError):
    """The SSDA903 input as a whole cannot be read: missing folder, unknown layout, bad XML.

    Messages name the file and the fix, never a value from inside the file.
    """
