/*
 * posixdiff: a differential POSIX test with the guest's own kernel as the oracle (issue 19).
 * Linked into cfshelper (no second binary to ship); see conformance/README.md, "posix-diff".
 *
 *   cfshelper posixdiff-trace SEED NCALLS DIR [I,J,K...]
 *       DIR must be an empty directory. Sets it up (below), executes calls 0..NCALLS-1 of the
 *       sequence SEED (or only the listed indices, in the order given) and prints the trace.
 *   cfshelper posixdiff SEED NCALLS ORACLE_DIR TEST_DIR [MAX_RERUNS [MAX_SECONDS [TARGET]]]
 *       Runs the sequence in a fresh subdirectory of each, compares the traces line by line and
 *       prints "PASS: ..." or "FAIL: ..." with the first differing lines; on a mismatch it then
 *       removes calls (chunks, then one at a time) while the same call still differs and no
 *       earlier one does, at most MAX_RERUNS reruns (default 300) and MAX_SECONDS (default 240),
 *       and prints the shortest sequence found with both its traces. Exit 0 identical, 1 mismatch,
 *       2 the program could not run (usage, setup, identity switch): never a silent pass.
 *       With TARGET (a call index, 7th argument) it minimises for that call instead of the
 *       first difference, tolerating differences before it (to isolate a mismatch that a first,
 *       already known one hides; a debugging aid, POSIXDIFF_TARGETS in the scenario).
 *
 * The sequence: call i's operation, identity and arguments come from a PRNG seeded with (SEED, i)
 * alone, so any subset of indices replays the same calls (what the minimisation needs). Every
 * call runs in a forked child that switches identity (setgroups, setresgid, setresuid), so the
 * parent stays root; the child opens and closes whatever it touches before it exits, so no file
 * is ever held open across calls (an open-unlinked file would become an NFS silly rename).
 * Identities: root; owner 1001 (gid 1001, groups 1001 2000); member 1002 (gid 2000, groups 2000);
 * other 1003 (gid 1003, groups 1003). Names: 3 fixed directories a b c, 6 names in each, and a
 * few second-level names (a/n0/n1) so rmdir and rename meet non-empty directories. umask 022.
 *
 * One trace line per call:
 *   IDX WHO OP ARGS = RET ERRNO | PATH TYPE MODE UID:GID nNLINK sSIZE tMTIME ; PATH ...
 * RET is the return value (bytes for write, 0 for success), ERRNO the errno name or "-". Then
 * for each path the call named, and its parent directory, the state after the call: type
 * (f d l p), mode & 07777, uid:gid, link count, size, and whether the mtime is the explicit one
 * a utimensat call sets (tE) or not (t-); or ENOENT/EACCES. A symlink is also followed ("->").
 * The state is read with statx(AT_STATX_FORCE_SYNC), which makes the NFS client ask the server
 * (GETATTR) instead of answering from its attribute cache; on tmpfs the flag changes nothing.
 *
 * ALLOWLIST (what the trace leaves out, each on evidence; README "NFS-inherent differences"):
 *   - atime: never printed (relatime, and the NFS client's own atime handling).
 *   - mtime/ctime values: only "is it the explicit utimensat time" is printed; the clocks of the
 *     guest and the server differ, so "now" cannot be compared.
 *   - size of directories: file-system specific (tmpfs counts entries, others use blocks), so
 *     printed as "s-" for directories on both sides.
 *   - chown(p, -1, -1) is never generated: on a set-id file Linux clears S_ISUID (and S_ISGID
 *     with group execute) although nothing changes (chown_common in fs/open.c adds
 *     ATTR_KILL_SUID/SGID for every non-directory), while the NFS client drops the kill bits and,
 *     with no attribute left, sends nothing (nfs_setattr), so no server can match. Seen with
 *     ganesha and cfs alike (seed 264, call 27: oracle 0755, NFS 6755). Either id alone is -1
 *     often enough. A non-owner's chown(p, -1, -1) of a set-id file is EPERM locally (the
 *     kill needs ownership) and 0 over NFS, for the same reason (seed 552, call 138), so a
 *     current owner that cannot be read (CUR) never turns a call into it either.
 *   - open(O_TRUNC) of an existing regular file whose size is already 0 runs without O_TRUNC
 *     (the trace shows the flags run): locally it still sets mtime and clears set-id bits
 *     (do_truncate with ATTR_MTIME|ATTR_CTIME and the kill bits), but the NFS client sends
 *     nothing: nfs4_proc_setattr drops ATTR_MTIME|ATTR_CTIME for ATTR_OPEN, and nfs_setattr an
 *     unchanged size and the kill bits. Seen with ganesha and cfs alike (seed 101 call 79, seed
 *     104 call 134). For the same reason a truncate(2) to the size the file already has runs
 *     one byte longer (locally it clears set-id bits; the client sends nothing: seed 107 call 80).
 *   - errno order: rmdir, unlink, rename or link that fails both for want of write permission on
 *     a directory and for a reason the client's VFS decides by itself is EACCES locally but
 *     ENOTDIR, EISDIR or EPERM over NFS. The client does not check write permission on a
 *     directory (nfs_permission in fs/nfs/dir.c leaves it to the server), so the VFS goes on to
 *     its own later checks before any server is asked: the type checks of may_delete() (rmdir of
 *     a non-directory, unlink of a directory, rename of a file over a directory and back), the
 *     sticky-directory check of may_delete() (EPERM), and vfs_link()'s refusal to link a
 *     directory (EPERM), all in fs/namei.c. No server can change this answer; ganesha shows the
 *     same. Allowed only with every other field of the line identical; a PASS lists each use as
 *     an INFO line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int posixdiff_main(int argc, char **argv);

static const char *pd_ename(int e) {
    switch (e) {
    case 0: return "-";
    case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case EIO: return "EIO";
    case ENXIO: return "ENXIO"; case EBADF: return "EBADF"; case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES"; case EBUSY: return "EBUSY"; case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV"; case ENOTDIR: return "ENOTDIR"; case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL"; case ETXTBSY: return "ETXTBSY"; case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC"; case EROFS: return "EROFS"; case EMLINK: return "EMLINK";
    case ENAMETOOLONG: return "ENAMETOOLONG"; case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP"; case EOVERFLOW: return "EOVERFLOW"; case ENOTSUP: return "ENOTSUP";
    case ESTALE: return "ESTALE"; case EREMOTEIO: return "EREMOTEIO"; case EDQUOT: return "EDQUOT";
    case ENOSYS: return "ENOSYS";
    default: { static char b[16]; snprintf(b, sizeof b, "E%d", e); return b; }
    }
}

/* ---- deterministic choices ---- */

