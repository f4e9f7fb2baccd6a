/*
 * spawn: owns the clone3 entry (see spawn.h). glibc has no clone3 wrapper,
 * and with CLONE_VM the child must start on its own stack, so the entry is
 * a few instructions: the system call, then, in the child, FN(ARG) and
 * exit. Elsewhere than x86-64 and arm64 it reports ENOSYS and the callers
 * start their children the old way.
 */
#include "common/spawn.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct spawn_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

long spawn_clone3_raw(struct spawn_clone_args *args, size_t size, int (*fn)(void *), void *arg);
#if defined(__x86_64__) && defined(SYS_clone3)
__asm__(".text\n"
        ".globl spawn_clone3_raw\n"
        ".hidden spawn_clone3_raw\n"
        ".type spawn_clone3_raw,@function\n"
        "spawn_clone3_raw:\n"
        "  endbr64\n"
        "  mov %rdx, %r8\n" /* FN and ARG where the system call keeps them */
        "  mov %rcx, %r9\n"
        "  mov $435, %eax\n" /* SYS_clone3 */
        "  syscall\n"
        "  test %rax, %rax\n"
        "  jnz 1f\n"
        "  xor %ebp, %ebp\n" /* the child, on its stack: FN(ARG), then exit */
        "  mov %r9, %rdi\n"
        "  call *%r8\n"
        "  mov %eax, %edi\n"
        "  mov $60, %eax\n" /* SYS_exit */
        "  syscall\n"
        "  hlt\n"
        "1: ret\n"
        ".size spawn_clone3_raw, .-spawn_clone3_raw\n");
#elif defined(__aarch64__) && defined(SYS_clone3)
__asm__(".text\n"
        ".globl spawn_clone3_raw\n"
        ".hidden spawn_clone3_raw\n"
        ".type spawn_clone3_raw,%function\n"
        "spawn_clone3_raw:\n"
        "  mov x9, x2\n"
        "  mov x10, x3\n"
        "  mov x8, #435\n"
        "  svc #0\n"
        "  cbnz x0, 1f\n"
        "  mov x29, #0\n"
        "  mov x0, x10\n"
        "  blr x9\n"
        "  mov x8, #93\n"
        "  svc #0\n"
        "1: ret\n"
        ".size spawn_clone3_raw, .-spawn_clone3_raw\n");
#else
long spawn_clone3_raw(struct spawn_clone_args *args, size_t size, int (*fn)(void *), void *arg)
{
    (void)args, (void)size, (void)fn, (void)arg;
    return -ENOSYS;
}
#endif

static bool spawn_usable = true;

bool spawn_into_cgroup_usable(void)
{
    return spawn_usable;
}

pid_t spawn_into_cgroup(int cgroup_dir, unsigned long extra, void *stack, size_t size,
                        int (*fn)(void *), void *arg, volatile bool *ran)
{
    if (!spawn_usable || cgroup_dir < 0) {
        errno = ENOSYS;
        return -1;
    }
    struct spawn_clone_args args = {
        .flags = CLONE_VM | CLONE_VFORK | extra | CLONE_INTO_CGROUP,
        .exit_signal = SIGCHLD,
        .stack = (uint64_t)(uintptr_t)stack,
        .stack_size = size,
        .cgroup = (uint64_t)cgroup_dir,
    };
    *ran = false;
    long r = spawn_clone3_raw(&args, sizeof args, fn, arg);
    if (r > 0 && *ran)
        return (pid_t)r;
    if (r > 0) {
        /* Killed before its first instruction: Linux 6.x (6.18 seen) kills
         * what is cloned into a cgroup that was once cgroup.kill'ed, and a
         * kernel may disagree otherwise. Never again here. */
        while (waitpid((pid_t)r, NULL, __WALL) < 0 && errno == EINTR)
            ;
        spawn_usable = false;
        errno = ECHILD;
        return -1;
    }
    if (r == -ENOSYS || r == -EINVAL || r == -E2BIG || r == -EPERM)
        spawn_usable = false; /* an older kernel, or a sandbox that forbids it */
    errno = (int)-r;
    return -1;
}
