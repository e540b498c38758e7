"""When Python's cycle collector runs: not while a function starts, far less often than its default after that."""

from __future__ import annotations

import gc

# The collector runs after every 700 net allocations by default: on the request path, several times per request,
# each pass walking the young objects. Requests leave little cyclic garbage, so it may wait far longer (two servers
# on one stack, loaded in turns: about 7 % less server CPU per payment request).
GC_THRESHOLDS = (50_000, 20, 10)
# A cold start allocates about 110,000 objects and keeps nearly all of them (a few hundred are garbage) for the
# container's life: at GC_THRESHOLDS the collector would walk them twice while the handler is imported, about 20 ms,
# for nothing. A ceiling rather than gc.disable(): a process that never ends its cold start still collects, rarely.
COLD_START_THRESHOLDS = (500_000, 20, 10)


def pause_for_cold_start() -> None:
    """From the first import of a function (functions/__init__.py) until its app is built: no collection."""
    gc.set_threshold(*COLD_START_THRESHOLDS)


def tune_gc() -> None:
    """Collect cycles at the request path's pace; idempotent (every app calls it once built, and the sweep).

    At the end of a cold start, what it built is frozen first: it lives as long as the container, so the collector
    never walks it again (and nothing is left counted towards a first collection on the first request)."""
    if gc.get_threshold() == COLD_START_THRESHOLDS:
        gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
