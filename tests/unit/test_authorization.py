"""The control API's policy: the superuser and holders of the operator group change things, the rest read."""

from __future__ import annotations

from dataclasses import dataclass, field

from m6t.client.api.authorization import is_operator
from m6t.platform.base import PeerIdentity


@dataclass(frozen=True)
class FakePeer(PeerIdentity):
    """An identity as any OS could answer it (no uid, as on Windows)."""

    superuser: bool = False
    groups: frozenset[str] = frozenset()
    asked: list[str] = field(default_factory=list)
    pid: int | None = 4242
    uid: int | None = None

    @property
    def is_superuser(self) -> bool:
        return self.superuser

    def in_group(self, name: str) -> bool:
        self.asked.append(name)
        return name in self.groups


def test_an_unknown_peer_only_reads() -> None:
    assert not is_operator(None, "m6t")


def test_the_superuser_may_change_things() -> None:
    assert is_operator(FakePeer(superuser=True), "m6t")


def test_the_configured_group_decides_for_everyone_else() -> None:
    member = FakePeer(groups=frozenset({"netops"}))
    assert is_operator(member, "netops")
    assert member.asked == ["netops"]
    assert not is_operator(member, "m6t")
    assert not is_operator(FakePeer(), "m6t")
