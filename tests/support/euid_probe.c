/* Built by tests/run_no_new_privs.rs (`cc -static`) and installed
 * setuid-root in a test image: prints "euid=N uid=N". With no_new_privs
 * set, execve ignores the setuid bit and N is the caller's uid. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("euid=%u uid=%u\n", (unsigned)geteuid(), (unsigned)getuid());
    return 0;
}
