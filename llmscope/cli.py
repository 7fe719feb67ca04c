"""`llmscope <role>`: one command for every role; settings are validated before anything starts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from llmscope import admin_client
from llmscope.heap import bound_chdb_heap, bound_heap, keep_heap_trimmed
from llmscope.logs import configure_logging
from llmscope.redaction import redact_url
from llmscope.settings import Settings, SettingsError, load_settings
from llmscope.storage.base import StoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmscope", description="LLMScope: observability for LLM applications.")
    roles = parser.add_subparsers(dest="role", required=True, metavar="ROLE")
    up = roles.add_parser("up", help="embedded default: broker, ingest, worker and query in one process over chDB")
    up.add_argument("--data-dir", type=Path, default=None, help="where data lives (default ./.llmscope)")
    up.add_argument("--ingest-port", type=int, default=None, help="OTLP/HTTP port (default 4318)")
    up.add_argument("--query-port", type=int, default=None, help="query API port (default 8000)")
    up.add_argument(
        "--host", default=None,
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)",
    )
    up.add_argument("--admin-key", action="store_true", help="also create (once) and print an admin API key")
    roles.add_parser("ingest", help="OTLP/HTTP and SDK event endpoints (Kafka producer)")
    roles.add_parser("worker", help="the Faust stream agents")
    roles.add_parser("query", help="query API")
    roles.add_parser("migrate", help="apply ClickHouse schema migrations, then exit")
    keys = roles.add_parser(
        "create-key", help="create a tenant API key and print it once (straight into the store: the way to make a superadmin key)"
    )
    keys.add_argument("--tenant", required=True)
    keys.add_argument("--name", default="")
    keys.add_argument(
        "--scopes", "--scope", default="ingest,read", help="comma-separated: ingest, read, admin, alerts, superadmin"
    )
    keys.add_argument("--expires-at", type=_utc_time, help="RFC 3339 time the key stops working (UTC if no offset)")
    admin_client.add_commands(roles)
    return parser


def _utc_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    for option, name in (("data_dir", "data_dir"), ("ingest_port", "ingest_port"), ("query_port", "query_port")):
        value = getattr(args, option, None)
        if value is not None:
            overrides[name] = value
    settings = load_settings(**overrides)
    if args.role == "up":
        # `up` is for one machine: it listens on loopback unless told otherwise, by --host or by
        # LLMSCOPE_INGEST_HOST / LLMSCOPE_QUERY_HOST set explicitly (the roles' 0.0.0.0 default is
        # for containers).
        hosts = {name: args.host or ("127.0.0.1" if name not in settings.model_fields_set else getattr(settings, name))
                 for name in ("ingest_host", "query_host")}
        settings = load_settings(**overrides, **hosts)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"llmscope: {exc}", file=sys.stderr)
        return 2
    # The client commands print their answer on stdout; their log lines must not mix into it.
    client = args.role in ("create-key", "tenants", "keys")
    configure_logging(settings.log_level, settings.log_format, args.role, sys.stderr if client else sys.stdout)
    # Passwords are SecretStr or redacted from URLs in the repr (and log lines are redacted again).
    logging.getLogger("llmscope").debug("settings: %r", settings)
    try:
        return _run(args, settings)
    except StoreError as exc:
        # The store cannot be reached or opened (a ClickHouse server down, another process holding
        # the chDB directory): one line that says so, not a traceback; a supervisor restarts the role.
        print(f"llmscope {args.role}: {redact_url(str(exc))}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from llmscope import roles

    if args.role == "migrate":
        applied = roles.migrate(settings)
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
        return 0
    if args.role == "create-key":
        from llmscope.auth import create_key
        from llmscope.storage import open_store

        store = open_store(settings)
        try:
            scopes = {s.strip() for s in args.scopes.split(",") if s.strip()}
            print(create_key(store, args.tenant, args.name, scopes, args.expires_at))
        except ValueError as exc:
            print(f"llmscope: {exc}", file=sys.stderr)
            return 2
        finally:
            store.close()
        return 0
    if args.role in ("tenants", "keys"):
        return admin_client.run(args, settings)
    bound_heap()  # the roles below run for weeks
    bound_chdb_heap()
    keep_heap_trimmed()
    if args.role == "up":
        asyncio.run(roles.run_up(settings, admin_key=args.admin_key))
        return 0
    runner = {"ingest": roles.run_ingest, "worker": roles.run_worker, "query": roles.run_query}
    asyncio.run(runner[args.role](settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
