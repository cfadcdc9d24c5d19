"""The compiled memo (`native.Memo`) remembers and forgets exactly what the readable
`reference.ReferenceMemo` does, in the same order, and stays within its bytes whatever arrives:
a key is stored on its second offer, a flood of one-off keys pushes out nothing, and a flood of
keys each offered twice only the oldest entries."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.native import (
    MEMO_BODY,
    MEMO_BYTES_PER_SIGHTING,
    MEMO_ENTRY_OVERHEAD,
    MEMO_HEADER,
    MEMO_TEXT_KEY,
    Memo,
    extension,
)
from failsmall.engine.signatures.reference import ReferenceMemo, text_hash

keys = st.one_of(
    st.text(max_size=6),
    st.text(st.sampled_from("a\xff\u0100\uffff\U00010000"), max_size=6),
    st.integers(-3, 3),
    st.tuples(st.text(max_size=3), st.text(max_size=3)),
)
kinds = st.integers(min_value=-3, max_value=5)
hits = st.frozensets(st.sampled_from(["941100", "942100", "930120"]))
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            keys,
            kinds,
            hits,
            st.integers(0, 9),
            st.integers(0, 99),
            st.integers(0, 300),
        ),
        st.tuples(st.just("discard"), keys, kinds),
        st.tuples(st.just("max_bytes"), st.integers(0, 2000)),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(st.characters(max_codepoint=0xFF), max_size=70),
        st.text(st.characters(min_codepoint=0x100, max_codepoint=0xFFFF), max_size=40),
        st.text(st.sampled_from("a\xff\u0100\ud800\udfff\U00010000"), max_size=40),
    )
)
def test_the_memo_hashes_a_str_as_the_reference_does(text: str) -> None:
    """Every width of str, lone surrogates, and every size across the 16-byte blocks and the
    64-byte lanes."""
    assert extension.text_hash(text) == text_hash(text) >= 0


def test_the_memo_hash_is_keyed_and_tells_close_texts_apart() -> None:
    """A key drawn at load, not zero; texts one character apart, and a text and its own
    prefix, hash apart (a collision among these would point at a broken fold)."""
    assert all(MEMO_TEXT_KEY) and text_hash("") == 0
    texts = [f"user{i}@example.com" for i in range(5000)] + ["x" * n for n in range(1, 200)]
    assert len({extension.text_hash(t) for t in texts}) == len(texts)
    with pytest.raises(TypeError, match="text_hash"):
        extension.text_hash(b"bytes")  # type: ignore[arg-type]


def test_each_process_draws_its_own_key() -> None:
    """The key comes from the system's random source, not from PYTHONHASHSEED or the build: an
    attacker who learns where one node's keys fall (of a memo, a body's merge, an object's
    keys) learns nothing of another process's."""
    script = "from failsmall.engine.native import MEMO_TEXT_KEY, extension as x; "
    script += "print(MEMO_TEXT_KEY, x.text_hash('user1@example.com'))"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    drawn = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
        ).stdout
        for _ in range(3)
    }
    assert len(drawn) == 3


@settings(max_examples=300, deadline=None)
@given(max_bytes=st.integers(0, 2000), ops=operations, probes=st.lists(st.tuples(keys, kinds)))
def test_the_memo_holds_what_the_reference_holds_after_any_operations(
    max_bytes: int, ops: list[tuple[Any, ...]], probes: list[tuple[object, int]]
) -> None:
    memo, reference = Memo(max_bytes), ReferenceMemo(max_bytes)
    for op in ops:
        match op:
            case ("put", key, kind, found, values, chars, size):
                held = reference.get(key, kind) is not None
                stored = memo.put(key, kind, found, values, chars, size)
                assert stored == reference.put(key, kind, found, values, chars, size)
                # stored now: held after, and not before
                assert stored == (not held and reference.get(key, kind) is not None)
            case ("discard", key, kind):
                memo.discard(key, kind)
                reference.discard(key, kind)
            case ("max_bytes", limit):
                memo.max_bytes = limit
                reference.max_bytes = limit
            case ("clear",):
                memo.clear()
                reference.clear()
        assert memo.items() == reference.items()
        assert (memo.size, len(memo)) == (reference.size, len(reference))
        assert memo.offered == reference.offered
        assert memo.size <= memo.max_bytes
    for key, kind in probes:
        assert memo.get(key, kind) == reference.get(key, kind)


