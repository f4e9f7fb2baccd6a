"""Measurement 9 of scripts/bench: the supervisor's pool routing decision
(SPEC §12, issue 13) at 1,000 bots, timed by build/bench/bench-pool (bench/pool.c,
built by CMake with the supervisor library). Target: a decision in at most
100 µs, median of the rounds, with every one of the 1,000 bots a candidate."""
import json
import os
import subprocess


def m11_pool(res, build_dir, reps, quick):
    """9: pool_choose at 1,000 bots: one pool of all, by tag, pool plus tags."""
    exe = os.path.join(build_dir, "bench", "bench-pool")
    if not os.access(exe, os.X_OK):
        raise RuntimeError("%s is missing: run scripts/build normal" % exe)
    rounds = 2000 if quick else 20000
    runs = []
    for _ in range(reps):
        r = subprocess.run([exe, "1000", str(rounds)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("bench-pool: rc %d, %s" % (r.returncode, r.stderr.decode()[-500:]))
        runs.append(json.loads(r.stdout.decode().strip().splitlines()[-1]))
    res.target("11", "pool decision, 1000 bots in one pool (median)",
               [x["pool_all_us"] for x in runs], "<=", 100.0, "µs")
    res.figure("11", "pool decision, 1000 bots in one pool (p99)",
               "µs", [x["pool_all_p99_us"] for x in runs])
    res.figure("11", "tags decision, 100 of 1000 bots tagged (median)",
               "µs", [x["tag_us"] for x in runs])
