/*
 * check_watchlimit: the inotify instance limit is left alone when it is
 * enough, raised when it may be (bots + what others hold + 128 for the
 * rest), and a limit that cannot be raised is reported as short. Files stand
 * in for the /proc knob. The instances others hold are counted in a made-up
 * /proc and in the real one, held by a process that is not our child.
 */
#include "supervisor/watchlimit.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check_support.h"

static char path[64];

/* A temporary knob holding TEXT. */
static void knob(const char *text)
{
    strcpy(path, "/tmp/check-watchlimit-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* The knob's number now. */
static long knob_value(void)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &v), 1);
    fclose(f);
    return v;
}

START_TEST(test_enough_is_left_alone)
{
    knob("1000\n");
    ck_assert_int_eq(watchlimit_ensure(path, 10, 0), 0);
    ck_assert_int_eq(watchlimit_ensure(path, 872, 0), 0);
    ck_assert_int_eq(knob_value(), 1000);
    ck_assert_int_eq(watchlimit_ensure(path, 0, 500), 0);
    unlink(path);
}
END_TEST

/* A knob at START is raised to WANT for WATCHING bots beside IN_USE held
 * by others, and then left alone. */
static void expect_raised(const char *start, size_t watching, size_t in_use, long want)
{
    knob(start);
    ck_assert_int_eq(watchlimit_ensure(path, watching, in_use), 1);
    ck_assert_int_eq(knob_value(), want);
    ck_assert_int_eq(watchlimit_ensure(path, watching, in_use), 0);
    unlink(path);
}

START_TEST(test_short_is_raised)
{
    expect_raised("128\n", 1000, 0, 1128);
}
END_TEST

START_TEST(test_what_others_hold_is_added)
{
    /* Another hive raised the limit to its 1,000 bots + 128, and its
     * workers hold 1,000: ours need room on top of that. */
    expect_raised("1128\n", 10, 1000, 1138);
}
END_TEST

START_TEST(test_short_and_fixed_is_reported)
{
    /* A number that cannot be written, even by root. */
    long score;
    FILE *f = fopen("/proc/self/oom_score", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &score), 1);
    fclose(f);
    ck_assert_int_eq(watchlimit_ensure("/proc/self/oom_score", (size_t)score + 2000, 0), -1);
    /* No knob at all (another kernel): nothing to say. */
    ck_assert_int_eq(watchlimit_ensure("/nonexistent/max_user_instances", 1000, 0), 0);
}
END_TEST

/* A made-up process PID under ROOT: its stat names PPID, and it holds
 * descriptors linking to each of TARGETS. */
static void fake_proc(const char *root, long pid, long ppid, const char *const *targets, size_t n)
{
    char p[128], q[256];
    snprintf(p, sizeof p, "%s/%ld", root, pid);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(q, sizeof q, "%s/stat", p);
    FILE *f = fopen(q, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%ld (a) b) S %ld 1 1 0\n", pid, ppid); /* a name with ") " in it */
    fclose(f);
    snprintf(q, sizeof q, "%s/fd", p);
    ck_assert_int_eq(mkdir(q, 0755), 0);
    for (size_t i = 0; i < n; i++) {
        snprintf(q, sizeof q, "%s/fd/%zu", p, i);
        ck_assert_int_eq(symlink(targets[i], q), 0);
    }
}

START_TEST(test_in_use_counted_in_a_made_up_proc)
{
    char root[] = "/tmp/check-watchlimit-proc-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(root));
    static const char *const three[] = {"anon_inode:inotify", "socket:[1]", "anon_inode:inotify",
                                        "/dev/null", "anon_inode:inotify"};
    static const char *const one[] = {"anon_inode:inotify", "anon_inode:[eventfd]"};
    fake_proc(root, 101, 1, three, 5);              /* another hive's worker: 3 */
    fake_proc(root, 102, 1, one, 2);                /* a program of ours: 1 */
    fake_proc(root, 103, (long)getpid(), three, 5); /* our own bot: not counted */
    fake_proc(root, (long)getpid(), 1, three, 5);   /* ourselves: not counted */
    char p[256];
    snprintf(p, sizeof p, "%s/self", root); /* not a process */
    ck_assert_int_eq(mkdir(p, 0755), 0);
    ck_assert_uint_eq(watchlimit_in_use(root), 4);
    if (geteuid() == 0) { /* another user's process: not charged to us */
        snprintf(p, sizeof p, "%s/101", root);
        ck_assert_int_eq(chown(p, 65534, 65534), 0);
        ck_assert_uint_eq(watchlimit_in_use(root), 1);
    }
    ck_assert_uint_eq(watchlimit_in_use("/nonexistent"), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_in_use_counted_in_proc)
{
    /* A grandchild (not our child: another program of the user) holds two
     * instances, our child one (our bot: not counted). Seen through the
     * real /proc entries of just those two, so that other processes of the
     * machine come and go without changing the count. */
    int ready[2], mine[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(mine), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        pid_t grand = fork();
        if (grand == 0) {
            if (inotify_init1(IN_CLOEXEC) < 0 || inotify_init1(IN_CLOEXEC) < 0)
                _exit(1);
            pid_t me = getpid();
            if (write(ready[1], &me, sizeof me) != sizeof me)
                _exit(1);
            pause();
            _exit(0);
        }
        if (inotify_init1(IN_CLOEXEC) < 0) /* after the fork: the grandchild has not this one */
            _exit(1);
        if (write(mine[1], "c", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    pid_t grand;
    char c;
    ck_assert_int_eq(read(ready[0], &grand, sizeof grand), (ssize_t)sizeof grand);
    ck_assert_int_eq(read(mine[0], &c, 1), 1);
    char root[] = "/tmp/check-watchlimit-proc-XXXXXX", p[256], q[64];
    ck_assert_ptr_nonnull(mkdtemp(root));
    pid_t both[] = {child, grand};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%d", root, (int)both[i]);
        snprintf(q, sizeof q, "/proc/%d", (int)both[i]);
        ck_assert_int_eq(symlink(q, p), 0);
    }
    size_t n = watchlimit_in_use(root);
    kill(grand, SIGKILL);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%d", root, (int)both[i]);
        unlink(p);
    }
    rmdir(root);
    close(ready[0]);
    close(ready[1]);
    close(mine[0]);
    close(mine[1]);
    ck_assert_uint_eq(n, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("watchlimit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_enough_is_left_alone);
    tcase_add_test(tc, test_short_is_raised);
    tcase_add_test(tc, test_what_others_hold_is_added);
    tcase_add_test(tc, test_in_use_counted_in_a_made_up_proc);
    tcase_add_test(tc, test_in_use_counted_in_proc);
    tcase_add_test(tc, test_short_and_fixed_is_reported);
    suite_add_tcase(s, tc);
    return check_run(s);
}
