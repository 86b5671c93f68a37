"""The workspace's API keys: the tokens the sandbox accepts, with expiry and revocation (§1)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from pipeline.sandbox.database import Database


@dataclass(frozen=True)
class ApiKey:
    """A stored API key."""

    id: str
    name: str
    token: str
    expires_at: str | None
    revoked_at: str | None


class ApiKeyStore:
    """Keys kept in the workspace file, so a served sandbox keeps its key across restarts."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def ensure(self, token: str | None = None, name: str = "sandbox") -> str:
        """A usable key: ``token`` (stored if new), else the first live key, else a new one."""
        db = self.database.db
        with self.database.transaction():
            if token is not None:
                row = db.execute("SELECT token FROM api_keys WHERE token = ?", (token,)).fetchone()
                if row is None:
                    self._insert(token, name, None, None)
                return token
            row = db.execute(
                "SELECT token FROM api_keys WHERE revoked_at IS NULL AND expires_at IS NULL "
                "ORDER BY rowid LIMIT 1"
            ).fetchone()
            if row is not None:
                return str(row[0])
            new = "sandbox-" + secrets.token_hex(20)
            self._insert(new, name, None, None)
            return new

    def add(self, token: str, *, name: str, expires_at: str | None, revoked_at: str | None) -> None:
        """Store a key with an expiry or revocation (tests of the auth answers)."""
        with self.database.transaction():
            self._insert(token, name, expires_at, revoked_at)

    def find(self, token: str) -> ApiKey | None:
        """The stored key whose token is ``token``."""
        row = self.database.db.execute(
            "SELECT id, name, token, expires_at, revoked_at FROM api_keys WHERE token = ?", (token,)
        ).fetchone()
        return ApiKey(*row) if row else None

    def _insert(
        self, token: str, name: str, expires_at: str | None, revoked_at: str | None
    ) -> None:
        self.database.db.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), name, token, expires_at, revoked_at),
        )
