"""The documentation cannot drift: the configuration reference is generated from the pydantic models,
every link stays inside the repository, and the README keeps its first two commands.

Regenerate the reference after changing a settings model: ``python -m tests.test_docs``.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from core.config import EngineSettings, LoggingSettings, StoreSettings
from core.hooks.host import create_plugin_host
from core.interfaces import ModelSettings, PlatformSettings

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"
BEGIN, END = "<!-- generated: begin (python -m tests.test_docs) -->", "<!-- generated: end -->"
SECRET_SOURCES = {"api_token": "api_token_env", "account_id": "account_id_env", "api_key": "api_key_env",
                  "token": "token_env", "bot_token": "bot_token_env", "api_hash": "api_hash_env",
                  "api_id": "api_id_env", "session": "session_env", "url": "url_env"}


# Keys whose models carry no description of their own (they belong to other parts of the code).
FALLBACK = {
    "account_id_env": "variable holding the account id", "api_base": "another API root, e.g. a proxy or gateway",
    "api_hash": "from the variable named by api_hash_env", "api_hash_env": "variable holding the API hash",
    "api_id": "from the variable named by api_id_env", "api_id_env": "variable holding the API id",
    "api_token_env": "variable holding the API token", "backend": "the backend plugin that serves this model",
    "bot_token": "from the variable named by bot_token_env", "bot_token_env": "variable holding the bot token",
    "cache_size": "enhanced prompts remembered (same prompt, same answer)",
    "concurrency": "parallel jobs in this model's lane (default: the backend's own)",
    "description": "shown by /models and `sakaibot models`", "edit_interval": "seconds between status edits",
    "enabled": "start it (platforms) / offer it (models, plugins)", "guidance": "how closely to follow the prompt",
    "history_limit": "entries /history shows", "max_attempts": "tries per job (default: engine.max_attempts)",
    "max_output_chars": "longer LLM answers are discarded", "max_prompt_length": "longest prompt accepted",
    "max_steps": "most steps a request may ask for", "max_tokens": "LLM answer length limit",
    "method": "GET ?prompt=… or POST of JSON", "mode": "bot (a bot token) or userbot (your account's session)",
    "negative_prompt": "the Worker takes negative_prompt", "path": "SQLite file for jobs; unset keeps them in memory",
    "session": "session string, or the path of a Telethon .session file",
    "session_env": "variable holding the session", "size": "width and height the Worker returns",
    "sizes": "sizes offered, like 1024x1024", "temperature": "LLM sampling temperature",
    "timeout": "seconds per attempt", "token": "from the variable named by token_env",
    "token_env": "variable holding the bot token",
}


def _type(annotation: Any) -> str:
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r"Literal\[([^]]*)\]", lambda m: " or ".join(m.group(1).split(", ")), text)
    return text.replace(" | ", " or ")


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    if name in SECRET_SOURCES and f"{name}_env" in model.model_fields:
        source = model.model_fields[f"{name}_env"].get_default()
        return f"from `${source}`" if source else "from the variable in `" + f"{name}_env`"
    if value is None:
        return "unset"
    return f"`{json.dumps(value, default=str)}`"


def _rows(model: type[BaseModel], env_prefix: str, skip: frozenset[str] = frozenset()) -> list[str]:
    rows = ["| key | type | default | environment | what it does |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip or field.exclude:
            continue
        what = (field.description or FALLBACK.get(name, "")).replace("|", "\\|")
        rows.append(f"| `{name}` | `{_type(field.annotation)}` | {_default(model, name)} | "
                    f"`{env_prefix}{name.upper()}` | {what} |")
    return rows


def _first_party() -> tuple[dict[str, type[BaseModel]], dict[str, type[BaseModel]], dict[str, type[BaseModel]]]:
    host = create_plugin_host()
    backends: dict[str, type[BaseModel]] = {}
    platforms: dict[str, type[BaseModel]] = {}
    sections: dict[str, type[BaseModel]] = {}
    host.hook.register_image_models(register=lambda b: backends.setdefault(b.name, b.settings), engine=None)
    host.hook.register_platforms(register=lambda p: platforms.setdefault(p.name, p.settings))
    host.hook.register_config_sections(register=lambda s: sections.setdefault(s.name, s.settings))
    return backends, platforms, sections


def generate() -> str:
    """The reference tables, one per table of ``config.toml``."""
    backends, platforms, sections = _first_party()
    out: list[str] = []
    core_tables: tuple[tuple[str, type[BaseModel]], ...] = (
        ("engine", EngineSettings), ("logging", LoggingSettings), ("store", StoreSettings))
    for table, model in core_tables:
        out += [f"### `[{table}]`", "", model.__doc__ or "", "", *_rows(model, f"SAKAIBOT_{table.upper()}__"), ""]
    common = frozenset(ModelSettings.model_fields)
    out += ["### `[models.<name>]`: keys every model has", "",
            *_rows(ModelSettings, "SAKAIBOT_MODELS__<NAME>__"), ""]
    for name, model in sorted(backends.items()):
        out += [f"#### `backend = \"{name}\"`", "", model.__doc__ or "", "",
                *_rows(model, "SAKAIBOT_MODELS__<NAME>__", common), ""]
    platform_common = frozenset(PlatformSettings.model_fields)
    for name, model in sorted(platforms.items()):
        out += [f"### `[platforms.{name}]`", "", model.__doc__ or "", "",
                *_rows(model, f"SAKAIBOT_PLATFORMS__{name.upper()}__", platform_common - {"enabled"}), ""]
    for name, model in sorted(sections.items()):
        out += [f"### `[plugins.{name}]`", "", model.__doc__ or "", "",
                *_rows(model, f"SAKAIBOT_PLUGINS__{name.upper()}__"), ""]
    return "\n".join(line.rstrip() for line in out).strip() + "\n"


def _generated_part(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip() + "\n"


def write() -> None:
    """Put the freshly generated tables between the markers of ``docs/configuration.md``."""
    text = REFERENCE.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    REFERENCE.write_text(f"{head}{BEGIN}\n\n{generate()}\n{END}{tail}", encoding="utf-8")


def test_the_configuration_reference_matches_the_models():
    current = _generated_part(REFERENCE.read_text(encoding="utf-8"))
    assert current == generate(), "docs/configuration.md is stale: run python -m tests.test_docs"


def test_every_key_of_the_shipped_config_is_documented():
    import tomllib

    shipped = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    reference = REFERENCE.read_text(encoding="utf-8")
    for table, values in shipped.items():
        for key, value in values.items():
            keys = value.keys() if isinstance(value, dict) else [key]
            assert all(f"| `{k}` |" in reference for k in keys), f"[{table}] {key} is not in the reference"


def _links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))


def test_links_stay_inside_the_repository_and_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for link in _links(page):
            assert not re.match(r"^[a-z]+:", link), f"{page.name} links outside the repository: {link}"
            target = (page.parent / link.split("#", 1)[0]).resolve()
            assert link.startswith("#") or target.exists(), f"{page.name}: {link} does not exist"
            assert ROOT in target.parents or target == ROOT, f"{page.name}: {link} leaves the repository"


def test_the_readme_keeps_its_first_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[:2] == ['pip install -e . && sakaibot generate "a lighthouse at dusk" --out lighthouse.png',
                         'pip install -e ".[test]" && python -m pytest']
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert block[1] in ci.splitlines() and {"ruff check .", "mypy"} <= set(ci.splitlines())


def test_every_original_variable_is_in_the_env_example_and_the_migration_guide():
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    migrating = (ROOT / "docs" / "migrating.md").read_text(encoding="utf-8")
    for variable in ("FLUX_WORKER_URL", "SDXL_WORKER_URL", "SDXL_API_KEY", "LLM_PROVIDER", "OPENROUTER_API_KEY",
                     "GEMINI_API_KEY", "TELEGRAM_API_ID", "TELEGRAM_API_HASH", "TELEGRAM_BOT_TOKEN",
                     "TELEGRAM_SESSION", "DISCORD_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN",
                     "SAKAIBOT_CONFIG", "SAKAIBOT_ENV_FILE"):
        assert re.search(rf"^# ?{variable}=", example, re.MULTILINE), f"{variable} missing from .env.example"
        assert f"`{variable}`" in migrating or variable.startswith(("DISCORD", "CLOUDFLARE", "SAKAIBOT")), variable


def test_every_hook_is_documented_for_plugin_authors():
    from core import hookspecs

    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    marker = f"{hookspecs.PROJECT}_spec"
    hooks = [name for name, value in vars(hookspecs).items() if hasattr(value, marker)]
    assert len(hooks) >= 10
    for name in hooks:
        assert f"`{name}" in guide, f"docs/plugins.md does not describe the hook {name}"


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote {REFERENCE.relative_to(ROOT)}\n")
