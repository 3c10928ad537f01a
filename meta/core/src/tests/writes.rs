//! `Write` and `WriteKeepingTimes`: the size only grows and the change attribute moves by the
//! writes recorded; only `Write` moves the times.

use super::*;

#[test]
fn a_write_keeping_times_grows_the_size_and_moves_the_change_but_not_the_times() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let write = Command::Write {
        ino: f,
        end_offset: 100,
        time: t(7),
        writes: 1,
    };
    let before = step(&mut s, &write).unwrap().inode.unwrap();
    assert_eq!((before.mtime, before.ctime), (t(7), t(7)));
    let keep = |end| Command::WriteKeepingTimes {
        ino: f,
        end_offset: end,
        writes: 2,
    };
    let after = step(&mut s, &keep(300)).unwrap().inode.unwrap();
    assert_eq!(after.size, 300);
    assert_eq!((after.mtime, after.ctime), (t(7), t(7)), "the times stay");
    assert_eq!(after.change, before.change + 2);
    let again = step(&mut s, &keep(50)).unwrap().inode.unwrap();
    assert_eq!(again.size, 300, "the size never shrinks");
    assert_eq!(again.change, after.change + 2);
}
