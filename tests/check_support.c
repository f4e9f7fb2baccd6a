/*
 * check_support: helpers several Check suites share (see check_support.h).
 */
#include "tests/check_support.h"

#include "common/cgroup.h"
#include "common/util.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Remove PREFIX...-<pid> cgroups whose pid is gone (see check_support.h). */
void check_remove_stale_cgroups(const char *prefix)
{
    char err[256];
    char *self = cgroup_self_dir(err, sizeof err);
    DIR *d = self ? opendir(self) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        const char *num = strrchr(e->d_name, '-');
        pid_t pid = num ? (pid_t)atoi(num + 1) : 0;
        if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH) {
            char *dir = xasprintf("%s/%s", self, e->d_name);
            cgroup_remove(dir, 500);
            free(dir);
        }
    }
    if (d)
        closedir(d);
    free(self);
}

/* A new cgroup for one test (see check_support.h). */
char *check_cgroup_new(const char *name)
{
    char err[512];
    char *self = cgroup_self_dir(err, sizeof err);
    if (!self) {
        printf("no cgroup v2 here (%s): skipped\n", err);
        return NULL;
    }
    char *dir = xasprintf("%s/hive-check-%s-%d", self, name, (int)getpid());
    free(self);
    if (cgroup_make(dir, err, sizeof err) < 0) {
        printf("cannot make a cgroup here (%s): skipped\n", err);
        free(dir);
        return NULL;
    }
    return dir;
}

bool check_make_certs(const char *dir)
{
    char *cmd = xasprintf(
        "(cd '%s' && printf 'subjectAltName=IP:127.0.0.1\\n' > ext && "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
        "-subj /CN=check-ca -days 1 && "
        "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=srv && "
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out srv.pem -days 1 -extfile ext) >/dev/null 2>&1",
        dir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0;
}

int check_run(struct Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
