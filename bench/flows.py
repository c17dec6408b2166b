"""The bench's own flow, deployed by bench/curves.py on its stack's pool, never by prefect.yaml: a
run that stays RUNNING for as long as asked, so the memory of many runs at once can be read."""

from __future__ import annotations

import time

from prefect import flow


@flow
def hold(seconds: float) -> float:
    """Stay RUNNING for `seconds`, doing nothing."""
    time.sleep(seconds)
    return seconds
