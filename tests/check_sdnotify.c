/*
 * check_sdnotify: the systemd protocol client the worker and the supervisor
 * agree on — LISTEN_FDNAMES parsing (names that do not match the fds in
 * number describe nothing), notifications and the fd store over a real
 * AF_UNIX datagram socket, the anonymous-inode check, $FDSTORE and
 * $WATCHDOG_USEC.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/sdnotify.h"

#include "tests/check_support.h"

START_TEST(test_fdnames_index)
{
    ck_assert_int_eq(sdnotify_fdnames_index("listen:inotify", 2, "inotify"), 1);
    ck_assert_int_eq(sdnotify_fdnames_index("listen:inotify", 2, "listen"), 0);
    ck_assert_int_eq(sdnotify_fdnames_index("listen:inotify", 2, "other"), -1);
    /* Not as many names as fds: the names mean nothing. */
    ck_assert_int_eq(sdnotify_fdnames_index("listen:inotify", 3, "inotify"), -1);
    ck_assert_int_eq(sdnotify_fdnames_index("listen:inotify", 1, "listen"), -1);
    /* Whole names only, the first of duplicates, empty names count. */
    ck_assert_int_eq(sdnotify_fdnames_index("listen:inotifyX", 2, "inotify"), -1);
    ck_assert_int_eq(sdnotify_fdnames_index("inot:inotify", 2, "inotify"), 1);
    ck_assert_int_eq(sdnotify_fdnames_index("a:inotify:inotify", 3, "inotify"), 1);
    ck_assert_int_eq(sdnotify_fdnames_index(":inotify", 2, "inotify"), 1);
    ck_assert_int_eq(sdnotify_fdnames_index("", 1, "inotify"), -1);
}
END_TEST

START_TEST(test_listen_fds_named)
{
    /* Two descriptors at 3 and 4, as the supervisor passes them. Whatever
     * sits there now (Check's own files when it does not fork) is put back
     * at the end. */
    int saved[2], flags[2];
    for (int i = 0; i < 2; i++) {
        flags[i] = fcntl(3 + i, F_GETFD);
        saved[i] = fcntl(3 + i, F_DUPFD_CLOEXEC, 100);
    }
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(dup2(p[0], 3), 3);
    ck_assert_int_eq(dup2(p[1], 4), 4);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "listen:inotify", 1);
    int named = 99;
    ck_assert_int_eq(sdnotify_listen_fds_named("inotify", &named), 2);
    ck_assert_int_eq(named, 4);
    ck_assert(fcntl(4, F_GETFD) & FD_CLOEXEC);
    /* The variables are gone: a child does not take them for its own. */
    ck_assert_ptr_null(getenv("LISTEN_FDS"));
    ck_assert_ptr_null(getenv("LISTEN_FDNAMES"));
    ck_assert_int_eq(sdnotify_listen_fds_named("inotify", &named), 0);
    ck_assert_int_eq(named, -1);
    /* Meant for another process: nothing is ours. */
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "2", 1);
    ck_assert_int_eq(sdnotify_listen_fds(), 0);
    close(p[0]);
    close(p[1]);
    for (int i = 0; i < 2; i++) {
        if (saved[i] >= 0) {
            dup2(saved[i], 3 + i);
            fcntl(3 + i, F_SETFD, flags[i]);
            close(saved[i]);
        } else {
            close(3 + i);
        }
    }
}
END_TEST

/* A datagram socket bound to an abstract name, and $NOTIFY_SOCKET set to it. */
static int check_notify_socket(void)
{
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s, 0);
    char name[64];
    snprintf(name, sizeof name, "@hive-check-sdnotify-%d", (int)getpid());
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    sa.sun_path[0] = '\0';
    ck_assert_int_eq(
        bind(s, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
        0);
    setenv("NOTIFY_SOCKET", name, 1);
    return s;
}

