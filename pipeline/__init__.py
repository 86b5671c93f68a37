"""twenty-pipeline: move data between files and a Twenty CRM workspace."""

from __future__ import annotations

__version__ = "0.1.0"
