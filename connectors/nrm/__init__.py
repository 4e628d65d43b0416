"""NRM connector: Home Office referral payloads and Single Competent Authority decisions."""

from connectors.nrm.exceptions import NrmPayloadError
from connectors.nrm.referral import decision_event, exploitation_types, referral_to_event

__all__ = ["NrmPayloadError", "decision_event", "exploitation_types", "referral_to_event"]