static uint64_t rng;
static uint64_t next64(void) {
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static unsigned pick(unsigned n) { return (unsigned)(next64() % n); }

struct ident { const char *name; uid_t uid; gid_t gid; int ngroups; gid_t groups[2]; };
static const struct ident IDS[] = {
    {"root", 0, 0, 1, {0}},
    {"owner", 1001, 1001, 2, {1001, 2000}},
    {"member", 1002, 2000, 1, {2000}},
    {"other", 1003, 1003, 1, {1003}},
};

enum op {
    OP_OPEN, OP_MKDIR, OP_MKFIFO, OP_SYMLINK, OP_LINK, OP_RENAME, OP_UNLINK, OP_RMDIR,
    OP_CHMOD, OP_CHOWN, OP_LCHOWN, OP_TRUNCATE, OP_WRITE, OP_UTIMENS, OP_COUNT
};
static const char *OPNAME[] = {"open", "mkdir", "mkfifo", "symlink", "link", "rename", "unlink",
                               "rmdir", "chmod", "chown", "lchown", "truncate", "write", "utimens"};
static const unsigned OPWEIGHT[] = {12, 9, 3, 4, 5, 12, 5, 4, 10, 8, 3, 5, 8, 4};

/* file modes include every set-id combination; directory modes sticky and set-gid ones */
static const unsigned FMODES[] = {0644, 0666, 0600, 0755, 0777, 04755, 02755, 06755, 04777,
                                  02777, 06777, 02745, 02645, 0640};
static const unsigned DMODES[] = {0755, 0777, 0775, 01777, 02775, 02777, 03777, 0700, 01775};
static const char *STARGETS[] = {"n1", "n5", "../a/n2", "../b", "nowhere"};
static const long TRUNC_LEN[] = {0, 1, 100, 5000};
static const long WRITE_LEN[] = {1, 10, 4096};
static const long WRITE_OFF[] = {0, 100};
/* open variants: flags added to O_NONBLOCK (a fifo without a reader must not block) */
static const int OFLAGS[] = {O_WRONLY | O_CREAT, O_WRONLY | O_CREAT | O_EXCL,
                             O_WRONLY | O_CREAT | O_TRUNC, O_WRONLY | O_TRUNC, O_RDONLY | O_CREAT,
                             O_RDWR | O_CREAT | O_EXCL,
                             /* not generated: what an O_TRUNC open of an empty file becomes */
                             O_WRONLY};
#define N_OFLAGS 6
static const char *OFNAME[] = {"WRONLY|CREAT", "WRONLY|CREAT|EXCL", "WRONLY|CREAT|TRUNC",
                               "WRONLY|TRUNC", "RDONLY|CREAT", "RDWR|CREAT|EXCL", "WRONLY"};
/* chown argument choices; CUR = the path's current owner or group (read before the call) */
#define CUR (-2)
static const long CH_UIDS[] = {-1, CUR, CUR, 0, 1001, 1002, 1003};
static const long CH_GIDS[] = {-1, CUR, CUR, 0, 1001, 2000, 1003};
#define TEXPL 1000000000L /* the explicit utimensat time (2001-09-09) */

struct call {
    int idx, who;
    enum op op;
    char p1[32], p2[32];
    const char *target; /* symlink */
    unsigned mode;
    int oflag;
    long len, off;
    long uid, gid;
    int tvar;
};

static void pick_path(char *out, int allow_base) {
    const char *base = "abc" + pick(3);
    unsigned r = pick(100);
    if (allow_base && r < 8) snprintf(out, 32, "%c", *base);
    else if (r < 88) snprintf(out, 32, "%c/n%u", *base, pick(6));
    else snprintf(out, 32, "%c/n%u/n%u", *base, pick(2) ? 1 : 4, pick(3)); /* a/n1, a/n4 start as directories */
}

static void gen_call(uint64_t seed, int i, struct call *c) {
    rng = seed * 0x100000001b3ULL + (uint64_t)i * 0x9e3779b97f4a7c15ULL + 1;
    next64();
    memset(c, 0, sizeof *c);
    c->idx = i;
    unsigned w = pick(100);
    c->who = w < 20 ? 0 : w < 50 ? 1 : w < 75 ? 2 : 3;
    unsigned total = 0, k;
    for (k = 0; k < OP_COUNT; k++) total += OPWEIGHT[k];
    unsigned r = pick(total);
    for (k = 0; k < OP_COUNT; k++) { if (r < OPWEIGHT[k]) break; r -= OPWEIGHT[k]; }
    c->op = (enum op)k;
    int attr = c->op == OP_CHMOD || c->op == OP_CHOWN || c->op == OP_LCHOWN || c->op == OP_UTIMENS;
    pick_path(c->p1, attr);
    if (c->op == OP_LINK || c->op == OP_RENAME) {
        if (pick(3) == 0) snprintf(c->p2, 32, "%c/n%u", c->p1[0], pick(6)); /* same directory */
        else pick_path(c->p2, 0);
    }
    c->mode = c->op == OP_MKDIR ? DMODES[pick(sizeof DMODES / sizeof *DMODES)]
                                : FMODES[pick(sizeof FMODES / sizeof *FMODES)];
    if (c->op == OP_CHMOD && pick(3) == 0) c->mode = DMODES[pick(sizeof DMODES / sizeof *DMODES)];
    c->target = STARGETS[pick(sizeof STARGETS / sizeof *STARGETS)];
    c->oflag = pick(N_OFLAGS);
    c->len = c->op == OP_TRUNCATE ? TRUNC_LEN[pick(4)] : WRITE_LEN[pick(3)];
    c->off = WRITE_OFF[pick(2)];
    c->uid = CH_UIDS[pick(sizeof CH_UIDS / sizeof *CH_UIDS)];
    c->gid = CH_GIDS[pick(sizeof CH_GIDS / sizeof *CH_GIDS)];
    /* never chown(p, -1, -1): NFS-inherent, see ALLOWLIST */
    if (c->uid == -1 && c->gid == -1) c->gid = CUR;
    c->tvar = pick(4);
}

/* ---- output: lines kept in memory so two runs can be compared ---- */

#define LINE_MAX_LEN 1024
struct trace { int n, cap; char **lines; };
static struct trace *cur_trace; /* NULL: print */

static void emit(const char *s) {
    if (!cur_trace) { puts(s); fflush(stdout); return; }
    if (cur_trace->n == cur_trace->cap) {
        cur_trace->cap = cur_trace->cap ? cur_trace->cap * 2 : 256;
        cur_trace->lines = realloc(cur_trace->lines, cur_trace->cap * sizeof(char *));
        if (!cur_trace->lines) { perror("posixdiff: realloc"); exit(2); }
    }
    cur_trace->lines[cur_trace->n] = strdup(s);
    if (!cur_trace->lines[cur_trace->n]) { perror("posixdiff: strdup"); exit(2); }
    cur_trace->n++;
}

static void trace_free(struct trace *t) {
    for (int i = 0; i < t->n; i++) free(t->lines[i]);
    free(t->lines);
    memset(t, 0, sizeof *t);
}

static int get_stat(const char *p, int follow, struct statx *sx) {
    int flags = AT_STATX_FORCE_SYNC | (follow ? 0 : AT_SYMLINK_NOFOLLOW);
    return statx(AT_FDCWD, p, flags, STATX_BASIC_STATS, sx) < 0 ? errno : 0;
}

static void fmt_stat(char *b, size_t n, const char *p, int follow) {
    struct statx sx;
    int e = get_stat(p, follow, &sx);
    if (e) { snprintf(b, n, "%s", pd_ename(e)); return; }
    char t = S_ISREG(sx.stx_mode) ? 'f' : S_ISDIR(sx.stx_mode) ? 'd' : S_ISLNK(sx.stx_mode) ? 'l'
           : S_ISFIFO(sx.stx_mode) ? 'p' : '?';
    char size[32];
    if (t == 'd') snprintf(size, sizeof size, "s-"); /* allowlist: directory sizes */
    else snprintf(size, sizeof size, "s%llu", (unsigned long long)sx.stx_size);
    snprintf(b, n, "%c %04o %u:%u n%u %s t%c", t, sx.stx_mode & 07777, sx.stx_uid, sx.stx_gid,
             sx.stx_nlink, size, sx.stx_mtime.tv_sec == TEXPL ? 'E' : '-');
}

static void append(char *line, const char *fmt, const char *a, const char *b) {
    size_t l = strlen(line);
    snprintf(line + l, LINE_MAX_LEN - l, fmt, a, b);
}

static void state_of(char *line, const char *p) {
    char b[160], f[160];
    fmt_stat(b, sizeof b, p, 0);
    append(line, " | %s %s", p, b);
    if (b[0] == 'l') { fmt_stat(f, sizeof f, p, 1); append(line, " -> %s%s", f, ""); }
}

static void parent_of(const char *p, char *out) {
    const char *s = strrchr(p, '/');
    if (!s) snprintf(out, 32, ".");
    else snprintf(out, 32, "%.*s", (int)(s - p), p);
}

/* ---- one call ---- */

struct result { long ret; int err; int setid_failed; };
static struct result *shm;

static void become(const struct ident *id) {
    if (setgroups(id->ngroups, id->groups) < 0 || setresgid(id->gid, id->gid, id->gid) < 0 ||
        setresuid(id->uid, id->uid, id->uid) < 0) {
        shm->setid_failed = errno ? errno : -1;
        _exit(3);
    }
}

static long do_call(const struct call *c, long uid, long gid) {
    static char buf[4096];
    int fd;
    long r;
    switch (c->op) {
    case OP_OPEN:
        fd = open(c->p1, OFLAGS[c->oflag] | O_NONBLOCK, c->mode);
        return fd < 0 ? -1 : close(fd);
    case OP_MKDIR: return mkdir(c->p1, c->mode);
    case OP_MKFIFO: return mknod(c->p1, S_IFIFO | c->mode, 0);
    case OP_SYMLINK: return symlink(c->target, c->p1);
    case OP_LINK: return link(c->p1, c->p2);
    case OP_RENAME: return rename(c->p1, c->p2);
    case OP_UNLINK: return unlink(c->p1);
    case OP_RMDIR: return rmdir(c->p1);
    case OP_CHMOD: return chmod(c->p1, c->mode);
    case OP_CHOWN: return chown(c->p1, (uid_t)uid, (gid_t)gid);
    case OP_LCHOWN: return lchown(c->p1, (uid_t)uid, (gid_t)gid);
    case OP_TRUNCATE: return truncate(c->p1, c->len);
    case OP_WRITE:
        fd = open(c->p1, O_WRONLY | O_NONBLOCK);
        if (fd < 0) return -1;
        memset(buf, 'x', sizeof buf);
        r = pwrite(fd, buf, c->len, c->off);
        if (r < 0) { int e = errno; close(fd); errno = e; return -1; }
        return close(fd) < 0 ? -1 : r;
    case OP_UTIMENS: {
        struct timespec ts[2];
        switch (c->tvar) {
        case 0: return utimensat(AT_FDCWD, c->p1, NULL, 0);
        case 1: ts[0].tv_nsec = ts[1].tv_nsec = UTIME_NOW; break;
        case 2: ts[0].tv_sec = ts[1].tv_sec = TEXPL; ts[0].tv_nsec = ts[1].tv_nsec = 0; break;
        default: ts[0].tv_nsec = UTIME_OMIT; ts[1].tv_sec = TEXPL; ts[1].tv_nsec = 0; break;
        }
        return utimensat(AT_FDCWD, c->p1, ts, 0);
    }
    default: errno = EINVAL; return -1;
    }
}

static const char *TVNAME[] = {"NULL", "NOW,NOW", "T,T", "OMIT,T"};

/* returns 0, or 2 when the identity switch failed (the whole run is then void) */
static int run_call(const struct call *orig) {
    struct call cc = *orig;
    const struct call *c = &cc;
    /* open(O_TRUNC) of an existing empty file runs without O_TRUNC: NFS-inherent, see ALLOWLIST */
    if (cc.op == OP_OPEN && (OFLAGS[cc.oflag] & O_TRUNC)) {
        struct statx sx;
        if (get_stat(cc.p1, 1, &sx) == 0 && S_ISREG(sx.stx_mode) && sx.stx_size == 0)
            cc.oflag = cc.oflag == 2 ? 0 : 6;
    }
    /* truncate to the size a file already has runs one byte longer: the same reason */
    if (cc.op == OP_TRUNCATE) {
        struct statx sx;
        if (get_stat(cc.p1, 1, &sx) == 0 && S_ISREG(sx.stx_mode) && (long)sx.stx_size == cc.len)
            cc.len += 1;
    }
    long uid = c->uid, gid = c->gid;
    if (c->op == OP_CHOWN || c->op == OP_LCHOWN) {
        struct statx sx;
        int ok = get_stat(c->p1, c->op == OP_CHOWN, &sx) == 0;
        if (uid == CUR) uid = ok ? (long)sx.stx_uid : -1;
        if (gid == CUR) gid = ok ? (long)sx.stx_gid : -1;
        /* CUR unreadable (a missing path, or a symlink in a sticky directory that root may not
         * follow: protected_symlinks) beside a -1 would make chown(p, -1, -1), which is never
         * run (ALLOWLIST; seed 552 call 138): the caller's own uid instead, the same both sides */
        if (uid == -1 && gid == -1) uid = IDS[c->who].uid;
    }
    memset(shm, 0, sizeof *shm);
    pid_t pid = fork();
    if (pid < 0) { perror("posixdiff: fork"); return 2; }
    if (pid == 0) {
        become(&IDS[c->who]);
        errno = 0;
        long r = do_call(c, uid, gid);
        shm->ret = r;
        shm->err = r < 0 ? errno : 0;
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "posixdiff: call %d: child failed (status 0x%x, setid errno %d)\n", c->idx,
                st, shm->setid_failed);
        return 2;
    }
    char line[LINE_MAX_LEN], args[256];
    switch (c->op) {
    case OP_OPEN: snprintf(args, sizeof args, "%s %s 0%o", c->p1, OFNAME[c->oflag], c->mode); break;
    case OP_MKDIR: case OP_MKFIFO: case OP_CHMOD:
        snprintf(args, sizeof args, "%s 0%o", c->p1, c->mode); break;
    case OP_SYMLINK: snprintf(args, sizeof args, "%s %s", c->target, c->p1); break;
    case OP_LINK: case OP_RENAME: snprintf(args, sizeof args, "%s %s", c->p1, c->p2); break;
    case OP_CHOWN: case OP_LCHOWN: snprintf(args, sizeof args, "%s %ld %ld", c->p1, uid, gid); break;
    case OP_TRUNCATE: snprintf(args, sizeof args, "%s %ld", c->p1, c->len); break;
    case OP_WRITE: snprintf(args, sizeof args, "%s len=%ld off=%ld", c->p1, c->len, c->off); break;
    case OP_UTIMENS: snprintf(args, sizeof args, "%s %s", c->p1, TVNAME[c->tvar]); break;
    default: snprintf(args, sizeof args, "%s", c->p1); break;
    }
    snprintf(line, sizeof line, "%d %s %s %s = %ld %s", c->idx, IDS[c->who].name, OPNAME[c->op],
             args, shm->ret, pd_ename(shm->err));
    /* the paths named and their parents, each once */
    char seen[4][32];
    int ns = 0;
    const char *ps[2] = {c->p1, c->p2[0] ? c->p2 : NULL};
    for (int k = 0; k < 2; k++) {
        if (!ps[k]) continue;
        char par[32];
        parent_of(ps[k], par);
        const char *cand[2] = {ps[k], par};
        for (int j = 0; j < 2; j++) {
            int dup = 0;
            for (int s = 0; s < ns; s++) dup |= !strcmp(seen[s], cand[j]);
            if (dup || !strcmp(cand[j], ".")) continue;
            snprintf(seen[ns++], 32, "%s", cand[j]);
        }
    }
    for (int s = 0; s < ns; s++) state_of(line, seen[s]);
    emit(line);
    return 0;
}

