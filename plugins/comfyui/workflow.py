"""Workflows in ComfyUI's API format with ``{{placeholders}}`` SakaiBot fills in per request.

A string input that is exactly ``"{{seed}}"`` becomes the number itself (ComfyUI refuses a
string where it wants an INT); text placeholders may also sit inside a longer string, e.g.
``"best quality, {{prompt}}"``. Unknown names are refused when the config is loaded.

Input pictures: ``{{image}}`` as the ``image`` input of a ``LoadImage`` node becomes the name
ComfyUI gave the uploaded picture; ``{{mask}}`` as the ``image`` input of a ``LoadImageMask``
node (channel ``red``: white repaints) the uploaded mask; ``{{denoise}}`` (a number) the
request's strength. A workflow with ``{{image}}`` works from a picture only.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugins.comfyui.default_workflow import BUILTIN_WORKFLOWS, DEFAULT_WORKFLOW

PLACEHOLDER_RE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
TEXT = frozenset({"prompt", "negative_prompt", "checkpoint", "sampler", "scheduler", "image", "mask"})
INTEGER = frozenset({"seed", "width", "height", "steps"})
NUMBER = frozenset({"cfg", "denoise"})
BUILTIN = "builtin:"
KNOWN = TEXT | INTEGER | NUMBER


@dataclass(frozen=True, slots=True)
class Workflow:
    """A validated API-format graph and the placeholders it uses."""

    graph: dict[str, Any]
    placeholders: frozenset[str]
    source: str

    @classmethod
    def load(cls, path: str | None) -> Workflow:
        """The file at ``path``, or the shipped text-to-image workflow; raise ``ValueError`` if unusable."""
        if path is None:
            return cls.parse(DEFAULT_WORKFLOW, "the default workflow")
        if path.startswith(BUILTIN):
            name = path.removeprefix(BUILTIN)
            if name not in BUILTIN_WORKFLOWS:
                raise ValueError(f"no built-in workflow {name!r}; built in: {', '.join(sorted(BUILTIN_WORKFLOWS))}")
            return cls.parse(BUILTIN_WORKFLOWS[name], path)
        try:
            text = Path(path).expanduser().read_text("utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read workflow {path}: {exc.strerror or exc}") from exc
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, source: str) -> Workflow:
        """Check the shape (``{id: {class_type, inputs}}``) and the placeholders."""
        try:
            graph = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{source} is not JSON: {exc}") from exc
        _check_api_format(graph, source)
        names = frozenset(_placeholders(graph, source))
        if "prompt" not in names:
            raise ValueError(f"{source} has no {{{{prompt}}}} placeholder: nothing would carry the user's prompt")
        if "mask" in names and "image" not in names:
            raise ValueError(f"{source} has {{{{mask}}}} but no {{{{image}}}}: a mask needs the picture it covers")
        return cls(graph, names, source)

    def fill(self, values: dict[str, Any]) -> dict[str, Any]:
        """A copy of the graph with every placeholder replaced by its typed value."""
        graph = copy.deepcopy(self.graph)
        for node in graph.values():
            inputs = node["inputs"]
            for key, value in inputs.items():
                if isinstance(value, str) and "{{" in value:
                    inputs[key] = _substitute(value, values)
        return graph

    def nodes(self, class_type: str) -> list[dict[str, Any]]:
        """The nodes of one class, e.g. every ``CheckpointLoaderSimple``."""
        return [node for node in self.graph.values() if node.get("class_type") == class_type]


def _check_api_format(graph: Any, source: str) -> None:
    if not isinstance(graph, dict) or not graph:
        raise ValueError(f"{source} is not an API-format workflow (use ComfyUI's 'Export (API)')")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs"), dict):
            raise ValueError(f"{source}: node {node_id} has no class_type/inputs; export the workflow in API format")


def _placeholders(graph: dict[str, Any], source: str) -> set[str]:
    found: set[str] = set()
    for node_id, node in graph.items():
        for key, value in node["inputs"].items():
            if not isinstance(value, str):
                continue
            for name in PLACEHOLDER_RE.findall(value):
                _check_placement(name, value, f"{source}: node {node_id} input {key}")
                found.add(name)
    return found


def _check_placement(name: str, value: str, where: str) -> None:
    if name not in KNOWN:
        raise ValueError(f"{where}: unknown placeholder {{{{{name}}}}}; known: {', '.join(sorted(KNOWN))}")
    if name not in TEXT and PLACEHOLDER_RE.fullmatch(value.strip()) is None:
        raise ValueError(f"{where}: {{{{{name}}}}} is a number and must be the whole value")


def _substitute(value: str, values: dict[str, Any]) -> Any:
    whole = PLACEHOLDER_RE.fullmatch(value.strip())
    if whole is not None:
        return values[whole.group(1)]
    return PLACEHOLDER_RE.sub(lambda match: str(values[match.group(1)]), value)
