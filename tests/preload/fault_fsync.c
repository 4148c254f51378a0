/*
 * fault_fsync.so — a storage fault for integration tests, loaded into the
 * real binary with LD_PRELOAD. While the file named by $MLC_FAULT_FSYNC
 * exists, the next fdatasync()/fsync() of the process fails with EIO and the
 * file is removed: one failure per creation (unlink is atomic, so exactly
 * one caller trips it). Everything else goes to libc. LMDB syncs its data
 * pages with fdatasync before it writes the meta page, so the tripped commit
 * fails and the store stays at the previous transaction — the "disk said no"
 * case of a delivery outcome commit.
 *
 * Built without sanitizers (an instrumented preload would fight the ASan
 * runtime); the ASan build runs with verify_asan_link_order=0.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int trip(void)
{
    const char *f = getenv("MLC_FAULT_FSYNC");
    if (f && unlink(f) == 0) {
        errno = EIO;
        return 1;
    }
    return 0;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    if (trip()) return -1;
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    if (trip()) return -1;
    return real(fd);
}
