"""A finished image ready to post on Discord: bytes fitted to the upload limit, embed and buttons."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

import discord
from PIL import Image as PILImage

from core import Image, Job
from core.chat.messages import elapsed
from platforms.discord.files import fit
from platforms.discord.views import job_view


@dataclass(frozen=True, slots=True)
class Result:
    """One image, its embed and its Reroll/Variation buttons; a fresh ``discord.File`` per send."""

    data: bytes
    filename: str
    embed: discord.Embed
    view: discord.ui.View

    @classmethod
    async def of(cls, job: Job, owner_id: int, limit: int) -> Result:
        """Fit ``job``'s image under ``limit`` bytes (off the loop) and dress it."""
        assert job.result is not None
        data, extension = await asyncio.to_thread(fit, job.result, limit)
        filename = f"sakaibot-{job.id}.{extension}"
        return cls(data, filename, result_embed(job, filename), job_view(job.id, owner_id, "rr", "var"))

    def file(self) -> discord.File:
        """A fresh file each time: a sent ``discord.File`` is spent."""
        return discord.File(io.BytesIO(self.data), filename=self.filename)


def result_embed(job: Job, filename: str) -> discord.Embed:
    """The prompt actually used (and the original when enhanced), model, seed, time and job id."""
    embed = discord.Embed(description=job.generation.prompt[:4096], colour=discord.Colour.blurple())
    embed.add_field(name="Model", value=job.model)
    seed = job.result.seed if job.result and job.result.seed is not None else job.generation.seed
    embed.add_field(name="Seed", value=str(seed) if seed is not None else "-")
    embed.add_field(name="Time", value=f"{elapsed(job):.1f} s")
    if job.enhanced_prompt:
        embed.add_field(name="Your prompt", value=job.request.prompt[:1024], inline=False)
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
