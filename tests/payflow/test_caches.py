"""``payflow.platform.caches``: expiry, tag invalidation indexed by tag, and no stale value
cached after a change (found by review: a forget scanned every entry of every cache, and a
row read before a change and cached after it outlived the change)."""

from __future__ import annotations

import time

from payflow.platform import caches


def make(ttl=60.0):
    return caches.ProcessCache("test", ttl=lambda: ttl)


def test_an_entry_expires_and_a_zero_bound_turns_the_cache_off():
    cache = make(ttl=0.05)
    cache.put("k", 1)
    assert cache.get("k") == 1
    time.sleep(0.06)
    assert cache.get("k") is None
    off = make(ttl=0)
    off.put("k", 1)
    assert off.get("k") is None


def test_forget_drops_exactly_the_entries_read_from_that_row():
    cache = make()
    cache.put("key-1", "a", tags=[caches.tag("ledger.apikey", 1), caches.tag("ledger.merchant", 9)])
    cache.put("key-2", "b", tags=[caches.tag("ledger.apikey", 2), caches.tag("ledger.merchant", 9)])
    cache.put("key-3", "c", tags=[caches.tag("ledger.apikey", 3), caches.tag("ledger.merchant", 8)])
    caches.forget("ledger.merchant", 9)
    assert (cache.get("key-1"), cache.get("key-2"), cache.get("key-3")) == (None, None, "c")
    caches.forget("ledger.apikey", 3)
    assert cache.get("key-3") is None
    assert cache._by_tag == {}  # the index holds nothing of dropped entries


def test_a_value_read_before_its_row_changed_is_not_cached_after_the_change():
    cache = make()
    row = caches.tag("ledger.apikey", 77)
    since = caches.epoch()  # the read happens here …
    caches.forget("ledger.apikey", 77)  # … the revocation commits …
    cache.put("secret", "the key as it was", tags=[row], since=since)  # … then the put
    assert cache.get("secret") is None
    # a change of another row does not stop the put
    since = caches.epoch()
    caches.forget("ledger.apikey", 78)
    cache.put("secret", "fresh", tags=[row], since=since)
    assert cache.get("secret") == "fresh"


def test_forget_costs_the_same_with_ten_thousand_entries_cached():
    small, large = make(), caches.ProcessCache("large", ttl=lambda: 60.0, max_entries=20_000)
    for number in range(10_000):
        large.put(number, number, tags=[caches.tag("ledger.cardtoken", number)])
    small.put(0, 0, tags=[caches.tag("ledger.cardtoken", "x")])

    def per_forget(rounds=2_000):
        began = time.perf_counter()
        for number in range(rounds):
            caches.forget("ledger.transaction", number)
        return (time.perf_counter() - began) / rounds

    with_large = per_forget()
    large.clear()
    without = per_forget()
    # indexed by tag: no scan of the entries (a scan of 10,000 cost about 0.8 ms)
    assert with_large < max(5 * without, 50e-6), (with_large, without)
