/*
 * cfshelper statd: the two daemons the kernel's NLM client needs on the guest, in one process,
 * so v3 mounts can lock (no `nolock`): a minimal rpcbind on 127.0.0.1:111 (TCP) that accepts
 * the registrations lockd makes (portmap v2 and rpcbind v3/v4 SET/UNSET) and answers GETPORT
 * and GETADDR for the status monitor, and a minimal rpc.statd that answers SM_MON, SM_UNMON,
 * SM_UNMON_ALL, SM_STAT and SM_NOTIFY with success. The guest never reboots while a test runs,
 * so nothing is monitored or notified for real; NLM's locks themselves go to the server.
 * busybox provides neither daemon, and Debian's need more of a system than the initramfs has.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 32
#define MAXREC 65536

struct conn { int fd; int statd; unsigned char buf[MAXREC]; size_t have; };

static uint32_t g32(const unsigned char *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static void p32(unsigned char *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

static int listener(uint16_t port, uint16_t *bound) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (s < 0) return -1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0) { close(s); return -1; }
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    *bound = ntohs(a.sin_port);
    return s;
}

static uint16_t statd_port;

/* Answers one call (rec, len: the RPC message without its record mark) into out; returns the
 * reply length, 0 for garbage (the connection is closed). */
static size_t answer(const unsigned char *rec, size_t len, unsigned char *out) {
    if (len < 24 || g32(rec + 4) != 0 || g32(rec + 8) != 2) return 0;
    uint32_t xid = g32(rec), prog = g32(rec + 12), vers = g32(rec + 16), proc = g32(rec + 20);
    size_t off = 24;
    for (int i = 0; i < 2; i++) { /* cred, verf */
        if (off + 8 > len) return 0;
        uint32_t l = g32(rec + off + 4);
        if (l > 400) return 0;
        off += 8 + ((l + 3) & ~3u);
    }
    if (off > len) return 0;
    const unsigned char *args = rec + off;
    size_t alen = len - off;
    size_t o = 4;
    p32(out + o, xid); o += 4;
    p32(out + o, 1); o += 4;  /* REPLY */
    p32(out + o, 0); o += 4;  /* MSG_ACCEPTED */
    p32(out + o, 0); o += 4; p32(out + o, 0); o += 4;  /* verf AUTH_NONE */
    uint32_t stat = 0;        /* SUCCESS */
    unsigned char res[64]; size_t rl = 0;
    if (prog == 100000) {
        if (proc == 0) {
        } else if (proc == 1 || proc == 2) {
            p32(res, 1); rl = 4;           /* SET/UNSET: TRUE */
        } else if (proc == 3 && vers == 2) {
            uint32_t want = alen >= 4 ? g32(args) : 0;
            p32(res, want == 100024 ? statd_port : 0); rl = 4;
        } else if (proc == 3) {           /* v3/v4 GETADDR: a universal address or "" */
            uint32_t want = alen >= 4 ? g32(args) : 0;
            char ua[64] = "";
            if (want == 100024) snprintf(ua, sizeof ua, "127.0.0.1.%u.%u", statd_port >> 8, statd_port & 255);
            uint32_t n = strlen(ua);
            p32(res, n); memcpy(res + 4, ua, n); memset(res + 4 + n, 0, 3);
            rl = 4 + ((n + 3) & ~3u);
        } else stat = 3;                  /* PROC_UNAVAIL */
    } else if (prog == 100024) {
        if (proc == 0 || proc == 5 || proc == 6) {
        } else if (proc == 1 || proc == 2) {
            p32(res, 0); p32(res + 4, 1); rl = 8;   /* sm_stat_res: STAT_SUCC, state 1 */
        } else if (proc == 3 || proc == 4) {
            p32(res, 1); rl = 4;                    /* sm_stat: state 1 */
        } else stat = 3;
    } else stat = 1;                                /* PROG_UNAVAIL */
    p32(out + o, stat); o += 4;
    memcpy(out + o, res, rl); o += rl;
    p32(out, 0x80000000u | (uint32_t)(o - 4));
    return o;
}

int statd_main(void) {
    uint16_t rp;
    int rb = listener(111, &rp);
    int sd = listener(0, &statd_port);
    if (rb < 0 || sd < 0) { perror("cfshelper statd: listen"); return 1; }
    fprintf(stderr, "cfshelper statd: rpcbind on 127.0.0.1:111, statd on 127.0.0.1:%u\n", statd_port);
    static struct conn c[MAXC];
    for (int i = 0; i < MAXC; i++) c[i].fd = -1;
    for (;;) {
        struct pollfd p[MAXC + 2];
        int n = 0;
        p[n++] = (struct pollfd){ .fd = rb, .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = sd, .events = POLLIN };
        for (int i = 0; i < MAXC; i++) p[n++] = (struct pollfd){ .fd = c[i].fd, .events = POLLIN };
        if (poll(p, n, -1) < 0) { if (errno == EINTR) continue; return 1; }
        for (int l = 0; l < 2; l++) {
            if (!(p[l].revents & POLLIN)) continue;
            int fd = accept(p[l].fd, NULL, NULL);
            if (fd < 0) continue;
            int i = 0;
            while (i < MAXC && c[i].fd >= 0) i++;
            if (i == MAXC) { close(fd); continue; }
            c[i].fd = fd; c[i].have = 0; c[i].statd = l;
        }
        for (int i = 0; i < MAXC; i++) {
            if (c[i].fd < 0 || !(p[i + 2].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = read(c[i].fd, c[i].buf + c[i].have, MAXREC - c[i].have);
            if (r <= 0) { close(c[i].fd); c[i].fd = -1; continue; }
            c[i].have += r;
            /* one fragment per record: what the kernel's RPC client sends */
            while (c[i].have >= 4) {
                uint32_t mark = g32(c[i].buf), flen = mark & 0x7fffffffu;
                if (flen > MAXREC - 4) { close(c[i].fd); c[i].fd = -1; break; }
                if (c[i].have < 4 + flen) break;
                unsigned char out[256];
                size_t ol = answer(c[i].buf + 4, flen, out);
                if (!ol || write(c[i].fd, out, ol) != (ssize_t)ol) { close(c[i].fd); c[i].fd = -1; break; }
                memmove(c[i].buf, c[i].buf + 4 + flen, c[i].have - 4 - flen);
                c[i].have -= 4 + flen;
            }
        }
    }
}
