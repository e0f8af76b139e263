"""The enrolled-access header (``docs/enrolled-access.md``): proof that a datagram's sender holds a known key.

In a gateway's enrolled mode, a datagram that would create a temporary state (draft 2.4) carries this header
in front of its IPv6 packet; the gateway creates nothing for a datagram that does not prove its key.  Open
mode knows nothing of it: there the header's first byte (never IPv6's version nibble 6) makes the datagram
one that is not IPv6 and it is dropped as such, exactly as before enrolment existed.

Layout (40 octets, network byte order)::

    0      1      2      3      4 ... 7     8 ... 15   16 ... 23   24 ... 39
    Type   Reserved (0, 0, 0)   Timestamp   Key ID     Nonce       MAC

MAC = HMAC-SHA256(key, octets 0..23 || inner IPv6 source || inner IPv6 destination), first 16 octets.
Key ID = HMAC-SHA256(key, "m6t key id v1"), first 8 octets: it names the key without revealing it, and is
the fingerprint operators compare.  Timestamps are Unix seconds modulo 2^32, compared in serial-number
arithmetic so that the wrap in 2106 is nothing special.

Sans I/O: the clock (wall time, in seconds) and the nonces are the caller's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from m6t.protocol.constants import IPV6_HEADER_LEN
from m6t.protocol.errors import PacketError, Reason

ACCESS_TYPE: Final = 0x01
"""The first octet: its high nibble (0) is never an IPv6 packet's version (6)."""
ACCESS_HEADER_LEN: Final = 40
KEY_LEN: Final = 32
KEY_ID_LEN: Final = 8
NONCE_LEN: Final = 8
MAC_LEN: Final = 16
DEFAULT_WINDOW_S: Final = 60
"""How far a header's timestamp may lie from the gateway's clock, either way."""
DEFAULT_REPLAY_CAPACITY: Final = 100_000
"""Nonces remembered at most; only holders of a key can fill the cache (it remembers verified headers only)."""

KEY_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""The names keys go by (the gateway's key file, the client's ``access.key_id``)."""

_KEY_ID_LABEL: Final = b"m6t key id v1"
_SIGNED: Final = 24
"""Octets of the header the MAC covers (all but the MAC)."""
_SERIAL: Final = 1 << 32
_HALF: Final = 1 << 31


class Refusal(IntEnum):
    """Why a header was refused; the gateway counts each (``m6t_gateway_drops_total{reason="auth_..."}``)."""

    MALFORMED = 0
    """Shorter than the header plus an IPv6 header, another type, or reserved octets not zero."""
    UNKNOWN_KEY = 1
    STALE = 2
    """Timestamp outside the window."""
    BAD_MAC = 3
    REPLAYED = 4
    """A nonce already seen with this key inside the window."""
    REPLAY_CACHE_FULL = 5
    """A valid header that could not be remembered: refused rather than left open to replay."""


@dataclass(frozen=True, slots=True)
class AccessHeader:
    timestamp: int
    key_id: bytes
    nonce: bytes
    mac: bytes


def key_id(key: bytes) -> bytes:
    """The 8-octet identifier of a key, carried in the header and shown as its fingerprint."""
    _check_key(key)
    return hmac.digest(key, _KEY_ID_LABEL, "sha256")[:KEY_ID_LEN]


def fingerprint(key: bytes) -> str:
    """The key id as operators see it: 16 hex digits in groups of four."""
    text = key_id(key).hex()
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def _check_key(key: bytes) -> None:
    if len(key) != KEY_LEN:
        raise ValueError(f"an access key is {KEY_LEN} bytes, not {len(key)}")


def encode_key(key: bytes) -> str:
    """A key's exchange form: standard base64 with padding, 44 characters."""
    _check_key(key)
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str | bytes) -> bytes:
    """A key from its exchange form, or ValueError saying what is wrong (never echoing the text)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a key in base64 (the 44-character form m6t-gateway keys add prints)") from None
    if len(key) != KEY_LEN:
        raise ValueError(f"decodes to {len(key)} bytes; an access key is {KEY_LEN}")
    return key


def parse_access_header(buf: bytes) -> AccessHeader:
    """The header at the start of ``buf`` (which must also hold the inner IPv6 header), or :class:`PacketError`."""
    if len(buf) < ACCESS_HEADER_LEN + IPV6_HEADER_LEN:
        raise PacketError(Reason.TOO_SHORT, f"{len(buf)} bytes, a sealed datagram needs at least 80")
    if buf[0] != ACCESS_TYPE or buf[1] or buf[2] or buf[3]:
        raise PacketError(Reason.NOT_ACCESS_HEADER, f"starts {bytes(buf[:4]).hex()}")
    return AccessHeader(int.from_bytes(buf[4:8]), bytes(buf[8:16]), bytes(buf[16:24]), bytes(buf[24:40]))


class Sealer:
    """Puts the header in front of a mobile node's packets with its one key."""

    __slots__ = ("_base", "key_id")

    def __init__(self, key: bytes) -> None:
        self.key_id = key_id(key)
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def seal(self, packet: bytes, wall_now: float, nonce: bytes) -> bytes:
        """``packet`` (one IPv6 packet, at least its 40-octet header) behind a header stamped ``wall_now``."""
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"a nonce is {NONCE_LEN} bytes, not {len(nonce)}")
        if len(packet) < IPV6_HEADER_LEN:
            raise ValueError("only an IPv6 packet can be sealed")
        signed = bytes((ACCESS_TYPE, 0, 0, 0)) + (int(wall_now) % _SERIAL).to_bytes(4) + self.key_id + nonce
        mac = self._base.copy()
        mac.update(signed)
        mac.update(packet[8:40])
        return signed + mac.digest()[:MAC_LEN] + packet


