"""Events: what a run did, as log records that a log collector can read.

Every stage reports its milestones here (a batch confirmed, an import or a job step
finished) with named fields. With ``--log-format json`` each event is one JSON object
per line on stderr (``{"event": "batch", "rows": 60, ...}``); the text format, which
shares stderr with the progress bar, leaves them out (they are DEBUG records there).
"""

from __future__ import annotations

import logging
from typing import TypeAlias

log = logging.getLogger("pipeline.events")

Field: TypeAlias = str | int | float | bool | dict[str, int] | None
"""The values an event carries: names, counts, and counts by kind."""


def emit(event: str, message: str, **fields: Field) -> None:
    """Record one event: ``event`` names its kind, ``fields`` its figures."""
    log.debug(message, extra={"event": event, "fields": fields})
