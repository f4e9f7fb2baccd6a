/*
 * roster: hive.yaml (SPEC §6.1) turned into a plain struct. This is the only
 * place that knows YAML; it reads the file and the token variable and does no
 * other I/O. Every problem is collected as "file:line:column: message" (both
 * 1-based, pointing at the offending key or value) so `hive check` can show
 * them all at once; the parser never logs or exits.
 *
 * The rules the YAML follows:
 * - Top level: `hive`, `defaults`, `bots`; `bots` is required (it may be an
 *   empty list). Only the first YAML document is read; anchors and aliases
 *   work, a merge key `<<` is an unknown key. Files over 4 MiB and nesting
 *   deeper than 64 levels are refused.
 * - `hive`: name (default "hive"), work_dir (default ".", resolved against the
 *   folder of the YAML file — or the current directory for roster_load_string —
 *   and made absolute, lexically: symlinks are kept, the folder need not
 *   exist), listen ("host:port" or "[v6]:port", default 127.0.0.1:8000),
 *   base_port (default the listen port), token_env, allowed_origins,
 *   server_names (Host names besides loopback ones, SPEC §7), and
 *   limits {max_header_bytes 16KiB, max_body 1MiB, max_message 1MiB,
 *   max_connections 1024, header_timeout 10s, idle_timeout 60s}.
 * - Ports: a bot without `port` gets base_port + index + 1, index being its
 *   0-based position in the bots list (SPEC example: BOT-002, index 1, on
 *   8002). Ports must be 1..65535, unique among bots and not the listen port.
 * - `defaults` holds any bot key but id and port. A bot starts from the
 *   built-in defaults, then `defaults`, then its own keys, key by key. The
 *   nested maps `adapter` and `restart` override field by field (a bot's
 *   `adapter: {type: cli, command: [...]}` keeps the default's delay_ms);
 *   every other value, lists and the adapter's env map included, is replaced
 *   whole. A bot's allowed_origins and server_names default to the hive's
 *   (the front door answers by the hive's lists, a bot's port by its own).
 * - Every key's type, default, checks and how it reaches the worker are one
 *   row of the tables at the end of roster.c (roster_defaults_fields holds
 *   the bot keys); the built-in defaults, the worker's argv
 *   (roster_worker_argv) and the reload's test (roster_bot_equal) come from
 *   those rows. adapter.command is an argv list (no shell), adapter.env a map
 *   of NAME: value, env_remove a list of names.
 * - depends_on names other bots of the roster (not itself); a bot whose
 *   dependencies form a cycle is refused at the element that closes it.
 * - Durations: a number of seconds (0.5, 10) or a number with a unit, no
 *   space: "500ms", "10s", "2m", "1h"; at most 1000000 s. Sizes: a whole
 *   number of bytes or with a unit, case-insensitive: b; k, kb, kib; m, mb,
 *   mib; g, gb, gib — all powers of 1024 ("16KiB", "1m", "8MiB").
 * - Numbers and strings are read from the scalar's text whatever its quoting
 *   ("8001" is a port); a null (empty, ~, null) is never a valid value except
 *   for a map, where it means an empty one.
 * - The bot's process (any bot and `defaults`): cwd (the cli adapter's
 *   folder, relative to the work dir; default the work dir), env (a map of
 *   NAME: value) and env_file (NAME=value lines, relative to the roster file
 *   that names it; see envfile.h) for the worker and its adapters, env
 *   winning over env_file as in docker compose; user and group (only when
 *   hive runs as root; they must exist). Limits, refused where no writable
 *   cgroup v2 or v1 controller can enforce them: memory_max (a size),
 *   cpu_max ("50%" of one CPU, or a number of CPUs such as 1.5), tasks_max.
 *   Those host conditions (root, the user, the group, the controllers) are
 *   not checked by the load but by hostcheck_roster, with the same
 *   file:line:column messages (see struct roster_need).
 *   log: {max_bytes 10MiB, backups 3} rotates the captured output.
 * - `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset)
 *   and `$$` in any scalar value, from the environment at load time (see
 *   interp.h); an unset variable without a default is an error at its place.
 * - `include`: a top-level list of roster files (relative to the including
 *   file) whose bots join the roster after the file's own; an included file
 *   holds only `bots` and `include`. Its errors name it; cycles and more
 *   than 16 nested files are refused.
 * - A non-loopback listen or bind address (loopback: 127.0.0.0/8, ::1,
 *   "localhost") needs token_env set and that variable non-empty at load time.
 */
#ifndef HIVE_ROSTER_H
#define HIVE_ROSTER_H

#include <stdbool.h>
#include <stddef.h>

/* Collected messages, "file:line:column: message". Zero it before first use;
 * loads append. */
struct roster_errors {
    char **items;
    size_t n;
};

