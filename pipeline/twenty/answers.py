"""Twenty's answers and the network's failures, as :mod:`pipeline.errors` exceptions.

Every HTTP outcome is translated here and nowhere else: httpx exceptions
(:func:`map_httpx_errors`), non-2xx REST answers (:func:`error_for_status`), GraphQL
``errors`` (:func:`graphql_error`), and the checks of a 2xx body (:func:`decode_answer`,
:func:`single_list`, :func:`confirm_written`). Errors of the request itself (GraphQL
validation, an unknown field) are :class:`RequestRejectedError` and stop the run
instead of being bisected like bad data; TLS failures are :class:`TlsError`.

Redaction happens where a message is built: every function that puts text it did not
write (the server's message, a header, an httpx error) into an error takes a
``redact`` function, which the session sets to replace its API key by ``***``. So no
error is rewritten after it is raised, and none can carry the key.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from pipeline.errors import (
    ApiError,
    AuthError,
    BatchRejectedError,
    BatchTooLargeError,
    FatalApiError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    TlsError,
    TransportError,
    UnconfirmedWriteError,
)
from pipeline.twenty.limits import graphql_refusal, rest_refusal
from pipeline.twenty.names import Record

Redact = Callable[[str], str]
"""Hides secrets in text that came from outside (the session's: API key -> ``***``)."""


def no_redaction(text: str) -> str:
    """The :data:`Redact` of a caller that holds no secret."""
    return text


# --------------------------------------------------------------------------- httpx


@contextlib.contextmanager
def map_httpx_errors(method: str, path: str, *, redact: Redact = no_redaction) -> Iterator[None]:
    """Translate every httpx exception raised inside into a :mod:`pipeline.errors` one."""
    where: dict[str, Any] = {"method": method, "path": path}
    try:
        yield
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise TransportError(
            f"{method} {path}: timed out connecting to the server ({type(exc).__name__})",
            maybe_applied=False,
            **where,
        ) from exc
    except httpx.TimeoutException as exc:
        raise TransportError(
            f"{method} {path}: the server did not answer in time ({type(exc).__name__})",
            maybe_applied=True,
            **where,
        ) from exc
    except (httpx.ConnectError, httpx.ProxyError) as exc:
        tls = _tls_failure(exc)
        if tls is not None:
            raise TlsError(redact(_tls_message(exc, tls)), **where) from exc
        detail = redact(str(exc) or type(exc).__name__)
        raise TransportError(
            f"{method} {path}: cannot connect to {_origin(exc)} ({detail})",
            maybe_applied=False,
            **where,
        ) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransportError(
            f"{method} {path}: the connection dropped before the answer arrived "
            f"({type(exc).__name__})",
            maybe_applied=True,
            **where,
        ) from exc
    except httpx.DecodingError as exc:
        raise ServerError(
            f"{method} {path}: the answer could not be decoded ({redact(str(exc))})", **where
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise FatalApiError(
            f"{method} {path}: unsupported URL scheme; the API URL must start with "
            "http:// or https://",
            **where,
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise FatalApiError(
            f"{method} {path}: too many redirects; set TWENTY_API_URL to the final address",
            **where,
        ) from exc
    except httpx.HTTPStatusError as exc:
        raise error_for_status(exc.response, method=method, path=path, redact=redact) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # LocalProtocolError and anything httpx adds later: not something a retry fixes.
        raise FatalApiError(
            f"{method} {path}: {type(exc).__name__}: {redact(str(exc))}", **where
        ) from exc


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl`` error behind a connect failure (httpx chains httpcore's, which chains it)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_message(exc: httpx.HTTPError, tls: ssl.SSLError) -> str:
    try:
        host = exc.request.url.host
    except RuntimeError:
        host = "the server"
    if isinstance(tls, ssl.SSLCertVerificationError):
        reason = tls.verify_message or tls.reason or str(tls)
        return (
            f"TLS certificate of {host} could not be verified: {reason}; fix the certificate "
            "or set SSL_CERT_FILE to a CA bundle that trusts it"
        )
    reason = tls.reason or str(tls)
    return (
        f"TLS handshake with {host} failed: {reason}; check that the URL's scheme and port "
        "serve https (or set SSL_CERT_FILE to a CA bundle that trusts the server)"
    )


def _origin(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without its request
        return "the server"
    return f"{url.scheme}://{url.netloc.decode()}"


# --------------------------------------------------------------------------- REST status


def _server_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        messages = body.get("messages")
        if isinstance(messages, list) and messages:
            return "; ".join(str(m) for m in messages)
        for key in ("message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase


_MAX_RECORDS_RE = re.compile(r"Maximum number of records[^0-9]*(\d+)", re.IGNORECASE)


def _too_large_limit(message: str) -> int | None:
    match = _MAX_RECORDS_RE.search(message)
    return int(match.group(1)) if match else None


# Twenty's (and graphql-js's) wording for a request that is wrong whatever its records
# hold: an unknown or unwritable field, a document that fails validation. Per-record
# data errors ("Invalid value ...", "A duplicate entry ...", "Foreign key violation ...")
# do not match.
_REQUEST_FAULT_RE = re.compile(
    r"Cannot query field"
    r"|is not defined by type"
    r"|Unknown (?:argument|type|field)"
    r"|doesn't have any \"[^\"]*\" field"
    r"|does not support write operations"
    r"|is written through its join column"
    r"|Must provide query string"
    r"|^Syntax Error",
    re.IGNORECASE,
)
SYSTEMIC_GRAPHQL_CODES = ("GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED")


def is_request_fault(message: str) -> bool:
    """True when ``message`` says the request itself is wrong, not one record's data."""
    return bool(_REQUEST_FAULT_RE.search(message))


def _request_rejected(method: str, path: str, messages: str, where: dict[str, Any]) -> ApiError:
    return RequestRejectedError(
        f"{method} {path}: Twenty refused the request itself, so every batch would fail "
        f"the same way; stopped (checkpoint kept: fix the mapping or the API flavour and "
        f"run again): {messages}",
        **where,
    )


def error_for_status(
    response: httpx.Response,
    *,
    method: str,
    path: str,
    key_source: str | None = None,
    redact: Redact = no_redaction,
) -> ApiError:
    """The error for a non-2xx REST answer (twenty-api.md §1, §2.8, §5)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    status = response.status_code
    message = redact(_server_message(body, response))
    where: dict[str, Any] = {
        "status_code": status,
        "method": method,
        "path": path,
        "server_message": message,
    }
    if status in (401, 403):
        return AuthError(_auth_message(status, message, key_source), **where)
    if status == 429:
        return RateLimitedError(
            f"{method} {path}: rate limited ({message})",
            **rest_refusal(response, body, message),
            **where,
        )
    if status == 408 or status >= 500:
        return ServerError(f"{method} {path}: server error {status}: {message}", **where)
    if status in (400, 422):
        if is_request_fault(message):
            return _request_rejected(method, path, message, where)
        if "maximum number of records" in message.lower():
            return BatchTooLargeError(
                f"{method} {path}: {message}", limit=_too_large_limit(message), **where
            )
        return BatchRejectedError(f"{method} {path}: Twenty refused the data: {message}", **where)
    if status == 404:
        return NotFoundError(f"{method} {path}: not found: {message}", **where)
    if 300 <= status < 400:
        target = redact(response.headers.get("location", "?"))
        return FatalApiError(
            f"{method} {path}: redirected ({status}) to {target}; "
            "set TWENTY_API_URL to the server's final address",
            **where,
        )
    return FatalApiError(f"{method} {path}: unexpected answer {status}: {message}", **where)


def _auth_message(status: int, message: str, key_source: str | None) -> str:
    source = key_source or "the configured key"
    return (
        f"the workspace refused the API key from {source} ({status}: {message}). "
        "Check that the key exists, has not expired or been revoked, and belongs to this "
        "workspace (Settings > APIs & Webhooks)."
    )


# --------------------------------------------------------------------------- GraphQL errors


def _is_systemic_graphql_error(error: Any) -> bool:
    if not isinstance(error, dict):
        return False
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code in SYSTEMIC_GRAPHQL_CODES or is_request_fault(str(error.get("message", "")))


def graphql_error(
    errors: list[Any],
    *,
    method: str,
    path: str,
    key_source: str | None = None,
    redact: Redact = no_redaction,
) -> ApiError:
    """The error for a GraphQL answer carrying ``errors`` (twenty-api.md §3, §5)."""
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    message = redact(str(first.get("message", "unknown GraphQL error")))
    raw_extensions = first.get("extensions")
    extensions: dict[str, Any] = raw_extensions if isinstance(raw_extensions, dict) else {}
    code = str(extensions.get("code", ""))
    messages = redact("; ".join(str(e.get("message")) for e in errors if isinstance(e, dict)))
    where: dict[str, Any] = {"method": method, "path": path, "server_message": messages}
    if code in ("UNAUTHENTICATED", "FORBIDDEN"):
        return AuthError(_auth_message(200, messages, key_source), **where)
    if code == "RATE_LIMITED" or message.startswith("Limit reached"):
        return RateLimitedError(
            f"{method} {path}: rate limited ({message})",
            **graphql_refusal(extensions, message),
            **where,
        )
    if code in ("INTERNAL_SERVER_ERROR", "TIMEOUT") or "timeout" in message.lower():
        return ServerError(f"{method} {path}: server error: {messages}", **where)
    if "maximum number of records" in message.lower():
        return BatchTooLargeError(
            f"{method} {path}: {message}", limit=_too_large_limit(message), **where
        )
    if code == "NOT_FOUND":
        return NotFoundError(f"{method} {path}: not found: {messages}", **where)
    if any(_is_systemic_graphql_error(e) for e in errors):
        return _request_rejected(method, path, messages, where)
    if code in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED", "CONFLICT", ""):
        return BatchRejectedError(f"{method} {path}: Twenty refused the data: {messages}", **where)
    return FatalApiError(f"{method} {path}: {redact(code)}: {messages}", **where)


# --------------------------------------------------------------------------- 2xx bodies


def decode_answer(
    response: httpx.Response,
    *,
    method: str,
    path: str,
    key_source: str | None = None,
    redact: Redact = no_redaction,
) -> Any:
    """Return the JSON body of a successful answer, or raise the matching error."""
    status = response.status_code
    is_graphql = path in ("/graphql", "/metadata")
    context: dict[str, Any] = {
        "method": method,
        "path": path,
        "key_source": key_source,
        "redact": redact,
    }
    if not 200 <= status < 300 and not (is_graphql and status == 400):
        raise error_for_status(response, **context)
    try:
        body = response.json()
    except ValueError:
        if not 200 <= status < 300:
            raise error_for_status(response, **context) from None
        kind = redact(response.headers.get("content-type", "unknown type"))
        raise FatalApiError(
            f"{method} {path}: the server answered {status} with non-JSON ({kind}); "
            "is TWENTY_API_URL the base URL of your Twenty server?",
            status_code=status,
            method=method,
            path=path,
        ) from None
    if is_graphql and isinstance(body, dict) and body.get("errors"):
        raise graphql_error(body["errors"], **context)
    if not 200 <= status < 300:
        raise error_for_status(response, **context)
    return body


def single_list(data: Any, *, what: str) -> list[Any]:
    """The one list under ``data``, whatever its key (``createPeople``, ``people``, ``objects``)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    raise FatalApiError(f"unexpected answer shape for {what}: no single list under 'data'")


def _unconfirmed(result: Any, sent: list[Record]) -> str | None:
    """Why ``result`` does not confirm the write of ``sent``; None when it does."""
    if not isinstance(result, list):
        return "it holds no list of records"
    if len(result) != len(sent):
        return f"{len(sent)} records were sent, it holds {len(result)}"
    seen: set[str] = set()
    for number, (record, answer) in enumerate(zip(sent, result, strict=True), start=1):
        got = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(got, str) or not got:
            return f"record {number} of {len(sent)} has no id"
        chosen = record.get("id")
        if isinstance(chosen, str) and chosen and chosen.lower() != got.lower():
            return f"record {number} was sent with id {chosen}, the answer has id {got}"
        if got.lower() in seen:
            return f"id {got} is given to two records"
        seen.add(got.lower())
    return None


def confirm_written(
    result: Any,
    sent: list[Record],
    *,
    method: str,
    path: str,
    redact: Redact = no_redaction,
) -> list[Record]:
    """``result`` if it confirms every record of ``sent``, else :class:`UnconfirmedWriteError`.

    Confirmed means: a list with exactly one record per record sent, each with an id,
    the ids distinct, and each equal to the id sent where the client chose it. A 2xx
    answer that says less (``{}`` per record, a short list) proves nothing was stored.
    """
    problem = _unconfirmed(result, sent)
    if problem is None:
        return list(result)
    raise UnconfirmedWriteError(
        f"{method} {path}: the answer does not confirm the write ({redact(problem)}); "
        "the batch is not recorded as done",
        method=method,
        path=path,
    )
