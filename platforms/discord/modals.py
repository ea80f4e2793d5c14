"""The "Edit with SakaiBot" dialog: what to change in a picture, asked in a modal.

A message context-menu command cannot take options, so the instruction comes from a modal with
one paragraph text input (wrapped in a ``Label``, the layout Discord now documents for modals).
Submitting it is a new interaction, which the platform defers and answers like ``/image``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from platforms.discord.platform import DiscordPlatform

TITLE = "Edit with SakaiBot"
INSTRUCTION_LIMIT = 1000


class EditModal(discord.ui.Modal, title=TITLE):
    """Asks for the instruction for one picture; on submit, the platform runs it with that picture."""

    def __init__(self, platform: DiscordPlatform, picture: discord.Attachment) -> None:
        super().__init__(timeout=600)
        self.platform, self.picture = platform, picture
        self.instruction: discord.ui.TextInput[Any] = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=INSTRUCTION_LIMIT, required=True,
            placeholder="make the sky stormy --strength 0.5")
        self.add_item(discord.ui.Label(text="What should change?", component=self.instruction,
                                       description="Options like --model, --n 2 or --strength 0.6 work too"))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Run the instruction on the picture, as ``/image`` with an attachment would."""
        await self.platform.run_image(interaction, self.instruction.value, None, {}, False, self.picture)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        """Answer whatever failed, as the command tree's handler does (``Modal.on_error``'s own signature)."""
        await self.platform.answer_failure(interaction, error)