/* Resource limits shared by the supervisor and every worker (SPEC §7). */
struct roster_limits {
    size_t max_header_bytes; /* request line + headers */
    size_t max_body;
    size_t max_message; /* one WebSocket message */
    int max_connections;
    int header_timeout_ms;
    int idle_timeout_ms;
};

/* How one bot's tasks are run. All vectors are NULL-terminated, never NULL. */
struct roster_adapter {
    char *type;        /* "mock", "cli", or an agent CLI: "claude", "codex", "gemini" */
    char **command;    /* argv; non-empty for "cli", may be empty for "mock" */
    char **env;        /* "NAME=value", in file order */
    char **env_remove; /* variable names */
    int delay_ms;      /* mock: answer after this long */
    long output_cap;   /* bytes of output kept */
    char **args;       /* agent CLIs: arguments after the preset's */
    char *model;       /* agent CLIs: the model, or NULL */
};

/* Spend per day (SPEC §12); 0 / NULL: no limit. */
struct roster_budget {
    char *usd_per_day; /* a number of USD, as written (checked) */
    int tokens_per_day;
    char *reset_at; /* "HH:MM" local: when the day starts; NULL midnight */
};

/* When the supervisor restarts an exited worker. */
struct roster_restart {
    char *policy;     /* "always", "on-failure" or "never" */
    int max_restarts; /* 0 or more; more restarts than this within window -> fatal */
    double window;    /* seconds */
};

/* How a bot's worker process runs: the adapters' folder, the bot-level
 * environment and the user it runs as. */
struct roster_exec {
    char *cwd;       /* absolute; NULL: the work dir */
    char **env;      /* "NAME=value" of `env`, in file order; never NULL */
    char *env_file;  /* absolute path; NULL: none */
    char **file_env; /* "NAME=value" read from env_file; never NULL */
    char *user;      /* NULL: the supervisor's own */
    char *group;     /* NULL: the user's primary group */
};

/* Kernel-enforced limits of a bot's cgroup; 0 means none. */
struct roster_rlimits {
    long memory_max; /* bytes */
    int cpu_max;     /* percent of one CPU (150 = one and a half) */
    int tasks_max;   /* processes and threads */
};

/* How the supervisor rotates a bot's captured output. */
struct roster_logcfg {
    long max_bytes; /* rotate when the file would grow past this */
    int backups;    /* rotated files kept (BOT.log.1 ..); 0: none */
};

/* A bot's own git worktree (SPEC §12). */
struct roster_workspace {
    char *git_worktree; /* the branch prefix (branch PREFIX/BOT-ID); NULL: none */
};

/* How the supervisor checks a remote bot's /health (HAProxy's check). */
struct roster_health {
    double interval; /* seconds between checks */
    double timeout;  /* seconds one check may take */
    int rise;        /* successes in a row that make it running again */
    int fall;        /* failures in a row that make it unreachable */
};

/* A bot the supervisor does not start: it runs elsewhere, at URL. */
struct roster_remote {
    char *url;       /* "http(s)://HOST:PORT"; NULL: a local bot */
    char *token_env; /* NULL: no token sent to it */
    char *token;     /* that variable's value at load time; NULL if unset/empty */
    char *ca;        /* PEM file of the CAs its https:// certificate must chain to */
};

/* One bot, with the defaults already applied. */
struct roster_bot {
    char *id;
    int port;         /* explicit or derived (see above) */
    int line, column; /* of the bot's mapping, for messages */
    char *mode;       /* "hybrid", "cli-only" or "websocket-only" */
    struct roster_adapter adapter;
    double cooldown; /* seconds after each task */
    double timeout;  /* seconds per task, > 0 */
    int queue_max;
    struct roster_restart restart;
    double start_timeout;   /* seconds to READY=1, > 0 */
    double stop_timeout;    /* seconds a running task may finish in */
    double watchdog;        /* seconds without WATCHDOG=1 before a kill; 0 = off */
    char *bind;             /* the worker's address */
    char **allowed_origins; /* NULL-terminated, never NULL */
    char **server_names;    /* Host names besides loopback ones; NULL-terminated */
    bool autostart;         /* false: started only by `hive start BOT` */
    char **depends_on;      /* ids started (and running) before this bot; NULL-terminated */
    int stop_signal;        /* sent first by a stop (SIGTERM by default) */
    struct roster_exec exec;
    struct roster_rlimits rlimits;
    struct roster_logcfg log;
    struct roster_workspace workspace;
    double stall_after; /* seconds of silence before task_stalled; 0 = off */
    char *pool;         /* the pool POST /api/task {"pool"} picks from; NULL: none */
    char **tags;        /* what {"tags": [...]} matches; NULL-terminated, never NULL */
    char *session;      /* agent CLIs: "new" or "continue" */
    bool auto_resume;   /* after a usage limit, resume by itself */
    struct roster_budget budget;
    struct roster_remote remote;
    struct roster_health health;
};