def seal(key: bytes, packet: bytes, timestamp: int, nonce: bytes) -> bytes:
    """One sealed datagram (the test vectors' form of :meth:`Sealer.seal`)."""
    return Sealer(key).seal(packet, timestamp, nonce)


class ReplayCache:
    """(key id, nonce) pairs seen, each forgotten once no header carrying it could pass the window again."""

    __slots__ = ("_expiry", "_seen", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the replay cache needs room for at least one nonce, not {capacity}")
        self.capacity = capacity
        self._seen: set[bytes] = set()
        self._expiry: deque[tuple[float, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, token: bytes) -> bool:
        return token in self._seen

    def add(self, token: bytes, now: float, keep_s: float) -> bool:
        """Remember ``token`` until ``now + keep_s``; False if there is no room even after forgetting."""
        self.forget(now)
        if len(self._seen) >= self.capacity:
            return False
        self._seen.add(token)
        # keep_s is the same for every entry, so expiries arrive in order and a FIFO is enough.
        self._expiry.append((now + keep_s, token))
        return True

    def forget(self, now: float) -> None:
        expiry = self._expiry
        seen = self._seen
        while expiry and expiry[0][0] <= now:
            seen.discard(expiry.popleft()[1])


class AccessVerifier:
    """The gateway's check of a sealed datagram: key, window, MAC (constant time), then the replay cache.

    ``keys`` may be replaced at any time (a reload); the replay cache is kept, so a reload opens no replay.
    ``wall_offset`` turns the caller's monotonic clock into wall time: ``now + wall_offset``.
    """

    __slots__ = ("_keys", "cache", "wall_offset", "window_s")

    def __init__(
        self,
        keys: Iterable[bytes],
        *,
        window_s: float = DEFAULT_WINDOW_S,
        replay_capacity: int = DEFAULT_REPLAY_CAPACITY,
        wall_offset: float = 0.0,
    ) -> None:
        if not 0 < window_s < _HALF:
            raise ValueError(f"the timestamp window must be positive, not {window_s}")
        self.window_s = window_s
        self.wall_offset = wall_offset
        self.cache = ReplayCache(replay_capacity)
        self._keys: dict[bytes, hmac.HMAC] = {}
        self.set_keys(keys)

    def set_keys(self, keys: Iterable[bytes]) -> None:
        self._keys = {key_id(key): hmac.new(key, digestmod=hashlib.sha256) for key in keys}

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def verify(self, datagram: bytes, now: float) -> bytes | Refusal:
        """The inner IPv6 packet of a datagram whose header proves a known key, or why not.

        Cheap refusals come first; the MAC is computed only for a known key inside the window, and a
        nonce is remembered only once the MAC matched, so forged headers cost a lookup and change nothing.
        """
        if len(datagram) < ACCESS_HEADER_LEN + IPV6_HEADER_LEN or datagram[:4] != _TYPE_AND_RESERVED:
            return Refusal.MALFORMED
        base = self._keys.get(datagram[8:16])
        if base is None:
            return Refusal.UNKNOWN_KEY
        wall = now + self.wall_offset
        skew = (int.from_bytes(datagram[4:8]) - int(wall) + _HALF) % _SERIAL - _HALF
        if not -self.window_s <= skew <= self.window_s:
            return Refusal.STALE
        token = datagram[8:24]
        if token in self.cache:
            return Refusal.REPLAYED
        mac = base.copy()
        mac.update(datagram[:_SIGNED])
        mac.update(datagram[ACCESS_HEADER_LEN + 8 : ACCESS_HEADER_LEN + 40])
        if not hmac.compare_digest(mac.digest()[:MAC_LEN], datagram[_SIGNED:ACCESS_HEADER_LEN]):
            return Refusal.BAD_MAC
        # A header stamped `window` ahead stays acceptable until 2 * window from now.
        if not self.cache.add(token, now, 2 * self.window_s + 1):
            return Refusal.REPLAY_CACHE_FULL
        return datagram[ACCESS_HEADER_LEN:]


_TYPE_AND_RESERVED: Final = bytes((ACCESS_TYPE, 0, 0, 0))
