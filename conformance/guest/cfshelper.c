/*
 * cfshelper: tiny static helper for the conformance guest. busybox-static lacks fcntl locks,
 * flock(2), fsync(2), raw readdir and errno names, and the guest has no python, so the few
 * syscalls the scenarios must observe directly live here. Built on the host with gcc -static.
 *
 *   cfshelper lock FILE START LEN r|w try|wait HOLD_SECS   fcntl byte-range lock; prints
 *             "locked" and holds HOLD_SECS; exit 0 ok, 11 conflict (EAGAIN/EACCES), 1 error
 *   cfshelper flock FILE sh|ex try|wait HOLD_SECS           flock(2), same exit codes
 *   cfshelper getlk FILE START LEN r|w                     prints "unlocked" or "conflict pid=N"
 *   cfshelper fsync FILE                                   open + fsync; exit 0 on success
 *   cfshelper readdir DIR                                  one raw readdir pass, one name a line
 *   cfshelper errno CMD PATH [PATH2]                       rmdir|unlink|mkdir|rename|open|openw|
 *             append (one byte); chown|lchown PATH UID GID; chmod PATH OCTAL;
 *             prints OK or the errno name (ENOTEMPTY, EROFS, ...)
 *   cfshelper as UID GID GROUPS CMD...                     run "cfshelper CMD..." as that user
 *             (GROUPS: comma-separated supplementary gids, or - for none)
 *   cfshelper rdv HOST PORT post|wait NAME [TIMEOUT]        host rendezvous (two-client tests)
 *   cfshelper rdv HOST PORT get PREFIX [TIMEOUT]            prints the name posted with PREFIX
 *   cfshelper readfd FD                                    read an inherited fd from offset 0 to EOF
 *   cfshelper gen FILE SEED MIB                             write MIB MiB of xorshift data
 *   cfshelper verify FILE SEED MIB                          compare; prints OK or where and how it differs
 *   cfshelper xattr set|create|replace FILE NAME VALUE     setxattr(2) (VALUE "@N": N bytes of 'x');
 *             prints OK or the errno name
 *   cfshelper xattr get FILE NAME                          prints the value, or the errno name
 *   cfshelper xattr size FILE NAME                         prints the value's length, or the errno name
 *   cfshelper xattr list FILE                              the names listxattr(2) gives, one a line
 *   cfshelper xattr remove FILE NAME                       removexattr(2): OK or the errno name
 *   cfshelper statd                                        a minimal rpcbind + rpc.statd (statd.c) so
 *             v3 mounts can lock through NLM
 *   cfshelper posixdiff SEED NCALLS ORACLE_DIR TEST_DIR [MAX_RERUNS [MAX_SECONDS]]
 *   cfshelper posixdiff-trace SEED NCALLS DIR [I,J,...]      the differential POSIX test (posixdiff.c)
 * (gen/verify instead of /dev/urandom + md5sum: both are CPU-bound under TCG, and a checksum cannot
 *  say where data went wrong or that it came back as zeros)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case ENOTEMPTY: return "ENOTEMPTY"; case EEXIST: return "EEXIST"; case ENOENT: return "ENOENT";
    case EROFS: return "EROFS"; case EACCES: return "EACCES"; case EPERM: return "EPERM";
    case EISDIR: return "EISDIR"; case ENOTDIR: return "ENOTDIR"; case EIO: return "EIO";
    case EAGAIN: return "EAGAIN"; case EINVAL: return "EINVAL"; case ENOSPC: return "ENOSPC";
    case EREMOTEIO: return "EREMOTEIO"; case ESTALE: return "ESTALE"; case ENOLCK: return "ENOLCK";
    case EBUSY: return "EBUSY"; case EXDEV: return "EXDEV"; case ENOTSUP: return "ENOTSUP";
    case ENODATA: return "ENODATA"; case E2BIG: return "E2BIG"; case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "E?";
    }
}

static int die(const char *what) { fprintf(stderr, "cfshelper: %s: %s (%s)\n", what, strerror(errno), ename(errno)); return 1; }

static int conflict(int e) { return e == EAGAIN || e == EACCES; }

static int cmd_lock(char **a) {
    int fd = open(a[0], O_RDWR | O_CREAT, 0644);
    if (fd < 0) return die("open");
    struct flock fl = {0};
    fl.l_type = a[3][0] == 'r' ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET; fl.l_start = atoll(a[1]); fl.l_len = atoll(a[2]);
    if (fcntl(fd, strcmp(a[4], "wait") == 0 ? F_SETLKW : F_SETLK, &fl) < 0) {
        if (conflict(errno)) { printf("conflict\n"); return 11; }
        return die("fcntl");
    }
    printf("locked\n"); fflush(stdout);
    sleep(atoi(a[5]));
    return 0;
}

static int cmd_getlk(char **a) {
    int fd = open(a[0], O_RDWR | O_CREAT, 0644);
    if (fd < 0) return die("open");
    struct flock fl = {0};
    fl.l_type = a[3][0] == 'r' ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET; fl.l_start = atoll(a[1]); fl.l_len = atoll(a[2]);
    if (fcntl(fd, F_GETLK, &fl) < 0) return die("F_GETLK");
    if (fl.l_type == F_UNLCK) printf("unlocked\n"); else printf("conflict pid=%d\n", (int)fl.l_pid);
    return 0;
}

static int cmd_flock(char **a) {
    int fd = open(a[0], O_RDWR | O_CREAT, 0644);
    if (fd < 0) return die("open");
    int op = strcmp(a[1], "sh") == 0 ? LOCK_SH : LOCK_EX;
    if (strcmp(a[2], "try") == 0) op |= LOCK_NB;
    if (flock(fd, op) < 0) {
        if (errno == EWOULDBLOCK) { printf("conflict\n"); return 11; }
        return die("flock");
    }
    printf("locked\n"); fflush(stdout);
    sleep(atoi(a[3]));
    return 0;
}

static int cmd_fsync(char **a) {
    int fd = open(a[0], O_RDWR);
    if (fd < 0) return die("open");
    if (fsync(fd) < 0) return die("fsync");
    return close(fd) < 0 ? die("close") : 0;
}

static int cmd_readdir(char **a) {
    DIR *d = opendir(a[0]);
    if (!d) return die("opendir");
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) puts(e->d_name);
        errno = 0;
    }
    if (errno) return die("readdir");
    return closedir(d) < 0 ? die("closedir") : 0;
}

static int cmd_errno(int n, char **a) {
    int r, fd;
    const char *c = a[0];
    if (!strcmp(c, "rmdir")) r = rmdir(a[1]);
    else if (!strcmp(c, "unlink")) r = unlink(a[1]);
    else if (!strcmp(c, "mkdir")) r = mkdir(a[1], 0755);
    else if (!strcmp(c, "rename") && n >= 3) r = rename(a[1], a[2]);
    else if (!strcmp(c, "open")) { fd = open(a[1], O_RDONLY); r = fd < 0 ? -1 : close(fd); }
    else if (!strcmp(c, "openw")) { fd = open(a[1], O_WRONLY | O_CREAT, 0644); r = fd < 0 ? -1 : close(fd); }
    else if (!strcmp(c, "append")) {
        fd = open(a[1], O_WRONLY | O_APPEND);
        r = fd < 0 ? -1 : (int)write(fd, "x", 1);
        if (r >= 0) r = close(fd); else if (fd >= 0) { int e = errno; close(fd); errno = e; }
    }
    else if ((!strcmp(c, "chown") || !strcmp(c, "lchown")) && n >= 4) {
        uid_t u = (uid_t)strtol(a[2], NULL, 10); gid_t g = (gid_t)strtol(a[3], NULL, 10);
        r = !strcmp(c, "chown") ? chown(a[1], u, g) : lchown(a[1], u, g);
    }
    else if (!strcmp(c, "chmod") && n >= 3) r = chmod(a[1], (mode_t)strtol(a[2], NULL, 8));
    else { fprintf(stderr, "cfshelper errno: bad command\n"); return 2; }
    if (r < 0) printf("%s\n", ename(errno)); else printf("OK\n");
    return 0;
}

/* Rendezvous with the host: one line "post NAME\n" or "wait NAME TIMEOUT\n", reply "ok\n". */
static int cmd_rdv(char **a) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return die("socket");
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET; sa.sin_port = htons(atoi(a[1]));
    if (inet_pton(AF_INET, a[0], &sa.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) return die("connect");
    char buf[512];
    int len = snprintf(buf, sizeof buf, "%s %s %s\n", a[2], a[3], a[4] ? a[4] : "120");
    if (write(s, buf, len) != len) return die("write");
    len = read(s, buf, sizeof buf - 1);
    if (len <= 0) { fprintf(stderr, "cfshelper rdv: no reply\n"); return 1; }
    buf[len] = 0;
    if (!strncmp(buf, "abort", 5)) { fprintf(stderr, "cfshelper rdv: peer aborted\n"); return 3; }
    if (strncmp(buf, "ok", 2)) { fprintf(stderr, "cfshelper rdv: %s", buf); return 1; }
    /* get: the name after "ok " */
    if (!strcmp(a[2], "get") && len > 3) fputs(buf + 3, stdout);
    return 0;
}

