"""Settings: one frozen object built from flags > environment > defaults.

What one side of a connection needs (URL, key, pace, API flavour, sandbox) is a
:class:`Workspace` value inside it, so a command that talks to two workspaces (a
migration) holds two of them; the run's own options (batch size, state folder,
logging) stay on :class:`Settings`.

The API key is a :class:`Secret` whose ``repr`` and ``str`` are ``***``; only the
client calls :meth:`Secret.reveal`, to build the ``Authorization`` header. What is
logged or reported about the key is its *source* (``TWENTY_API_KEY``, a file path),
never its value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, Literal, TypeVar, cast
from urllib.parse import urlsplit

import httpx

from pipeline.errors import ConfigError

ApiFlavour = Literal["graphql", "rest"]
_T = TypeVar("_T")
LogFormat = Literal["text", "json"]

DEFAULT_STATE_DIR = Path(".twenty-pipeline")
SANDBOX_FILE_NAME = "sandbox.sqlite"
SANDBOX_SUFFIXES = (".sqlite", ".sqlite3", ".db")
MAX_BATCH_SIZE = 200  # Twenty's QUERY_MAX_RECORDS (twenty-api.md §2.4)
DEFAULT_BATCH_SIZE = 60  # what Twenty's docs promise on every release
DEFAULT_RESERVE = 1  # tokens of the workspace's initial bucket left for other clients
BucketKind = Literal["legacy", "v2"]  # Twenty's throttler, or its usage-limit engine
DEFAULT_TIMEOUT = 60.0  # seconds httpx waits for connect / each read / each write
DEFAULT_CALL_DEADLINE = 180.0  # seconds one whole call may take, body included

ENV_PREFIX = "TWENTY_"
ENV_VARS = (
    "TWENTY_API_URL",
    "TWENTY_API_KEY",
    "TWENTY_API_KEY_FILE",
    "TWENTY_SANDBOX",
    "TWENTY_API",
    "TWENTY_RATE",
    "TWENTY_BATCH_SIZE",
    "TWENTY_CONCURRENCY",
    "TWENTY_STATE_DIR",
    "TWENTY_LOG_FORMAT",
    "TWENTY_ALLOW_INSECURE",
)


class Secret:
    """A string that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is sent, never where it is shown."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def key_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an API key, without showing it; None when it can.

    An HTTP header holds one line of visible ASCII: a key with a newline, a space, a
    control or a non-ASCII character would fail in the HTTP library, whose error
    message quotes the header, key included.
    """
    if not value:
        return "is empty"
    if "\n" in value or "\r" in value:
        return "holds more than one line"
    if not value.isascii():
        return "holds non-ASCII characters"
    if any(c.isspace() for c in value):
        return "holds whitespace"
    if any(not c.isprintable() for c in value):
        return "holds control characters"
    return None


def key_advice(source: str, problem: str) -> str:
    """The one-line refusal of a key: where it came from, what is wrong, never the key."""
    return (
        f"{source}: the API key {problem} (the key is not shown); an API key is one line "
        "of ASCII letters, digits and punctuation: copy it again from Twenty "
        "(Settings > APIs & Webhooks)"
    )


LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1: traffic that never leaves the machine."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(url: str, *, allow_insecure: bool) -> str | None:
    """Why ``url`` cannot be the workspace URL; None when it can (without any call)."""
    if not re.match(r"^https?://[^/\s]+", url):
        return "is not an http(s) URL; give the workspace's base URL, e.g. https://crm.example.com"
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        return f"is not a valid URL ({exc}); give the base URL, e.g. https://crm.example.com"
    if not host:
        return "has no host name; give the base URL, e.g. https://crm.example.com"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "holds whitespace or control characters; give the base URL, e.g. https://crm.example.com"
    if host.isascii() and not re.fullmatch(r"[a-z0-9._-]+|[0-9a-f:.]+", host):
        return f"has an invalid host name {host!r}; give the base URL, e.g. https://crm.example.com"
    if parts.scheme == "http" and not allow_insecure and not is_loopback(host):
        return (
            f"is plain http:// to {host}, which would send the API key unencrypted over the "
            "network; use https://, or pass --allow-insecure (TWENTY_ALLOW_INSECURE=1) "
            "if the network between you and the server is trusted"
        )
    return None


_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min)?\s*$")


@dataclass(frozen=True)
class Rate:
    """A call budget: ``calls`` per ``seconds``, as Twenty's workspace limit is stated."""

    calls: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``CALLS/SECONDS`` (``100/60``, ``20/2``; ``100/1m`` also reads as minutes)."""
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(
                f"rate {text!r} is not CALLS/SECONDS: write it like 100/60 "
                "(100 calls every 60 seconds, Twenty's default)"
            )
        calls, seconds = int(match.group(1)), float(match.group(2))
        if match.group(3) in ("m", "min"):
            seconds *= 60
        if calls < 1 or seconds <= 0:
            raise ValueError(f"rate {text!r} must allow at least 1 call in more than 0 seconds")
        return cls(calls, seconds)

    @property
    def interval(self) -> float:
        """Seconds between call starts at this rate."""
        return self.seconds / self.calls

    def __str__(self) -> str:
        seconds = int(self.seconds) if float(self.seconds).is_integer() else self.seconds
        return f"{self.calls}/{seconds}"


DEFAULT_RATE = Rate(100, 60.0)


@dataclass(frozen=True)
class Workspace:
    """One side of a connection: which Twenty workspace, with which key, at what pace.

    A value, so that a command can hold two (a migration reads one workspace and
    writes another), each opened with its own client, connection pool and pacing
    (:func:`pipeline.workspace.open_workspace`).

    Attributes:
        url: base URL of the workspace (``https://crm.example.com``), or None with a sandbox.
        key: the API key, or None with a sandbox (which uses its own key).
        key_source: where the key came from, safe to print.
        sandbox: path of the local sandbox workspace database, when running against it.
        api: flavour used for writes.
        rate: the workspace's call budget.
        concurrency: requests in flight at once.
        reserve: tokens of the workspace's bucket the pacer never spends (for other
            clients of the workspace).
        bucket: the server's rate-limit bucket (``legacy`` or ``v2``) when the user
            knows it; None: learnt from the first 429.
        allow_insecure: plain ``http://`` to a host that is not loopback is allowed.
        timeout: seconds httpx waits to connect, and for each read or write.
        call_deadline: seconds one whole call may take, body included (a server that
            trickles its answer never trips the per-read ``timeout``).
    """

    url: str | None = None
    key: Secret | None = None
    key_source: str | None = None
    sandbox: Path | None = None
    api: ApiFlavour = "graphql"
    rate: Rate = DEFAULT_RATE
    concurrency: int = 4
    reserve: int = DEFAULT_RESERVE
    bucket: BucketKind | None = None
    allow_insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT
    call_deadline: float = DEFAULT_CALL_DEADLINE


_NOT_GIVEN = Workspace()


class _FromWorkspace(Generic[_T]):
    """A read-only :class:`Settings` attribute that is one of its workspace's."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, settings: Settings, owner: type[Settings] | None = None) -> _T:
        return cast(_T, getattr(settings.workspace, self.name))


