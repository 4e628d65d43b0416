"""Data-sharing agreements as code: the file format, validation, evaluation and explanation.

The router loads a directory with `load_agreements` and calls `AgreementSet.decide` per event;
`broker agreements check` and `broker agreements explain` are the people's side of the same code.
"""

from broker.agreements.check import FieldCatalogue, check_dir, load_agreements
from broker.agreements.evaluate import (
    AgreementSet,
    AgreementVersion,
    ConditionError,
    Decision,
    EventView,
    Grant,
    RuleOutcome,
    RuleRef,
    SubjectContext,
)
from broker.agreements.exceptions import AgreementError, Problem
from broker.agreements.model import Agreement

__all__ = [
    "Agreement",
    "AgreementError",
    "AgreementSet",
    "AgreementVersion",
    "ConditionError",
    "Decision",
    "EventView",
    "FieldCatalogue",
    "Grant",
    "Problem",
    "RuleOutcome",
    "RuleRef",
    "SubjectContext",
    "check_dir",
    "load_agreements",
]
