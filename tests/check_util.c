/*
 * check_util: common/util.c's util_mkdirs (mkdir -p made leaf first),
 * util_open_append (a symlink, FIFO or folder at a log's path) and
 * common/digest.c (libcrypto loaded on first use): known vectors, and that a
 * program that has not hashed yet has not mapped libcrypto.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/util.h"

/* True when /proc/self/maps names a libcrypto. */
static bool libcrypto_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "libcrypto") != NULL;
    fclose(f);
    return found;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

START_TEST(test_mkdirs)
{
    char base[] = "/tmp/check_util.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(base));
    char *deep = xasprintf("%s/a/b/c/d", base);
    ck_assert_int_eq(util_mkdirs(deep), 0);
    ck_assert(is_dir(deep));
    ck_assert_int_eq(util_mkdirs(deep), 0); /* already there */
    char *slash = xasprintf("%s/a/x/y/", base);
    ck_assert_int_eq(util_mkdirs(slash), 0); /* trailing slash */
    char *y = xasprintf("%s/a/x/y", base);
    ck_assert(is_dir(y));
    char *file = xasprintf("%s/f", base);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    char *under = xasprintf("%s/f/g/h", base);
    errno = 0;
    ck_assert_int_eq(util_mkdirs(under), -1); /* a file on the way */
    ck_assert_int_eq(errno, ENOTDIR);
    char *rel = xasprintf("%s/r", base);
    ck_assert_int_eq(chdir(base), 0);
    ck_assert_int_eq(util_mkdirs("r/s/t"), 0); /* relative */
    char *t = xasprintf("%s/r/s/t", base);
    ck_assert(is_dir(t));
    char *cmd = xasprintf("rm -rf '%s'", base);
    ck_assert_int_eq(system(cmd), 0);
    free(deep), free(slash), free(y), free(file), free(under), free(rel), free(t), free(cmd);
}
END_TEST

