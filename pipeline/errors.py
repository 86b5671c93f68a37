"""The exception tree, grouped by what the caller must do.

::

    PipelineError                     exit 1 unless a subclass says otherwise
    ├── InputError                    fix your input; nothing was sent          -> exit 2
    │   ├── ConfigError               flags, environment, secret files
    │   └── MappingError              mapping / job files (every problem at once)
    ├── ApiError                      something Twenty (or the network) answered
    │   ├── RetriableApiError         back off and retry; exhausted -> exit 1
    │   │   ├── RateLimitedError      429, GraphQL "Limit reached" / RATE_LIMITED
    │   │   ├── ServerError           5xx, GraphQL INTERNAL_SERVER_ERROR / TIMEOUT
    │   │   ├── TransportError        timeouts, refused or dropped connections, overdue calls
    │   │   └── UnconfirmedWriteError a write answer that does not confirm every record
    │   ├── FatalApiError             abort the run, keep the checkpoint        -> exit 1
    │   │   ├── AuthError             401 / 403 / UNAUTHENTICATED / FORBIDDEN
    │   │   ├── NotFoundError         404, unknown object or route
    │   │   ├── RequestRejectedError  the request itself is wrong (GraphQL validation,
    │   │   │                         unknown field): every batch would fail alike
    │   │   ├── UpsertIgnoredError    the server ignores ?upsert=true on REST batch calls
    │   │   └── TlsError              the server's TLS certificate cannot be verified
    │   └── BatchRejectedError        Twenty refused this batch's data: isolate the bad
    │       │                         records, reject them, load the rest
    │       └── BatchTooLargeError    "Maximum number of records ..." -> smaller batches
    ├── StateError                    the state folder or store cannot be used  -> exit 1
    │   └── LedgerMismatch            rows read != loaded + rejected + unchanged + skipped
    └── Interrupted                   Ctrl-C / SIGTERM; state store flushed     -> exit 130

The CLI turns any of these into an exit code in one place (``cli.py``); stages raise
them and never print. A row that cannot be loaded is not an exception: it is data,
a rejects frame row (``normalize``) or a rejected ``RowOutcome`` (``load``), with its
row number, stage and reason, and ends in rejects.csv.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Stage = Literal["read", "normalize", "load", "export"]
"""The names of the pipeline stages, used in errors, checkpoints and progress labels."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class SettingAdvice:
    """A setting the user can change to get past an error, as data rather than prose.

    The library knows *which* setting helps and what it does; how a setting is spelled
    on a command line (``--api graphql``, ``--restart``) is the CLI's business, so the
    CLI words its own advice after the error's :attr:`PipelineError.message`.
    ``str(error)`` uses :meth:`in_words`, for library callers.

    Attributes:
        setting: the name of the setting or parameter (``api``, ``restart``, ``state_dir``).
        value: the value that helps (``graphql``); ``True`` for a switch to turn on;
            ``""`` when any value of the user's choice may do (a folder).
        certain: True when the change fixes the error, False when it may.
        purpose: what the change does, in words ("start over", "a writable folder").
        alternative: the advice is one way out among others the message names
            (joined with ", or" rather than "; ").
    """

    setting: str
    value: str | bool
    certain: bool = True
    purpose: str = ""
    alternative: bool = False

    def in_words(self) -> str:
        """The advice for a caller of the library: ``use api=graphql``."""
        if self.value is True:
            return f"set {self.setting} to {self.purpose}"
        if self.value == "":
            return f"{self.purpose} (the {self.setting} setting)"
        return f"{'use' if self.certain else 'try'} {self.setting}={self.value}"


class PipelineError(Exception):
    """Root of every error the product raises on purpose.

    ``message`` says what happened; ``advice``, when a setting gets past the error,
    says which (see :class:`SettingAdvice`). ``str(error)`` joins the two.
    """

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str = "", *, advice: SettingAdvice | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice

    def details(self) -> str:
        """What happened, without advice (subclasses add what they know)."""
        return self.message

    def described(self, adviser: Callable[[SettingAdvice], str]) -> str:
        """The details, then the advice as ``adviser`` words it."""
        text = self.details()
        if self.advice is None:
            return text
        joiner = ", or " if self.advice.alternative else "; "
        return f"{text}{joiner}{adviser(self.advice)}"

    def __str__(self) -> str:
        return self.described(SettingAdvice.in_words)


class InputError(PipelineError):
    """The user's input is wrong; nothing was sent to the workspace."""

    exit_code = EXIT_USAGE


