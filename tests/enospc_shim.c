/* A full disk for one directory, by LD_PRELOAD (issue 12's ENOSPC test).
 *
 * write(), pwrite(), pwrite64() and writev() on a file whose path (readlink of
 * /proc/self/fd/N) lies under $PKRT_TEST_ENOSPC_DIR count the bytes they write there, and
 * the directory holds $PKRT_TEST_ENOSPC_AFTER bytes in total: as on a filesystem that fills
 * up, the write that reaches the limit is short (write/pwrite) and every later one fails
 * with ENOSPC (writev fails whole rather than short). Writes elsewhere (stdout, the replay log in another directory)
 * pass through untouched. Without PKRT_TEST_ENOSPC_DIR the shim does nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec*, int);

static atomic_ullong written_under_dir;

/* 1: fd's file lies under the directory (the dir itself or below it); 0: elsewhere or unset. */
static int under_dir(int fd) {
  const char* dir = getenv("PKRT_TEST_ENOSPC_DIR");
  if (dir == NULL || dir[0] == '\0') return 0;
  char link[64];
  char path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = '\0';
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/') --len;
  return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/* How many of `bytes` the write may put down (counted as written); -1: the disk is full
 * (errno set). `whole`: all or nothing. */
static ssize_t charge(int fd, size_t bytes, int whole) {
  if (bytes == 0 || !under_dir(fd)) return (ssize_t)bytes;
  const char* after = getenv("PKRT_TEST_ENOSPC_AFTER");
  const unsigned long long limit = after != NULL ? strtoull(after, NULL, 10) : 0;
  unsigned long long used = atomic_load(&written_under_dir);
  for (;;) {
    unsigned long long grant = used >= limit ? 0 : limit - used;
    if (grant > bytes) grant = bytes;
    if (grant == 0 || (whole && grant < bytes)) {
      errno = ENOSPC;
      return -1;
    }
    if (atomic_compare_exchange_weak(&written_under_dir, &used, used + grant)) return (ssize_t)grant;
  }
}

ssize_t write(int fd, const void* buf, size_t count) {
  static write_fn real;
  if (real == NULL) real = (write_fn)dlsym(RTLD_NEXT, "write");
  const ssize_t n = charge(fd, count, 0);
  if (n < 0) return -1;
  return real(fd, buf, (size_t)n);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  static pwrite_fn real;
  if (real == NULL) real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
  const ssize_t n = charge(fd, count, 0);
  if (n < 0) return -1;
  return real(fd, buf, (size_t)n, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off_t offset) {
  static pwrite_fn real;
  if (real == NULL) real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite64");
  const ssize_t n = charge(fd, count, 0);
  if (n < 0) return -1;
  return real(fd, buf, (size_t)n, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  static writev_fn real;
  if (real == NULL) real = (writev_fn)dlsym(RTLD_NEXT, "writev");
  size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  if (charge(fd, total, 1) < 0) return -1;
  return real(fd, iov, iovcnt);
}
