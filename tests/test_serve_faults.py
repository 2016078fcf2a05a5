"""Fault plans for cookbook-serve: parsing, counting, seeded rates, thread safety.

Expected decisions are derived in each test from the grammar's definition (arrival counts, one
``random.Random(seed).random()`` draw per covering rate rule per request), never from a run of
the injector itself.
"""

from __future__ import annotations

import random
import re
import sys
import threading
from pathlib import Path

import pytest

from cookbook.exceptions import ConfigurationError
from cookbook.serve.faults import (
    DEFAULT_SLOW_POLLS,
    FAULTABLE_ENDPOINTS,
    FAULTS_HELP,
    FUTURE_ENDPOINTS,
    Fault,
    FaultInjector,
    FaultKind,
    FaultPlan,
    FaultRule,
)

PLUMBING = ("client/config", "create_session", "session_heartbeat", "telemetry", "healthz")


def _decide_all(spec: str, endpoints: list[str]) -> list[Fault | None]:
    injector = FaultInjector(FaultPlan.parse(spec))
    return [injector.decide(endpoint) for endpoint in endpoints]


# --- parsing -------------------------------------------------------------------------------


def test_parse_counts_rates_every_and_seed():
    plan = FaultPlan.parse("429@optim_step#2+5,500@*~0.25,drop@forward_backward,seed=7")
    assert plan.seed == 7
    assert plan.rules == (
        FaultRule(FaultKind.RATE_LIMIT, 0, "optim_step", frozenset({2, 5}), None),
        FaultRule(FaultKind.SERVER_ERROR, 0, "*", None, 0.25),
        FaultRule(FaultKind.DROP, 0, "forward_backward", None, None),
    )


def test_parse_slow_polls_default_and_explicit():
    plan = FaultPlan.parse("slow@asample,slow:5@create_model#1")
    assert [(r.kind, r.polls) for r in plan.rules] == [
        (FaultKind.SLOW, DEFAULT_SLOW_POLLS),
        (FaultKind.SLOW, 5),
    ]
    assert DEFAULT_SLOW_POLLS == 3  # the documented default
    assert plan.seed == 0  # the documented default


def test_parse_tolerates_whitespace_around_pieces():
    plan = FaultPlan.parse(" 429 @ optim_step # 2 + 3 , seed = 4 ")
    assert plan.rules == (
        FaultRule(FaultKind.RATE_LIMIT, 0, "optim_step", frozenset({2, 3}), None),
    )
    assert plan.seed == 4


def test_every_faultable_endpoint_parses_and_plumbing_does_not():
    for endpoint in FAULTABLE_ENDPOINTS:
        assert FaultPlan.parse(f"500@{endpoint}").rules[0].target == endpoint
    for endpoint in PLUMBING:
        with pytest.raises(ConfigurationError, match=f"unknown endpoint '{endpoint}'"):
            FaultPlan.parse(f"500@{endpoint}")


def test_error_message_is_exactly_the_documented_form():
    with pytest.raises(ConfigurationError) as info:
        FaultPlan.parse("429@asample,boom@optim_step")
    assert str(info.value) == (
        "--faults: rule 2 'boom@optim_step': unknown kind 'boom' (429, 500, drop, slow[:POLLS])"
    )
    assert isinstance(info.value, ValueError)


_KNOWN = ", ".join(sorted(FAULTABLE_ENDPOINTS))
_FUTURES = ", ".join(sorted(FUTURE_ENDPOINTS))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "",
            "--faults: empty spec (expected RULE[,RULE...], KIND@TARGET[#CALLS|~RATE] or seed=INT)",
        ),
        ("429@asample,", "rule 2 '': empty rule (KIND@TARGET[#CALLS|~RATE] or seed=INT)"),
        ("429", "rule 1 '429': missing '@TARGET' (KIND@TARGET[#CALLS|~RATE] or seed=INT)"),
        ("429:2@asample", "rule 1 '429:2@asample': unknown kind '429:2' (429, 500, drop, slow"),
        ("DROP@asample", "unknown kind 'DROP' (429, 500, drop, slow[:POLLS])"),
        ("slow:0@asample", "rule 1 'slow:0@asample': POLLS must be a positive integer, got '0'"),
        ("slow:x@asample", "POLLS must be a positive integer, got 'x'"),
        ("slow:@asample", "POLLS must be a positive integer, got ''"),
        ("429@optim", f"rule 1 '429@optim': unknown endpoint 'optim' (one of: {_KNOWN}; or *)"),
        ("429@", "unknown endpoint '' (one of:"),
        (
            "slow@retrieve_future",
            "rule 1 'slow@retrieve_future': slow cannot target retrieve_future "
            f"(its polls are what slow delays); it needs one of: {_FUTURES}; or *",
        ),
        ("slow@get_info", "slow cannot target get_info (no future); it needs one of:"),
        ("429@asample#2~0.5", "rule 1 '429@asample#2~0.5': use either #CALLS or ~RATE, not both"),
        ("429@asample#", "CALLS must be positive integers joined by '+', got ''"),
        ("429@asample#0", "CALLS must be positive integers joined by '+', got '0'"),
        ("429@asample#2+", "CALLS must be positive integers joined by '+', got '2+'"),
        ("429@asample#-1", "CALLS must be positive integers joined by '+', got '-1'"),
        ("429@asample#two", "CALLS must be positive integers joined by '+', got 'two'"),
        ("429@asample~0", "RATE must be a number with 0 < RATE <= 1, got '0'"),
        ("429@asample~1.5", "RATE must be a number with 0 < RATE <= 1, got '1.5'"),
        ("429@asample~-0.1", "RATE must be a number with 0 < RATE <= 1, got '-0.1'"),
        ("429@asample~nan", "RATE must be a number with 0 < RATE <= 1, got 'nan'"),
        ("429@asample~often", "RATE must be a number with 0 < RATE <= 1, got 'often'"),
        ("seed=x", "rule 1 'seed=x': seed must be an integer, got 'x'"),
        ("seed=1,429@asample,seed=2", "rule 3 'seed=2': seed given twice"),
    ],
)
def test_parse_errors_name_rule_and_what_is_allowed(spec, expected):
    with pytest.raises(ConfigurationError) as info:
        FaultPlan.parse(spec)
    message = str(info.value)
    assert message.startswith("--faults: ")
    assert expected in message
    assert "\n" not in message


