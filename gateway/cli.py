"""The ``certgate`` command.

Each package contributes its own command group through the ``certgate.commands`` entry-point group
(see pyproject.toml), loaded only when that command runs. So ``certgate cert verify`` never imports
the PKCS#11 stack, ``certgate pki`` never imports Flask, and the library packages stay free of each
other; the gateway owns only the root.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

ENTRY_POINT_GROUP = "certgate.commands"


class PluginGroup(click.Group):
    """A click group whose sub-commands are entry points, imported on first use."""

    def _entry_points(self) -> dict[str, object]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._entry_points()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        ep = self._entry_points().get(cmd_name)
        if ep is None:
            return None
        loaded = ep.load()  # type: ignore[attr-defined]
        assert isinstance(loaded, click.Command), f"{ep!r} is not a click command"
        return loaded


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="certgate")
def main() -> None:
    """CertGate: sign in with USB keys (PKCS#11), CA certificates and passwords."""
