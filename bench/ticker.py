#!/usr/bin/python3
"""ticker: the producer of scripts/bench's fan-out rows (bench/events.py).

    ticker.py COUNT GAP_MS [--json BOT_ID]

Writes COUNT lines, GAP_MS apart, each flushed at once: "@I:NS" where I is
the line's index and NS the CLOCK_REALTIME nanoseconds just before the
write. As a `cli` adapter it is a task whose output streams through hive
(task_output events); with --json each line is instead a whole task_output
event of BOT_ID as hive's stream carries it, for bench/ws-broadcast.js to
broadcast verbatim. bench/sseload.c reads the ticks at the far end."""
import json
import sys
import time


def main():
    count, gap = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
    bot = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--json" else None
    out = sys.stdout
    start = time.monotonic()
    for i in range(count):
        # Paced from the start, so a slow write does not shift every later tick.
        delay = start + i * gap - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        tick = "@%d:%d\n" % (i, time.time_ns())
        if bot:
            out.write(json.dumps({"type": "task_output", "bot_id": bot, "task_id": "FANOUT-1",
                                  "source": "http", "timestamp": time.strftime(
                                      "%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "content": tick}, separators=(",", ":")) + "\n")
        else:
            out.write(tick)
        out.flush()


if __name__ == "__main__":
    main()
