"""Tests for deeplab_video.data.background."""

import threading
import time

import pytest

from deeplab_video.data import background


def test_prefetch_yields_everything_in_order():
    assert list(background.prefetch(iter(range(50)), depth=3)) == list(range(50))
    assert list(background.prefetch([], depth=1)) == []


def test_prefetch_runs_ahead_on_another_thread():
    threads = []

    def items():
        for i in range(4):
            threads.append(threading.current_thread())
            yield i

    assert list(background.prefetch(items(), depth=2)) == [0, 1, 2, 3]
    assert all(t is not threading.current_thread() for t in threads)


def test_prefetch_reraises_where_the_error_happened():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    received = []
    with pytest.raises(OSError, match="disk gone"):
        for item in background.prefetch(items(), depth=4):
            received.append(item)
    assert received == [1, 2]


def test_prefetch_stops_its_worker_when_the_consumer_stops_early():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = background.prefetch(items(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert len(produced) <= 4


def test_ordered_calls_run_in_order_off_the_caller_thread():
    calls, threads = [], set()

    def record(index, value):
        time.sleep(0.001 * (index % 3))
        threads.add(threading.current_thread())
        calls.append((index, value))

    with background.OrderedCalls(record, max_pending=2) as ordered:
        for index in range(20):
            ordered.submit(index, index * index)
    assert calls == [(i, i * i) for i in range(20)]
    assert threading.current_thread() not in threads


def test_ordered_calls_reraise_and_skip_the_rest():
    calls = []

    def fail_on_two(index):
        calls.append(index)
        if index == 2:
            raise ValueError("bad frame 2")

    ordered = background.OrderedCalls(fail_on_two, max_pending=1)
    with pytest.raises(ValueError, match="bad frame 2"):
        for index in range(10):
            ordered.submit(index)
        ordered.close()
    with pytest.raises(ValueError, match="bad frame 2"):
        ordered.close()
    assert calls == [0, 1, 2]
    with pytest.raises(RuntimeError, match="after close"):
        ordered.submit(11)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="depth"):
        list(background.prefetch([1], depth=0))
    with pytest.raises(ValueError, match="max_pending"):
        background.OrderedCalls(print, max_pending=0)