/* ---- a whole run in DIR ---- */

/* The starting state, made by root: a sticky world-writable directory, the owner's group-writable
 * directory and the other user's private one, and one object of each kind to act on. */
static int setup_dir(void) {
    struct { const char *p; int dir; unsigned mode; uid_t u; gid_t g; } init[] = {
        {"a", 1, 01777, 0, 0},
        {"b", 1, 02775, 1001, 2000},
        {"c", 1, 0755, 1003, 1003},
        {"a/n0", 0, 0644, 1001, 1001},
        {"a/n1", 1, 0755, 1002, 2000},
        {"b/n2", 0, 06755, 1001, 2000},
        {"c/n3", 0, 0666, 1003, 1003},
        {"a/n4", 1, 0777, 1001, 1001},
    };
    for (size_t i = 0; i < sizeof init / sizeof *init; i++) {
        int r;
        if (init[i].dir) r = mkdir(init[i].p, 0700);
        else { r = open(init[i].p, O_WRONLY | O_CREAT | O_EXCL, 0600); if (r >= 0) r = close(r); }
        if (r < 0 || chown(init[i].p, init[i].u, init[i].g) < 0 || chmod(init[i].p, init[i].mode) < 0) {
            fprintf(stderr, "posixdiff: setup %s: %s\n", init[i].p, strerror(errno));
            return 2;
        }
    }
    char line[LINE_MAX_LEN] = "init";
    for (size_t i = 0; i < sizeof init / sizeof *init; i++) state_of(line, init[i].p);
    emit(line);
    return 0;
}

