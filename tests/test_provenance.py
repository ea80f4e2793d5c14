"""Provenance written into PNGs: the options field matches pydantic's own encoding."""

from __future__ import annotations

import pytest

from core.engine.provenance import _options_json
from core.types import GenerationRequest, Job, Size
from tests.utils import request


@pytest.mark.parametrize("options", [
    {}, {"seed": 7}, {"seed": 0, "count": 1}, {"count": 3, "as_file": True, "enhance": False},
    {"aspect_ratio": "16:9", "steps": 20, "width": 512, "height": 768}, {"enhance": True, "upscale": 2},
    {"negative_prompt": 'blur, "noise" \\ \u00e9\u6f22 \n\t\x01'}, {"strength": 0.35, "seed": 1}, {"strength": 1e-05},
    {"as_file": False, "count": 1, "enhance": None}, {"seed": 4294967295, "negative_prompt": "x"},
])
def test_options_match_pydantic(options: dict[str, object]) -> None:
    """The options recorded in a PNG are exactly pydantic's JSON of the options that differ from their defaults."""
    job = Job(id="j", request=request(**options), model="a",
              generation=GenerationRequest("p", Size(8, 8), 1, None, None, "p"))
    assert _options_json(job) == job.request.options.model_dump_json(exclude_defaults=True)