@dataclass(frozen=True, init=False)
class Settings:
    """Everything a run needs to know, read once and never changed.

    Attributes:
        workspace: the workspace the run talks to.
        batch_size: records per write call (1-200).
        state_dir: folder of checkpoints, ledgers and reports.
        quiet: no progress bars.
        log_format: ``text`` or ``json`` log lines on stderr.

    The workspace's attributes are also readable under their former names
    (``api_url``, ``api_key``, ``api_key_source``, ``sandbox``, ``api``, ``rate``,
    ``concurrency``, ``allow_insecure``, ``timeout``, ``call_deadline``), and the
    constructor still takes them instead of ``workspace``, until every caller
    reads ``settings.workspace``.
    """

    workspace: Workspace
    batch_size: int
    state_dir: Path
    quiet: bool
    log_format: LogFormat

    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        state_dir: Path = DEFAULT_STATE_DIR,
        quiet: bool = False,
        log_format: LogFormat = "text",
        api_url: str | None = None,
        api_key: Secret | None = None,
        api_key_source: str | None = None,
        sandbox: Path | None = None,
        api: ApiFlavour | None = None,
        rate: Rate | None = None,
        concurrency: int | None = None,
        allow_insecure: bool | None = None,
        timeout: float | None = None,
        call_deadline: float | None = None,
    ) -> None:
        former = (api_url, api_key, api_key_source, sandbox, api, rate, concurrency)
        former_too = (allow_insecure, timeout, call_deadline)
        if workspace is not None and any(v is not None for v in former + former_too):
            raise TypeError("Settings takes a workspace or its attributes, not both")
        if workspace is None:
            default = _NOT_GIVEN
            workspace = Workspace(
                url=api_url,
                key=api_key,
                key_source=api_key_source,
                sandbox=sandbox,
                api=default.api if api is None else api,
                rate=default.rate if rate is None else rate,
                concurrency=default.concurrency if concurrency is None else concurrency,
                allow_insecure=bool(allow_insecure),
                timeout=default.timeout if timeout is None else timeout,
                call_deadline=default.call_deadline if call_deadline is None else call_deadline,
            )
        object.__setattr__(self, "workspace", workspace)
        object.__setattr__(self, "batch_size", batch_size)
        object.__setattr__(self, "state_dir", state_dir)
        object.__setattr__(self, "quiet", quiet)
        object.__setattr__(self, "log_format", log_format)

    api_url = _FromWorkspace[str | None]("url")
    api_key = _FromWorkspace[Secret | None]("key")
    api_key_source = _FromWorkspace[str | None]("key_source")
    sandbox = _FromWorkspace[Path | None]("sandbox")
    api = _FromWorkspace[ApiFlavour]("api")
    rate = _FromWorkspace[Rate]("rate")
    concurrency = _FromWorkspace[int]("concurrency")
    allow_insecure = _FromWorkspace[bool]("allow_insecure")
    timeout = _FromWorkspace[float]("timeout")
    call_deadline = _FromWorkspace[float]("call_deadline")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _pick(
    name: str, flags: Mapping[str, object], env: Mapping[str, str], env_name: str
) -> tuple[object, str] | None:
    """Return (value, where it came from) from the first layer that has it."""
    value = flags.get(name)
    if value is not None:
        return value, "--" + name.replace("_", "-")
    if env.get(env_name) not in (None, ""):
        return env[env_name], env_name
    return None


