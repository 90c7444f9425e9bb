"""The load generator's own bookkeeping: loss, duplicates and order, percentiles, the frames it
builds and reads, and CPU accounting from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from bench import frames, options, procs, stats
from bench.phase import Phase


def tally_of(*seqs: int) -> stats.Tally:
    tally = stats.Tally()
    for seq in seqs:
        tally.add(seq)
    return tally


# -- Tally and delivery ------------------------------------------------------------------------


def test_in_order_run_counts_everything_once() -> None:
    tally = tally_of(5, 6, 7, 8)
    assert (tally.first, tally.last, tally.received) == (5, 8, 4)
    assert (tally.duplicates, tally.reordered, tally.gaps) == (0, 0, [])


def test_a_gap_is_remembered_and_a_late_arrival_fills_it_as_reordered() -> None:
    tally = tally_of(1, 2, 5)
    assert tally.gaps == [[3, 4]]
    tally.add(4)
    assert tally.gaps == [[3, 3]]
    assert (tally.received, tally.reordered, tally.duplicates) == (4, 1, 0)
    tally.add(3)
    assert tally.gaps == []
    assert (tally.received, tally.reordered) == (5, 2)


def test_a_late_arrival_inside_a_gap_splits_it() -> None:
    tally = tally_of(1, 10)
    tally.add(5)
    assert tally.gaps == [[2, 4], [6, 9]]
    assert tally.reordered == 1


def test_a_second_copy_is_a_duplicate_not_a_delivery() -> None:
    tally = tally_of(1, 2, 3, 2, 3)
    assert (tally.received, tally.duplicates, tally.reordered) == (3, 2, 0)


def test_a_seq_below_the_first_is_a_late_arrival() -> None:
    tally = tally_of(5, 6, 2)
    assert (tally.first, tally.received, tally.reordered) == (2, 3, 1)
    assert tally.gaps == [[3, 4]]
    tally.add(2)
    assert tally.duplicates == 1


def test_a_senders_counter_must_increase_at_each_receiver() -> None:
    tally = stats.Tally()
    tally.add(1, sender=7, counter=1)
    tally.add(2, sender=8, counter=1)
    tally.add(3, sender=7, counter=3)
    tally.add(4, sender=7, counter=2)  # the channel's order is fine, this sender's is not
    assert tally.sender_reordered == 1
    assert tally.reordered == 0


def test_delivery_expects_every_seq_any_receiver_saw_from_every_receiver() -> None:
    full = tally_of(1, 2, 3, 4)
    missing_middle = tally_of(1, 2, 4)
    missing_tail = tally_of(1, 2)
    nothing = stats.Tally()
    other_channel = tally_of(10, 11)
    got = stats.delivery([[full, missing_middle, missing_tail, nothing], [other_channel]])
    assert got.messages == 4 + 2
    assert got.expected == 4 * 4 + 2
    assert got.received == 4 + 3 + 2 + 0 + 2
    assert got.lost == 0 + 1 + 2 + 4 + 0


def test_delivery_of_a_channel_nobody_heard_from_expects_nothing() -> None:
    assert stats.delivery([[stats.Tally(), stats.Tally()]]) == stats.Delivery()


def test_duplicates_and_reordering_add_up_over_receivers() -> None:
    got = stats.delivery([[tally_of(1, 3, 2), tally_of(1, 2, 2, 3)]])
    assert (got.lost, got.reordered, got.duplicates) == (0, 1, 1)


# -- percentiles ---------------------------------------------------------------------------


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile(values, 0) == 1
    assert stats.percentile([7], 99) == 7
    assert stats.percentile([], 50) == 0.0
    with pytest.raises(ValueError, match=r"0\.\.100"):
        stats.percentile(values, 101)


def test_latency_summary_is_in_milliseconds_of_microsecond_samples() -> None:
    samples = [3000, 1000, 2000, 100_000]
    lat = stats.latency(samples)
    assert lat.count == 4
    assert (lat.p50_ms, lat.p99_ms, lat.max_ms) == (2.0, 100.0, 100.0)
    assert stats.latency([]) == stats.Latency()


def test_sends_without_an_answer_are_unanswered() -> None:
    sends = stats.Sends(sent=10, acked=6, errors={"too fast": 3})
    assert (sends.rejected, sends.unanswered) == (3, 1)


# -- frames ----------------------------------------------------------------------------------


def test_a_chat_frame_carries_its_number_through_the_server_frame() -> None:
    sent = frames.chat(42, frames.content(100), 1_000_000_007)
    assert b'"content":"' + b"x" * 100 + b'"' in sent
    assert b'"client_msg_id":"1000000007"' in sent
    # What the server broadcasts: its own envelope and fields, ours echoed.
    echoed = (
        b'{"type":"chat_send","timestamp":"2025-01-15T10:30:00Z","id":"x","payload":'
        b'{"channel_id":42,"sender":{"username":"Guest1","is_guest":true},"content":"xx",'
        b'"seq":9,"client_msg_id":"1000000007"}}'
    )
    assert echoed.startswith(frames.CHAT_PREFIX)
    payload = frames.decode_chat(echoed).payload
    assert (payload.channel_id, payload.seq) == (42, 9)
    assert frames.parse_msg_id(payload.client_msg_id) == 1_000_000_007


def test_foreign_message_ids_are_not_bench_messages() -> None:
    assert frames.parse_msg_id("") == -1
    assert frames.parse_msg_id("c-7f3a") == -1
    assert frames.parse_msg_id("-3") == -1


def test_user_marker_does_not_match_a_longer_name() -> None:
    frame = b'{"type":"channel_join","payload":{"channel_id":1,"user":{"username":"Guest12"}}}'
    assert frames.user_marker("Guest12") in frame
    assert frames.user_marker("Guest1") not in frame


def test_hello_with_a_token_is_json() -> None:
    assert frames.hello(None) == b'{"type":"hello","payload":{}}'
    assert frames.hello('a"b') == b'{"type":"hello","payload":{"token":"a\\"b"}}'


# -- phase -----------------------------------------------------------------------------------


@dataclass
class FakeMember:
    index: int
    in_flight: int = 0


def chat(channel: int, seq: int, msg_no: int) -> frames.ChatPayload:
    return frames.ChatPayload(channel_id=channel, seq=seq, client_msg_id=str(msg_no))


def test_phase_separates_echoes_from_deliveries_and_counts_the_window() -> None:
    phase = Phase("t", window_s=1.0)
    phase.begin(now_ns=1_000_000_000)
    sender, other = FakeMember(0), FakeMember(1)
    acked: list[int] = []
    phase.on_ack = lambda m: acked.append(m.index)
    msg = phase.sent(sender.index, 5, now_ns=1_000_000_000)
    sender.in_flight = 1
    phase.on_chat(sender, chat(5, 1, msg), 1_002_000_000)  # own echo, 2 ms
    phase.on_chat(other, chat(5, 1, msg), 2_500_000_000)  # after the window
    report = phase.report({5: [0, 1]})
    assert (report["sent"], report["acked"], report["unanswered"]) == (1, 1, 0)
    assert sender.in_flight == 0
    assert acked == [0]
    assert report["ack_ms"]["p50"] == 2.0
    assert report["latency_ms"]["p50"] == 1500.0
    assert (report["deliveries"], report["offered_deliveries"], report["lost"]) == (2, 2, 0)
    assert report["deliveries_in_window"] == 1
    assert report["delivered_pct"] == 100.0


def test_message_numbers_are_unique_across_phases_and_stragglers_are_ignored() -> None:
    first, second = Phase("a", window_s=1.0), Phase("b", window_s=1.0)
    old = first.sent(0, 5)
    new = second.sent(0, 5)
    assert old != new
    member = FakeMember(1)
    second.on_chat(member, chat(5, 1, old), 6_000)
    second.on_chat(member, chat(5, 2, 123), 6_000)  # not a number this phase gave out
    assert second.received == 0
    assert second.tallies == {}
    second.on_chat(member, chat(5, 3, new), 6_000)
    assert second.received == 1


def test_a_senders_messages_out_of_order_at_a_receiver_are_counted() -> None:
    phase = Phase("t", window_s=1.0)
    phase.begin(now_ns=0)
    a, b = phase.sent(0, 5, now_ns=0), phase.sent(0, 5, now_ns=0)
    member = FakeMember(1)
    phase.on_chat(member, chat(5, 1, b), 10)  # the server ordered them the other way round
    phase.on_chat(member, chat(5, 2, a), 10)
    assert phase.report({5: [0, 1]})["sender_reordered"] == 1


def test_phase_counts_refusals_by_kind_and_frees_the_senders_slot() -> None:
    phase = Phase("t", window_s=1.0)
    phase.begin(now_ns=0)
    member = FakeMember(0, in_flight=2)
    phase.sent(0, 5)
    phase.sent(0, 5)
    phase.on_error(member, frames.ErrorPayload(detail=frames.TOO_FAST))
    phase.on_error(member, frames.ErrorPayload(detail="Failed to send message"))
    report = phase.report({5: [0]})
    assert report["errors"] == {"too fast": 1, "Failed to send message": 1}
    assert (report["too_fast"], report["unanswered"], member.in_flight) == (1, 0, 0)


def test_delivered_share_is_of_everything_sent_not_only_what_was_stored() -> None:
    phase = Phase("t", window_s=1.0)
    phase.begin(now_ns=0)
    a, b = FakeMember(0, in_flight=2), FakeMember(1)
    msg = phase.sent(0, 5, now_ns=0)
    phase.sent(0, 5, now_ns=0)  # never stored: no seq, nobody receives it
    phase.on_chat(a, chat(5, 1, msg), 10)
    phase.on_chat(b, chat(5, 1, msg), 10)
    report = phase.report({5: [0, 1]})
    assert report["offered_deliveries"] == 4
    assert report["delivered_pct"] == 50.0
    assert (report["lost"], report["unanswered"]) == (0, 1)


# -- CPU and memory accounting ---------------------------------------------------------------


def test_stat_parsing_survives_a_command_name_with_spaces_and_parentheses() -> None:
    fields = " ".join(["S", "77"] + ["0"] * 9 + ["100", "20", "3", "4"] + ["0"] * 30)
    assert procs.parse_stat(f"1234 (odd (name) x) {fields}") == (77, 127)


def test_rss_is_read_from_status() -> None:
    assert procs.parse_rss_kb("Name:\tx\nVmRSS:\t  5120 kB\nThreads:\t1\n") == 5120
    assert procs.parse_rss_kb("Name:\tx\n") == 0


def test_cpu_percent_is_a_share_of_one_core() -> None:
    ticks = procs.CLOCK_TICKS
    assert procs.cpu_percent(0, ticks, 2.0) == 50.0
    assert procs.cpu_percent(0, 3 * ticks, 1.0) == 300.0
    assert procs.cpu_percent(0, ticks, 0.0) == 0.0


def test_a_tree_counts_the_cpu_of_children_that_already_ended() -> None:
    me = procs.Watched("me", os.getpid(), tree=True)
    before = procs.cpu_ticks(me)
    burn = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # reaped: in our cutime now
    assert procs.cpu_ticks(me) - before >= procs.CLOCK_TICKS * 0.4


def test_descendants_are_found_through_every_generation() -> None:
    children = {1: [2, 3], 2: [4], 4: [5]}
    assert sorted(procs.descendants(1, children)) == [2, 3, 4, 5]
    assert procs.descendants(9, children) == []


# -- options ---------------------------------------------------------------------------------


def test_no_scenario_means_all_and_unknown_ones_are_refused() -> None:
    assert options.parse([]).scenarios == list(options.SCENARIOS)
    assert options.parse(["idle", "fanout", "idle"]).scenarios == ["idle", "fanout"]
    with pytest.raises(SystemExit):
        options.parse(["nope"])
