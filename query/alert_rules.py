"""Alert rules (/api/v1/alert-rules): create, list, read, update and delete a tenant's rules.

Writing needs the `alerts` or `admin` scope, reading `read`. Bodies are validated by the rule
contract (schemas/alerts.py), whose messages name the field and the fix; they are read as plain
JSON so those messages reach the caller as they are, in a 400. The worker's evaluator picks up a
change at its next tick.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import ValidationError

from llmscope.errors import BadRequest
from query.deps import AlertsWriter, Reader, StoreDep, existing, parsed
from query.envelope import Envelope
from schemas.alert_rows import list_rules, read_rule, write_rule
from schemas.alerts import AlertRule, AlertRuleCreate, AlertRuleUpdate, validation_message

router = APIRouter(prefix="/api/v1/alert-rules", tags=["alerts"])

_RULE_EXAMPLE = {
    "name": "Cost per user over $5 an hour", "severity": "warning", "for": "0m", "cooldown": "30m",
    "condition": {"kind": "threshold", "metric": "cost_usd", "comparison": ">", "value": 5, "window": "1h",
                  "group_by": "user", "filters": {"service": "chat-api"}},
}
RuleBody = Annotated[dict[str, Any], Body(examples=[_RULE_EXAMPLE])]


class RuleResponse(Envelope[AlertRule]):
    pass


class RuleList(Envelope[list[AlertRule]]):
    pass


def _dump(rule: AlertRule) -> Response:
    """`for` is an alias (a Python keyword): the answer uses it, as the request did."""
    return Response(RuleResponse(data=rule).model_dump_json(by_alias=True), media_type="application/json")


@router.post("", status_code=201, response_model=RuleResponse, summary="Create an alert rule (alerts or admin)")
async def create_rule(body: RuleBody, principal: AlertsWriter, store: StoreDep) -> Response:
    rule = AlertRule.create(parsed(AlertRuleCreate, body), datetime.now(timezone.utc))
    await asyncio.to_thread(write_rule, store, principal.tenant_id, rule)
    response = _dump(rule)
    response.status_code = 201
    return response


@router.get("", response_model=RuleList, summary="This tenant's alert rules, oldest first")
async def get_rules(principal: Reader, store: StoreDep) -> Response:
    rules = await asyncio.to_thread(list_rules, store, principal.tenant_id)
    return Response(RuleList(data=rules).model_dump_json(by_alias=True), media_type="application/json")


@router.get("/{rule_id}", response_model=RuleResponse, summary="One alert rule")
async def get_rule(rule_id: str, principal: Reader, store: StoreDep) -> Response:
    return _dump(await existing(read_rule, "alert rule", store, principal.tenant_id, rule_id))


@router.put("/{rule_id}", response_model=RuleResponse, summary="Replace an alert rule (alerts or admin)")
async def put_rule(rule_id: str, body: RuleBody, principal: AlertsWriter, store: StoreDep) -> Response:
    old = await existing(read_rule, "alert rule", store, principal.tenant_id, rule_id)
    spec = parsed(AlertRuleCreate, body)
    rule = AlertRule.model_validate(spec.model_dump(by_alias=True) | {
        "id": old.id, "created_at": old.created_at, "updated_at": datetime.now(timezone.utc)})
    await asyncio.to_thread(write_rule, store, principal.tenant_id, rule)
    return _dump(rule)


@router.patch("/{rule_id}", response_model=RuleResponse, summary="Change some fields of an alert rule (alerts or admin)")
async def patch_rule(rule_id: str, body: RuleBody, principal: AlertsWriter, store: StoreDep) -> Response:
    old = await existing(read_rule, "alert rule", store, principal.tenant_id, rule_id)
    update = parsed(AlertRuleUpdate, body)
    try:
        rule = update.apply(old, datetime.now(timezone.utc))
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None
    await asyncio.to_thread(write_rule, store, principal.tenant_id, rule)
    return _dump(rule)


@router.delete("/{rule_id}", status_code=204, summary="Delete an alert rule (alerts or admin); its firing alerts resolve")
async def delete_rule(rule_id: str, principal: AlertsWriter, store: StoreDep) -> Response:
    rule = await existing(read_rule, "alert rule", store, principal.tenant_id, rule_id)
    await asyncio.to_thread(write_rule, store, principal.tenant_id, rule, True)
    return Response(status_code=204)