class ConfigError(InputError):
    """Flags, environment variables or secret files are wrong or missing.

    Carries every problem found, so the user fixes them in one go.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class MappingError(InputError):
    """A mapping or job file is invalid; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ApiError(PipelineError):
    """A call to the workspace failed.

    Attributes:
        status_code: HTTP status, when a response arrived.
        method: HTTP method of the call.
        path: URL path of the call (never the query string, which may hold a token).
        server_message: Twenty's own message, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        path: str | None = None,
        server_message: str | None = None,
        advice: SettingAdvice | None = None,
    ) -> None:
        super().__init__(message, advice=advice)
        self.status_code = status_code
        self.method = method
        self.path = path
        self.server_message = server_message


USE_GRAPHQL_WRITES = SettingAdvice("api", "graphql")
"""Write through GraphQL: the fix when a server ignores ``?upsert=true`` on REST."""

MAYBE_USE_GRAPHQL_WRITES = SettingAdvice("api", "graphql", certain=False)
"""Write through GraphQL: what may help when a REST upsert meets a duplicate entry."""

RESTART_SETS_ASIDE = SettingAdvice(
    "restart",
    True,
    purpose="set it aside and start over (records already loaded are updated, not duplicated)",
    alternative=True,
)
"""Start over with a fresh state store, the unreadable one kept under another name."""

RESTART_STARTS_OVER = SettingAdvice(
    "restart",
    True,
    purpose="start over (records already loaded are updated, not duplicated)",
    alternative=True,
)
"""Abandon the unfinished run and begin a new one."""

WRITABLE_STATE_DIR = SettingAdvice("state_dir", "", purpose="choose a writable folder")
"""Put the state (store, ledgers, locks) in another folder."""


class RetriableApiError(ApiError):
    """A passing failure: back off and retry the same call.

    ``attempts`` is set when the client gives up on the call after that many tries;
    ``str(error)`` then says so, so the user knows the retries already happened.
    """

    attempts: int | None = None

    def details(self) -> str:
        """The message, and how many attempts were made when the client gave up."""
        if self.attempts is None:
            return self.message
        return f"{self.message} (gave up after {self.attempts} attempts)"


class RateLimitedError(RetriableApiError):
    """The workspace's rate limit answered, with what it said of its bucket.

    ``retry_after`` is in seconds; ``bucket`` is ``legacy`` (the throttler's bare
    "Limit reached") or ``v2`` (the usage-limit engine's RATE_LIMITED); ``limit`` and
    ``window_s`` are the bucket's calls per window. Each is None when Twenty did not say.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        bucket: Literal["legacy", "v2"] | None = None,
        limit: int | None = None,
        window_s: float | None = None,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.bucket = bucket
        self.limit = limit
        self.window_s = window_s


class ServerError(RetriableApiError):
    """The server failed (5xx, internal error, query timeout)."""


class TransportError(RetriableApiError):
    """The network failed: timeout, refused, reset or dropped connection.

    ``maybe_applied`` is true when the request may have reached the server (a read
    timeout or a dropped connection after sending), so only idempotent calls may be
    re-sent.
    """

    def __init__(self, message: str, *, maybe_applied: bool, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.maybe_applied = maybe_applied


class UnconfirmedWriteError(ServerError):
    """A write answered 2xx but does not confirm every record sent.

    Exactly one record per record sent, each with an id, the ids distinct, and equal
    to the ids the client chose: anything else leaves the batch unconfirmed. It is
    retried like a server fault and, exhausted, stops the run with the batch still
    ``sent`` in the checkpoint (never recorded as done).
    """


class FatalApiError(ApiError):
    """Retrying cannot help: abort the run and keep the checkpoint."""


class AuthError(FatalApiError):
    """The API key was refused (missing, invalid, expired, revoked or lacking rights)."""


class NotFoundError(FatalApiError):
    """The object, record or route does not exist in this workspace."""


class RequestRejectedError(FatalApiError):
    """Twenty refused the request itself, not one record's data.

    A GraphQL document that fails validation ("Cannot query field ..."), an input
    field the workspace does not have: every batch would fail the same way, so the
    run stops at the first one (checkpoint kept) instead of bisecting to single
    records. ``server_message`` holds Twenty's message.
    """


class UpsertIgnoredError(FatalApiError):
    """The server ignores ``?upsert=true`` on REST batch calls (older Twenty releases).

    It answers "Record already exists" for a known id, or a unique violation for a
    known key, so every record that already exists would fail the same way: the run
    stops. ``advice`` is :data:`USE_GRAPHQL_WRITES`.
    """


class TlsError(FatalApiError):
    """The TLS handshake failed (certificate not verified): a retry cannot fix it."""


class BatchRejectedError(ApiError):
    """Twenty refused the data of one batch (validation, duplicate key, conflict).

    The loader isolates the offending records (by splitting the batch) and sends
    them to the rejects file with ``server_message``; the rest still loads.
    """


class BatchTooLargeError(BatchRejectedError):
    """The server's per-call record limit is below the batch size.

    ``limit`` is the maximum Twenty announced, when its message says it.
    """

    def __init__(self, message: str, *, limit: int | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.limit = limit


class Interrupted(PipelineError):
    """The run was interrupted (Ctrl-C, SIGTERM); the checkpoint was flushed."""

    exit_code = EXIT_INTERRUPTED


class StateError(PipelineError):
    """The state folder or its store cannot be used (exit 1; nothing is lost)."""


class LedgerMismatch(StateError):
    """The conservation check failed: rows read != loaded + rejected + unchanged + skipped."""
