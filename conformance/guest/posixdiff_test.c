/*
 * Unit checks of posixdiff.c's comparison (the allowlist), built and run by the conformance
 * crate's tests (src/setup.rs, posixdiff_comparison_checks): each allowed difference is allowed
 * and the near misses are not.
 */
#include "posixdiff.c"
#include <assert.h>
int main(void) {
 assert(cmp_lines("86 member rename c/n4 a/n2 = -1 EACCES | c/n4 p 0755 1003:1003 n1 s0 tE | c d 0755 1003:1003 n2 s- t- | a/n2 l 0777 1001:1001 n1 s4 t- -> EACCES | a d 1777 0:0 n5 s- t-",
                  "86 member rename c/n4 a/n2 = -1 EPERM | c/n4 p 0755 1003:1003 n1 s0 tE | c d 0755 1003:1003 n2 s- t- | a/n2 l 0777 1001:1001 n1 s4 t- -> EACCES | a d 1777 0:0 n5 s- t-")==2);
 assert(cmp_lines("119 member link a/n1 c/n5 = -1 EACCES | a/n1 d 0775 1002:2000 n2 s- t- | a d 0777 0:0 n4 s- t- | c/n5 ENOENT | c d 0755 1003:1003 n2 s- t-",
                  "119 member link a/n1 c/n5 = -1 EPERM | a/n1 d 0775 1002:2000 n2 s- t- | a d 0777 0:0 n4 s- t- | c/n5 ENOENT | c d 0755 1003:1003 n2 s- t-")==2);
 /* EPERM with no sticky directory and no directory link: a real difference */
 assert(cmp_lines("5 member unlink c/n4 = -1 EACCES | c/n4 f 0755 1003:1003 n1 s0 t- | c d 0755 1003:1003 n2 s- t-",
                  "5 member unlink c/n4 = -1 EPERM | c/n4 f 0755 1003:1003 n1 s0 t- | c d 0755 1003:1003 n2 s- t-")==1);
 assert(cmp_lines("50 owner rmdir c/n3 = -1 EACCES | c/n3 f 0666 1003:1003 n1 s0 t- | c d 0755 1003:1003 n3 s- t-",
                  "50 owner rmdir c/n3 = -1 ENOTDIR | c/n3 f 0666 1003:1003 n1 s0 t- | c d 0755 1003:1003 n3 s- t-")==2);
 /* state differs too: not allowed */
 assert(cmp_lines("50 owner rmdir c/n3 = -1 EACCES | c/n3 f 0666 1003:1003 n1 s0 t- | c d 0755 1003:1003 n3 s- t-",
                  "50 owner rmdir c/n3 = -1 ENOTDIR | c/n3 f 0644 1003:1003 n1 s0 t- | c d 0755 1003:1003 n3 s- t-")==1);
 /* other ops: not allowed */
 assert(cmp_lines("5 other chmod c/n3 0755 = -1 EACCES | c/n3 f 0666 1003:1003 n1 s0 t-", "5 other chmod c/n3 0755 = -1 EPERM | c/n3 f 0666 1003:1003 n1 s0 t-")==1);
 puts("allowance checks ok"); return 0; }
