"""The single-pass restore's sender (pure logic, a fake helper): a chunk reaches the helper
only once the next one is asked for, the last only on release(), and a helper that stops
reading stops the pass."""

import threading

import pytest

from restores.archive_io import _HeldBackSender


class FakeHelper:
    def __init__(self, fail_after: int | None = None):
        self.got: list[bytes] = []
        self.closed = False
        self.fail_after = fail_after
        self.wrote = threading.Event()

    def write(self, data):
        if self.fail_after is not None and len(self.got) >= self.fail_after:
            raise OSError("tar exited")
        self.got.append(bytes(data))
        self.wrote.set()

    def close_input(self):
        self.closed = True


def test_each_chunk_waits_for_the_next_and_the_last_for_release():
    helper = FakeHelper()
    sender = _HeldBackSender(helper)
    sender.write(b"one")
    sender.write(b"two")
    assert helper.wrote.wait(5)
    assert helper.got == [b"one"]
    sender.write(b"three")
    sender.release()
    assert helper.got == [b"one", b"two", b"three"] and helper.closed


def test_without_release_the_last_chunk_and_the_end_never_go():
    helper = FakeHelper()
    sender = _HeldBackSender(helper)
    for chunk in (b"a", b"b", b"c"):
        sender.write(chunk)
    sender.close()
    assert helper.got == [b"a", b"b"] and not helper.closed


def test_a_helper_that_stops_reading_stops_the_pass():
    helper = FakeHelper(fail_after=1)
    sender = _HeldBackSender(helper, depth=1)
    sender.write(b"a")
    sender.write(b"b")  # a goes
    sender.write(b"c")  # b fails in the thread
    with pytest.raises(OSError, match="tar exited"):
        for _ in range(100):
            sender.write(b"more")
            sender._thread.join(0.01)
    sender.close()
