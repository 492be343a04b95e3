"""Buttons: a paginator for long lists and a yes/no confirmation for destructive commands. Only the person
who ran the command can press them."""

from __future__ import annotations

import discord

NOT_YOURS = "Only the person who ran the command can use these buttons."


class _OwnedView(discord.ui.View):
    def __init__(self, author_id: int, timeout: float):
        super().__init__(timeout=timeout)
        self.author_id = author_id
        self.message: discord.Message | None = None

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.author_id:
            return True
        await interaction.response.send_message(NOT_YOURS, ephemeral=True)
        return False

    async def on_timeout(self) -> None:
        if self.message is not None:
            try:
                await self.message.edit(view=None)
            except discord.HTTPException:
                pass


class Pages(_OwnedView):
    """Embeds shown one at a time with ◀ ▶ buttons."""

    def __init__(self, pages: list[discord.Embed], author_id: int, timeout: float = 180):
        super().__init__(author_id, timeout)
        self.pages = pages
        self.index = 0
        self._sync()

    def _sync(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.index >= len(self.pages) - 1

    async def start(self, ctx, page: int = 1) -> None:
        self.index = min(max(page, 1), len(self.pages)) - 1
        self._sync()
        if len(self.pages) == 1:
            await ctx.send(embed=self.pages[0])
            self.stop()
            return
        self.message = await ctx.send(embed=self.pages[self.index], view=self)

    async def _show(self, interaction: discord.Interaction) -> None:
        self._sync()
        await interaction.response.edit_message(embed=self.pages[self.index], view=self)

    @discord.ui.button(label="◀", style=discord.ButtonStyle.secondary, custom_id="pages:previous")
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.index = max(0, self.index - 1)
        await self._show(interaction)

    @discord.ui.button(label="▶", style=discord.ButtonStyle.secondary, custom_id="pages:next")
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.index = min(len(self.pages) - 1, self.index + 1)
        await self._show(interaction)


class Confirm(_OwnedView):
    """Yes / No. `value` is True, False, or None when nobody answered in time."""

    def __init__(self, author_id: int, timeout: float = 60, yes: str | None = None, no: str | None = None):
        super().__init__(author_id, timeout)
        self.value: bool | None = None
        if yes:
            self.yes.label = yes
        if no:
            self.no.label = no

    async def _answer(self, interaction: discord.Interaction, value: bool) -> None:
        self.value = value
        await interaction.response.edit_message(view=None)
        self.stop()

    @discord.ui.button(label="Yes, delete", style=discord.ButtonStyle.danger, custom_id="confirm:yes")
    async def yes(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._answer(interaction, True)

    @discord.ui.button(label="No", style=discord.ButtonStyle.secondary, custom_id="confirm:no")
    async def no(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._answer(interaction, False)