def test_endpoint_sets_match_the_sdk():
    """Every faultable name is a real SDK path; the future ones are exactly those whose SDK
    resource method returns an UntypedAPIFuture (read from the SDK source, not from us)."""
    tinker = pytest.importorskip("tinker")
    source = "\n".join(
        path.read_text() for path in (Path(tinker.__file__).parent / "resources").glob("*.py")
    )
    methods = re.split(r"\n    (?:async )?def ", source)
    returns_future = set()
    for endpoint in FAULTABLE_ENDPOINTS:
        posting = [m for m in methods if f'"/api/v1/{endpoint}"' in m]
        assert posting, endpoint
        if any(re.search(r"\)\s*->\s*UntypedAPIFuture:", m) for m in posting):
            returns_future.add(endpoint)
    assert returns_future == FUTURE_ENDPOINTS


def test_help_documents_every_kind_and_its_example_parses():
    assert FAULTS_HELP.count("\n") >= 3
    for kind in FaultKind:
        assert str(kind) in FAULTS_HELP
    example = re.search(r"--faults '([^']+)'", FAULTS_HELP)
    assert example is not None
    assert len(FaultPlan.parse(example.group(1)).rules) == 3


def test_describe_is_one_human_line():
    plan = FaultPlan.parse("429@optim_step#5+2,slow@asample~0.25,drop@*,seed=7")
    assert plan.describe() == (
        "faults: 429 on optim_step requests 2+5; slow (3 polls) on asample with p=0.25; "
        "drop on every request to any endpoint (seed=7)"
    )
    assert FaultPlan.parse("seed=3").describe() == "faults: none (seed=3)"


def test_kind_semantics_as_data():
    # 429/500 are refused before applying (status answered); drop/slow apply the request.
    assert [(k.status, k.applies) for k in FaultKind] == [
        (429, False),
        (500, False),
        (None, True),
        (None, True),
    ]


# --- counting ------------------------------------------------------------------------------


def test_calls_count_arrivals_per_endpoint_including_retries():
    # Arrival n of optim_step is refused iff n in {2, 5}; other endpoints don't shift the count.
    endpoints = ["optim_step", "asample"] * 6
    decisions = _decide_all("429@optim_step#2+5", endpoints)
    optim = [d for e, d in zip(endpoints, decisions, strict=True) if e == "optim_step"]
    rate_limited = Fault(FaultKind.RATE_LIMIT)
    assert optim == [None, rate_limited, None, None, rate_limited, None]
    assert all(d is None for e, d in zip(endpoints, decisions, strict=True) if e == "asample")


def test_star_calls_count_all_faultable_endpoints_together():
    injector = FaultInjector(FaultPlan.parse("500@*#3"))
    sequence = ["optim_step", "session_heartbeat", "asample", "telemetry", "get_info", "asample"]
    decisions = [injector.decide(e) for e in sequence]
    # plumbing is not counted: get_info is the 3rd faultable arrival, and its own 1st
    assert decisions == [None, None, None, None, Fault(FaultKind.SERVER_ERROR), None]
    assert injector.injected == [{"endpoint": "get_info", "call": 1, "kind": "500"}]
    assert injector.arrivals == {"optim_step": 1, "asample": 2, "get_info": 1}


