/* Built by the seccomp tests (`cc -static`) and run inside a job: tries
 * each named syscall with harmless arguments and prints "NAME ERRNO-NAME"
 * ("NAME ok" on success). Children made by the clone probes exit at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static long do_clone(unsigned long flags) {
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, 0, 0);
    return r;
}

static long probe(const char *n) {
    if (!strcmp(n, "getpid")) return syscall(SYS_getpid);
    if (!strcmp(n, "fork")) return do_clone(0);
    if (!strcmp(n, "clone_newns")) return do_clone(CLONE_NEWNS);
    if (!strcmp(n, "clone_newuser")) return do_clone(CLONE_NEWUSER);
    if (!strcmp(n, "clone_newnet")) return do_clone(CLONE_NEWNET);
    if (!strcmp(n, "clone3")) return syscall(SYS_clone3, 0, 0);
    if (!strcmp(n, "unshare")) return syscall(SYS_unshare, CLONE_NEWNS);
    if (!strcmp(n, "mount")) return syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0);
    if (!strcmp(n, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0);
    if (!strcmp(n, "add_key")) return syscall(SYS_add_key, "user", "k", "v", 1, -3);
    if (!strcmp(n, "request_key")) return syscall(SYS_request_key, "user", "k", 0, 0);
    if (!strcmp(n, "bpf")) return syscall(SYS_bpf, 0, 0, 0);
    if (!strcmp(n, "userfaultfd")) return syscall(SYS_userfaultfd, 0);
    if (!strcmp(n, "perf_event_open")) return syscall(SYS_perf_event_open, 0, 0, -1, -1, 0);
    if (!strcmp(n, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, 0, 0);
    if (!strcmp(n, "open_by_handle_at")) return syscall(SYS_open_by_handle_at, -1, 0, 0);
    if (!strcmp(n, "init_module")) return syscall(SYS_init_module, 0, 0, "");
    if (!strcmp(n, "io_uring_setup")) return syscall(SYS_io_uring_setup, 0, 0);
    if (!strcmp(n, "socket_vsock")) return syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0);
    if (!strcmp(n, "socket_unix")) return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    if (!strcmp(n, "personality_query")) return syscall(SYS_personality, 0xffffffffUL);
    if (!strcmp(n, "personality_exec")) return syscall(SYS_personality, 0x0400000UL);
    if (!strcmp(n, "reboot")) return syscall(SYS_reboot, 0, 0, 0, 0);
    if (!strcmp(n, "clock_settime")) return syscall(SYS_clock_settime, 99, 0);
    errno = EINVAL;
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = probe(argv[i]);
        if (r < 0)
            printf("%s %s\n", argv[i], strerrorname_np(errno));
        else
            printf("%s ok\n", argv[i]);
        fflush(stdout);
    }
    return 0;
}
