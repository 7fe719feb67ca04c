"""Wake-ups within one process (llmscope/wakeups.py): each listener of a subject, until it stops."""

from __future__ import annotations

import threading

from llmscope.wakeups import listen, notify


def test_a_write_wakes_each_listener_of_its_subject_until_it_stops() -> None:
    woken: list[str] = []
    stop_a = listen("test subject", lambda: woken.append("a"))
    stop_b = listen("test subject", lambda: woken.append("b"))
    listen("another subject", lambda: woken.append("other"))
    notify("test subject")
    stop_a()
    notify("test subject")
    stop_b()
    stop_b()  # a second stop changes nothing
    notify("test subject")
    assert woken == ["a", "b", "b"]


def test_a_write_in_another_thread_wakes_the_listener() -> None:
    woken = threading.Event()
    stop = listen("threaded subject", woken.set)
    try:
        writer = threading.Thread(target=notify, args=("threaded subject",))  # the store calls run on threads
        writer.start()
        writer.join()
        assert woken.is_set()
    finally:
        stop()