/* Receive one datagram into BUF; *FD is the descriptor that came with it. */
static void check_receive(int s, char *buf, size_t cap, int *fd)
{
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {buf, cap - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    *fd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        memcpy(fd, CMSG_DATA(c), sizeof *fd);
}

START_TEST(test_send_and_fdstore)
{
    int s = check_notify_socket();
    char buf[256];
    int got;
    ck_assert_int_eq(sdnotify_send("READY=1"), 0);
    check_receive(s, buf, sizeof buf, &got);
    ck_assert_str_eq(buf, "READY=1");
    ck_assert_int_eq(got, -1);

    int ino = inotify_init1(IN_CLOEXEC);
    ck_assert_int_ge(ino, 0);
    ck_assert_int_eq(sdnotify_send_fd("FDSTORE=1\nFDNAME=inotify\n", ino), 0);
    check_receive(s, buf, sizeof buf, &got);
    ck_assert_str_eq(buf, "FDSTORE=1\nFDNAME=inotify\n");
    ck_assert_int_ge(got, 0);
    /* The same open file arrived, and it is what its name says. */
    struct stat a, b;
    ck_assert_int_eq(fstat(ino, &a), 0);
    ck_assert_int_eq(fstat(got, &b), 0);
    ck_assert_uint_eq(a.st_ino, b.st_ino);
    ck_assert(sdnotify_fd_is_anon(got, "inotify"));
    ck_assert(!sdnotify_fd_is_anon(got, "eventfd"));
    ck_assert_int_eq(sdnotify_send_fd("FDSTORE=1\n", -1), -1);
    close(got);
    close(ino);

    /* $FDSTORE counts only with a socket to send to. */
    setenv("FDSTORE", "1", 1);
    ck_assert_int_eq(sdnotify_fdstore_max(), 1);
    setenv("FDSTORE", "x", 1);
    ck_assert_int_eq(sdnotify_fdstore_max(), 0);
    setenv("FDSTORE", "1", 1);
    unsetenv("NOTIFY_SOCKET");
    ck_assert_int_eq(sdnotify_fdstore_max(), 0);
    ck_assert_int_eq(sdnotify_send("READY=1"), 0); /* nobody to tell: not an error */
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    ck_assert_int_eq(sdnotify_send("READY=1"), -1);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("FDSTORE");
    close(s);
}
END_TEST

/* A service manager that does not read (stopped with Ctrl-Z): its queue
 * fills, and sending says EAGAIN instead of waiting for it. */
START_TEST(test_send_never_waits)
{
    int s = check_notify_socket();
    int sent = 0, i;
    alarm(10); /* a send that waits is a failure, not a hang */
    for (i = 0; i < 100000; i++) {
        if (sdnotify_send("WATCHDOG=1") < 0)
            break;
        sent++;
    }
    alarm(0);
    ck_assert_int_lt(i, 100000);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_gt(sent, 0);
    /* Once the manager reads again, the next one goes through. */
    char buf[64];
    int got;
    check_receive(s, buf, sizeof buf, &got);
    ck_assert_str_eq(buf, "WATCHDOG=1");
    ck_assert_int_eq(sdnotify_send("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
    close(s);
}
END_TEST

START_TEST(test_fd_is_anon)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert(!sdnotify_fd_is_anon(p[0], "inotify"));
    ck_assert(!sdnotify_fd_is_anon(-1, "inotify"));
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_watchdog_usec)
{
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "3000000", 1);
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 3000000);
    setenv("WATCHDOG_USEC", "30s", 1);
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "3000000", 1);
    setenv("WATCHDOG_PID", "1", 1); /* another process's watchdog */
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 0);
}
END_TEST

static Suite *check_sdnotify_suite(void)
{
    Suite *s = suite_create("sdnotify");
    TCase *tc = tcase_create("sdnotify");
    tcase_add_test(tc, test_fdnames_index);
    tcase_add_test(tc, test_listen_fds_named);
    tcase_add_test(tc, test_send_and_fdstore);
    tcase_add_test(tc, test_send_never_waits);
    tcase_add_test(tc, test_fd_is_anon);
    tcase_add_test(tc, test_watchdog_usec);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(check_sdnotify_suite());
}
