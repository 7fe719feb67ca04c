"""The envelope of every query API answer: `{"data": …, "next_cursor": …}`.

A list that pages (`Page`) carries the cursor of the next page, to pass back unchanged as `cursor`,
or null on the last page; every other answer (`Envelope`) has `next_cursor: null`, so clients read
all answers the same way.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    data: T
    next_cursor: None = None


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="Pass it back as `cursor` for the next page; null on the last page.")
