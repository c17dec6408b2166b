"""Lists read from the API page by page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

PAGE = 200  # the API's largest page


async def every_page(
    read: Callable[[int, int], Awaitable[list[T]]], identity: Callable[[T], Any]
) -> list[T]:
    """Every object `read(offset, limit)` lists, page by page; an object seen twice (the list
    moved under the read) is kept once."""
    seen: dict[Any, T] = {}
    offset = 0
    while True:
        page = await read(offset, PAGE)
        for item in page:
            seen.setdefault(identity(item), item)
        offset += len(page)
        if len(page) < PAGE:
            return list(seen.values())
