"""The freeze guard of an ingest node (ingest/camera_sampling.py: claim_unsure) on a private redis-server: a node whose
rounds of claims have not answered for the claims' TTL may have been frozen, and another node may hold its
cameras, so its cameras wait for a round before sampling. A round Redis refuses (its memory full) is an
answer: the node is not frozen (a review: at maxmemory every camera sampled 0.1 frame/s, each frame
waiting a renewal, the others neither sampled nor counted). A doubt is ended by a round run at once, and
the frames a camera's rate would have given while it waited are counted skipped (`claim_unsure`)."""

from __future__ import annotations

import time

from common.queues import connect_redis
from ingest.node import IngestNode
from tests.helpers import wait_for
from tests.ingest.test_claims import looping_folder, node, start

TTL_S, RENEW_S = 3, 1.0
"""The claims' TTL and renewal here (30 s and 10 s in the chain): a round unanswered for 3 s is a doubt."""


def counted(ingest: IngestNode) -> dict[str, int]:
    """Per camera, the frames its rate gave: queued, or skipped with a reason (counted in the summary)."""
    return {camera: ingest.summary.ingested[camera] + ingest.summary.skipped[camera] for camera in ("gate", "yard")}


def skipped(ingest: IngestNode, camera: str, reason: str) -> float:
    value = ingest.metrics.registry.get_sample_value("alpr_frames_skipped_total", {"camera": camera, "reason": reason})
    return value or 0.0


def test_a_redis_refusing_the_rounds_of_claims_for_its_memory_stops_no_camera(redis_server, tmp_path, monkeypatch):
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_TTL_S", TTL_S)
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", RENEW_S)
    ingest = node(redis_server.url, looping_folder(tmp_path), ("gate", "yard"))  # 5 frames/s each
    runner, _ = start(ingest)
    connection = connect_redis(redis_server.url)
    try:
        wait_for(lambda: min(counted(ingest).values()) > 0, 10, "the sampling")
        # every write refused: half the memory in use, not all of it (Redis refuses a write only while its use is
        # past maxmemory; the node, finding its frame store full, wrote no more, and under load the rounds of
        # claims went through all along: `refused` read False in 3 runs of 3)
        connection.config_set("maxmemory", int(connection.info("memory")["used_memory"]) // 2)
        time.sleep(TTL_S + 1)  # past the claims' TTL since the last round that took them
        before, began = counted(ingest), time.monotonic()
        time.sleep(4)
        rates = {camera: (n - before[camera]) / (time.monotonic() - began) for camera, n in counted(ingest).items()}
        assert ingest.claims.refused  # the rounds were refused all along
        connection.config_set("maxmemory", 0)
        wait_for(lambda: not ingest.claims.refused, 10, "a round taken again")
    finally:
        ingest.stop.set()
        runner.join(30)
    print(f"\nframes/s counted per camera, Redis refusing the rounds past their TTL: {rates}")
    assert min(rates.values()) >= 3.5, rates  # 5 a second: each queued or skipped, none waiting a renewal
    assert skipped(ingest, "gate", "claim_unsure") == 0  # no doubt: a refused round is an answer


def test_a_doubt_is_ended_by_a_round_at_once_and_the_frames_it_held_are_counted(redis_server, tmp_path, monkeypatch):
    """A round of claims stalled past the claims' TTL (a slow link to Redis: here the round sleeps 4 s before
    it runs) leaves the cameras in doubt: the round they waited for began more than a TTL ago when it
    answers. Their next round came only at the renewal (CAMERA_CLAIM_RENEW_S after the stalled one: 8 s
    here, 10 s in the chain), each camera sampling one frame per such wait, the others neither sampled nor
    counted. A camera in doubt has the round run at once now, and what the wait held is counted skipped
    as claim_unsure: every frame of the camera's rate is counted."""
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_TTL_S", TTL_S)
    monkeypatch.setattr("common.defaults.CAMERA_CLAIM_RENEW_S", 8.0)
    ingest = node(redis_server.url, looping_folder(tmp_path), ("gate", "yard"))
    claims, stalled = ingest.claims, []
    real_eval = claims._eval

    def slow_eval(ended):  # type: ignore[no-untyped-def]
        if not stalled:  # the round's call to Redis, its reply 4 s late
            stalled.append(time.monotonic())
            time.sleep(TTL_S + 1)
            stalled.append(time.monotonic())
        return real_eval(ended)

    runner, _ = start(ingest)
    try:
        wait_for(lambda: min(counted(ingest).values()) > 0 and claims.answered_at > 0, 10, "the sampling")
        monkeypatch.setattr(claims, "_eval", slow_eval)
        before, began = counted(ingest), time.monotonic()
        claims.next_round_at = 0.0  # the next round now: stalled
        wait_for(lambda: len(stalled) == 2, 15, "the stalled round")
        wait_for(lambda: not claims.unconfirmed(), 15, "a round answering")
        confirmed_s = time.monotonic() - stalled[1]
        time.sleep(max(0.0, began + 9 - time.monotonic()))
        rates = {camera: (n - before[camera]) / (time.monotonic() - began) for camera, n in counted(ingest).items()}
    finally:
        ingest.stop.set()
        runner.join(30)
    held = {camera: skipped(ingest, camera, "claim_unsure") for camera in ("gate", "yard")}
    print(f"\nround stalled 4 s: doubt ended {confirmed_s:.1f} s after; frames/s counted {rates}; claim_unsure {held}")
    assert confirmed_s < 1.5, confirmed_s  # the round at once, not at the renewal 8 s after the stalled one
    assert min(rates.values()) >= 3.5, rates
    assert min(held.values()) >= 3, held  # about 5 a second of the doubt (1 to 4 s)
