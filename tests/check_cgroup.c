/*
 * check_cgroup: the cgroup v2 operations (common/cgroup.c) against the real
 * kernel: our own cgroup found from /proc, a child cgroup made, processes
 * moved in by pid and by a child writing itself in between fork and exec,
 * cgroup.kill ending a process and the one it forked into a new session,
 * and removal of a tree. Where the machine gives no writable cgroup v2 the
 * tests that need one say so and pass (what they cover then is the
 * fallback, tested in check_adapter).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/util.h"
#include "tests/check_support.h"

/* Wait for PID (our child) and return its status. */
static int reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* True when PID is gone or a zombie. */
static bool pid_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return !rp || rp[1] == '\0' || rp[2] == 'Z' || rp[2] == 'X';
}

START_TEST(test_self_dir)
{
    char err[512] = "";
    char *dir = cgroup_self_dir(err, sizeof err);
    if (!dir) {
        ck_assert_str_ne(err, "");
        return;
    }
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    char *procs = xasprintf("%s/cgroup.procs", dir);
    ck_assert_int_eq(access(procs, R_OK), 0);
    free(procs);
    free(dir);
}
END_TEST

START_TEST(test_kill_reaches_setsid_grandchild)
{
    char *dir = check_cgroup_new("kill");
    if (!dir)
        return;
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        /* Wait until moved, then fork a grandchild in a session of its own
         * and tell the parent its pid. */
        close(p[0]);
        usleep(100000);
        pid_t g = fork();
        if (g == 0) {
            setsid();
            pause();
            _exit(0);
        }
        ssize_t unused = write(p[1], &g, sizeof g);
        (void)unused;
        pause();
        _exit(0);
    }
    close(p[1]);
    ck_assert_int_eq(cgroup_enter(dir, child), 0);
    pid_t grandchild = 0;
    ck_assert_int_eq(read(p[0], &grandchild, sizeof grandchild), (ssize_t)sizeof grandchild);
    close(p[0]);
    ck_assert(cgroup_populated(dir));
    ck_assert_int_eq(cgroup_kill(dir), 0);
    int status = reap(child);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* The grandchild (not ours: init reaps it) is gone too. */
    int64_t deadline = util_mono_ms() + 2000;
    while (cgroup_populated(dir) && util_mono_ms() < deadline)
        usleep(5000);
    ck_assert(!cgroup_populated(dir));
    while (!pid_gone(grandchild) && util_mono_ms() < deadline + 2000)
        usleep(5000);
    ck_assert_msg(pid_gone(grandchild), "setsid grandchild %d survived", (int)grandchild);
    ck_assert_int_eq(cgroup_remove(dir, 1000), 0);
    ck_assert_int_lt(access(dir, F_OK), 0);
    free(dir);
}
END_TEST

START_TEST(test_enter_by_fd_before_exec)
{
    char *dir = check_cgroup_new("fd");
    if (!dir)
        return;
    int fd = cgroup_procs_open(dir);
    ck_assert_int_ge(fd, 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        if (cgroup_enter_fd(fd) < 0)
            _exit(2);
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(3);
    }
    close(fd);
    int64_t deadline = util_mono_ms() + 2000;
    while (!cgroup_populated(dir) && util_mono_ms() < deadline)
        usleep(5000);
    ck_assert(cgroup_populated(dir));
    /* cgroup_remove kills what is inside first. */
    ck_assert_int_eq(cgroup_remove(dir, 2000), 0);
    int status = reap(child);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_lt(access(dir, F_OK), 0);
    free(dir);
}
END_TEST

START_TEST(test_remove_tree_and_missing)
{
    char *dir = check_cgroup_new("tree");
    if (!dir)
        return;
    char *sub = xasprintf("%s/hive-sub", dir);
    char err[512];
    ck_assert_int_eq(cgroup_make(sub, err, sizeof err), 0);
    ck_assert_int_eq(cgroup_make(sub, err, sizeof err), 0); /* already there is fine */
    ck_assert_int_eq(cgroup_remove(dir, 1000), 0);
    ck_assert_int_lt(access(sub, F_OK), 0);
    ck_assert_int_lt(access(dir, F_OK), 0);
    ck_assert_int_eq(cgroup_remove(dir, 100), 0); /* gone already */
    ck_assert_int_lt(cgroup_kill(dir), 0);
    ck_assert_int_eq(errno, ENOENT);
    free(sub);
    free(dir);
}
END_TEST

START_TEST(test_make_outside_cgroupfs_fails)
{
    char tmpl[] = "/tmp/check-cgroup-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    char *dir = xasprintf("%s/hive-not-a-cgroup", tmpl);
    char err[512] = "";
    ck_assert_int_lt(cgroup_make(dir, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "cgroup.kill"));
    ck_assert_int_lt(access(dir, F_OK), 0); /* not left behind */
    rmdir(tmpl);
    free(dir);
}
END_TEST

int main(void)
{
    check_remove_stale_cgroups("hive-check-");
    Suite *s = suite_create("cgroup");
    TCase *tc = tcase_create("cgroup");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_self_dir);
    tcase_add_test(tc, test_kill_reaches_setsid_grandchild);
    tcase_add_test(tc, test_enter_by_fd_before_exec);
    tcase_add_test(tc, test_remove_tree_and_missing);
    tcase_add_test(tc, test_make_outside_cgroupfs_fails);
    suite_add_tcase(s, tc);
    return check_run(s);
}
