"""macOS peer credentials: the xucred layout parsed from a fake of the kernel's getsockopt answers."""

from __future__ import annotations

import struct

from m6t.platform import peercred


class FakeDarwinSocket:
    """Answers getsockopt(SOL_LOCAL, LOCAL_PEERCRED / LOCAL_PEERPID) the way macOS's kernel lays the bytes out."""

    def __init__(self, uid: int, groups: list[int], pid: int) -> None:
        self.xucred = struct.pack("=IIh2x", 0, uid, len(groups)) + struct.pack(f"={len(groups)}I", *groups)
        self.xucred += bytes(4 * (16 - len(groups)))
        self.pid = pid

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        assert level == 0
        if option == 0x001:
            return self.xucred
        if option == 0x002:
            return struct.pack("=i", self.pid)
        raise OSError(22, "Invalid argument")


def test_darwin_xucred_is_parsed() -> None:
    fake = FakeDarwinSocket(uid=501, groups=[20, 12, 61, 80], pid=4242)
    creds = peercred._darwin(fake)  # type: ignore[arg-type]
    assert creds == peercred.UnixPeer(pid=4242, uid=501, gid=20, groups=frozenset({20, 12, 61, 80}))


def test_darwin_short_answer_is_no_answer() -> None:
    class Short(FakeDarwinSocket):
        def getsockopt(self, level: int, option: int, size: int) -> bytes:
            return b"\x00" * 6

    assert peercred._darwin(Short(0, [], 1)) is None  # type: ignore[arg-type]
