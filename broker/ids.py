"""Agency ids: `<kind>.<code>`, e.g. `council.E09000033`, `police.met`, `nrm.sca`.

The one definition used by the deployment config, key files, agreements and connectors. The
kind is lower case (`council`, `police`...); the code names the agency within its kind (an ONS
code for a council).
"""

from __future__ import annotations

import re

AGENCY_KIND_PATTERN = r"^[a-z][a-z0-9_-]*$"
AGENCY_ID_PATTERN = r"^[a-z][a-z0-9_-]*\.[A-Za-z0-9][A-Za-z0-9_-]*$"
AGENCY_KIND_RE = re.compile(AGENCY_KIND_PATTERN)
AGENCY_ID_RE = re.compile(AGENCY_ID_PATTERN)

# The name under which agreements grant, and the router forwards, the issuer's own subject
# reference (the envelope's `subject`): a rule lists it in `share` like a payload field. No
# payload schema may have a field of this name (checked in the schema tests).
SUBJECT_FIELD = "subject"
