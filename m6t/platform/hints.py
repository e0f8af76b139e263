"""What m6t tells a user to type, per family of OS: who the superuser is, how the helper's service is started,
how someone joins the operator group.

The helper's refusals, the clients' "cannot reach the helper" and the tray's hint all take their words from
here, so that a Windows user is never told to run ``systemctl`` or ``usermod``.  Keyed by
:class:`~m6t.platform.family.OsFamily` (not by the running OS), so each family's sentences can be shown and
tested anywhere; :func:`conventions` answers for the running OS.  The service names are the installers':
installers/linux/m6t-helper.service, installers/macos/org.m6t.helper.plist, installers/windows/m6t.nsi.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from m6t.platform.family import OsFamily, os_family


@dataclass(frozen=True, slots=True)
class Conventions:
    superuser: str
    """Who may always change things: ``root``, or ``Administrators``."""
    start_helper: str
    """The command that starts the installed helper."""
    start_helper_sentence: str
    """The tray's line for a helper out of reach (it ends with the command after "run:" or "with:")."""
    join_group_template: str
    """How an administrator lets a user in; ``{group}`` stands for the operator group."""

    def join_group(self, group: str) -> str:
        return self.join_group_template.format(group=group)


_LINUX: Final = Conventions(
    superuser="root",
    start_helper="systemctl start m6t-helper",
    start_helper_sentence="Start it with: sudo systemctl start m6t-helper",
    join_group_template="ask an administrator to run: usermod -aG {group} $USER, then log in again",
)
_MACOS: Final = Conventions(
    superuser="root",
    start_helper="sudo launchctl kickstart system/org.m6t.helper",
    start_helper_sentence="Start it with: sudo launchctl kickstart system/org.m6t.helper",
    join_group_template=(
        "ask an administrator to run: sudo dseditgroup -o edit -a $USER -t user {group}, then log in again"
    ),
)
_WINDOWS: Final = Conventions(
    superuser="Administrators",
    start_helper="sc start m6t-helper",
    start_helper_sentence="Start the \u201cm6t helper\u201d service (services.msc), or run: sc start m6t-helper",
    join_group_template=(
        "ask an administrator to run: net localgroup {group} %USERNAME% /add (after net localgroup {group} /add "
        "if the group does not exist yet), then sign out and in again"
    ),
)
_ANY: Final = Conventions(
    superuser="root",
    start_helper="m6t-helper (as root)",
    start_helper_sentence="Start it as root with: m6t-helper",
    join_group_template="ask an administrator to add you to the group '{group}', then log in again",
)
_BY_FAMILY: Final[dict[OsFamily, Conventions]] = {
    OsFamily.LINUX: _LINUX,
    OsFamily.MACOS: _MACOS,
    OsFamily.WINDOWS: _WINDOWS,
}


def conventions_of(family: OsFamily | None) -> Conventions:
    """The family's conventions; generic ones for a family whose service the installers do not set up."""
    return _BY_FAMILY.get(family, _ANY) if family is not None else _ANY


def conventions() -> Conventions:
    """The running OS's conventions."""
    return conventions_of(os_family())
