"""``hub`` with the cyclic GC's pauses recorded: ``python bench/hub_gc.py run``.

bench/intake.py starts the hub through this file instead of ``python -m hub``:
it runs the same ``hub`` command of whatever checkout ``PYTHONPATH`` points at,
and at exit writes every garbage collection (wall time it ended, generation,
pause) as JSON to ``$HUB_BENCH_GC_OUT``. With ``HUB_BENCH_GC_FREEZE=1`` it also
moves the heap the start-up built into the permanent generation
(``gc.collect(); gc.freeze()``) as soon as the hub on ``$HUB__HUB__PORT``
answers ``/readyz`` with 200: what a hub would do to keep its full collections short.
Then it writes ``$HUB_BENCH_GC_OUT.frozen``, which the benchmark waits for.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import threading
import time
import urllib.request

_pauses: list[tuple[float, int, float]] = []  # (time.time() at the end, generation, seconds)
_started = [0.0]
_frozen = [0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses.append((time.time(), info["generation"], time.perf_counter() - _started[0]))


def _write() -> None:
    out = os.environ.get("HUB_BENCH_GC_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"pauses": _pauses, "frozen": _frozen[0]}, f)


def _freeze_when_ready(port: int) -> None:
    while True:  # a hub may listen before it has started: wait for /readyz
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.05)
    gc.collect()
    gc.freeze()
    _frozen[0] = gc.get_freeze_count()
    with open(os.environ["HUB_BENCH_GC_OUT"] + ".frozen", "w") as f:
        f.write(str(_frozen[0]))


def main() -> None:
    gc.callbacks.append(_on_gc)
    atexit.register(_write)
    if os.environ.get("HUB_BENCH_GC_FREEZE") == "1":
        port = int(os.environ["HUB__HUB__PORT"])
        threading.Thread(target=_freeze_when_ready, args=(port,), daemon=True).start()
    from hub.cli import main as hub_main

    sys.argv = ["hub", *sys.argv[1:]]
    hub_main()


if __name__ == "__main__":
    main()