def store(memo: Memo | ReferenceMemo, *entry: Any) -> None:
    """Offer an entry until it is stored: the second offer stores it (the first is in the
    filter), or the third when the filter was emptied between the first two."""
    key, kind, *_, size = entry
    for _ in range(3):
        memo.put(*entry)
        if memo.get(key, kind) is not None or size + MEMO_ENTRY_OVERHEAD > memo.max_bytes:
            return
    raise AssertionError(f"{key!r} is not stored after three offers")


def test_a_key_is_stored_on_its_second_offer_while_its_first_is_in_the_filter() -> None:
    memo, reference = Memo(1 << 20), ReferenceMemo(1 << 20)
    for each in (memo, reference):
        assert not each.put("one-off", 1, frozenset({"942100"}), 1, 7, 7)
        assert (len(each), each.get("one-off", 1), each.offered) == (0, None, 1)
        assert each.put("one-off", 1, frozenset({"942100"}), 1, 7, 7)
        assert each.get("one-off", 1) == (frozenset({"942100"}), 1, 7)
        # held: not offered again, nor stored
        assert not each.put("one-off", 1, frozenset({"942100"}), 1, 7, 7)
        assert (len(each), each.offered) == (1, 2)
    # a key offered again after the filter was emptied (when it had noted an offer per eight
    # of its bits) is a first offer again
    bits = memo.sighting_bits
    assert bits == reference.sighting_bits == (1 << 20) // MEMO_BYTES_PER_SIGHTING
    for each in (memo, reference):
        each.put("first", 1, frozenset(), 1, 5, 5)
        for i in range(bits // 8):
            each.put(f"other-{i}", 1, frozenset(), 1, 5, 5)
        each.put("first", 1, frozenset(), 1, 5, 5)
        assert each.get("first", 1) is None
        each.put("first", 1, frozenset(), 1, 5, 5)
        assert each.get("first", 1) == (frozenset(), 1, 5)
    assert memo.items() == reference.items()
    # a memo given more bytes is given more bits
    memo.max_bytes = reference.max_bytes = 1 << 24
    assert memo.sighting_bits == reference.sighting_bits == (1 << 24) // MEMO_BYTES_PER_SIGHTING
    # clearing forgets the sightings too
    for each in (memo, reference):
        each.put("seen", 1, frozenset(), 1, 4, 4)
        each.clear()
        each.put("seen", 1, frozenset(), 1, 4, 4)
        assert each.get("seen", 1) is None


def test_a_flood_of_one_off_keys_pushes_out_nothing_the_memo_holds() -> None:
    memo = Memo(1024 * 1024)
    store(memo, ("user-agent", "Mozilla/5.0"), MEMO_HEADER, frozenset(), 1, 11, 21)
    for i in range(200_000):
        memo.put(f"flood-{i}", 512, frozenset({"942100"}), 1, 10, 10)
    assert memo.get(("user-agent", "Mozilla/5.0"), MEMO_HEADER) == (frozenset(), 1, 11)
    # a one-off key whose two bits others set is stored (a filter a sixteenth full at most,
    # emptied then: some 2% of them)
    assert memo.offered == 200_002 and len(memo) < 200_000 * 0.03


def test_a_flood_of_unique_keys_pushes_out_only_the_oldest_entries() -> None:
    memo = Memo(1024 * 1024)
    store(memo, ("user-agent", "Mozilla/5.0"), MEMO_HEADER, frozenset(), 1, 11, 21)
    for i in range(200_000):
        store(memo, f"flood-{i}", 512, frozenset({"942100"}), 1, 10, 10)
        assert memo.size <= memo.max_bytes
    newest = [key for key, _, _, _ in memo.items()]
    # about 1 MiB / (138 bytes) entries stay: the newest ones, in order
    assert len(newest) == 1024 * 1024 // (10 + MEMO_ENTRY_OVERHEAD)
    assert newest[-1] == "flood-199999"
    assert newest == [f"flood-{i}" for i in range(200_000 - len(newest), 200_000)]
    assert memo.get(("user-agent", "Mozilla/5.0"), MEMO_HEADER) is None
    assert memo.get("flood-199999", 512) == (frozenset({"942100"}), 1, 10)
    assert memo.get("flood-199999", 256) is None  # another kind is another key


def test_an_entry_costlier_than_the_whole_memo_is_not_kept() -> None:
    memo = Memo(4096)
    store(memo, "kept", 1, frozenset(), 1, 4, 4)
    store(memo, "x" * 10_000, 1, frozenset(), 1, 10_000, 10_000)
    assert [key for key, _, _, _ in memo.items()] == ["kept"]
    assert memo.size == 4 + MEMO_ENTRY_OVERHEAD


def test_bad_keys_and_arguments_are_clear_errors_that_change_nothing() -> None:
    memo = Memo(4096)
    with pytest.raises(TypeError, match="unhashable"):
        memo.put(["a", "list"], 1, frozenset(), 1, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="frozenset"):
        memo.put("value", 1, {"a set"}, 1, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size must be 0 or more"):
        memo.put("value", 1, frozenset(), 1, 1, -5)
    with pytest.raises(ValueError, match="max_bytes must be 0 or more"):
        Memo(-1)
    assert (len(memo), memo.size) == (0, 0)


def test_keys_that_compare_equal_across_types_are_one_key_of_one_kind() -> None:
    memo = Memo(4096)
    body = (b"q=1", False, ("text/plain", ("gzip",)))
    store(memo, body, MEMO_BODY, frozenset({"1"}), 3, 9, 40)
    assert memo.get(tuple(list(body)), MEMO_BODY) == (frozenset({"1"}), 3, 9)
    assert memo.get(body, MEMO_HEADER) is None
    store(memo, "\ud800 lone surrogate", 1, frozenset(), 1, 3, 3)
    assert memo.get("\ud800 lone surrogate", 1) == (frozenset(), 1, 3)


#: One character of each string kind, and one of each kind's widest.
WIDTHS = ("a", "\xff", "\u0100", "\uffff", "\U00010000", "\U0010ffff")


def test_a_text_key_of_any_kind_and_length_finds_only_itself() -> None:
    """Keys of every kind and of lengths across an entry's first lines, each differing from
    another in one character at every position: each finds its own entry and no other."""
    for wide in WIDTHS:
        for length in range(1, 70):
            base = "k" * (length - 1) + wide
            memo, reference = Memo(1 << 20), ReferenceMemo(1 << 20)
            variants = [base[:at] + "j" + base[at + 1 :] for at in range(length)]
            for i, key in enumerate([base, *variants]):
                store(memo, key, 1 + i % 3, frozenset({str(i)}), i, length, length)
                store(reference, key, 1 + i % 3, frozenset({str(i)}), i, length, length)
            assert memo.items() == reference.items()
            for key in [
                base,
                *variants,
                base + "k",
                base[:-1],
                base.encode("utf-8", "surrogatepass").decode("latin-1"),
            ]:
                for kind in (1, 2, 3):
                    assert memo.get(key, kind) == reference.get(key, kind), (wide, length, key)


def test_keys_of_one_hash_or_one_bucket_are_told_apart() -> None:
    """-1 and -2 hash alike (as do other such pairs), and ints a multiple of 2**24 apart share
    a bucket in any table the memo grows to here: each is found as itself, forgotten in order."""
    memo, reference = (
        Memo(40 * (8 + MEMO_ENTRY_OVERHEAD)),
        ReferenceMemo(40 * (8 + MEMO_ENTRY_OVERHEAD)),
    )
    assert hash(-1) == hash(-2)
    keys: list[object] = [-1, -2, 2**61 - 2, -(2**61 - 2)] + [7 + (j << 24) for j in range(60)]
    for i, key in enumerate(keys):
        for ref in (memo, reference):
            store(ref, key, 5, frozenset({str(i)}), i, 1, 8)
        assert memo.items() == reference.items()
        for probe in keys:
            assert memo.get(probe, 5) == reference.get(probe, 5)
            assert memo.get(probe, 6) is None
    for key in keys[::3]:
        memo.discard(key, 5)
        reference.discard(key, 5)
        assert memo.items() == reference.items()
    for probe in keys:
        assert memo.get(probe, 5) == reference.get(probe, 5)


def test_text_keys_of_one_bucket_are_each_found_as_themselves() -> None:
    """Texts of every kind whose hashes agree in their low 12 bits share a bucket in every
    table of up to 4096 buckets (the memo mixes a key's kind in by an odd multiplier and an
    xor, which keep a bucket's keys of one kind together): each is found behind the others."""
    texts = [f"{wide}-{i}" for i in range(200_000) for wide in WIDTHS[::2]]
    low = hash(texts[0]) & 0xFFF
    same = [text for text in texts if hash(text) & 0xFFF == low][:40]
    assert len(same) >= 20
    memo, reference = Memo(1 << 20), ReferenceMemo(1 << 20)
    for i, text in enumerate(same):
        store(memo, text, 3, frozenset({str(i)}), i, 2, len(text))
        store(reference, text, 3, frozenset({str(i)}), i, 2, len(text))
    assert memo.items() == reference.items()
    for text in same:
        found = memo.get(text, 3)
        assert found is not None
        assert found == reference.get(text, 3)
        assert memo.get(text, 4) is None
