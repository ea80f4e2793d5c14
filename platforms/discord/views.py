"""Buttons whose custom ids carry the job and its owner, so they work after a restart."""

from __future__ import annotations

from typing import Any

import discord

LABELS = {"rr": ("Reroll", "🔁", discord.ButtonStyle.primary),
          "var": ("Variation", "🎲", discord.ButtonStyle.secondary),
          "cx": ("Cancel", "✖", discord.ButtonStyle.danger)}


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"sakai:(?P<action>rr|var|cx):(?P<job>[0-9a-f]{4,32}):(?P<owner>\d{1,20})"):
    """Reroll, Variation or Cancel for one job; dispatched by custom id, even for old messages."""

    def __init__(self, action: str, job_id: str, owner_id: int) -> None:
        label, emoji, style = LABELS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=f"sakai:{action}:{job_id}:{owner_id}"))
        self.action, self.job_id, self.owner_id = action, job_id, owner_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: Any) -> JobButton:
        """Rebuild the button from its custom id."""
        return cls(match["action"], match["job"], int(match["owner"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        """Hand the press to the platform that owns this client."""
        await interaction.client.platform.on_button(interaction, self)  # type: ignore[attr-defined]


def job_view(job_id: str, owner_id: int, *actions: str) -> discord.ui.View:
    """A persistent view with the given buttons."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id, owner_id))
    return view
