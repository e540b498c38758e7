"""When Python's cycle collector runs: far less often than its default, from the first import of a function on."""

from __future__ import annotations

import gc

# The collector runs after every 700 net allocations by default: on the request path, several times per request,
# each pass walking the young objects. Requests leave little cyclic garbage, so it may wait far longer (two servers
# on one stack, loaded in turns: about 7 % less server CPU per payment request). A cold start allocates far more
# (the libraries, the app, its routes), all of it kept for the container's life: with the default thresholds the
# collector walks it again and again while the handler is imported.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Collect cycles less often; idempotent (functions/__init__.py and every app call it)."""
    gc.set_threshold(*GC_THRESHOLDS)
