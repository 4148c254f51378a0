/*
 * fault_fsync.so — storage faults and sync accounting for integration tests,
 * loaded into the real binary with LD_PRELOAD.
 *
 * Fault: while the file named by $MLC_FAULT_FSYNC exists, an fdatasync()/
 * fsync() of the process fails with EIO and the file is removed: one failure
 * per creation (unlink is atomic, so exactly one caller trips it). If the
 * file holds a number N > 0, N syncs are let through first (the file is
 * rewritten with N - 1 each time): "1" fails the second sync from now, e.g.
 * the meta-page sync of an ingest commit after its data-page sync. Meant for
 * tests where one thread syncs at a time. LMDB syncs its data pages with
 * fdatasync before it writes the meta page, so a tripped data sync fails the
 * commit and the store stays at the previous transaction — the "disk said
 * no" case.
 *
 * Accounting: when $MLC_FSYNC_LOG names a file, every sync call appends one
 * line to it ("fdatasync" or "fsync"), so a test can count the syncs an
 * operation costs.
 *
 * Everything else goes to libc. Built without sanitizers (an instrumented
 * preload would fight the ASan runtime); the ASan build runs with
 * verify_asan_link_order=0.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void note(const char *what)
{
    const char *f = getenv("MLC_FSYNC_LOG");
    if (!f) return;
    int fd = open(f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    char line[16];
    int n = snprintf(line, sizeof line, "%s\n", what);
    ssize_t w = write(fd, line, (size_t)n); /* one O_APPEND write: whole lines */
    (void)w;
    close(fd);
}

static int trip(void)
{
    const char *f = getenv("MLC_FAULT_FSYNC");
    if (!f) return 0;
    int fd = open(f, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[32] = {0};
    ssize_t r = read(fd, buf, sizeof buf - 1);
    long skip = r > 0 ? strtol(buf, NULL, 10) : 0;
    if (skip > 0) {
        int n = snprintf(buf, sizeof buf, "%ld\n", skip - 1);
        if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) == n) {
            close(fd);
            return 0;
        }
    }
    close(fd);
    if (unlink(f) == 0) {
        errno = EIO;
        return 1;
    }
    return 0;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    note("fdatasync");
    if (trip()) return -1;
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    note("fsync");
    if (trip()) return -1;
    return real(fd);
}
