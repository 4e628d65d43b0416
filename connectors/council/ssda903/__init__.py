"""SSDA903 (children looked after return) connector: CSV tables or XML to broker events."""

from connectors.council.ssda903.problems import Reason, RowProblem
from connectors.council.ssda903.reader import Ssda903Result, read_ssda903

__all__ = ["Reason", "RowProblem", "Ssda903Result", "read_ssda903"]
