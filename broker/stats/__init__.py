"""The national statistics subscriber: official and inquiry measures from the statistics feed.

`events` keeps what the feed said (incrementally, snapshot/restore), `measures` computes the
DOMAIN.md measures for any period, `disclosure` applies the published disclosure control,
`output` writes the CSV files in the department's layout and JSON, `report` the HTML report,
`nrm` the Home Office-style NRM tables, `privacy` refuses personal data.
"""

from broker.stats.events import StatsState
from broker.stats.measures import Period, Results, compute
from broker.stats.privacy import assert_no_personal_fields, personal_field_problems

__all__ = [
    "Period",
    "Results",
    "StatsState",
    "assert_no_personal_fields",
    "compute",
    "personal_field_problems",
]
