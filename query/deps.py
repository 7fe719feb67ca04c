"""Dependencies every router uses: the caller's tenant (from the API key) and the store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends, Query, Request

from llmscope.auth import Principal
from llmscope.errors import BadRequest
from llmscope.http import authenticate
from llmscope.storage import Store
from schemas.times import EARLIEST_QUERY, LATEST_QUERY, utc


async def reader(request: Request) -> Principal:
    return await authenticate(request, request.app.state.resolver, "read")


async def admin(request: Request) -> Principal:
    return await authenticate(request, request.app.state.resolver, "admin")


def store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


Reader = Annotated[Principal, Depends(reader)]
Admin = Annotated[Principal, Depends(admin)]
StoreDep = Annotated[Store, Depends(store)]


_OUT_OF_RANGE = (
    f"start and end must be between {EARLIEST_QUERY:%Y-%m-%d} and {LATEST_QUERY:%Y-%m-%d} (the span store's time range)"
)


class TimeRange:
    """`start`/`end` (RFC 3339 or Unix seconds); defaults to the last 24 hours."""

    def __init__(
        self,
        start: Annotated[datetime | None, Query(description="Inclusive start (RFC 3339 or Unix seconds).")] = None,
        end: Annotated[datetime | None, Query(description="Exclusive end; default now.")] = None,
    ) -> None:
        try:
            # Converting an offset date at the edge of Python's datetime range overflows.
            self.end = utc(end) if end else datetime.now(timezone.utc) + timedelta(minutes=1)
            self.start = utc(start) if start else self.end - timedelta(days=1)
        except OverflowError:
            raise BadRequest(_OUT_OF_RANGE) from None
        for value in (self.start, self.end):
            if not EARLIEST_QUERY <= value <= LATEST_QUERY:
                raise BadRequest(_OUT_OF_RANGE)
        if self.start >= self.end:
            raise BadRequest("start must be before end")

    def params(self) -> dict[str, str]:
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        return {"start": self.start.strftime(fmt), "end": self.end.strftime(fmt)}
