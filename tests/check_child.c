/*
 * check_child: child_spawn starts a program the way the worker expects
 * (LISTEN_PID its own pid, the handed-over descriptor on fd 3 and nothing
 * else of ours, the hive's variables winning over the bot's, the token
 * variables removed), and says why into the output when it cannot (a
 * missing program: "hive: cannot run ..." and exit 78), both with the
 * reserved descriptor slots and without them. child_look tells a process
 * asleep in epoll_wait (an event loop waiting for work) from one that runs,
 * sleeps elsewhere, is stopped or is gone; child_sleeps moves only while a
 * process goes to sleep again and again. A worker is started right inside
 * its cgroup v2 (clone3 CLONE_INTO_CGROUP), also inside one that was once
 * cgroup.kill'ed (which Linux 6.x kills at birth: the spawn sees it and
 * moves the child instead), and cgtree gives each start a new cgroup in
 * the bot's, removing the bot's earlier ones once they are empty.
 */
#include "supervisor/child.h"
#include "supervisor/cgtree.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/util.h"
#include "tests/check_support.h"

/* All of FD's output until EOF (bounded: 10 s, 64 KiB) into BUF. */
static void child_test_read_all(int fd, char *buf, size_t cap)
{
    size_t have = 0;
    for (int rounds = 0; rounds < 1000 && have + 1 < cap; rounds++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) < 0)
            break;
        ssize_t n = read(fd, buf + have, cap - 1 - have);
        if (n == 0)
            break;
        if (n > 0)
            have += (size_t)n;
        else if (errno != EAGAIN && errno != EINTR)
            break;
    }
    buf[have] = '\0';
}

/* Run SCRIPT with /bin/sh as a worker would be, in the cgroup v2 CGROUP
 * (NULL: ours); its output and exit status. */