def _int_in_range(
    raw: tuple[object, str] | None, default: int, low: int, high: int | None, problems: list[str]
) -> int:
    if raw is None:
        return default
    value, source = raw
    try:
        number = int(str(value))
    except ValueError:
        problems.append(f"{source}: {value!r} is not a whole number")
        return default
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        problems.append(f"{source}: {number} must be {bound}")
        return default
    return number


def _choice(
    raw: tuple[object, str] | None, default: str, allowed: tuple[str, ...], problems: list[str]
) -> str:
    if raw is None:
        return default
    value, source = raw
    text = str(value).strip().lower()
    if text not in allowed:
        problems.append(f"{source}: {value!r} is not one of {', '.join(allowed)}")
        return default
    return text


def _flag(raw: tuple[object, str] | None, problems: list[str]) -> bool:
    if raw is None:
        return False
    value, source = raw
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text not in _FALSE:
        problems.append(f"{source}: {value!r} is not one of 1, 0, true, false, yes, no")
    return False


def _checked_key(value: str, source: str, problems: list[str]) -> Secret | None:
    problem = key_problem(value)
    if problem is not None:
        problems.append(key_advice(source, problem))
        return None
    return Secret(value)


def _read_key_file(path_text: str, problems: list[str]) -> Secret | None:
    """The key of a secret file: one line; one trailing newline (LF or CRLF) is dropped."""
    path = Path(path_text)
    source = f"TWENTY_API_KEY_FILE ({path})"
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"TWENTY_API_KEY_FILE: cannot read {path}: {exc.strerror or exc}")
        return None
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data.strip():
        problems.append(f"TWENTY_API_KEY_FILE: {path} is empty")
        return None
    if b"\n" in data or b"\r" in data:
        problems.append(
            f"{source}: the file holds more than one line (the key is not shown); "
            "keep only the key in it, comments included"
        )
        return None
    try:
        value = data.decode("ascii")
    except UnicodeDecodeError:
        problems.append(key_advice(source, "holds non-ASCII characters"))
        return None
    return _checked_key(value, source, problems)


