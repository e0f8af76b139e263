"""The control API's policy: the superuser and holders of the operator group change things, the desktop's
authority (polkit) decides for the others where it runs, and everyone reads."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from m6t.client.api.authorization import INTERACTIVE_TIMEOUT_S, QUICK_TIMEOUT_S, Authorizer, is_operator
from m6t.client.api.schema import ErrorCode, ErrorInfo, Method
from m6t.platform.base import (
    AuthorityAnswer,
    AuthorityUnavailable,
    AuthorityVerdict,
    DesktopAuthority,
    PeerIdentity,
    PlatformError,
)


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


class FakeAuthority(DesktopAuthority):
    """Answers every question the same way and remembers them."""

    name = "polkit"

    def __init__(self, answer: AuthorityVerdict | BaseException) -> None:
        self.answer = answer
        self.asked: list[tuple[str, bool, float]] = []

    async def check(self, peer: PeerIdentity, action: str, *, interactive: bool, timeout: float) -> AuthorityVerdict:
        self.asked.append((action, interactive, timeout))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    async def close(self) -> None:
        pass


def _authorize(
    authority: DesktopAuthority | None, method: Method, peer: PeerIdentity | None = None
) -> ErrorInfo | None:
    return asyncio.run(Authorizer(authority, lambda: "m6t").authorize(FakePeer() if peer is None else peer, method))


def test_the_superuser_and_the_group_never_wait_for_the_desktop() -> None:
    authority = FakeAuthority(AuthorityVerdict(AuthorityAnswer.NO))
    assert _authorize(authority, Method.UP, FakePeer(superuser=True)) is None
    assert _authorize(authority, Method.CONFIG_SET, FakePeer(groups=frozenset({"m6t"}))) is None
    assert authority.asked == []


def test_connecting_asks_quietly_configuring_lets_the_agent_ask() -> None:
    authority = FakeAuthority(AuthorityVerdict(AuthorityAnswer.YES))
    for method in (Method.UP, Method.DOWN, Method.MTU_PROBE, Method.CONFIG_SET):
        assert _authorize(authority, method) is None
    assert authority.asked == [
        ("org.m6t.connect", False, QUICK_TIMEOUT_S),
        ("org.m6t.connect", False, QUICK_TIMEOUT_S),
        ("org.m6t.connect", False, QUICK_TIMEOUT_S),
        ("org.m6t.configure", True, INTERACTIVE_TIMEOUT_S),
    ]


def test_without_a_desktop_authority_the_group_hint_as_before() -> None:
    for authority in (None, FakeAuthority(AuthorityUnavailable("no system bus"))):
        refusal = _authorize(authority, Method.UP)
        assert refusal is not None
        assert refusal["message"] == (
            "Only root and members of the group 'm6t' may bring the tunnel up; you can still read the status."
        )
        assert refusal.get("hint") == "ask an administrator to run: usermod -aG m6t $USER, then log in again"
    assert _authorize(None, Method.UP, FakePeer(superuser=True)) is None


@pytest.mark.parametrize(
    ("answer", "method", "says", "hints"),
    [
        (
            AuthorityVerdict(AuthorityAnswer.NO),
            Method.UP,
            "polkit refused to let you bring the tunnel up",
            "allow org.m6t.connect",
        ),
        (
            AuthorityVerdict(AuthorityAnswer.CHALLENGE),
            Method.DOWN,
            "wants an administrator's password",
            "allow org.m6t.connect",
        ),
        (
            AuthorityVerdict(AuthorityAnswer.CHALLENGE),
            Method.CONFIG_SET,
            "no polkit authentication agent",
            "allow org.m6t.configure",
        ),
        (
            AuthorityVerdict(AuthorityAnswer.CHALLENGE, dismissed=True),
            Method.CONFIG_SET,
            "dismissed",
            "password when asked",
        ),
        (TimeoutError(), Method.CONFIG_SET, "No answer from polkit within 60 s", "authentication agent"),
        (PlatformError("process with PID 9 has been replaced"), Method.UP, "could not authorize you", "try again"),
    ],
)
def test_each_refusal_says_what_the_user_can_do(
    answer: AuthorityVerdict | BaseException, method: Method, says: str, hints: str
) -> None:
    refusal = _authorize(FakeAuthority(answer), method)
    assert refusal is not None and refusal["code"] == ErrorCode.FORBIDDEN
    assert says in refusal["message"]
    assert hints in str(refusal.get("hint"))


def test_permissions_are_asked_without_prompting() -> None:
    authority = FakeAuthority(AuthorityVerdict(AuthorityAnswer.CHALLENGE))
    authorizer = Authorizer(authority, lambda: "m6t")
    assert asyncio.run(authorizer.permissions(FakePeer())) == {"connect": "auth", "configure": "auth"}
    assert {interactive for _, interactive, _ in authority.asked} == {False}
    assert asyncio.run(authorizer.permissions(None)) == {"connect": "no", "configure": "no"}
    assert asyncio.run(authorizer.permissions(FakePeer(superuser=True))) == {"connect": "yes", "configure": "yes"}
    failing = Authorizer(FakeAuthority(TimeoutError()), lambda: "m6t")
    assert asyncio.run(failing.permissions(FakePeer())) == {"connect": "no", "configure": "no"}
