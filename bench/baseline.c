/*
 * baseline: the machine's own limits that hive's durable paths are compared
 * with, measured the way hive would pay them but with no engine around them.
 *
 *   baseline fsync DIR SECONDS MAX   sequential write + fsync + rename of a
 *                                    small file (200 bytes), one at a time
 *   baseline spawn SECONDS MAX       fork+exec of /bin/cat with a pipe each
 *                                    way and 100 bytes through it, waited for
 *
 * The fsync files are left in DIR for the caller to remove.
 * Each runs until SECONDS have passed or MAX iterations are done and prints
 * one JSON object: {"ops":N,"seconds":S,"per_s":R}.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Write all of BUF or die. */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror("baseline: write");
            exit(1);
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* One durable small-file publication: the pattern of a realtime task. */
static void fsync_once(const char *dir, long i)
{
    char tmp[4096], dst[4096], body[200];
    snprintf(tmp, sizeof tmp, "%s/.b%ld.tmp", dir, i);
    snprintf(dst, sizeof dst, "%s/b%ld.json", dir, i);
    memset(body, 'x', sizeof body);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror("baseline: open");
        exit(1);
    }
    write_all(fd, body, sizeof body);
    if (fsync(fd) < 0) {
        perror("baseline: fsync");
        exit(1);
    }
    close(fd);
    if (rename(tmp, dst) < 0) {
        perror("baseline: rename");
        exit(1);
    }
}

/* One /bin/cat run: 100 bytes in, read back to EOF, reaped. */
static void spawn_once(void)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
        perror("baseline: pipe");
        exit(1);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    char *argv[] = {"/bin/cat", NULL};
    pid_t pid;
    int r = posix_spawn(&pid, "/bin/cat", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        fprintf(stderr, "baseline: posix_spawn: %s\n", strerror(r));
        exit(1);
    }
    close(in[0]);
    close(out[1]);
    char buf[512];
    memset(buf, 'y', 100);
    write_all(in[1], buf, 100);
    close(in[1]);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(out[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(out[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (got != 100) {
        fprintf(stderr, "baseline: cat returned %zu bytes\n", got);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "fsync") == 0 && argc != 5) ||
        (strcmp(argv[1], "spawn") == 0 && argc != 4)) {
        fprintf(stderr, "usage: baseline fsync DIR SECONDS MAX | spawn SECONDS MAX\n");
        return 2;
    }
    int is_fsync = strcmp(argv[1], "fsync") == 0;
    double limit = atof(argv[is_fsync ? 3 : 2]);
    long max = atol(argv[is_fsync ? 4 : 3]);
    double t0 = now_s(), t = t0;
    long i = 0;
    while (i < max && t - t0 < limit) {
        if (is_fsync)
            fsync_once(argv[2], i);
        else
            spawn_once();
        i++;
        t = now_s();
    }
    /* The files stay (the caller removes the folder later): deleting them
     * now would slow the next file creations on ext4 without a journal. */
    printf("{\"ops\":%ld,\"seconds\":%.6f,\"per_s\":%.1f}\n", i, t - t0, i / (t - t0));
    return 0;
}
