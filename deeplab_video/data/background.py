"""Host I/O off the main thread: prefetching an iterator and running calls in order.

Video inference alternates between TensorFlow (the network and post-processing, which
release the GIL while their kernels run) and host I/O: decoding frames, encoding PNGs and
the overlay video (OpenCV, which also releases the GIL). Running the I/O on worker threads
overlaps it with the computation. Both helpers keep order, bound the number of pending
items (so memory stays flat on long videos), and re-raise a worker's exception in the
caller's thread.
"""

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_DONE = object()  # Marks the end of a prefetched iterator.


class _Failure:
    """An exception raised on a worker thread, carried to the caller."""

    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Yields the items of `items`, produced up to `depth` ahead on a worker thread.

    Args:
        items: any iterable (e.g. decoded video frames); it is consumed on the worker.
        depth: how many items may wait ahead of the consumer.

    Raises:
        Whatever iterating `items` raised, when the consumer reaches that point.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    pending: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer.
            put(_Failure(error))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = pending.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()  # The consumer stopped early: let the worker finish.
        worker.join()


class OrderedCalls:
    """Runs `function(*args)` for every `submit` in submission order on one worker thread.

    Example:
        with OrderedCalls(writer.add, max_pending=4) as calls:
            for frame_index, frame, panoptic in results:
                calls.submit(frame_index, frame, panoptic)
        # Every call has run here.

    Args:
        function: called on the worker thread; its return value is dropped.
        max_pending: submits beyond this many unfinished calls wait (back-pressure).
    """

    def __init__(self, function: Callable[..., Any], max_pending: int = 4):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._function = function
        self._pending: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._run, name="ordered-calls", daemon=True)
        self._worker.start()
        self._closed = False

    def _run(self) -> None:
        while True:
            args = self._pending.get()
            if args is _DONE:
                return
            if self._error is None:
                try:
                    self._function(*args)
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller.
                    self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, *args: Any) -> None:
        """Queues one call (waits while max_pending calls are unfinished).

        Raises:
            RuntimeError: after `close`.
            Whatever an earlier call raised on the worker (later calls are skipped).
        """
        if self._closed:
            raise RuntimeError("submit after close")
        self._raise_error()
        self._pending.put(args)

    def close(self) -> None:
        """Waits for every submitted call; re-raises the first exception one of them raised."""
        if not self._closed:
            self._closed = True
            self._pending.put(_DONE)
            self._worker.join()
        self._raise_error()

    def __enter__(self) -> "OrderedCalls":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
