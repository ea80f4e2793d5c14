"""Buttons whose custom ids carry the job and its owner, so they work after a restart.

Under several images, Variation and Upscale come once per picture: the custom id ends with the
picture's number (``sakai:up:<job>:<owner>:3``), which names the attachment ``sakaibot-<job>-3.<ext>``
of the message the button is on. The longest id is 64 characters, under Discord's 100.
"""

from __future__ import annotations

from typing import Any

import discord

from core.chat.conversation import Buttons

LABELS = {"rr": ("Reroll", "🔁", discord.ButtonStyle.primary),
          "var": ("Variation", "🎲", discord.ButtonStyle.secondary),
          "up": ("Upscale", "🔍", discord.ButtonStyle.secondary),
          "cx": ("Cancel", "✖", discord.ButtonStyle.danger)}
CODES = {"cancel": "cx", "reroll": "rr", "variation": "var", "upscale": "up"}
PER_PICTURE = ("variation", "upscale")
CUSTOM_ID_LIMIT = 100


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"sakai:(?P<action>rr|var|up|cx):(?P<job>[0-9a-f]{4,32}):(?P<owner>\d{1,20})"
                         r"(?::(?P<picture>[1-9]))?"):
    """Reroll, Variation, Upscale or Cancel for one job (and one of its pictures); dispatched by custom id."""

    def __init__(self, action: str, job_id: str, owner_id: int, picture: int | None = None, *,
                 row: int | None = None) -> None:
        label, emoji, style = LABELS[action]
        custom_id = f"sakai:{action}:{job_id}:{owner_id}" + (f":{picture}" if picture else "")
        assert len(custom_id) <= CUSTOM_ID_LIMIT
        super().__init__(discord.ui.Button(label=f"{label} {picture}" if picture else label, emoji=emoji,
                                           style=style, custom_id=custom_id), row=row)
        self.action, self.job_id, self.owner_id, self.picture = action, job_id, owner_id, picture

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: Any) -> JobButton:
        """Rebuild the button from its custom id."""
        picture = int(match["picture"]) if match["picture"] else None
        return cls(match["action"], match["job"], int(match["owner"]), picture)

    async def callback(self, interaction: discord.Interaction) -> None:
        """Hand the press to the platform that owns this client."""
        await interaction.client.platform.on_button(interaction, self)  # type: ignore[attr-defined]


def job_view(job_id: str, owner_id: int, *actions: str) -> discord.ui.View:
    """A persistent view with the given buttons."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id, owner_id))
    return view


def buttons_view(wanted: Buttons, owner_id: int) -> discord.ui.View | None:
    """The view for ``wanted``: one row for one picture; Reroll, then a row per action, for several."""
    if not wanted.actions:
        return None
    if wanted.images <= 1:
        return job_view(wanted.job_id, owner_id, *(CODES[action] for action in wanted.actions))
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("rr", wanted.job_id, owner_id, row=0))
    for row, action in enumerate((a for a in PER_PICTURE if a in wanted.actions), start=1):
        for picture in range(1, wanted.images + 1):
            view.add_item(JobButton(CODES[action], wanted.job_id, owner_id, picture, row=row))
    return view
