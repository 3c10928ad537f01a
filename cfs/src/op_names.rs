//! Operation names for metric labels and the console (RFC 8881 §18, RFC 7862 §15, RFC 1813).

/// The NFSv4 operation `op` (3..=75), "OTHER" for anything else (one label for all of them,
/// so a client sending junk numbers cannot grow the label set).
pub fn nfs4_op(op: usize) -> &'static str {
    const NAMES: [&str; 76] = [
        "OTHER",
        "OTHER",
        "OTHER",
        "ACCESS",
        "CLOSE",
        "COMMIT",
        "CREATE",
        "DELEGPURGE",
        "DELEGRETURN",
        "GETATTR",
        "GETFH",
        "LINK",
        "LOCK",
        "LOCKT",
        "LOCKU",
        "LOOKUP",
        "LOOKUPP",
        "NVERIFY",
        "OPEN",
        "OPENATTR",
        "OPEN_CONFIRM",
        "OPEN_DOWNGRADE",
        "PUTFH",
        "PUTPUBFH",
        "PUTROOTFH",
        "READ",
        "READDIR",
        "READLINK",
        "REMOVE",
        "RENAME",
        "RENEW",
        "RESTOREFH",
        "SAVEFH",
        "SECINFO",
        "SETATTR",
        "SETCLIENTID",
        "SETCLIENTID_CONFIRM",
        "VERIFY",
        "WRITE",
        "RELEASE_LOCKOWNER",
        "BACKCHANNEL_CTL",
        "BIND_CONN_TO_SESSION",
        "EXCHANGE_ID",
        "CREATE_SESSION",
        "DESTROY_SESSION",
        "FREE_STATEID",
        "GET_DIR_DELEGATION",
        "GETDEVICEINFO",
        "GETDEVICELIST",
        "LAYOUTCOMMIT",
        "LAYOUTGET",
        "LAYOUTRETURN",
        "SECINFO_NO_NAME",
        "SEQUENCE",
        "SET_SSV",
        "TEST_STATEID",
        "WANT_DELEGATION",
        "DESTROY_CLIENTID",
        "RECLAIM_COMPLETE",
        "ALLOCATE",
        "COPY",
        "COPY_NOTIFY",
        "DEALLOCATE",
        "IO_ADVISE",
        "LAYOUTERROR",
        "LAYOUTSTATS",
        "OFFLOAD_CANCEL",
        "OFFLOAD_STATUS",
        "READ_PLUS",
        "SEEK",
        "WRITE_SAME",
        "CLONE",
        "GETXATTR",
        "SETXATTR",
        "LISTXATTRS",
        "REMOVEXATTR",
    ];
    NAMES.get(op).copied().unwrap_or("OTHER")
}

/// The NFSv3 procedure `p` (0..=21).
pub fn nfs3_proc(p: usize) -> &'static str {
    const NAMES: [&str; 22] = [
        "NULL",
        "GETATTR",
        "SETATTR",
        "LOOKUP",
        "ACCESS",
        "READLINK",
        "READ",
        "WRITE",
        "CREATE",
        "MKDIR",
        "SYMLINK",
        "MKNOD",
        "REMOVE",
        "RMDIR",
        "RENAME",
        "LINK",
        "READDIR",
        "READDIRPLUS",
        "FSSTAT",
        "FSINFO",
        "PATHCONF",
        "COMMIT",
    ];
    NAMES.get(p).copied().unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::nfs4::*;

    #[test]
    fn names_match_the_protocol_numbers() {
        assert_eq!(nfs4_op(OP_READ as usize), "READ");
        assert_eq!(nfs4_op(OP_LAYOUTGET as usize), "LAYOUTGET");
        assert_eq!(nfs4_op(OP_SEQUENCE as usize), "SEQUENCE");
        assert_eq!(nfs4_op(OP_CLONE as usize), "CLONE");
        assert_eq!(nfs4_op(79), "OTHER");
        assert_eq!(nfs3_proc(proto::nfs3::NFSPROC3_COMMIT as usize), "COMMIT");
        assert_eq!(nfs3_proc(proto::nfs3::NFSPROC3_WRITE as usize), "WRITE");
    }
}
