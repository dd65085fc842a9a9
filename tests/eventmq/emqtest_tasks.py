"""Job functions for EventMQ's Python jobmanager in the interop tests."""
import os


def add(a, b):
    return a + b


def whoami():
    return {"pid": os.getpid(), "runner": "eventmq"}


def sleep(seconds):
    import time
    time.sleep(seconds)
    return seconds
