"""`llmscope tenants …` (rate limits included) and `llmscope keys …`: the admin API from the command line, against a running
`up` or a query server (its URL and an admin key from options, `LLMSCOPE_ADMIN_URL` /
`LLMSCOPE_ADMIN_KEY`, or the admin key `up --admin-key` saved in the data directory).

Answers print as JSON (the API's `data`); a refused request prints the API's error message and
exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from llmscope.settings import Settings
from schemas.rate_limits import LIMIT_FIELDS

TENANTS = "/api/v1/admin/tenants"
KEYS = "/api/v1/admin/keys"


def add_commands(roles: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="query API (default LLMSCOPE_ADMIN_URL, else http://127.0.0.1:8000)")
    common.add_argument("--admin-key", dest="key", help="admin API key (default LLMSCOPE_ADMIN_KEY, else up's saved one)")
    common.add_argument("--data-dir", help="where `up` saved its admin key (default ./.llmscope)")

    tenants = roles.add_parser("tenants", help="list, create, rename, disable or enable tenants (admin API)")
    t = tenants.add_subparsers(dest="action", required=True, metavar="ACTION")
    t.add_parser("list", parents=[common], help="tenants this key manages")
    create = t.add_parser("create", parents=[common], help="create a tenant (superadmin key)")
    create.add_argument("tenant")
    create.add_argument("--name")
    rename = t.add_parser("rename", parents=[common], help="rename a tenant")
    rename.add_argument("tenant")
    rename.add_argument("name")
    for action, text in (("disable", "its keys stop working"), ("enable", "its keys work again")):
        p = t.add_parser(action, parents=[common], help=f"{action} a tenant: {text} (superadmin key)")
        p.add_argument("tenant")
    limits = t.add_parser(
        "limits", parents=[common],
        help="show a tenant's rate limits; with options, replace its own (superadmin key; the rest follow the defaults)",
    )  # fmt: skip
    limits.add_argument("tenant")
    for field in LIMIT_FIELDS:
        limits.add_argument(f"--{field.replace('_', '-')}", dest=field, type=float)
    limits.add_argument("--defaults", action="store_true", help="drop the tenant's own limits: the defaults apply")

    keys = roles.add_parser("keys", help="list, create, revoke or rotate API keys (admin API)")
    k = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = k.add_parser("list", parents=[common], help="keys of a tenant (default: the admin key's)")
    listing.add_argument("--tenant")
    made = k.add_parser("create", parents=[common], help="create a key and print it once")
    made.add_argument("--tenant", help="default: the admin key's tenant")
    made.add_argument("--name", default="")
    made.add_argument("--scopes", default="ingest,read", help="comma-separated: ingest, read, admin, superadmin")
    made.add_argument("--expires-at", help="RFC 3339 time the key stops working, e.g. 2030-01-01T00:00:00Z")
    revoke = k.add_parser("revoke", parents=[common], help="revoke a key by its id (as listed)")
    revoke.add_argument("key_id")
    rotate = k.add_parser("rotate", parents=[common], help="a new key; the old one works for the grace period")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-seconds", type=float, help="default: the server's setting (a day)")


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None, dict[str, str] | None]:
    """(method, path, JSON body, query) of the command."""
    if args.role == "tenants":
        at = f"{TENANTS}/{args.tenant}" if getattr(args, "tenant", None) else TENANTS
        if args.action == "limits":
            own = {f: getattr(args, f) for f in LIMIT_FIELDS if getattr(args, f) is not None}
            return ("PUT", f"{at}/limits", own, None) if own or args.defaults else ("GET", f"{at}/limits", None, None)
        return {
            "list": ("GET", TENANTS, None, None),
            "create": ("POST", TENANTS, {"tenant_id": getattr(args, "tenant", ""), "name": getattr(args, "name", None)}, None),
            "rename": ("PATCH", at, {"name": getattr(args, "name", None)}, None),
            "disable": ("PATCH", at, {"disabled": True}, None),
            "enable": ("PATCH", at, {"disabled": False}, None),
        }[args.action]
    if args.action == "list":
        return "GET", KEYS, None, {"tenant_id": args.tenant} if args.tenant else None
    if args.action == "create":
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        body = {"tenant_id": args.tenant, "name": args.name, "scopes": scopes, "expires_at": args.expires_at}
        return "POST", KEYS, body, None
    if args.action == "revoke":
        return "POST", f"{KEYS}/{args.key_id}/revoke", None, None
    return "POST", f"{KEYS}/{args.key_id}/rotate", {"grace_seconds": args.grace_seconds}, None


def _admin_key(args: argparse.Namespace, settings: Settings) -> str | None:
    if args.key:
        return str(args.key)
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value()
    saved = settings.data_dir / "admin-api-key"
    return saved.read_text().strip() if saved.exists() else None


def run(args: argparse.Namespace, settings: Settings) -> int:
    key = _admin_key(args, settings)
    if not key:
        print("llmscope: no admin key: pass --admin-key, set LLMSCOPE_ADMIN_KEY, or start `up --admin-key`", file=sys.stderr)
        return 2
    method, path, body, query = _request(args)
    url = (args.url or settings.admin_url).rstrip("/")
    try:
        r = httpx.request(method, url + path, json=body, params=query, headers={"authorization": f"Bearer {key}"}, timeout=30)
    except httpx.HTTPError as exc:
        print(f"llmscope: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.is_error:
        message = answer.get("error", {}).get("message", r.text[:500]) if isinstance(answer, dict) else r.text[:500]
        print(f"llmscope: {r.status_code}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(answer.get("data"), indent=2, default=str))
    return 0