static int run_in(const char *dir, uint64_t seed, const int *idx, int n) {
    if (chown(dir, 0, 0) < 0 || chmod(dir, 0777) < 0) {
        fprintf(stderr, "posixdiff: prepare %s: %s\n", dir, strerror(errno));
        return 2;
    }
    int back = open(".", O_RDONLY | O_DIRECTORY);
    if (back < 0 || chdir(dir) < 0) { fprintf(stderr, "posixdiff: chdir %s: %s\n", dir, strerror(errno)); return 2; }
    int rc = setup_dir();
    for (int k = 0; rc == 0 && k < n; k++) {
        struct call c;
        gen_call(seed, idx[k], &c);
        rc = run_call(&c);
    }
    if (rc == 0) emit("end");
    if (fchdir(back) < 0) rc = 2;
    close(back);
    return rc;
}

static int setup_process(void) {
    if (geteuid() != 0) { fprintf(stderr, "posixdiff: must run as root\n"); return 2; }
    umask(022);
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) { perror("posixdiff: mmap"); return 2; }
    return 0;
}

static int parse_list(const char *s, int **out, int ncalls) {
    int n = 0, cap = 16;
    int *v = malloc(cap * sizeof(int));
    while (v && *s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 0 || x >= ncalls) { free(v); return -1; }
        if (n == cap) v = realloc(v, (cap *= 2) * sizeof(int));
        if (!v) return -1;
        v[n++] = (int)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') { free(v); return -1; }
    }
    *out = v;
    return v ? n : -1;
}

