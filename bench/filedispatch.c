/*
 * filedispatch: how long a file task waits between being renamed into a
 * bot's queue folder and being started — the worker's claim, an atomic
 * rename into _active/, seen here with inotify.
 *
 *   filedispatch WORK_DIR BOT COUNT GAP_MS TIMEOUT_S
 *
 * Writes each task in WORK_DIR/.deia/bench-staging/ (same filesystem), then
 * times rename(staging → queue) → IN_MOVED_TO of that name in _active/, waits
 * for the task to reach _archive/ and GAP_MS more so the bot is idle again.
 * Prints {"count","p50_us","p99_us","max_us"}; exit 1 on a timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Monotonic nanoseconds. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* What inotify has shown of the current task: claimed (in _active/) and
 * archived (in _archive/). One read may bring both events, so both are kept. */
struct seen {
    int wd_active, wd_archive;
    const char *name;
    int64_t claimed_ns; /* 0 until seen */
    int archived;
};

/* Read the events there are, waiting until DEADLINE for at least one. */
static int events_read(int ifd, struct seen *s, int64_t deadline)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int64_t left = deadline - now_ns();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = ifd, .events = POLLIN};
    if (poll(&p, 1, (int)(left / 1000000) + 1) <= 0)
        return 0;
    int64_t t = now_ns();
    ssize_t n = read(ifd, buf, sizeof buf);
    for (char *q = buf; n > 0 && q < buf + n;) {
        struct inotify_event *ev = (struct inotify_event *)q;
        if (ev->len && (ev->mask & (IN_MOVED_TO | IN_CREATE)) && strcmp(ev->name, s->name) == 0) {
            if (ev->wd == s->wd_active && !s->claimed_ns)
                s->claimed_ns = t;
            if (ev->wd == s->wd_archive)
                s->archived = 1;
        }
        q += sizeof *ev + ev->len;
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: filedispatch WORK_DIR BOT COUNT GAP_MS TIMEOUT_S\n");
        return 2;
    }
    const char *dir = argv[1], *bot = argv[2];
    int count = atoi(argv[3]), gap_ms = atoi(argv[4]);
    int64_t deadline = now_ns() + (int64_t)(atof(argv[5]) * 1e9);
    char staging[PATH_MAX], queue[PATH_MAX - 64], active[PATH_MAX], archive[PATH_MAX];
    snprintf(staging, sizeof staging, "%s/.deia/bench-staging", dir);
    snprintf(queue, sizeof queue, "%s/.deia/hive/tasks/%s", dir, bot);
    snprintf(active, sizeof active, "%s/_active", queue);
    snprintf(archive, sizeof archive, "%s/_archive", queue);
    mkdir(staging, 0755);
    int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    int wa = inotify_add_watch(ifd, active, IN_MOVED_TO | IN_CREATE);
    int wr = inotify_add_watch(ifd, archive, IN_MOVED_TO | IN_CREATE);
    if (ifd < 0 || wa < 0 || wr < 0) {
        perror("filedispatch: inotify on _active/ and _archive/");
        return 1;
    }
    int64_t *lat = calloc((size_t)count, sizeof *lat);
    int done = 0;
    for (int i = 0; i < count; i++) {
        char name[64], src[PATH_MAX + 64], dst[PATH_MAX + 64];
        snprintf(name, sizeof name, "FD-%d-%d.md", (int)getpid(), i);
        snprintf(src, sizeof src, "%s/%s", staging, name);
        snprintf(dst, sizeof dst, "%s/%s", queue, name);
        FILE *f = fopen(src, "w");
        if (!f) {
            perror("filedispatch: staging file");
            return 1;
        }
        fprintf(f, "---\ntask_id: FD-%d-%d\nfrom: bench\npriority: P1\n---\nx\n", (int)getpid(), i);
        fclose(f);
        struct seen seen = {.wd_active = wa, .wd_archive = wr, .name = name};
        int64_t t0 = now_ns();
        if (rename(src, dst) < 0) {
            perror("filedispatch: rename into the queue");
            return 1;
        }
        while (!seen.archived && events_read(ifd, &seen, deadline) == 0)
            ;
        if (!seen.claimed_ns || !seen.archived)
            break;
        lat[done++] = seen.claimed_ns - t0;
        usleep((useconds_t)gap_ms * 1000);
    }
    qsort(lat, (size_t)done, sizeof *lat, cmp_i64);
    double p50 = done ? lat[(done - 1) / 2] / 1e3 : -1;
    double p99 = done ? lat[(int)((done - 1) * 0.99 + 0.5)] / 1e3 : -1;
    double mx = done ? lat[done - 1] / 1e3 : -1;
    printf("{\"count\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n", done, p50, p99, mx);
    return done == count ? 0 : 1;
}