/* What a roster asks of the host it runs on — a user, a group, a cgroup
 * controller — and where it asks. The load only notes these (it does no
 * host probe, so a client that needs the listen address loads a roster as
 * any user); hostcheck_roster (config/hostcheck.h) checks them for `hive
 * check`, `hive up` and the supervisor's reload. */
enum roster_need_kind { ROSTER_NEED_USER, ROSTER_NEED_GROUP, ROSTER_NEED_CGROUP };
struct roster_need {
    enum roster_need_kind kind;
    char *key;   /* the roster key: "user", "group", "memory_max", "cpu_max", "tasks_max" */
    char *value; /* the user or group name, or the cgroup controller */
    char *shown; /* VALUE quoted for a message (control bytes as '?') */
    char *where; /* "file:line:column" of the value */
};

/* The front door's TLS (hive.tls): both set, or neither (plain HTTP). */
struct roster_tls {
    char *cert; /* PEM certificate chain, absolute; NULL: no TLS */
    char *key;  /* PEM private key, absolute */
};

/* A whole hive.yaml. */
struct roster {
    char *path; /* absolute path of the file (the name given to load_string) */
    char *name;
    char *work_dir;    /* absolute */
    char *listen_host; /* without brackets */
    int listen_port;
    int base_port;
    char *token_env;        /* NULL when not set */
    char *token;            /* the variable's value at load time; NULL if unset/empty */
    char **allowed_origins; /* NULL-terminated, never NULL */
    char **server_names;    /* NULL-terminated, never NULL */
    char *ca;               /* the remote bots' default ca (absolute); NULL: the system's */
    struct roster_tls tls;  /* the front door's certificate and key */
    struct roster_limits limits;
    struct roster_budget budget; /* the whole hive's (the supervisor keeps it) */
    struct roster_bot *bots;
    size_t n_bots;
    struct roster_need *needs; /* host checks of hostcheck_roster, in file order */
    size_t n_needs;
};

/* Load the roster at PATH. 0 with *OUT set, or -1 with *OUT NULL and every
 * problem appended to ERRS (which may be NULL). */
int roster_load(const char *path, struct roster **out, struct roster_errors *errs);
/* Load a roster from LEN bytes; NAME is used in messages and as path,
 * relative work_dirs are resolved against the current directory. */
int roster_load_string(const char *text, size_t len, const char *name, struct roster **out,
                       struct roster_errors *errs);
/* Free a roster (NULL is fine). */
void roster_free(struct roster *roster);
/* The bot with ID, or NULL. */
const struct roster_bot *roster_find_bot(const struct roster *roster, const char *id);
/* hive-worker's argv for bot B of R (worker_path, id, then the flags of every
 * table row that has one, "--" and the adapter command last). Free it with
 * roster_argv_free. */
char **roster_worker_argv(const struct roster *r, const struct roster_bot *b,
                          const char *worker_path);
void roster_argv_free(char **argv);
/* Called by roster_keys for each key; ON_ARGV: the key reaches the worker
 * through roster_worker_argv. */
typedef void (*roster_key_cb)(const char *key, bool on_argv, void *arg);
/* Every key of the tables, for tools that must follow them (hive export): the
 * hive's as "hive.KEY" ("hive.limits.max_body"), a bot's as "KEY" or
 * "MAP.KEY" ("adapter.type"); a map itself is not passed, its keys are. */
void roster_keys(roster_key_cb cb, void *arg);
/* The built-in defaults of a bot — every row's default of the tables in
 * roster.c, what a bot of a roster without `defaults:` gets — into B; also
 * what hive-worker assumes for a flag it is not given (worker/options.c), so
 * there is one copy. Free with roster_builtin_bot_free. */
void roster_builtin_bot(struct roster_bot *b);
void roster_builtin_bot_free(struct roster_bot *b);
/* The built-in hive.limits into L (nothing to free). */
void roster_builtin_limits(struct roster_limits *l);
/* The worker's --stop-grace for a bot's stop_timeout: how long a running
 * task may finish after SIGTERM, a second before the SIGKILL. */
double roster_stop_grace(double stop_timeout);
/* The name of signal SIG without "SIG" ("TERM"), "?" when not a stop_signal. */
const char *roster_signal_name(int sig);
/* True when A and B define the same worker: every field but line/column and
 * the live ones (a reload takes those as they are, without a new worker). */
bool roster_bot_equal(const struct roster_bot *a, const struct roster_bot *b);
/* True when the hive-level settings every worker inherits (work_dir, token,
 * allowed_origins, limits) are the same; when false, reload restarts all. */
bool roster_shared_equal(const struct roster *a, const struct roster *b);
/* Split a remote bot's URL ("http(s)://HOST[:PORT][/]"): true with *TLS,
 * HOST (without brackets) and *PORT (80/443 when not given). */
bool roster_url_split(const char *url, bool *tls, char *host, size_t hostcap, int *port);
/* Free the messages and zero ERRS. */
void roster_errors_free(struct roster_errors *errs);

#endif