static int *all_indices(int n) {
    int *v = malloc((n ? n : 1) * sizeof(int));
    if (!v) { perror("posixdiff: malloc"); exit(2); }
    for (int i = 0; i < n; i++) v[i] = i;
    return v;
}

static int cmd_trace(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: posixdiff-trace SEED NCALLS DIR [I,J,...]\n"); return 2; }
    uint64_t seed = strtoull(argv[0], 0, 10);
    int ncalls = atoi(argv[1]);
    int *idx, n = ncalls;
    if (argc > 3) {
        n = parse_list(argv[3], &idx, ncalls);
        if (n < 0) { fprintf(stderr, "posixdiff: bad index list\n"); return 2; }
    } else idx = all_indices(ncalls);
    if (setup_process()) return 2;
    cur_trace = NULL;
    return run_in(argv[2], seed, idx, n);
}

/* ---- differential run and minimisation ---- */

static int run_counter;
static double t_start;
static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

/* run the indices in fresh subdirectories of both; 2 = could not run */
static int run_pair(const char *da, const char *db, uint64_t seed, const int *idx, int n,
                    struct trace *ta, struct trace *tb) {
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s/r%d", da, run_counter);
    snprintf(pb, sizeof pb, "%s/r%d", db, run_counter);
    run_counter++;
    if (mkdir(pa, 0777) < 0 || mkdir(pb, 0777) < 0) {
        fprintf(stderr, "posixdiff: mkdir %s / %s: %s\n", pa, pb, strerror(errno));
        return 2;
    }
    cur_trace = ta;
    int rc = run_in(pa, seed, idx, n);
    cur_trace = tb;
    if (rc == 0) rc = run_in(pb, seed, idx, n);
    cur_trace = NULL;
    return rc;
}

