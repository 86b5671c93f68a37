"""Talking to Twenty: transport policy below, workspace resources above.

::

    client.py     TwentyClient: the facade callers hold (one per workspace)
    records.py    batch upserts, finds and paged lists (REST and GraphQL)
    metadata.py   objects and fields
    paginate.py   the one cursor paginator under every list
    session.py    one httpx.AsyncClient per workspace: pacing, retries, decoding, redaction
    pacing.py     the Pacer: a model of the workspace's token bucket (burst, refill,
                  legacy rounding) that lets a call start when Twenty will admit it
    limits.py     what a 429 says of the bucket (its generation, limit, wait)
    answers.py    httpx failures and Twenty's answers -> pipeline.errors
    names.py      ObjectNames, Record
"""

from __future__ import annotations

from pipeline.twenty.answers import (
    confirm_written,
    decode_answer,
    error_for_status,
    graphql_error,
    map_httpx_errors,
)
from pipeline.twenty.client import TwentyClient
from pipeline.twenty.names import ObjectNames, Record
from pipeline.twenty.pacing import Pacer
from pipeline.twenty.paginate import PAGE_SIZE, Page, paginate
from pipeline.twenty.session import CallStats, Session

__all__ = [
    "PAGE_SIZE",
    "CallStats",
    "ObjectNames",
    "Pacer",
    "Page",
    "Record",
    "Session",
    "TwentyClient",
    "confirm_written",
    "decode_answer",
    "error_for_status",
    "graphql_error",
    "map_httpx_errors",
    "paginate",
]
