"""Feed delivery: a subscriber's verified feed delivered into its own systems.

`broker feed --to-file PATH` appends JSON lines to a file; `broker feed --to-webhook URL` POSTs
each event to an HTTP endpoint, retrying with exponential back-off while the target is down. The
consumer offset is committed only after delivery, so no event is lost or skipped and order per
subject (per feed partition) is kept; a crash between delivery and commit can repeat an event,
which the target recognises by its `event_id`.
"""

from connectors.subscriber.deliver import Backoff, DeliveryStats, deliver_feed
from connectors.subscriber.targets import DeliveryError, FileTarget, Target, WebhookTarget

__all__ = [
    "Backoff",
    "DeliveryError",
    "DeliveryStats",
    "FileTarget",
    "Target",
    "WebhookTarget",
    "deliver_feed",
]
