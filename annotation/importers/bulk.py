"""Helpers for reading a whole file of records at once."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a file's records are parsed and written.

    Parsing allocates hundreds of thousands of containers that all stay alive, and each
    collection would walk every one parsed so far (~10% of an import's time); they hold no
    reference cycles, so there is nothing for it to find. Reference counting still frees memory."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
