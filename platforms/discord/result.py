"""Finished images ready to post on Discord: bytes fitted to the upload limit, embed and buttons."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from dataclasses import dataclass

import discord
from PIL import Image as PILImage

from core import Image, ImageModel, Job
from core.chat.conversation import Buttons
from core.chat.messages import elapsed, seeds
from platforms.discord.files import fit
from platforms.discord.views import buttons_view


@dataclass(frozen=True, slots=True)
class Result:
    """The images of one job, their embed and buttons; fresh ``discord.File`` objects per send.

    One image is shown inside the embed; several (``--n``) are attachments of the one message,
    which Discord shows as a gallery above the embed, named ``sakaibot-<job>-<n>`` so that each
    picture's Variation and Upscale buttons find theirs.
    """

    pictures: tuple[tuple[bytes, str], ...]  # (bytes, filename) in the order the images were made
    embed: discord.Embed
    view: discord.ui.View | None

    @classmethod
    async def of(cls, job: Job, owner_id: int, limit: int, models: Mapping[str, ImageModel] | None = None) -> Result:
        """Fit each of ``job``'s images under ``limit`` bytes (off the loop) and dress them."""
        pictures = []
        for index, image in enumerate(job.results):
            data, extension = await asyncio.to_thread(fit, image, limit)
            pictures.append((data, picture_name(job, index, extension)))
        embed = result_embed(job, pictures[0][1] if len(pictures) == 1 else None)
        return cls(tuple(pictures), embed, buttons_view(Buttons.of(job, models or {}), owner_id))

    def files(self) -> list[discord.File]:
        """Fresh files each time: a sent ``discord.File`` is spent."""
        return [discord.File(io.BytesIO(data), filename=name) for data, name in self.pictures]


def picture_name(job: Job, index: int, extension: str) -> str:
    """``sakaibot-<job>.png`` for one image, ``sakaibot-<job>-<n>.png`` (n from 1) for several."""
    suffix = f"-{index + 1}" if len(job.results) > 1 else ""
    return f"sakaibot-{job.id}{suffix}.{extension}"


def result_embed(job: Job, filename: str | None) -> discord.Embed:
    """The prompt actually used (and the original when enhanced), model, seed(s), time and job id."""
    embed = discord.Embed(description=job.generation.prompt[:4096], colour=discord.Colour.blurple())
    embed.add_field(name="Model", value=job.model)
    numbers = seeds(job)
    if job.request.options.upscale:
        embed.add_field(name="Upscaled", value=f"{job.request.options.upscale}x")
    else:
        embed.add_field(name="Seed" if len(numbers) <= 1 else "Seeds", value=", ".join(map(str, numbers)) or "-")
    embed.add_field(name="Time", value=f"{elapsed(job):.1f} s")
    if job.enhanced_prompt:
        embed.add_field(name="Your prompt", value=job.request.prompt[:1024], inline=False)
    if filename is not None:
        embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(text=f"job {job.id}")
    return embed


def preview_file(data: bytes, limit: int) -> discord.File:
    """A preview as an attachment under the upload limit (Discord refuses a bigger one with 413)."""
    with PILImage.open(io.BytesIO(data)) as picture:
        kind, size = (picture.format or "PNG").lower(), picture.size
    image = Image(data, f"image/{kind}", size[0], size[1])
    fitted, extension = fit(image, limit)
    return discord.File(io.BytesIO(fitted), filename=f"preview.{extension}")
