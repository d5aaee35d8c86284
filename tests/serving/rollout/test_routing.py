"""Canary routing: sticky per client, the share honoured, widening keeps clients, a new salt
picks new clients."""

from __future__ import annotations

from serving.rollout.routing import bucket, to_candidate

IDS = [f"client-{n}" for n in range(20_000)]


def cohort(share: float, salt: str) -> set[str]:
    return {client for client in IDS if to_candidate(client, share, salt)}


def test_a_client_always_gets_the_same_answer_within_a_rollout() -> None:
    assert bucket("alice", "mnist/1") == bucket("alice", "mnist/1")
    assert all(
        to_candidate("alice", 0.3, "mnist/1") == to_candidate("alice", 0.3, "mnist/1")
        for _ in range(10)
    )


def test_the_share_of_clients_is_the_configured_share() -> None:
    # 20,000 clients at 5 %: the binomial standard deviation is 0.15 points.
    assert abs(len(cohort(0.05, "mnist/1")) / len(IDS) - 0.05) < 0.006
    assert abs(len(cohort(0.25, "mnist/1")) / len(IDS) - 0.25) < 0.012


def test_widening_the_share_keeps_every_client_already_on_the_candidate() -> None:
    assert cohort(0.05, "mnist/1") <= cohort(0.25, "mnist/1") <= cohort(1.0, "mnist/1")


def test_the_next_rollout_tries_other_clients() -> None:
    first, second = cohort(0.05, "mnist/1"), cohort(0.05, "mnist/2")
    # Independent 5 % draws overlap on ~5 % of either.
    assert len(first & second) < 0.15 * len(first)


def test_no_client_id_draws_per_request() -> None:
    assert to_candidate(None, 0.5, "mnist/1", draw=lambda: 0.49)
    assert not to_candidate(None, 0.5, "mnist/1", draw=lambda: 0.5)
    assert not to_candidate("", 0.5, "mnist/1", draw=lambda: 0.9)


def test_shares_of_zero_and_one_need_no_hash() -> None:
    assert not any(to_candidate(client, 0.0, "s") for client in IDS[:100])
    assert all(to_candidate(client, 1.0, "s") for client in IDS[:100])
