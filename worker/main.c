/*
 * main: hive-worker's entry point — parse the command line, run the bot.
 */
#include <stdio.h>

#include "common/log.h"
#include "worker/options.h"
#include "worker/worker.h"

int main(int argc, char **argv)
{
    struct worker_options o;
    char err[300];
    if (options_parse(argc, argv, &o, err, sizeof err) < 0) {
        fprintf(stderr, "hive-worker: %s\n%s", err, options_usage());
        options_free(&o);
        return 2;
    }
    if (o.help || o.version) {
        fputs(o.help ? options_usage() : "hive-worker " HIVE_VERSION "\n", stdout);
        options_free(&o);
        return 0;
    }
    int level = log_level_parse(o.log_level);
    if (level < 0) {
        fprintf(stderr, "hive-worker: invalid --log-level '%s'\n", o.log_level);
        options_free(&o);
        return 2;
    }
    log_init(o.bot_id, (enum log_level)level);
    int code = worker_run(&o);
    options_free(&o);
    return code;
}
