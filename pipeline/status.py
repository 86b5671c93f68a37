"""What the state stores of a state folder hold, for ``twenty-pipeline status``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.state import OLD_CHECKPOINT, STORE_NAME, Run, StateStore


@dataclass(frozen=True)
class StoreStatus:
    """One mapping's state: its last run, and what the store knows across runs."""

    name: str
    path: Path
    last_run: Run | None
    runs: int
    keys: int
    batches: dict[str, int]
    rows: dict[str, int]

    @property
    def complete(self) -> bool:
        """The last run ran to its end."""
        return self.last_run is not None and self.last_run.finished

    @property
    def unconfirmed_batches(self) -> int:
        """Batches of the last run sent but never confirmed (re-sent on resume)."""
        return 0 if self.complete else self.batches.get("sent", 0)


def store_path(folder: Path) -> Path:
    """The store of a mapping's state folder (an older version's checkpoint if only it is there)."""
    path = folder / STORE_NAME
    old = folder / OLD_CHECKPOINT
    return old if old.exists() and not path.exists() else path


def store_statuses(state_dir: Path, name: str | None = None) -> list[StoreStatus]:
    """The status of one mapping's store (``name``), or of every store under ``state_dir``."""
    if name is None:
        names = sorted(
            {
                p.parent.name
                for pattern in (STORE_NAME, OLD_CHECKPOINT)
                for p in state_dir.glob(f"*/{pattern}")
            }
        )
        if not names:
            raise ConfigError(f"no state in {state_dir}: nothing has been imported from here")
    else:
        names = [name]
    return [_status(item, store_path(state_dir / item)) for item in names]


def _status(name: str, path: Path) -> StoreStatus:
    if not path.exists():
        raise ConfigError(f"no state store {path}; `twenty-pipeline status` lists them")
    with StateStore(path, read_only=True) as store:
        return StoreStatus(
            name=name,
            path=path,
            last_run=store.last_run(),
            runs=len(store.runs()),
            keys=store.key_count(),
            batches=store.batch_counts(),
            rows=store.counts(),
        )
