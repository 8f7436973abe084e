"""Which etcd member the store connects to first (servicenet.store._etcdaddr.leader_first, pure)."""

from __future__ import annotations

from servicenet.store._etcdaddr import leader_first

A, B, C = "https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"


def test_the_leader_goes_first_and_the_others_keep_their_order() -> None:
    assert leader_first([A, B, C], [(1, 3), (2, 3), (3, 3)]) == [C, A, B]
    assert leader_first([A, B, C], [(1, 2), (2, 2), (3, 2)]) == [B, A, C]
    assert leader_first([A, B, C], [(1, 1), (2, 1), (3, 1)]) == [A, B, C]


def test_members_that_do_not_answer_are_not_the_leader() -> None:
    assert leader_first([A, B, C], [None, (2, 1), (3, 1)]) == [A, B, C]  # the leader named is down: kept
    assert leader_first([A, B, C], [None, None, (3, 3)]) == [C, A, B]


def test_no_leader_known_keeps_the_order() -> None:
    assert leader_first([A, B, C], [None, None, None]) == [A, B, C]
    assert leader_first([A, B, C], [(1, 0), (2, 0), (3, 0)]) == [A, B, C]  # an election under way
    assert leader_first([A], [(1, 1)]) == [A]
