"""Council connectors: the SSDA903 children-looked-after return mapped to broker events."""

from connectors.council.ssda903 import RowProblem, Ssda903Result, read_ssda903

__all__ = ["RowProblem", "Ssda903Result", "read_ssda903"]