/* The errno order allowance (see ALLOWLIST): oracle EACCES, NFS ENOTDIR, EISDIR or EPERM, for
 * rmdir, unlink, rename and link, everything else on the line identical. */
static int errno_order_allowed(const char *x, const char *y) {
    const char *ex = strstr(x, " = -1 "), *ey = strstr(y, " = -1 ");
    if (!ex || !ey || ex - x != ey - y || strncmp(x, y, ex - x)) return 0;
    if (!strstr(x, " rmdir ") && !strstr(x, " unlink ") && !strstr(x, " rename ") && !strstr(x, " link "))
        return 0;
    ex += 6; ey += 6;
    if (strncmp(ex, "EACCES ", 7)) return 0;
    if (!strncmp(ey, "ENOTDIR ", 8)) return !strcmp(ex + 7, ey + 8);
    if (!strncmp(ey, "EISDIR ", 7)) return !strcmp(ex + 7, ey + 7);
    if (strncmp(ey, "EPERM ", 6) || strcmp(ex + 7, ey + 6)) return 0;
    /* EPERM only where the client itself says so: a sticky directory among the touched paths,
     * or a link whose source is a directory */
    if (strstr(x, " link ")) {
        const char *st = strstr(x, " | ");
        const char *sp = st ? strchr(st + 3, ' ') : NULL;
        if (sp && sp[1] == 'd' && sp[2] == ' ') return 1;
    }
    for (const char *p = x; (p = strstr(p, " d ")); p += 3)
        if (p[3] >= '0' && p[3] <= '7' && ((p[3] - '0') & 1)) return 1;
    return 0;
}