def test_slow_star_covers_only_future_endpoints():
    sequence = ["retrieve_future", "optim_step", "retrieve_future", "get_info", "asample"]
    decisions = _decide_all("slow:2@*#2", sequence)
    # asample is the 2nd arrival among future-returning endpoints
    assert decisions == [None, None, None, None, Fault(FaultKind.SLOW, polls=2)]
    assert _decide_all("slow@*", ["retrieve_future", "get_info"]) == [None, None]


def test_no_calls_no_rate_faults_every_request():
    decisions = _decide_all("drop@get_info", ["get_info", "asample", "get_info", "get_info"])
    drop = Fault(FaultKind.DROP)
    assert decisions == [drop, None, drop, drop]


def test_plumbing_never_faulted_nor_counted():
    injector = FaultInjector(FaultPlan.parse("500@*"))
    assert [injector.decide(e) for e in PLUMBING] == [None] * len(PLUMBING)
    assert injector.arrivals == {}
    assert injector.injected == []


def test_first_matching_rule_wins_but_later_rules_still_count():
    injector = FaultInjector(FaultPlan.parse("429@optim_step#1,500@*#1+2"))
    # request 1 fires both rules: the first listed (429) wins; request 2 is *'s 2nd arrival
    assert injector.decide("optim_step") == Fault(FaultKind.RATE_LIMIT)
    assert injector.decide("asample") == Fault(FaultKind.SERVER_ERROR)
    assert injector.decide("asample") is None
    assert injector.injected == [
        {"endpoint": "optim_step", "call": 1, "kind": "429"},
        {"endpoint": "asample", "call": 1, "kind": "500"},
    ]


def test_injected_is_a_copy():
    injector = FaultInjector(FaultPlan.parse("drop@asample"))
    injector.decide("asample")
    injector.injected.clear()
    injector.injected[0]["call"] = 99
    assert injector.injected == [{"endpoint": "asample", "call": 1, "kind": "drop"}]


# --- seeded rates --------------------------------------------------------------------------


def _rate_decisions(seed: int | None, n: int) -> list[bool]:
    spec = "429@asample~0.3" + ("" if seed is None else f",seed={seed}")
    injector = FaultInjector(FaultPlan.parse(spec))
    decisions = []
    for _ in range(n):
        injector.decide("optim_step")  # not covered: must not consume a draw
        decisions.append(injector.decide("asample") is not None)
    return decisions


def test_rate_follows_random_seeded_in_arrival_order():
    for seed in (11, None):
        rng = random.Random(0 if seed is None else seed)
        expected = [rng.random() < 0.3 for _ in range(200)]
        assert _rate_decisions(seed, 200) == expected
    assert _rate_decisions(11, 200) == _rate_decisions(11, 200)
    assert _rate_decisions(11, 200) != _rate_decisions(12, 200)


def test_each_covering_rate_rule_draws_once_per_request():
    spec = "500@asample~0.5,drop@*~0.2,seed=3"
    sequence = ["asample", "optim_step", "asample", "get_info"] * 50
    rng = random.Random(3)
    expected = []
    for endpoint in sequence:
        first = rng.random() < 0.5 if endpoint == "asample" else False
        second = rng.random() < 0.2
        kind = FaultKind.SERVER_ERROR if first else FaultKind.DROP if second else None
        expected.append(None if kind is None else Fault(kind))
    assert _decide_all(spec, sequence) == expected


# --- threads -------------------------------------------------------------------------------


def test_concurrent_decisions_are_counted_consistently():
    threads_n, per_thread = 8, 400
    endpoints = sorted(FAULTABLE_ENDPOINTS)
    calls = set(range(3, threads_n * per_thread, 7))
    spec = f"429@*#{'+'.join(map(str, sorted(calls)))},500@*~0.5,seed=5"
    injector = FaultInjector(FaultPlan.parse(spec))
    barrier = threading.Barrier(threads_n)
    results: list[list[Fault | None]] = [[] for _ in range(threads_n)]

    def work(index: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            results[index].append(injector.decide(endpoints[(index + i) % len(endpoints)]))

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force frequent thread switches inside decide()
    try:
        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(old_interval)

    total = threads_n * per_thread
    decided = [d for thread in results for d in thread]
    assert sum(injector.arrivals.values()) == total
    # Every request is one '*' arrival, so exactly the listed counts get 429, whatever the
    # interleaving; every request draws once for the rate rule, so the 500s are the draws
    # below 0.5 among requests not already taken by the 429 rule.
    assert sum(d == Fault(FaultKind.RATE_LIMIT) for d in decided) == len(calls)
    rng = random.Random(5)
    draws = [rng.random() < 0.5 for _ in range(total)]
    expected_500 = sum(hit for n, hit in enumerate(draws, start=1) if n not in calls)
    assert sum(d == Fault(FaultKind.SERVER_ERROR) for d in decided) == expected_500
    injected = injector.injected
    assert len(injected) == sum(d is not None for d in decided)
    per_endpoint = {(e["endpoint"], e["call"]) for e in injected}
    assert len(per_endpoint) == len(injected)  # no arrival counted twice
