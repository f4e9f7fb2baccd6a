/*
 * check_cgroup: the cgroup v2 operations (common/cgroup.c) against the real
 * kernel: our own cgroup found from /proc, a child cgroup made, processes
 * moved in by pid and by a child writing itself in between fork and exec,
 * cgroup.kill ending a process and the one it forked into a new session,
 * removal of a tree, and the sweep of what killed owners left. Where the machine gives no writable
 * cgroup v2 the tests that need one say so and pass (what they cover then is the fallback, tested
 * in check_adapter).
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
#include <sys/xattr.h>
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

/* A cgroup NAME under PARENT (caller frees). */
static char *sub_cgroup(const char *parent, const char *name)
{
    char err[512];
    char *dir = xasprintf("%s/%s", parent, name);
    ck_assert_msg(cgroup_make(dir, err, sizeof err) == 0, "%s", err);
    return dir;
}

/* cgroup_own(DIR) from a child that then exits: an owner that is gone. */
static void own_then_die(const char *dir)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cgroup_own(dir);
        _exit(0);
    }
    reap(pid);
}

/* What killed owners left goes, empty and with its sub-cgroups; what a
 * living owner holds, what has no owner recorded, what still runs a
 * process, another prefix and the one skipped stay. */
START_TEST(test_sweep_removes_only_what_dead_owners_left_empty)
{
    char *top = check_cgroup_new("sweep");
    if (!top)
        return;
    char *dead = sub_cgroup(top, "hive-dead");
    char *dead_bot = sub_cgroup(dead, "BOT-1");
    own_then_die(dead);
    char buf[64];
    if (getxattr(dead, "user.hive.owner", buf, sizeof buf) < 0) {
        printf("no user xattrs on this cgroup file system (%s): skipped\n", strerror(errno));
        cgroup_remove(top, 1000);
        free(dead_bot), free(dead), free(top);
        return;
    }
    char *mine = sub_cgroup(top, "hive-mine");
    cgroup_own(mine);
    char *nobody = sub_cgroup(top, "hive-nobody");
    char *other = sub_cgroup(top, "other-dead");
    own_then_die(other);
    char *skipped = sub_cgroup(top, "hive-skipped");
    own_then_die(skipped);
    /* Our pid, another start time: the pid was reused, the owner is gone. */
    char *reused = sub_cgroup(top, "hive-reused");
    char owner[64];
    int n = snprintf(owner, sizeof owner, "%d 1", (int)getpid());
    ck_assert_int_eq(setxattr(reused, "user.hive.owner", owner, (size_t)n, 0), 0);
    /* A dead owner's cgroup that still runs something. */
    char *busy = sub_cgroup(top, "hive-busy");
    own_then_die(busy);
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t runner = fork();
    ck_assert_int_ge(runner, 0);
    if (runner == 0) {
        close(go[1]);
        if (cgroup_enter(busy, 0) < 0)
            _exit(1);
        char c;
        if (read(go[0], &c, 1) < 0)
            _exit(1);
        _exit(0);
    }
    close(go[0]);
    for (int i = 0; i < 1000 && !cgroup_populated(busy); i++)
        usleep(1000);
    ck_assert(cgroup_populated(busy));

    ck_assert_uint_eq(cgroup_sweep(top, "hive-", skipped), 2); /* dead, reused */
    ck_assert_int_lt(access(dead, F_OK), 0);
    ck_assert_int_lt(access(reused, F_OK), 0);
    const char *kept[] = {mine, nobody, other, skipped, busy};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        ck_assert_msg(access(kept[i], F_OK) == 0, "%s was removed", kept[i]);
    /* Once its process is gone, the busy one goes too. */
    close(go[1]);
    ck_assert_int_eq(reap(runner), 0);
    for (int i = 0; i < 1000 && cgroup_populated(busy); i++)
        usleep(1000);
    ck_assert_uint_eq(cgroup_sweep(top, "hive-", skipped), 1);
    ck_assert_int_lt(access(busy, F_OK), 0);
    ck_assert_int_eq(access(mine, F_OK), 0);
    ck_assert_int_eq(cgroup_remove(top, 1000), 0);
    free(dead_bot), free(dead), free(mine), free(nobody), free(other), free(skipped);
    free(reused), free(busy), free(top);
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
    tcase_add_test(tc, test_sweep_removes_only_what_dead_owners_left_empty);
    suite_add_tcase(s, tc);
    return check_run(s);
}