static int cmd_readfd(char **a) {
    int fd = atoi(a[0]);
    char buf[65536];
    ssize_t n;
    if (lseek(fd, 0, SEEK_SET) < 0) return die("lseek");
    while ((n = read(fd, buf, sizeof buf)) > 0)
        if (write(1, buf, n) != n) return die("write");
    return n < 0 ? die("read") : 0;
}

static unsigned long long xs_state;
static void fill(unsigned char *buf, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        xs_state ^= xs_state << 13; xs_state ^= xs_state >> 7; xs_state ^= xs_state << 17;
        memcpy(buf + i, &xs_state, 8);
    }
}

#define MIB (1024 * 1024)
static unsigned char want[MIB], got[MIB];

static int cmd_gen(char **a) {
    int fd = open(a[0], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return die("open");
    xs_state = strtoull(a[1], 0, 10) | 1;
    long n = atol(a[2]);
    for (long m = 0; m < n; m++) {
        fill(want, MIB);
        for (size_t off = 0; off < MIB;) {
            ssize_t w = write(fd, want + off, MIB - off);
            if (w <= 0) return die("write");
            off += w;
        }
    }
    return close(fd) < 0 ? die("close") : 0;
}

static int cmd_verify(char **a) {
    int fd = open(a[0], O_RDONLY);
    if (fd < 0) { printf("open failed: %s (%s)\n", strerror(errno), ename(errno)); return 1; }
    xs_state = strtoull(a[1], 0, 10) | 1;
    long n = atol(a[2]), bad = 0;
    long long first = -1; int first_got = 0, first_want = 0, zeros = 1;
    for (long m = 0; m < n; m++) {
        fill(want, MIB);
        size_t have = 0;
        while (have < MIB) {
            ssize_t r = read(fd, got + have, MIB - have);
            if (r < 0) { printf("read failed at offset %lld: %s (%s)\n", (long long)m * MIB + have, strerror(errno), ename(errno)); return 1; }
            if (r == 0) { printf("short file: EOF at offset %lld, expected %ld MiB\n", (long long)m * MIB + have, n); return 1; }
            have += r;
        }
        if (memcmp(want, got, MIB)) {
            bad++;
            for (size_t i = 0; i < MIB; i++) {
                if (got[i]) zeros = 0;
                if (first < 0 && want[i] != got[i]) { first = (long long)m * MIB + i; first_got = got[i]; first_want = want[i]; }
            }
        }
    }
    if (read(fd, got, 1) > 0) { printf("file longer than %ld MiB\n", n); return 1; }
    if (!bad) { printf("OK\n"); return 0; }
    printf("MISMATCH in %ld of %ld MiB, first at offset %lld (expected 0x%02x, got 0x%02x)%s\n",
           bad, n, first, first_want, first_got, zeros ? "; bad MiBs read back as all zeros" : "");
    return 1;
}

/* as UID GID GROUPS CMD...: drop to that identity (groups first, uid last), then run CMD */
static int cmd_as(int n, char **a) {
    gid_t groups[32]; int ng = 0;
    if (strcmp(a[2], "-")) {
        char *s = a[2], *end;
        while (*s && ng < 32) { groups[ng++] = (gid_t)strtol(s, &end, 10); s = *end == ',' ? end + 1 : end; if (end == s && *s) break; }
    }
    uid_t u = (uid_t)strtol(a[0], NULL, 10); gid_t g = (gid_t)strtol(a[1], NULL, 10);
    if (setgroups(ng, groups) < 0) return die("setgroups");
    if (setresgid(g, g, g) < 0) return die("setresgid");
    if (setresuid(u, u, u) < 0) return die("setresuid");
    char *argv2[16]; int k = 0;
    argv2[k++] = "cfshelper";
    for (int i = 3; i < n && k < 15; i++) argv2[k++] = a[i];
    argv2[k] = NULL;
    execv("/proc/self/exe", argv2);
    return die("execv");
}

/* xattr OP FILE [NAME [VALUE]]: the extended attribute syscalls, answers as text */
static int cmd_xattr(int n, char **a) {
    const char *op = a[0], *f = a[1];
    static char buf[1 << 17];
    ssize_t r;
    if (!strcmp(op, "list") && n == 2) {
        r = listxattr(f, buf, sizeof buf);
        if (r < 0) { printf("%s\n", ename(errno)); return 0; }
        for (ssize_t i = 0; i < r; i += strlen(buf + i) + 1) printf("%s\n", buf + i);
        return 0;
    }
    if ((!strcmp(op, "get") || !strcmp(op, "size")) && n == 3) {
        r = getxattr(f, a[2], buf, sizeof buf - 1);
        if (r < 0) { printf("%s\n", ename(errno)); return 0; }
        if (!strcmp(op, "size")) { printf("%zd\n", r); return 0; }
        buf[r] = 0;
        printf("%s\n", buf);
        return 0;
    }
    if (!strcmp(op, "remove") && n == 3) {
        printf("%s\n", removexattr(f, a[2]) < 0 ? ename(errno) : "OK");
        return 0;
    }
    if (n == 4) {
        int flags = !strcmp(op, "create") ? XATTR_CREATE : !strcmp(op, "replace") ? XATTR_REPLACE : 0;
        if (flags == 0 && strcmp(op, "set")) return 2;
        const char *v = a[3];
        size_t len = strlen(v);
        if (v[0] == '@') {
            len = (size_t)strtoul(v + 1, NULL, 10);
            if (len > sizeof buf) return 2;
            memset(buf, 'x', len);
            v = buf;
        }
        printf("%s\n", setxattr(f, a[2], v, len, flags) < 0 ? ename(errno) : "OK");
        return 0;
    }
    return 2;
}

int posixdiff_main(int argc, char **argv);
int statd_main(void);

int main(int argc, char **argv) {
    if (argc >= 2 && !strncmp(argv[1], "posixdiff", 9)) return posixdiff_main(argc - 1, argv + 1);
    if (argc == 2 && !strcmp(argv[1], "statd")) return statd_main();
    if (argc < 3) { fprintf(stderr, "usage: see source header\n"); return 2; }
    const char *c = argv[1];
    char **a = argv + 2;
    int n = argc - 2;
    if (!strcmp(c, "lock") && n == 6) return cmd_lock(a);
    if (!strcmp(c, "getlk") && n == 4) return cmd_getlk(a);
    if (!strcmp(c, "flock") && n == 4) return cmd_flock(a);
    if (!strcmp(c, "fsync") && n == 1) return cmd_fsync(a);
    if (!strcmp(c, "readdir") && n == 1) return cmd_readdir(a);
    if (!strcmp(c, "errno") && n >= 2) return cmd_errno(n, a);
    if (!strcmp(c, "as") && n >= 4) return cmd_as(n, a);
    if (!strcmp(c, "rdv") && n >= 4) return cmd_rdv(a);
    if (!strcmp(c, "readfd") && n == 1) return cmd_readfd(a);
    if (!strcmp(c, "gen") && n == 3) return cmd_gen(a);
    if (!strcmp(c, "verify") && n == 3) return cmd_verify(a);
    if (!strcmp(c, "xattr") && n >= 2) return cmd_xattr(n, a);
    fprintf(stderr, "cfshelper: bad arguments\n");
    return 2;
}
