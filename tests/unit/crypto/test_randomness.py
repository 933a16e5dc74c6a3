# SPDX-License-Identifier: Apache-2.0
"""RandomPool: OS random bytes read in blocks, each byte handed out once, never shared with a fork."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

import pytest

from bastion.crypto.randomness import REQUEST_RANDOM, RandomPool, new_id, new_ordered_ids
from bastion.web.request_context import new_request_id

HEX = re.compile(r"^[0-9a-f]*$")
URLSAFE = re.compile(r"^[A-Za-z0-9_-]*$")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 15, 16, 17, 32, 64])
def test_token_hex_has_two_lowercase_hex_digits_per_byte(n: int) -> None:
    pool = RandomPool()
    for _ in range(20):
        token = pool.token_hex(n)
        assert len(token) == 2 * n
        assert HEX.fullmatch(token)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 15, 16, 17, 32, 64])
def test_token_urlsafe_is_unpadded_base64url(n: int) -> None:
    pool = RandomPool()
    for _ in range(20):
        token = pool.token_urlsafe(n)
        assert len(token) == -(-4 * n // 3)  # ceil(4n/3): base64 without "=" padding
        assert URLSAFE.fullmatch(token)


def test_take_gives_the_bytes_asked_for() -> None:
    pool = RandomPool(block=64)
    for n in (0, 1, 7, 63, 64, 65, 200, 1):
        assert len(pool.take(n)) == n


def test_request_ids_are_32_hex_digits() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and HEX.fullmatch(i) for i in ids)
    assert len(REQUEST_RANDOM.token_urlsafe(16)) == 22


def test_row_ids_are_version_4_uuids_in_32_hex_digits() -> None:
    """Every row id, and every stand-in id an answer gives instead of a real one, has one shape."""
    ids = {new_id() for _ in range(2000)}  # more than one 4 KiB block of the pool
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)


def test_ordered_ids_are_version_7_uuids_that_sort_by_time() -> None:
    """Request records' ids: the same shape, the Unix time in milliseconds first, so each new row
    goes to the end of the primary key's index."""
    before = time.time_ns() // 1_000_000
    ids = [new_ordered_ids(1)[0] for _ in range(1000)] + new_ordered_ids(1000)  # one at a time, and a batch's
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 2000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 7, uuid.RFC_4122)
        assert before <= int(value[:12], 16) <= after
    time.sleep(0.002)
    [later] = new_ordered_ids(1)
    assert all(later > earlier for earlier in ids)


def test_no_two_tokens_are_equal_across_many_blocks() -> None:
    pool = RandomPool(block=256)  # 16 tokens a block
    tokens = [pool.token_hex(16) for _ in range(5000)]
    assert len(set(tokens)) == len(tokens)


def test_slices_of_one_block_never_overlap() -> None:
    pool = RandomPool(block=4096)
    pool.take(1)  # a block is read
    block = pool._bytes
    slices = [pool.take(16) for _ in range(255)]
    # they are the block's bytes, in order, each handed out once
    assert b"".join(slices) == block[1 : 1 + 16 * 255]
    after = pool.take(16)  # the block has 15 bytes left: a new one is read
    assert pool._bytes is not block
    assert after not in block


def test_a_draw_larger_than_the_block() -> None:
    pool = RandomPool(block=32)
    small = pool.take(8)
    large = pool.take(100)
    assert len(large) == 100
    assert small not in large
    following = [pool.take(8) for _ in range(50)]
    assert all(len(t) == 8 for t in following)
    assert not any(t in large for t in following)
    assert len({small, *following}) == 51


def test_a_draw_as_large_as_the_block_and_exact_fills() -> None:
    pool = RandomPool(block=32)
    whole = pool.take(32)
    halves = [pool.take(16), pool.take(16)]
    assert len(whole) == 32
    assert halves[0] != halves[1]
    assert halves[0] not in whole and halves[1] not in whole


def test_many_threads_drawing_get_distinct_tokens() -> None:
    pool = RandomPool(block=512)
    threads_count, draws = 16, 2000
    results: list[list[str]] = [[] for _ in range(threads_count)]
    start = threading.Barrier(threads_count)

    def draw(out: list[str]) -> None:
        start.wait()
        for i in range(draws):
            out.append(pool.token_hex(16) if i % 2 else pool.token_urlsafe(16))

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tokens = [t for out in results for t in out]
    assert len(tokens) == threads_count * draws
    assert len(set(tokens)) == len(tokens)


def _child_token(pool: RandomPool, n: int) -> bytes:
    """What ``pool.take(n)`` gives in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, then leave without running the parent's cleanup
        try:
            os.close(read_end)
            os.write(write_end, pool.take(n))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        received = b""
        while chunk := os.read(read_end, 4096):
            received += chunk
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert len(received) == n
    return received


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_never_gets_bytes_the_parent_hands_out() -> None:
    pool = RandomPool(block=4096)
    pool.take(16)  # the parent holds a block with 4080 bytes left
    left = pool._bytes[pool._at :]
    child = _child_token(pool, 16)
    assert child not in left
    parent = [pool.take(16) for _ in range(255)]  # the rest of the parent's block
    assert b"".join(parent) == left
    assert child not in parent
    assert child not in b"".join(parent)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_children_of_one_parent_get_different_bytes() -> None:
    pool = RandomPool(block=4096)
    pool.take(1)
    children = [_child_token(pool, 32) for _ in range(3)]
    assert len(set(children)) == 3
    assert not any(child in pool._bytes for child in children)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_the_process_pool_is_emptied_in_a_forked_child() -> None:
    REQUEST_RANDOM.take(1)
    left = REQUEST_RANDOM._bytes[REQUEST_RANDOM._at :]
    child = _child_token(REQUEST_RANDOM, 16)
    assert child not in left