/* The whole of PATH (at most 255 bytes), as a string. */
static char *slurp(const char *path)
{
    static char buf[256];
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* Append "line\n" through FD, which must be blocking, then close it. */
static void append_line(int fd)
{
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_eq(write(fd, "line\n", 5), 5);
    close(fd);
}

/* True when PATH is a regular file (not followed). */
static bool is_regular(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

START_TEST(test_open_append)
{
    char base[] = "/tmp/check_util.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(base));
    char *log = xasprintf("%s/log", base), *outside = xasprintf("%s/outside", base);
    append_line(util_open_append(log, O_WRONLY, 0644)); /* new */
    append_line(util_open_append(log, O_RDWR, 0644));   /* appended to */
    ck_assert_str_eq(slurp(log), "line\nline\n");

    FILE *f = fopen(outside, "w");
    ck_assert_ptr_nonnull(f);
    fputs("precious\n", f);
    fclose(f);
    ck_assert_int_eq(unlink(log), 0);
    ck_assert_int_eq(symlink(outside, log), 0);
    append_line(util_open_append(log, O_WRONLY, 0644)); /* the link is replaced */
    ck_assert(is_regular(log));
    ck_assert_str_eq(slurp(log), "line\n");
    ck_assert_str_eq(slurp(outside), "precious\n");

    ck_assert_int_eq(unlink(log), 0);
    ck_assert_int_eq(symlink("/nonexistent/dangling", log), 0); /* not created there */
    append_line(util_open_append(log, O_WRONLY, 0644));
    ck_assert(is_regular(log));

    for (int rdwr = 0; rdwr < 2; rdwr++) { /* O_WRONLY fails (ENXIO), O_RDWR opens one */
        ck_assert_int_eq(unlink(log), 0);
        ck_assert_int_eq(mkfifo(log, 0644), 0);
        append_line(util_open_append(log, rdwr ? O_RDWR : O_WRONLY, 0644)); /* no wait */
        ck_assert(is_regular(log));
        ck_assert_str_eq(slurp(log), "line\n");
    }

    ck_assert_int_eq(unlink(log), 0); /* a hard link: the other name keeps its text */
    ck_assert_int_eq(link(outside, log), 0);
    append_line(util_open_append(log, O_WRONLY, 0644));
    ck_assert_str_eq(slurp(log), "line\n");
    ck_assert_str_eq(slurp(outside), "precious\n");
    append_line(util_open_append(log, O_WRONLY, 0644)); /* its own file now: appended to */
    ck_assert_str_eq(slurp(log), "line\nline\n");

    char *dir = xasprintf("%s/dir", base);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    errno = 0;
    ck_assert_int_eq(util_open_append(dir, O_WRONLY, 0644), -1); /* a folder stays */
    ck_assert_int_eq(errno, EISDIR);
    ck_assert(is_dir(dir));
    char *cmd = xasprintf("rm -rf '%s'", base);
    ck_assert_int_eq(system(cmd), 0);
    free(log), free(outside), free(dir), free(cmd);
}
END_TEST

/* The family and port FD listens on. */
static int listen_family(int fd, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
        *port = ntohs(in->sin_port);
    } else {
        *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ss.ss_family;
}

START_TEST(test_listen_tcp)
{
    char err[256] = "";
    int port = 0;
    int fd = util_listen_tcp("127.0.0.1", 0, err, sizeof err); /* numeric: no resolver */
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(listen_family(fd, &port), AF_INET);
    ck_assert_int_gt(port, 0);
    char taken[256] = "";
    ck_assert_int_eq(util_listen_tcp("127.0.0.1", port, taken, sizeof taken), -1);
    ck_assert_ptr_nonnull(strstr(taken, "address already in use"));
    close(fd);
    int fd6 = util_listen_tcp("[::1]", 0, err, sizeof err);
    if (fd6 >= 0) { /* a machine without IPv6 has no ::1 to bind */
        ck_assert_int_eq(listen_family(fd6, &port), AF_INET6);
        close(fd6);
    }
    int byname = util_listen_tcp("localhost", 0, err, sizeof err); /* a name: resolved */
    ck_assert_int_ge(byname, 0);
    close(byname);
    ck_assert_int_eq(util_listen_tcp("no-such-host.invalid", 0, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot resolve"));
}
END_TEST

START_TEST(test_digest_loaded_lazily)
{
    /* This suite links no libcrypto symbol: nothing maps it before a hash. */
    ck_assert(!libcrypto_mapped());
    unsigned char d[DIGEST_SHA1_LEN];
    digest_sha1("abc", 3, d);
    ck_assert(libcrypto_mapped());
    char b64[29];
    ck_assert_int_eq(digest_base64(b64, d, sizeof d), 28);
    ck_assert_str_eq(b64, "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="); /* base64(SHA1("abc")) */
}
END_TEST

START_TEST(test_digest_vectors)
{
    unsigned char d[DIGEST_SHA256_LEN];
    char b64[45];
    digest_sha256("abc", 3, d);
    ck_assert_int_eq(digest_base64(b64, d, sizeof d), 44);
    ck_assert_str_eq(b64, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    /* RFC 6455 §1.3's handshake example. */
    const char *joined = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char s[DIGEST_SHA1_LEN];
    char acc[29];
    digest_sha1(joined, strlen(joined), s);
    digest_base64(acc, s, sizeof s);
    ck_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_int_eq(digest_base64(b64, (const unsigned char *)"", 0), 0);
    ck_assert_str_eq(b64, "");
}
END_TEST

/* /proc/PID/stat read for a process whose name holds spaces and
 * parentheses: the same start time as for PID 0 in it; a pid that is gone
 * reads as -1. */
START_TEST(test_proc_stat)
{
    unsigned long long cpu = 0, start = 0, self_start = 0;
    ck_assert_int_eq(util_proc_stat(0, &cpu, &self_start), 0);
    ck_assert_uint_gt(self_start, 0);
    ck_assert_int_eq(util_proc_stat(getpid(), NULL, &start), 0);
    ck_assert_uint_eq(start, self_start);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(p[0]);
        prctl(PR_SET_NAME, "a) b (c) 1 2");
        unsigned long long mine = 0;
        int ok = util_proc_stat(0, NULL, &mine) == 0 && mine > 0;
        ssize_t w = write(p[1], &mine, sizeof mine);
        (void)w;
        _exit(ok ? 0 : 1);
    }
    close(p[1]);
    unsigned long long told = 0, seen = 0;
    ck_assert_int_eq(read(p[0], &told, sizeof told), (ssize_t)sizeof told);
    int status = 0;
    /* Read while the child is alive or a zombie: its stat is still there. */
    ck_assert_int_eq(util_proc_stat(child, NULL, &seen), 0);
    ck_assert_uint_eq(seen, told);
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(p[0]);
    ck_assert_int_eq(util_proc_stat(child, NULL, &seen), -1);
}
END_TEST

/* A slice asked for is the thread's, the default comes back with 0, and
 * the nice value stays what it was. A kernel without slices (before 6.12)
 * takes the calls and tells 0. */
START_TEST(test_sched_slice)
{
    ck_assert_int_eq(setpriority(PRIO_PROCESS, 0, 2), 0); /* this test's own process */
    uint64_t before = util_sched_slice();
    ck_assert_int_eq(util_sched_slice_set(UTIL_SCHED_SLICE_BRISK * 3), 0);
    ck_assert_int_eq(getpriority(PRIO_PROCESS, 0), 2);
    if (before == 0) {
        ck_assert_uint_eq(util_sched_slice(), 0);
        return;
    }
    ck_assert_uint_eq(util_sched_slice(), UTIL_SCHED_SLICE_BRISK * 3);
    ck_assert_int_eq(util_sched_slice_set(0), 0);
    ck_assert_uint_eq(util_sched_slice(), before);
    ck_assert_int_eq(getpriority(PRIO_PROCESS, 0), 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mkdirs);
    tcase_add_test(tc, test_proc_stat);
    tcase_add_test(tc, test_sched_slice);
    tcase_add_test(tc, test_listen_tcp);
    tcase_add_test(tc, test_open_append);
    tcase_add_test(tc, test_digest_loaded_lazily);
    tcase_add_test(tc, test_digest_vectors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