static int child_test_run_in(const char *path, const char *script, const char *cgroup, char *out,
                             size_t cap)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* Descriptors of ours that must not reach the child. */
    int extra[8];
    for (size_t i = 0; i < 8; i++)
        extra[i] = open("/dev/null", O_RDONLY | (i % 2 ? O_CLOEXEC : 0));
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)script, NULL};
    char *env[] = {(char *)"BOT_OWN=mine", (char *)"NOTIFY_SOCKET=@bot-wrong",
                   (char *)"ROSTER_TOKEN=leak", NULL};
    setenv("HIVE_TOKEN", "old", 1);
    setenv("ROSTER_TOKEN", "leak", 1);
    setenv("WATCHDOG_PID", "1", 1);
    struct child_spec spec = {.path = path,
                              .argv = argv,
                              .fds = {{sv[0], "listen"}},
                              .n_fds = 1,
                              .notify_socket = "@hive-test",
                              .token = NULL,
                              .token_env = "ROSTER_TOKEN",
                              .env = env,
                              .cgroup_dir = cgroup};
    char err[256] = "";
    int out_fd = -1;
    pid_t pid = child_spawn(&spec, &out_fd, err, sizeof err);
    ck_assert_msg(pid > 0, "spawn: %s", err);
    child_test_read_all(out_fd, out, cap);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    close(out_fd);
    close(sv[0]);
    close(sv[1]);
    for (size_t i = 0; i < 8; i++)
        close(extra[i]);
    char want[64];
    snprintf(want, sizeof want, "pid=%d\n", (int)pid);
    if (strcmp(path, "/bin/sh") == 0)
        ck_assert_msg(strstr(out, want), "no %s in: %s", want, out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int child_test_run(const char *path, const char *script, char *out, size_t cap)
{
    return child_test_run_in(path, script, NULL, out, cap);
}

static const char child_test_script[] =
    "echo pid=$LISTEN_PID; echo fds=$LISTEN_FDS names=$LISTEN_FDNAMES;"
    "echo notify=$NOTIFY_SOCKET own=$BOT_OWN store=$FDSTORE;"
    "echo token=${HIVE_TOKEN-unset} roster=${ROSTER_TOKEN-unset} wd=${WATCHDOG_PID-unset};"
    "echo sup=$HIVE_SUPERVISOR_PID;"
    /* The shell's own descriptors: the listing's directory fd is the
     * highest, so everything up to 3 and one more. */
    "echo open=$(ls /proc/$$/fd | sort -n | tr '\\n' ' ');"
    "[ -S /proc/self/fd/3 ] || test -e /proc/self/fd/3 && echo fd3=yes; exit 7";

/* The whole contract of a successful spawn, in OUT. */
static void child_test_check_out(const char *out)
{
    ck_assert_msg(strstr(out, "fds=1 names=listen\n"), "%s", out);
    ck_assert_msg(strstr(out, "notify=@hive-test own=mine store=1\n"), "%s", out);
    ck_assert_msg(strstr(out, "token=unset roster=unset wd=unset\n"), "%s", out);
    char sup[64];
    snprintf(sup, sizeof sup, "sup=%d\n", (int)getpid());
    ck_assert_msg(strstr(out, sup), "%s", out);
    ck_assert_msg(strstr(out, "open=0 1 2 3 "), "%s", out);
    ck_assert_msg(strstr(out, "fd3=yes"), "%s", out);
    /* Nothing but 0-3 and the listing's own (one more). */
    const char *open = strstr(out, "open=0 1 2 3 ");
    int more = 0;
    for (const char *p = open + strlen("open=0 1 2 3 "); *p && *p != '\n'; p++)
        if (*p == ' ')
            more++;
    ck_assert_msg(more <= 1, "descriptors leaked: %s", out);
}

START_TEST(test_spawn_whole_table)
{
    char out[4096];
    ck_assert_int_eq(child_test_run("/bin/sh", child_test_script, out, sizeof out), 7);
    child_test_check_out(out);
}
END_TEST

START_TEST(test_spawn_reserved_slots)
{
    child_reserve_fds();
    /* Many descriptors of ours above the slots, as a big hive has. */
    int many[200];
    for (size_t i = 0; i < 200; i++)
        many[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char out[4096];
    for (int round = 0; round < 3; round++) {
        ck_assert_int_eq(child_test_run("/bin/sh", child_test_script, out, sizeof out), 7);
        child_test_check_out(out);
    }
    for (size_t i = 0; i < 200; i++)
        close(many[i]);
}
END_TEST

START_TEST(test_spawn_cannot_run)
{
    char out[4096];
    child_reserve_fds();
    int rc = child_test_run("/nonexistent/hive-worker", "exit 0", out, sizeof out);
    ck_assert_int_eq(rc, CHILD_EXIT_NOEXEC);
    ck_assert_msg(strstr(out, "hive: cannot run /nonexistent/hive-worker: No such file or "
                              "directory\n"),
                  "%s", out);
}
END_TEST

/* The "0::" path of the child's cgroup, as /proc/<pid>/cgroup says it, is
 * the end of DIR. */
static void child_test_check_in(const char *out, const char *dir)
{
    const char *line = strstr(out, "cg=0::");
    ck_assert_msg(line, "%s", out);
    line += strlen("cg=0::");
    size_t n = strcspn(line, "\n");
    ck_assert_msg(n > 1 && strlen(dir) >= n && strncmp(dir + strlen(dir) - n, line, n) == 0,
                  "child in %.*s, not in %s", (int)n, line, dir);
}

static const char child_test_cg_script[] = "echo pid=$LISTEN_PID; echo cg=$(grep ^0:: "
                                           "/proc/self/cgroup); exit 7";

START_TEST(test_spawn_into_cgroup)
{
    char *dir = check_cgroup_new("spawn");
    if (!dir)
        return;
    char out[4096];
    child_reserve_fds();
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(child_test_run_in("/bin/sh", child_test_cg_script, dir, out, sizeof out),
                         7);
        child_test_check_in(out, dir);
        ck_assert_msg(!strstr(out, "hive: cannot enter"), "%s", out);
    }
    cgroup_remove(dir, 1000);
    free(dir);
}
END_TEST

/* Linux 6.x (6.18 seen) kills at birth what clone3(CLONE_INTO_CGROUP) puts
 * into a cgroup that was cgroup.kill'ed once: the spawn must see that and
 * start the worker all the same, inside. */
START_TEST(test_spawn_into_cgroup_once_killed)
{
    char *dir = check_cgroup_new("killed");
    if (!dir)
        return;
    char out[4096];
    ck_assert_int_eq(child_test_run_in("/bin/sh", child_test_cg_script, dir, out, sizeof out), 7);
    ck_assert_int_eq(cgroup_kill(dir), 0);
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(child_test_run_in("/bin/sh", child_test_cg_script, dir, out, sizeof out),
                         7);
        child_test_check_in(out, dir);
    }
    cgroup_remove(dir, 1000);
    free(dir);
}
END_TEST