/* 0 identical, 1 different, 2 different only as the allowlist allows */
static int cmp_lines(const char *x, const char *y) {
    if (!strcmp(x, y)) return 0;
    return errno_order_allowed(x, y) ? 2 : 1;
}

/* index of the first differing line, or -1 */
static int first_diff(const struct trace *a, const struct trace *b) {
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++) if (cmp_lines(a->lines[i], b->lines[i]) == 1) return i;
    return a->n == b->n ? -1 : n;
}

static const char *line_or(const struct trace *t, int i) { return i < t->n ? t->lines[i] : "(no line)"; }

static int targeted; /* TARGET given: earlier differences are tolerated */

/* Does the sequence (ending with the target call) still show the mismatch at its last call and
 * nowhere before? Line 0 is "init", line k+1 is call idx[k]. */
static int still_fails(const char *da, const char *db, uint64_t seed, const int *idx, int n, int *err) {
    struct trace a = {0}, b = {0};
    int rc = run_pair(da, db, seed, idx, n, &a, &b);
    int r = 0;
    if (rc) *err = rc;
    else if (targeted) r = n < a.n && n < b.n && cmp_lines(a.lines[n], b.lines[n]) == 1;
    else r = first_diff(&a, &b) == n;
    trace_free(&a);
    trace_free(&b);
    return r;
}

static void print_pair(const struct trace *a, const struct trace *b, const char *na, const char *nb) {
    int n = a->n > b->n ? a->n : b->n;
    for (int i = 0; i < n; i++) {
        const char *x = line_or(a, i), *y = line_or(b, i);
        int c = cmp_lines(x, y);
        if (c == 0) printf("    = %s\n", x);
        else printf("    %c %s: %s\n    %c %s: %s\n", c == 1 ? '!' : '~', na, x, c == 1 ? '!' : '~', nb, y);
    }
}

