"""The producers' partitioner sends a key where every Kafka client sends it (murmur2 of the key, as
the Java client does), however often the key comes back: per-key order holds only if one key
always lands on one partition, and a consumer outside the platform may rely on the Java mapping."""

from __future__ import annotations

import pytest

from servicekit.kafka import KeyPartitioner

# murmur2 of each key, from the Java client's own tests (org.apache.kafka.common.utils.UtilsTest),
# and its partition out of three: (hash & 0x7fffffff) % 3, worked out by hand
JAVA_CLIENT = [
    (b"21", -973932308, 0),
    (b"foobar", -790332482, 0),
    (b"a-little-bit-long-string", -985981536, 2),
    (b"a-little-bit-longer-string", -1486304829, 2),
    (b"abc", 479470107, 0),
]


@pytest.mark.parametrize(("key", "java_hash", "partition"), JAVA_CLIENT)
def test_a_key_goes_where_the_java_client_sends_it_every_time(key: bytes, java_hash: int, partition: int) -> None:
    assert (java_hash & 0x7FFFFFFF) % 3 == partition
    choose = KeyPartitioner()
    assert [choose(key, [0, 1, 2], [0, 1, 2]) for _ in range(3)] == [partition] * 3


def test_the_mapping_is_over_all_partitions_not_the_available_ones() -> None:
    # a partition without a leader for a moment does not move a key elsewhere (order would break)
    assert KeyPartitioner()(b"a-little-bit-long-string", [0, 1, 2], [0]) == 2


def test_a_full_memory_of_keys_starts_again_and_still_answers_the_same() -> None:
    choose = KeyPartitioner(size=2)
    first = [choose(key, [0, 1, 2], [0, 1, 2]) for key, _, _ in JAVA_CLIENT]
    again = [choose(key, [0, 1, 2], [0, 1, 2]) for key, _, _ in JAVA_CLIENT]
    assert first == again == [p for _, _, p in JAVA_CLIENT]


def test_no_key_goes_to_an_available_partition() -> None:
    assert {KeyPartitioner()(None, [0, 1, 2], [1]) for _ in range(20)} == {1}
