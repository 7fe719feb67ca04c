"""Imports go one way (STYLE.md item 12): what two stages share lives below them, never in a sibling.

    composition root   llmscope/cli.py, llmscope/roles.py: may import everything
    stages             ingest/, streams/, query/, dashboards/: none imports another
    plumbing           llmscope/ (auth, http, kafka, live, redis, …): imports no stage
    contracts          schemas/: imports only the plumbing's leaves
    leaves             llmscope/errors.py, llmscope/settings.py, llmscope/storage/, llmscope/netguard.py,
                       llmscope/tls.py, llmscope/redaction.py, llmscope/wakeups.py:
                       import only leaves

and inside the worker, the pure stages (streams/stages/) do no I/O: of the plumbing they use only
the errors and settings, and none of the worker's I/O modules around them.

Every `import` counts, also one inside a function or under `if TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("llmscope", "schemas", "ingest", "streams", "query", "dashboards")
STAGES = ("ingest", "streams", "query", "dashboards")
COMPOSITION_ROOT = ("llmscope.cli", "llmscope.roles")
# netguard: which destinations an outbound URL may reach; the webhook contract checks a URL's form with it.
LEAVES = ("llmscope.errors", "llmscope.settings", "llmscope.storage", "llmscope.netguard", "llmscope.tls", "llmscope.redaction",
          "llmscope.wakeups")
PURE = "streams.stages"
PURE_PLUMBING = ("llmscope.errors", "llmscope.settings")  # all of the plumbing a pure stage may use
IO_LIBRARIES = ("faust", "aiokafka", "redis", "chdb", "clickhouse_connect", "uvicorn", "httpx")


def _within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ((prefixes,) if isinstance(prefixes, str) else prefixes))


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(root: Path, name: str) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, resolved to the most specific module:
    `from query import metrics` is `query.metrics`, `from .rollup import X` is relative to the file."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(root, candidate) else base))
    return sorted(set(found))


def _broken_rule(importer: str, imported: str) -> str | None:
    """The rule `importer -> imported` breaks, if any."""
    own, other = importer.split(".")[0], imported.split(".")[0]
    if _within(importer, COMPOSITION_ROOT):
        return None
    if _within(importer, PURE) and (
        _within(imported, IO_LIBRARIES)
        or (other == "streams" and not _within(imported, PURE))
        or (other == "llmscope" and not _within(imported, PURE_PLUMBING))
    ):
        return "a pure stage does no I/O"
    if other not in PACKAGES:
        return None  # the standard library and third parties
    if own in STAGES:
        if other in STAGES and other != own:
            return "stages import no other stage"
        return "stages import no composition root" if _within(imported, COMPOSITION_ROOT) else None
    if own == "schemas":
        return None if other == "schemas" or _within(imported, LEAVES) else "schemas import only the plumbing's leaves"
    # the plumbing
    if other in STAGES or _within(imported, COMPOSITION_ROOT):
        return "the plumbing imports no stage"
    if _within(importer, LEAVES) and not _within(imported, LEAVES):
        return "a leaf imports only leaves"
    return None


def violations(root: Path) -> list[str]:
    """Every import under `root` that goes the wrong way, as `file:line: importer -> imported (rule)`."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer = _module_name(root, path)
            for line, imported in imports(root, path):
                if rule := _broken_rule(importer, imported):
                    out.append(f"{path.relative_to(root)}:{line}: {importer} -> {imported} ({rule})")
    return out


def test_imports_go_one_way() -> None:
    assert sum(1 for p in PACKAGES for _ in (ROOT / p).rglob("*.py")) > 50  # the walk sees the package
    found = violations(ROOT)
    assert not found, "imports against the layering:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("importer", "source", "rule"),
    [
        ("query/metrics.py", "from ingest.auth import Principal", "stages import no other stage"),
        ("query/prices.py", "from streams.stages.cost import PRICE_SOURCE", "stages import no other stage"),
        ("dashboards/build.py", "from streams.rollup import quantile_sql", "stages import no other stage"),
        ("ingest/app.py", "def f():\n    from query import metrics", "stages import no other stage"),
        ("streams/worker.py", "from llmscope import roles", "stages import no composition root"),
        ("llmscope/http.py", "from ingest.auth import KeyResolver", "the plumbing imports no stage"),
        ("schemas/event.py", "from streams.stages import normalise", "schemas import only the plumbing's leaves"),
        ("schemas/live.py", "from llmscope.live import LiveHub", "schemas import only the plumbing's leaves"),
        ("llmscope/settings.py", "from llmscope.auth import Principal", "a leaf imports only leaves"),
        ("streams/stages/enrich.py", "from llmscope.storage import Store", "a pure stage does no I/O"),
        ("streams/stages/pipeline.py", "from streams.policy_cache import PolicyCache", "a pure stage does no I/O"),
        ("streams/stages/decode.py", "import faust", "a pure stage does no I/O"),
        ("streams/stages/decode.py", "from .. import sink", "a pure stage does no I/O"),
        ("streams/stages/cost.py", "from llmscope.auth import Principal", "a pure stage does no I/O"),
    ],
)
def test_each_kind_of_wrong_import_is_found(tmp_path: Path, importer: str, source: str, rule: str) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for module in ("ingest/auth.py", "query/metrics.py", "llmscope/roles.py", "llmscope/auth.py", "streams/sink.py",
                   "streams/policy_cache.py", "streams/stages/__init__.py", "streams/stages/normalise.py"):  # fmt: skip
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    (tmp_path / importer).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / importer).write_text(source + "\n")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{importer}:") and found[0].endswith(f"({rule})"), found


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("llmscope/roles.py", "from query.app import create_query_app\nfrom streams.worker import create_worker_app"),
        ("query/app.py", "from llmscope.auth import KeyResolver\nfrom schemas.rollup import quantile_sql"),
        ("schemas/rollup.py", "from llmscope.storage import Store\nfrom llmscope.errors import BadRequest"),
        ("llmscope/kafka.py", "from schemas.messages import IngestMessage"),
        ("streams/stages/pipeline.py", "from streams.stages.normalise import normalise\nimport orjson"),
        ("streams/stages/enrich.py", "from llmscope.errors import BadRequest\nfrom schemas.span import Span"),
        ("streams/worker.py", "import faust\nfrom streams.stages import normalise"),
    ],
)
def test_imports_that_go_down_are_allowed(tmp_path: Path, importer: str, source: str) -> None:
    (tmp_path / importer).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / importer).write_text(source + "\n")
    assert violations(tmp_path) == []
