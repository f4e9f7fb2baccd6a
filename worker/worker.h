/*
 * worker: the hive-worker process — its listening socket (inherited or
 * bound), signals, systemd notifications, and the wiring of store, engine
 * and API on one event loop.
 */
#ifndef HIVE_WORKER_H
#define HIVE_WORKER_H

#include "worker/options.h"

/* Run the bot until it is stopped; returns the process exit status. */
int worker_run(const struct worker_options *options);

#endif
