"""Per-IPv4 rate limiting of new states (draft 6.1.3)."""

from __future__ import annotations

import pytest

from m6t.gateway.ratelimit import NewStateLimiter

A = 0xC6336407
B = 0xC6336408


def test_burst_then_rate() -> None:
    limiter = NewStateLimiter(2.0, 3, now=0.0)
    assert [limiter.allow(A, 0.0) for _ in range(4)] == [True, True, True, False]
    assert not limiter.allow(A, 0.4)
    assert limiter.allow(A, 0.51)
    assert not limiter.allow(A, 0.52)


def test_addresses_have_separate_buckets() -> None:
    limiter = NewStateLimiter(1.0, 1, now=0.0)
    assert limiter.allow(A, 0.0)
    assert not limiter.allow(A, 0.0)
    assert limiter.allow(B, 0.0)


def test_an_idle_address_gets_its_full_burst_back() -> None:
    limiter = NewStateLimiter(1.0, 5, now=0.0)
    assert sum(limiter.allow(A, 0.0) for _ in range(10)) == 5
    assert sum(limiter.allow(A, 100.0) for _ in range(10)) == 5


def test_refusals_do_not_push_the_next_allowance_further() -> None:
    limiter = NewStateLimiter(1.0, 1, now=0.0)
    assert limiter.allow(A, 0.0)
    for i in range(100):
        assert not limiter.allow(A, i / 200)
    assert limiter.allow(A, 1.0)


def test_forgotten_addresses_are_released_in_bounded_steps() -> None:
    limiter = NewStateLimiter(10.0, 10, now=0.0)
    for address in range(1000):
        limiter.allow(address, 0.0)
    assert len(limiter) == 1000
    limiter.release(1.5, 100)
    limiter.release(3.0, 100)
    freed = 0
    for _ in range(20):
        freed += limiter.release(3.0, 100)
    assert len(limiter) == 0
    assert freed >= 800
    # Forgetting changed nothing an address could notice: a full bucket again.
    assert sum(limiter.allow(7, 3.0) for _ in range(20)) == 10


def test_an_address_in_the_older_generation_keeps_its_debt() -> None:
    limiter = NewStateLimiter(1.0, 2, now=0.0)
    assert limiter.allow(A, 1.9) and limiter.allow(A, 1.9)
    # Generations rotate every refill time of the burst (2 s): at 2.1 s A sits in the older one.
    limiter.release(2.1, 100)
    assert not limiter.allow(A, 2.1)
    assert limiter.allow(A, 2.95)
    assert not limiter.allow(A, 2.95)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_nonsense_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        NewStateLimiter(rate, burst, now=0.0)