START_TEST(test_cgtree_new_cgroup_per_start)
{
    char tmp[] = "/tmp/check_child_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    char desc[512], err[512] = "";
    struct cgtree *tree = cgtree_open(tmp, desc, sizeof desc);
    if (!tree) {
        printf("%s: skipped\n", desc);
        rmdir(tmp);
        return;
    }
    char *first = cgtree_worker_dir(tree, "BOT-1", err, sizeof err);
    ck_assert_msg(first, "%s", err);
    char out[4096];
    ck_assert_int_eq(child_test_run_in("/bin/sh", child_test_cg_script, first, out, sizeof out), 7);
    child_test_check_in(out, first);
    /* The bot's cgroup is killed when its worker dies: the next start gets
     * a new cgroup beside, and the emptied one goes. */
    char *bot = xstrdup(first);
    *strrchr(bot, '/') = '\0';
    ck_assert_int_eq(cgroup_kill(bot), 0);
    char *second = cgtree_worker_dir(tree, "BOT-1", err, sizeof err);
    ck_assert_msg(second, "%s", err);
    ck_assert_str_ne(first, second);
    ck_assert_int_eq(strncmp(second, bot, strlen(bot)), 0);
    struct stat st;
    ck_assert_msg(stat(first, &st) < 0 && errno == ENOENT, "%s is still there", first);
    ck_assert_int_eq(child_test_run_in("/bin/sh", child_test_cg_script, second, out, sizeof out),
                     7);
    child_test_check_in(out, second);
    cgtree_free(tree);
    ck_assert_msg(stat(bot, &st) < 0 && errno == ENOENT, "%s is still there", bot);
    free(first);
    free(second);
    free(bot);
    rmdir(tmp);
}
END_TEST

/* A child that does WHAT for ever: 'e' epoll_wait, 's' spin, 'n' nanosleep
 * again and again, 'p' pause. */
static pid_t child_doing(char what)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int ep = epoll_create1(0);
        struct epoll_event ev;
        volatile unsigned long n = 0;
        for (;;) {
            if (what == 'e')
                epoll_wait(ep, &ev, 1, -1);
            else if (what == 'n')
                nanosleep(&(struct timespec){0, 1000000}, NULL);
            else if (what == 'p')
                pause();
            else
                n++;
        }
    }
    return pid;
}

static void child_end(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Poll child_look(PID) until it says WANT (up to ~10 s). */
static bool child_look_becomes(pid_t pid, enum child_look want)
{
    for (int i = 0; i < 1000; i++) {
        if (child_look(pid) == want)
            return true;
        usleep(10000);
    }
    return false;
}

START_TEST(test_look_waiting_in_epoll)
{
    pid_t pid = child_doing('e');
    ck_assert(child_look_becomes(pid, CHILD_WAITING));
    long long a = child_sleeps(pid);
    ck_assert_int_ge(a, 0);
    usleep(50000);
    ck_assert_int_eq(child_sleeps(pid), a); /* asleep: no more switches */
    /* Stopped where it waited: not waiting for work any more. */
    kill(pid, SIGSTOP);
    ck_assert(child_look_becomes(pid, CHILD_BUSY));
    kill(pid, SIGCONT);
    ck_assert(child_look_becomes(pid, CHILD_WAITING));
    child_end(pid);
    /* Gone (reaped): busy, never "waiting" nor "unseen". */
    ck_assert_int_eq(child_look(pid), CHILD_BUSY);
    ck_assert_int_eq(child_sleeps(pid), -1);
}
END_TEST

START_TEST(test_look_busy_elsewhere)
{
    /* Spinning: never waiting, and it does not go to sleep by itself. */
    pid_t spin = child_doing('s');
    usleep(20000);
    long long a = child_sleeps(spin);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(child_look(spin), CHILD_BUSY);
        usleep(5000);
    }
    ck_assert_int_eq(child_sleeps(spin), a);
    child_end(spin);
    /* Asleep, but not in epoll_wait (as one stuck on a lock or a pipe). */
    pid_t paused = child_doing('p');
    usleep(50000);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(child_look(paused), CHILD_BUSY);
        usleep(5000);
    }
    child_end(paused);
    /* Sleeping again and again: its count of sleeps moves. */
    pid_t napper = child_doing('n');
    usleep(20000);
    long long b = child_sleeps(napper);
    usleep(100000);
    ck_assert_int_gt(child_sleeps(napper), b);
    child_end(napper);
}
END_TEST

static Suite *child_suite(void)
{
    Suite *s = suite_create("child");
    TCase *tc = tcase_create("spawn");
    /* Each test in its own process (Check's fork mode): the reserved slots
     * are per process. */
    tcase_add_test(tc, test_spawn_whole_table);
    tcase_add_test(tc, test_spawn_reserved_slots);
    tcase_add_test(tc, test_spawn_cannot_run);
    tcase_add_test(tc, test_spawn_into_cgroup);
    tcase_add_test(tc, test_spawn_into_cgroup_once_killed);
    tcase_add_test(tc, test_cgtree_new_cgroup_per_start);
    suite_add_tcase(s, tc);
    TCase *look = tcase_create("look");
    tcase_set_timeout(look, 60);
    tcase_add_test(look, test_look_waiting_in_epoll);
    tcase_add_test(look, test_look_busy_elsewhere);
    suite_add_tcase(s, look);
    return s;
}

int main(void)
{
    return check_run(child_suite());
}
