"""The cyclic garbage collector around the daemon's long-lived data.

Python's collector runs a full pass over every tracked object once enough
objects have survived younger passes. A 5,000-CI CMDB, its index and
thousands of incidents are hundreds of thousands of objects that live as
long as the process, and building them allocates so fast that the collector
runs again and again over what was just built: loading such a CMDB took
two to three times longer with the collector on than off. So:

- `paused()` around building a large structure (a CMDB, a YAML document):
  nothing built there is garbage until the build is done. A pause leaves
  everything it allocated to the next young pass, and from there to older
  ones: for a structure that lives as long as the process (a CMDB),
  `paused(keep=True)` freezes the heap at the end instead, so no pass
  scans it (for a 50,000-CI CMDB those passes took 0.9 s of a 5 s load and
  found nothing to free);
- `settle()` once start-up is done: what it loaded is frozen out of later
  passes (`gc.freeze`), and young passes run every `THRESHOLD0` allocations
  instead of 700, so a burst of requests is not promoted and rescanned;
- `resettle()` after a reload: the replaced CMDB may hold reference cycles
  (a networkx graph refers to itself through its views), which only a pass
  over the unfrozen heap frees; so must whoever drops a kept structure.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLD0 = 50_000  # allocations between young-generation passes (Python's default: 700)


@contextmanager
def paused(keep: bool = False) -> Iterator[None]:
    """No collector passes inside; nested uses are fine. With `keep`, everything alive
    at the end is frozen out of later passes (what was built is long-lived)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if keep:
            gc.freeze()
        if was:
            gc.enable()


def settle() -> None:
    """Collect what start-up left behind, then keep what it built out of later passes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(THRESHOLD0, 20, 100)


def resettle() -> None:
    """After a reload: unfreeze, so what the reload replaced can be collected, and settle."""
    gc.unfreeze()
    settle()
