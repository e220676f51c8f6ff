"""OVSDB's error objects (RFC 7047 section 3.1: ``{"error": ..., "details": ...}``)."""

from __future__ import annotations

from typing import Any

# The RFC's error strings, and the ones ovsdb-server adds, as clients match them.
SYNTAX_ERROR = "syntax error"
CONSTRAINT_VIOLATION = "constraint violation"
REFERENTIAL_INTEGRITY = "referential integrity violation"
RESOURCES_EXHAUSTED = "resources exhausted"
IO_ERROR = "I/O error"
DUPLICATE_UUID_NAME = "duplicate uuid-name"
DOMAIN_ERROR = "domain error"
RANGE_ERROR = "range error"
TIMED_OUT = "timed out"
NOT_SUPPORTED = "not supported"
ABORTED = "aborted"
NOT_OWNER = "not owner"
UNKNOWN_DATABASE = "unknown database"
UNKNOWN_TABLE = "unknown table"
UNKNOWN_COLUMN = "unknown column"
UNKNOWN_MONITOR = "unknown monitor"
DUPLICATE_MONITOR = "duplicate monitor ID"
CANCELED = "canceled"
PERMISSION_ERROR = "permission error"


class OvsdbError(Exception):
    """An error to report as an OVSDB error object."""

    def __init__(self, error: str, details: str | None = None, syntax: Any = None):
        super().__init__(f"{error}: {details}" if details else error)
        self.error = error
        self.details = details
        self.syntax = syntax

    def to_json(self) -> dict:
        j: dict[str, Any] = {"error": self.error}
        if self.details:
            j["details"] = self.details
        if self.syntax is not None:
            j["syntax"] = self.syntax
        return j


def syntax(details: str, where: Any = None) -> OvsdbError:
    return OvsdbError(SYNTAX_ERROR, details, _show(where) if where is not None else None)


def _show(j: Any) -> str:
    """The offending JSON, shortened: error objects must stay small."""
    import json
    try:
        text = json.dumps(j, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(j)
    return text if len(text) <= 200 else text[:197] + "..."