def _sandbox_path(
    flags: Mapping[str, object], env: Mapping[str, str], state_dir: Path, problems: list[str]
) -> tuple[Path | None, str | None]:
    """Resolve ``--sandbox [PATH]`` / ``TWENTY_SANDBOX``: a path, a yes/no, or absent."""
    flag = flags.get("sandbox")
    if flag is not None:
        # ``--sandbox`` with no value arrives as "" (click's flag_value).
        text = str(flag)
        if text and Path(text).suffix.lower() not in SANDBOX_SUFFIXES:
            # click cannot tell `--sandbox person` (an argument after a bare flag) from a
            # path; a sandbox file always has a database suffix, so refuse the ambiguity.
            problems.append(
                f"--sandbox: {text!r} is not a .sqlite file; to pass an argument, put it "
                f"before --sandbox or write --sandbox={DEFAULT_STATE_DIR / SANDBOX_FILE_NAME}"
            )
            return None, "--sandbox"
        return (Path(text) if text else state_dir / SANDBOX_FILE_NAME), "--sandbox"
    raw = env.get("TWENTY_SANDBOX")
    if raw is None or raw.strip().lower() in _FALSE:
        return None, None
    if raw.strip().lower() in _TRUE:
        return state_dir / SANDBOX_FILE_NAME, "TWENTY_SANDBOX"
    return Path(raw), "TWENTY_SANDBOX"


def build_settings(
    flags: Mapping[str, object],
    env: Mapping[str, str],
    *,
    need_workspace: bool = True,
) -> Settings:
    """Build :class:`Settings` from command-line flags (None = not given) and the environment.

    Every problem is collected and raised together as one :class:`ConfigError`.
    With ``need_workspace`` false (commands that never call the API), a missing URL
    or key is not an error.
    """
    problems: list[str] = []

    state_raw = _pick("state_dir", flags, env, "TWENTY_STATE_DIR")
    state_dir = Path(str(state_raw[0])) if state_raw else DEFAULT_STATE_DIR

    api = _choice(_pick("api", flags, env, "TWENTY_API"), "graphql", ("graphql", "rest"), problems)
    log_format = _choice(
        _pick("log_format", flags, env, "TWENTY_LOG_FORMAT"), "text", ("text", "json"), problems
    )
    batch_raw = _pick("batch_size", flags, env, "TWENTY_BATCH_SIZE")
    if batch_raw is not None and str(batch_raw[0]).strip().lower() == "auto":
        batch_raw = (MAX_BATCH_SIZE, batch_raw[1])  # lowered by the server's refusal, if any
    batch_size = _int_in_range(batch_raw, DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE, problems)
    rate = _rate(flags, env, problems)
    pace = Workspace(
        api=cast(ApiFlavour, api),
        concurrency=_int_in_range(
            _pick("concurrency", flags, env, "TWENTY_CONCURRENCY"), 4, 1, 64, problems
        ),
        rate=rate,
        bucket=_bucket(_pick("bucket", flags, env, "TWENTY_BUCKET"), problems),
        reserve=_int_in_range(
            _pick("reserve", flags, env, "TWENTY_RESERVE"),
            min(DEFAULT_RESERVE, rate.calls - 1),
            0,
            rate.calls - 1,
            problems,
        ),
    )
    workspace = _workspace(flags, env, state_dir, pace, problems, need_workspace=need_workspace)
    if problems:
        raise ConfigError(problems)
    return Settings(
        workspace,
        batch_size=batch_size,
        state_dir=state_dir,
        quiet=bool(flags.get("quiet")),
        log_format=cast(LogFormat, log_format),
    )


def _bucket(raw: tuple[object, str] | None, problems: list[str]) -> BucketKind | None:
    choice = _choice(raw, "auto", ("auto", "legacy", "v2"), problems)
    return None if choice == "auto" else cast(BucketKind, choice)


def _rate(flags: Mapping[str, object], env: Mapping[str, str], problems: list[str]) -> Rate:
    rate_raw = _pick("rate", flags, env, "TWENTY_RATE")
    if rate_raw is None:
        return DEFAULT_RATE
    try:
        return Rate.parse(str(rate_raw[0]))
    except ValueError as exc:
        problems.append(f"{rate_raw[1]}: {exc}")
        return DEFAULT_RATE


