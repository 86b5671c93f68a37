"""What the client learns of the server's limits: a 429 in both of Twenty's shapes
(twenty-api.md §5), and the largest batch it takes (``--batch-size auto``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pipeline import errors
from pipeline.config import MAX_BATCH_SIZE, Secret, build_settings
from pipeline.errors import ConfigError
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.twenty import TwentyClient
from pipeline.twenty.answers import decode_answer

LEGACY_REST = httpx.Response(
    429,
    json={
        "statusCode": 429,
        "error": "HttpException",
        "messages": ["Limit reached (50 tokens per 60000 ms)"],
    },
)
V2_REST = httpx.Response(
    429,
    headers={
        "Retry-After": "12",
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1790000000",
    },
    json={
        "statusCode": 429,
        "error": "RATE_LIMITED",
        "messages": ["Rate limit exceeded for apiKey: 50 requests per 60s."],
        "limitKind": "speed",
        "exhaustedKind": "limit",
        "scope": {"spenderType": "apiKey", "spenderId": None, "operationType": "API_REQUEST"},
        "limit": 50,
        "remaining": 0,
        "periodCount": 1,
        "periodUnit": "minute",
        "retryAfterSeconds": 12,
    },
)


def graphql(message: str, extensions: dict[str, object]) -> httpx.Response:
    return httpx.Response(
        200, json={"data": None, "errors": [{"message": message, "extensions": extensions}]}
    )


def refusal(response: httpx.Response) -> errors.RateLimitedError:
    response.request = httpx.Request("POST", "https://crm.example.com/graphql")
    with pytest.raises(errors.RateLimitedError) as info:
        decode_answer(response, method="POST", path="/graphql", key_source=None, redact=str)
    return info.value


@pytest.mark.parametrize(
    ("response", "bucket", "limit", "window", "retry"),
    [
        (LEGACY_REST, "legacy", 50, 60.0, None),
        (V2_REST, "v2", 50, 60.0, 12.0),
        (
            graphql(
                "Limit reached (100 tokens per 60000 ms)",
                {"code": "BAD_USER_INPUT", "userFriendlyMessage": "Limit reached"},
            ),
            "legacy",
            100,
            60.0,
            None,
        ),
        (
            graphql(
                "Rate limit exceeded for apiKey: 30 requests per 3s.",
                {
                    "code": "RATE_LIMITED",
                    "limitKind": "speed",
                    "limit": 30,
                    "remaining": 0,
                    "periodCount": 3,
                    "periodUnit": "seconds",
                    "retryAfterMs": 40,
                },
            ),
            "v2",
            30,
            3.0,
            0.04,
        ),
        # figures only in the message: still read
        (
            graphql(
                "Rate limit exceeded for apiKey: 20 requests per 1s.", {"code": "RATE_LIMITED"}
            ),
            "v2",
            20,
            1.0,
            None,
        ),
        # a bare 429 from a proxy says nothing of the bucket
        (httpx.Response(429, text="Too Many Requests"), None, None, None, None),
    ],
    ids=["legacy-rest", "v2-rest", "legacy-graphql", "v2-graphql", "v2-message", "proxy"],
)
def test_a_429_tells_the_bucket_its_limit_and_the_wait(
    response: httpx.Response,
    bucket: str | None,
    limit: int | None,
    window: float | None,
    retry: float | None,
) -> None:
    exc = refusal(response)
    assert (exc.bucket, exc.limit, exc.window_s) == (bucket, limit, window)
    assert exc.retry_after == (pytest.approx(retry) if retry is not None else None)


def test_batch_size_auto_is_200_and_reserve_is_checked() -> None:
    settings = build_settings({"sandbox": "ws.sqlite", "batch_size": "auto"}, {})
    assert settings.batch_size == MAX_BATCH_SIZE
    assert settings.workspace.reserve == 1
    assert settings.workspace.bucket is None  # learnt from the first 429
    settings = build_settings({"sandbox": "ws.sqlite", "bucket": "v2"}, {"TWENTY_RESERVE": "10"})
    assert settings.workspace.reserve == 10
    assert settings.workspace.bucket == "v2"
    with pytest.raises(ConfigError) as info:
        build_settings(
            {"sandbox": "ws.sqlite", "reserve": "100", "batch_size": "big"},
            {"TWENTY_BUCKET": "v3"},
        )
    assert len(info.value.problems) == 3
    assert info.value.problems[0] == "--batch-size: 'big' is not a whole number"
    assert "TWENTY_BUCKET" in info.value.problems[1] and "v3" in info.value.problems[1]
    assert info.value.problems[2] == "--reserve: 100 must be between 0 and 99"


async def test_batch_size_auto_falls_back_to_what_the_server_takes(tmp_path: Path) -> None:
    """200 records a call, on a server that takes 60: one refused call, then 60s."""
    source = tmp_path / "notes.csv"
    source.write_text("title\n" + "".join(f"Note {i:03d}\n" for i in range(250)))
    mapping = tmp_path / "notes.yaml"
    mapping.write_text("object: note\nkey: [title]\nfields:\n  title: title\n")
    box = Sandbox(tmp_path / "old.sqlite", SandboxOptions(throttle=False, max_records=60))
    settings = build_settings({"sandbox": str(tmp_path / "old.sqlite"), "batch_size": "auto"}, {})
    try:
        async with TwentyClient(
            base_url="http://sandbox",
            api_key=Secret(box.api_key),
            transport=httpx.ASGITransport(app=box.app),
        ) as client:
            report = await import_file(
                load_mapping(mapping),
                client,
                state_dir=tmp_path / "state",
                source=source,
                batch_size=settings.batch_size,
            )
            assert client.max_batch_size == 60
        titles = sorted(
            r["title"] for r in box.engine.find_many(box.engine.object("note"), limit=300).records
        )
    finally:
        box.close()
    assert report.created == 250 and report.rejected == 0
    assert titles == [f"Note {i:03d}" for i in range(250)]
    # batch 1 (200 rows): refused once, then 60 + 60 + 60 + 20; batch 2: 50
    assert report.calls["writes"] == 6