static int cmd_diff(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: posixdiff SEED NCALLS ORACLE_DIR TEST_DIR [MAX_RERUNS [MAX_SECONDS [TARGET]]]\n"); return 2; }
    uint64_t seed = strtoull(argv[0], 0, 10);
    int ncalls = atoi(argv[1]);
    const char *da = argv[2], *db = argv[3];
    int max_reruns = argc > 4 ? atoi(argv[4]) : 300;
    double max_s = argc > 5 ? atof(argv[5]) : 240;
    if (ncalls < 1) { fprintf(stderr, "posixdiff: NCALLS must be >= 1\n"); return 2; }
    if (setup_process()) return 2;
    t_start = now_s();
    int *idx = all_indices(ncalls);
    struct trace a = {0}, b = {0};
    if (run_pair(da, db, seed, idx, ncalls, &a, &b)) {
        printf("FAIL: posix-diff seed %llu: the program could not run (see stderr)\n", (unsigned long long)seed);
        return 2;
    }
    /* init + one line per call + end: anything else means a run was cut short */
    if (a.n != ncalls + 2 || b.n != ncalls + 2) {
        printf("FAIL: posix-diff seed %llu: trace lengths %d and %d, expected %d\n",
               (unsigned long long)seed, a.n, b.n, ncalls + 2);
        return 2;
    }
    int d = first_diff(&a, &b);
    if (d < 0) {
        for (int i = 0; i < a.n; i++)
            if (cmp_lines(a.lines[i], b.lines[i]) == 2)
                printf("INFO: posix-diff seed %llu: allowed errno order: oracle: %s\n    nfs: %s\n",
                       (unsigned long long)seed, a.lines[i], b.lines[i]);
        printf("PASS: posix-diff seed %llu: %d calls, traces identical (%.1f s)\n",
               (unsigned long long)seed, ncalls, now_s() - t_start);
        return 0;
    }
    int ndiff = 0, nallowed = 0;
    for (int i = 0; i < a.n; i++) {
        int c = cmp_lines(a.lines[i], b.lines[i]);
        ndiff += c == 1;
        nallowed += c == 2;
    }
    /* the FAIL line itself carries the NFS side of the first difference, so the harness's
     * known-defect signatures (src/known.rs) can match an errno such as EREMOTEIO */
    printf("FAIL: posix-diff seed %llu: %d of %d lines differ (%d more only as allowed); first at line %d: nfs: %s\n",
           (unsigned long long)seed, ndiff, a.n, nallowed, d, line_or(&b, d));
    printf("    oracle: %s\n    nfs:    %s\n", line_or(&a, d), line_or(&b, d));
    /* later differences may follow from the first, or be mismatches of their own */
    int shown = 0;
    for (int i = d + 1; i < a.n && shown < 40; i++) {
        if (cmp_lines(a.lines[i], b.lines[i]) != 1) continue;
        if (!shown++) printf("    later differing lines (some may only follow from the first):\n");
        printf("    oracle: %s\n    nfs:    %s\n", a.lines[i], b.lines[i]);
    }
    if (argc > 6) {
        int t = atoi(argv[6]);
        if (t < 0 || t >= ncalls || cmp_lines(line_or(&a, t + 1), line_or(&b, t + 1)) != 1) {
            printf("    target call %d does not differ\n", t);
            return 1;
        }
        printf("    minimising for target call %d instead:\n    oracle: %s\n    nfs:    %s\n", t,
               a.lines[t + 1], b.lines[t + 1]);
        targeted = 1;
        d = t + 1;
    }
    trace_free(&a);
    trace_free(&b);
    if (d == 0 || d > ncalls) {
        printf("    (the difference is in the starting state or the end marker: nothing to minimise)\n");
        return 1;
    }
    /* the target call is idx[d-1]; minimise the calls before it */
    int n = d; /* calls 0..d-1, the last one being the target */
    int *cur = all_indices(n);
    int *tryv = malloc(n * sizeof(int));
    int reruns = 0, err = 0, stopped = 0;
    /* ddmin-like: drop chunks of halving size from the end towards the start (the target, the
     * last call, stays); at size 1 repeat while a pass still removed something */
    int chunk = (n - 1) / 2 > 0 ? (n - 1) / 2 : 1;
    for (;;) {
        int removed = 0;
        for (int end = n - 1; end > 0 && !err && !stopped; end -= chunk) {
            if (reruns >= max_reruns || now_s() - t_start > max_s) { stopped = 1; break; }
            int s0 = end - chunk < 0 ? 0 : end - chunk, m = 0;
            for (int k = 0; k < n; k++) if (k < s0 || k >= end) tryv[m++] = cur[k];
            reruns++;
            if (still_fails(da, db, seed, tryv, m, &err)) {
                memcpy(cur, tryv, m * sizeof(int));
                n = m;
                removed = 1;
            }
        }
        if (err || stopped || (chunk == 1 && !removed)) break;
        if (chunk > 1) chunk /= 2;
    }
    if (err) { printf("    minimisation stopped: the program could not run (see stderr)\n"); return 1; }
    printf("    minimal sequence (%d call%s, %d reruns, %.1f s%s): seed %llu calls ", n, n == 1 ? "" : "s",
           reruns, now_s() - t_start, stopped ? ", stopped at the bound: may not be minimal" : "",
           (unsigned long long)seed);
    for (int k = 0; k < n; k++) printf("%s%d", k ? "," : "", cur[k]);
    printf("\n    replay: cfshelper posixdiff-trace %llu %d DIR ", (unsigned long long)seed, ncalls);
    for (int k = 0; k < n; k++) printf("%s%d", k ? "," : "", cur[k]);
    printf("\n");
    struct trace ma = {0}, mb = {0};
    if (run_pair(da, db, seed, cur, n, &ma, &mb) == 0) print_pair(&ma, &mb, "oracle", "nfs   ");
    trace_free(&ma);
    trace_free(&mb);
    free(cur);
    free(tryv);
    return 1;
}

int posixdiff_main(int argc, char **argv) {
    if (!strcmp(argv[0], "posixdiff-trace")) return cmd_trace(argc - 1, argv + 1);
    return cmd_diff(argc - 1, argv + 1);
}