def _workspace(
    flags: Mapping[str, object],
    env: Mapping[str, str],
    state_dir: Path,
    pace: Workspace,
    problems: list[str],
    *,
    need_workspace: bool,
) -> Workspace:
    """The workspace the flags and environment name: a URL and key, or a sandbox.

    ``pace`` carries the flavour, rate and concurrency already read; the result is
    ``pace`` with where to connect and how to authenticate filled in.
    """
    sandbox, sandbox_source = _sandbox_path(flags, env, state_dir, problems)
    allow_insecure = _flag(_pick("allow_insecure", flags, env, "TWENTY_ALLOW_INSECURE"), problems)
    url_raw = _pick("api_url", flags, env, "TWENTY_API_URL")
    api_url: str | None = None
    if url_raw is not None:
        api_url = str(url_raw[0]).strip().rstrip("/")
    if sandbox is not None and url_raw is not None:
        flag_sandbox = sandbox_source == "--sandbox"
        flag_url = url_raw[1] == "--api-url"
        if flag_sandbox == flag_url:
            problems.append(
                f"both {url_raw[1]} and {sandbox_source} are set: "
                "choose the real workspace or the sandbox, not both"
            )
        elif flag_sandbox:
            api_url = None  # an explicit --sandbox beats a URL from the environment
        else:
            sandbox = None  # an explicit --api-url beats TWENTY_SANDBOX
    if api_url is not None and url_raw is not None:
        url_problem = _url_problem(api_url, allow_insecure=allow_insecure)
        if url_problem is not None:
            if need_workspace:
                problems.append(f"{url_raw[1]}: {api_url!r} {url_problem}")
            api_url = None  # a command that never calls the API does not need it

    api_key: Secret | None = None
    key_source: str | None = None
    if sandbox is None and sandbox_source is None:
        api_key, key_source = _workspace_key(
            flags,
            env,
            problems,
            need_workspace=need_workspace,
            url_missing=api_url is None and url_raw is None,
        )
    return replace(
        pace,
        url=api_url,
        key=api_key,
        key_source=key_source,
        sandbox=sandbox,
        allow_insecure=allow_insecure,
    )


def _workspace_key(
    flags: Mapping[str, object],
    env: Mapping[str, str],
    problems: list[str],
    *,
    need_workspace: bool,
    url_missing: bool,
) -> tuple[Secret | None, str | None]:
    """The API key of a real workspace and where it came from (flag, variable, file).

    Also reports a missing URL here, so that the problems keep the order users know:
    the URL's before the key's.
    """
    api_key: Secret | None = None
    key_source: str | None = None
    key_problems: list[str] = []
    flag_key = flags.get("api_key")
    env_key = env.get("TWENTY_API_KEY") or None
    key_file = env.get("TWENTY_API_KEY_FILE") or None
    if flag_key is not None:
        key_source = "--api-key"
        api_key = _checked_key(str(flag_key).strip(), key_source, key_problems)
    elif env_key and key_file:
        problems.append("both TWENTY_API_KEY and TWENTY_API_KEY_FILE are set: unset one of them")
    elif env_key:
        key_source = "TWENTY_API_KEY"
        api_key = _checked_key(env_key.strip(), key_source, key_problems)
    elif key_file:
        api_key = _read_key_file(key_file, key_problems)
        key_source = f"TWENTY_API_KEY_FILE ({key_file})"
    if need_workspace and url_missing:
        problems.append(
            "no workspace: set TWENTY_API_URL (or --api-url) to your Twenty server, "
            "or use --sandbox (TWENTY_SANDBOX=1) to work on a local sandbox workspace"
        )
    if need_workspace:
        problems.extend(key_problems)  # a command that never calls the API ignores the key
    if (
        need_workspace
        and api_key is None
        and not key_problems
        and not any("TWENTY_API_KEY" in p for p in problems)
    ):
        problems.append(
            "no API key: set TWENTY_API_KEY, or TWENTY_API_KEY_FILE to a file holding it "
            "(create one in Twenty under Settings > APIs & Webhooks)"
        )
    return api_key, key_source
