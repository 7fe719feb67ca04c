"""Dependencies every router uses: the caller's tenant (from the API key) and the store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends, Query, Request

from llmscope.auth import Principal
from llmscope.errors import BadRequest
from llmscope.http import authenticate
from llmscope.storage import Store


async def reader(request: Request) -> Principal:
    return await authenticate(request, request.app.state.resolver, "read")


async def admin(request: Request) -> Principal:
    return await authenticate(request, request.app.state.resolver, "admin")


def store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


Reader = Annotated[Principal, Depends(reader)]
Admin = Annotated[Principal, Depends(admin)]
StoreDep = Annotated[Store, Depends(store)]


# DateTime64(9) holds 1900-01-01 to 2262-04-11; nothing we store predates Unix time.
_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(2262, 4, 11, tzinfo=timezone.utc)
_OUT_OF_RANGE = "start and end must be between 1970-01-01 and 2262-04-11 (the span store's time range)"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class TimeRange:
    """`start`/`end` (RFC 3339 or Unix seconds); defaults to the last 24 hours."""

    def __init__(
        self,
        start: Annotated[datetime | None, Query(description="Inclusive start (RFC 3339 or Unix seconds).")] = None,
        end: Annotated[datetime | None, Query(description="Exclusive end; default now.")] = None,
    ) -> None:
        try:
            # Converting an offset date at the edge of Python's datetime range overflows.
            self.end = _utc(end) if end else datetime.now(timezone.utc) + timedelta(minutes=1)
            self.start = _utc(start) if start else self.end - timedelta(days=1)
        except OverflowError:
            raise BadRequest(_OUT_OF_RANGE) from None
        for value in (self.start, self.end):
            if not _EARLIEST <= value <= _LATEST:
                raise BadRequest(_OUT_OF_RANGE)
        if self.start >= self.end:
            raise BadRequest("start must be before end")

    def params(self) -> dict[str, str]:
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        return {"start": self.start.strftime(fmt), "end": self.end.strftime(fmt)}
