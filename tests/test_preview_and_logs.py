"""The offline preview model, and secrets kept out of logs."""

from __future__ import annotations

import io
import logging

from PIL import Image as PILImage
from pydantic import BaseModel, SecretStr

from core import GenerationRequest, Size
from core.logs import RedactSecrets, secrets_in
from plugins.preview.model import PreviewModel, PreviewSettings
from plugins.preview.render import render_png


def _request(seed: int = 1) -> GenerationRequest:
    return GenerationRequest(prompt="a lighthouse at dusk", size=Size(320, 192), seed=seed, negative_prompt=None,
                             steps=4, original_prompt="a lighthouse at dusk")


def test_preview_is_deterministic_and_a_real_png():
    first, again, other = render_png(_request(1), "preview"), render_png(_request(1), "preview"), \
        render_png(_request(2), "preview")
    assert first == again and first != other
    with PILImage.open(io.BytesIO(first)) as picture:
        assert picture.size == (320, 192) and picture.text["prompt"] == "a lighthouse at dusk"


async def test_preview_reports_progress_while_it_pretends_to_work():
    model = PreviewModel("preview", PreviewSettings(backend="preview", latency=0.02))
    seen: list[float] = []

    async def progress(fraction: float, preview: bytes | None = None) -> None:
        seen.append(fraction)

    image = await model.generate(_request(), progress)
    assert seen == [0.25, 0.5, 0.75, 1.0] and image.mime_type == "image/png" and image.seed == 1
    assert "not an AI model" in model.description


def test_secrets_are_masked_in_messages_args_and_tracebacks(caplog):
    class Backend(BaseModel):
        token: SecretStr
        url: str = "http://x"

    secrets = secrets_in({"m": Backend(token=SecretStr("sk-verysecret"))})
    assert secrets == ["sk-verysecret"]
    redactor = RedactSecrets(secrets)
    logger = logging.getLogger("test.secrets")
    logger.addFilter(redactor)
    try:
        logger.warning("calling with %s", "Bearer sk-verysecret")
        try:
            raise ValueError("bad token sk-verysecret")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeFilter(redactor)
    assert "sk-verysecret" not in caplog.text
    assert "Bearer ***" in caplog.text
