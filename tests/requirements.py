"""Machine prerequisites of some test kinds: skipped with the reason where missing, except in
CI (CI=true), where every kind must run."""

from __future__ import annotations

import pytest

from deployments import settings
from stack.postgres import POSTGRES_INSTALL_HINT, postgres_binaries_found


def require(available: bool, what: str, install_hint: str) -> None:
    if available:
        return
    if settings.current().ci:
        pytest.fail(f"CI=true but {what} is not installed ({install_hint}): these tests must run")
    pytest.skip(f"{what} is not installed ({install_hint})")


def require_postgres_binaries() -> None:
    require(
        postgres_binaries_found(), "the PostgreSQL server (initdb, pg_ctl)", POSTGRES_INSTALL_HINT
    )
