//! Round-trip and hostile-input tests of the NFSv4 wire types.
use super::*;
use crate::xdr::{Opaque, Reader, Xdr, XdrError};

fn roundtrip<T: Xdr + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
    let b = v.to_xdr();
    let mut r = Reader::new(&b);
    let d = T::decode(&mut r).expect("decode");
    assert_eq!(&d, v);
    assert_eq!(r.remaining(), 0, "trailing bytes");
    // Every strict prefix must fail cleanly (never panic, never succeed with the whole value).
    for cut in 0..b.len() {
        let mut r = Reader::new(&b[..cut]);
        if let Ok(x) = T::decode(&mut r) {
            assert_ne!(&x, v, "prefix {cut} decoded to the full value");
        }
    }
    b
}

fn sid(n: u8) -> Stateid4 {
    Stateid4 {
        seqid: n as u32,
        other: [n; 12],
    }
}

fn fh(n: u8) -> NfsFh4 {
    NfsFh4::from(vec![n; 32])
}

fn seq() -> NfsArgop4 {
    NfsArgop4::Sequence(SequenceArgs {
        sa_sessionid: [7; 16],
        sa_sequenceid: 3,
        sa_slotid: 0,
        sa_highest_slotid: 0,
        sa_cachethis: false,
    })
}

fn compound(ops: Vec<NfsArgop4>) -> Compound4Args {
    Compound4Args {
        tag: Opaque::from("t"),
        minorversion: 2,
        argarray: ops,
    }
}

fn sample_attrs() -> FileAttrs {
    FileAttrs {
        ftype: Some(NfsFtype4::Reg),
        change: Some(42),
        size: Some(4096),
        fsid: Some(Fsid4 { major: 1, minor: 2 }),
        fileid: Some(77),
        mode: Some(0o644),
        numlinks: Some(1),
        owner: Some(Opaque::from("alice@example.com")),
        owner_group: Some(Opaque::from("staff@example.com")),
        time_modify: Some(Nfstime4 {
            seconds: 1_700_000_000,
            nseconds: 5,
        }),
        fs_layout_types: Some(vec![LAYOUT4_FLEX_FILES]),
        layout_blksize: Some(1 << 20),
        supported_attrs: Some(Bitmap::from_bits(&[0, 1, 3, 4, 33, 75])),
        ..Default::default()
    }
}

#[test]
fn session_setup_compounds_roundtrip() {
    let exid = compound(vec![NfsArgop4::ExchangeId(ExchangeIdArgs {
        eia_clientowner: ClientOwner4 {
            co_verifier: [1; 8],
            co_ownerid: Opaque::from("owner"),
        },
        eia_flags: EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_BIND_PRINC_STATEID,
        eia_state_protect: StateProtect4A::MachCred(StateProtectOps4 {
            spo_must_enforce: vec![1 << 10],
            spo_must_allow: vec![0, 1 << 3],
        }),
        eia_client_impl_id: vec![NfsImplId4 {
            nii_domain: Opaque::from("kernel.org"),
            nii_name: Opaque::from("Linux"),
            nii_date: Nfstime4::default(),
        }],
    })]);
    roundtrip(&exid);
    let cs = compound(vec![NfsArgop4::CreateSession(CreateSessionArgs {
        csa_clientid: 0x1122334455667788,
        csa_sequence: 1,
        csa_flags: CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
        csa_fore_chan_attrs: ChannelAttrs4 {
            ca_maxrequests: 64,
            ..Default::default()
        },
        csa_back_chan_attrs: ChannelAttrs4 {
            ca_rdma_ird: vec![4],
            ..Default::default()
        },
        csa_cb_program: NFS4_CALLBACK,
        csa_sec_parms: vec![
            CallbackSecParms4::AuthNone,
            CallbackSecParms4::AuthSys(AuthsysParms {
                stamp: 9,
                machinename: Opaque::from("host"),
                uid: 0,
                gid: 0,
                gids: vec![1, 2],
            }),
            CallbackSecParms4::RpcsecGss(GssCbHandles4 {
                gcbp_service: RpcGssSvc::Integrity,
                gcbp_handle_from_server: Opaque::from("s"),
                gcbp_handle_from_client: Opaque::from("c"),
            }),
        ],
    })]);
    roundtrip(&cs);
    let other = compound(vec![
        NfsArgop4::BindConnToSession(BindConnToSessionArgs {
            bctsa_sessid: [1; 16],
            bctsa_dir: ChannelDirFromClient4::BackOrBoth,
            bctsa_use_conn_in_rdma_mode: false,
        }),
        NfsArgop4::DestroySession(DestroySessionArgs {
            dsa_sessionid: [2; 16],
        }),
        NfsArgop4::DestroyClientid(DestroyClientidArgs { dca_clientid: 5 }),
        NfsArgop4::ReclaimComplete(ReclaimCompleteArgs { rca_one_fs: true }),
        NfsArgop4::BackchannelCtl(BackchannelCtlArgs {
            bca_cb_program: 1,
            bca_sec_parms: vec![CallbackSecParms4::AuthNone],
        }),
        NfsArgop4::SetSsv(SetSsvArgs {
            ssa_ssv: Opaque::from("k"),
            ssa_digest: Opaque::from("d"),
        }),
        NfsArgop4::Setclientid(SetclientidArgs {
            client: NfsClientId4 {
                verifier: [3; 8],
                id: Opaque::from("id"),
            },
            callback: CbClient4 {
                cb_program: 0x40000000,
                cb_location: Netaddr4 {
                    na_r_netid: Opaque::from("tcp"),
                    na_r_addr: Opaque::from("10.0.0.1.3.4"),
                },
            },
            callback_ident: 1,
        }),
        NfsArgop4::SetclientidConfirm(SetclientidConfirmArgs {
            clientid: 1,
            setclientid_confirm: [4; 8],
        }),
        NfsArgop4::Renew(RenewArgs { clientid: 1 }),
    ]);
    roundtrip(&other);

    let res = Compound4Res {
        status: 0,
        tag: Opaque::from("t"),
        resarray: vec![
            NfsResop4::ExchangeId(ExchangeIdRes::Ok(ExchangeIdResOk {
                eir_clientid: 9,
                eir_sequenceid: 1,
                eir_flags: EXCHGID4_FLAG_USE_PNFS_MDS | EXCHGID4_FLAG_CONFIRMED_R,
                eir_state_protect: StateProtect4R::None,
                eir_server_owner: ServerOwner4 {
                    so_minor_id: 0,
                    so_major_id: Opaque::from("cfs"),
                },
                eir_server_scope: Opaque::from("scope"),
                eir_server_impl_id: vec![],
            })),
            NfsResop4::CreateSession(CreateSessionRes::Ok(CreateSessionResOk {
                csr_sessionid: [5; 16],
                csr_sequence: 1,
                csr_flags: 0,
                csr_fore_chan_attrs: ChannelAttrs4::default(),
                csr_back_chan_attrs: ChannelAttrs4::default(),
            })),
            NfsResop4::Sequence(SequenceRes::Err(Nfsstat4::Badsession.code())),
            NfsResop4::Setclientid(SetclientidRes::ClidInuse(Netaddr4::default())),
            NfsResop4::BindConnToSession(BindConnToSessionRes::Ok(BindConnToSessionResOk {
                bctsr_sessid: [1; 16],
                bctsr_dir: ChannelDirFromServer4::Both,
                bctsr_use_conn_in_rdma_mode: false,
            })),
        ],
    };
    roundtrip(&res);
    assert_eq!(res.resarray[2].status(), 10052);
}

#[test]
fn file_ops_compound_roundtrip() {
    let attrs = sample_attrs().encode_all();
    let args = compound(vec![
        seq(),
        NfsArgop4::Putrootfh,
        NfsArgop4::Putpubfh,
        NfsArgop4::Putfh(PutfhArgs { object: fh(1) }),
        NfsArgop4::Lookup(LookupArgs {
            objname: Opaque::from("dir"),
        }),
        NfsArgop4::Lookupp,
        NfsArgop4::Getfh,
        NfsArgop4::Savefh,
        NfsArgop4::Restorefh,
        NfsArgop4::Access(AccessArgs {
            access: ACCESS4_READ | ACCESS4_LOOKUP,
        }),
        NfsArgop4::Getattr(GetattrArgs {
            attr_request: vec![0x0010_011a, 0x00b0_a23a],
        }),
        NfsArgop4::Create(CreateArgs {
            objtype: Createtype4::Lnk(Opaque::from("target")),
            objname: Opaque::from("link"),
            createattrs: attrs.clone(),
        }),
        NfsArgop4::Create(CreateArgs {
            objtype: Createtype4::Chr(Specdata4 {
                specdata1: 1,
                specdata2: 3,
            }),
            objname: Opaque::from("null"),
            createattrs: Fattr4::default(),
        }),
        NfsArgop4::Create(CreateArgs {
            objtype: Createtype4::Dir,
            objname: Opaque::from("d"),
            createattrs: Fattr4::default(),
        }),
        NfsArgop4::Link(LinkArgs {
            newname: Opaque::from("hard"),
        }),
        NfsArgop4::Remove(RemoveArgs {
            target: Opaque::from("x"),
        }),
        NfsArgop4::Rename(RenameArgs {
            oldname: Opaque::from("a"),
            newname: Opaque::from("b"),
        }),
        NfsArgop4::Readlink,
        NfsArgop4::Readdir(ReaddirArgs {
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 8192,
            maxcount: 32768,
            attr_request: vec![0x0018_091a, 0x00b0_a23a],
        }),
        NfsArgop4::Read(ReadArgs {
            stateid: sid(1),
            offset: 4096,
            count: 1 << 20,
        }),
        NfsArgop4::Write(WriteArgs {
            stateid: sid(2),
            offset: 0,
            stable: StableHow4::Unstable4,
            data: Opaque(vec![0xab; 13]),
        }),
        NfsArgop4::Commit(CommitArgs {
            offset: 0,
            count: 0,
        }),
        NfsArgop4::Setattr(SetattrArgs {
            stateid: Stateid4::ANONYMOUS,
            obj_attributes: attrs,
        }),
        NfsArgop4::Verify(VerifyArgs {
            obj_attributes: Fattr4::default(),
        }),
        NfsArgop4::Nverify(NverifyArgs {
            obj_attributes: Fattr4::default(),
        }),
        NfsArgop4::Openattr(OpenattrArgs { createdir: false }),
        NfsArgop4::Secinfo(SecinfoArgs {
            name: Opaque::from("n"),
        }),
        NfsArgop4::SecinfoNoName(SecinfoNoNameArgs {
            style: SecinfoStyle4::Parent,
        }),
        NfsArgop4::Illegal,
    ]);
    let b = roundtrip(&args);
    assert_eq!(
        args.argarray.iter().map(|o| o.opnum()).next(),
        Some(OP_SEQUENCE)
    );
    assert_eq!(args.argarray.last().map(|o| o.opnum()), Some(OP_ILLEGAL));
    // The wire starts with the tag, minorversion and op count.
    assert_eq!(&b[..4], &[0, 0, 0, 1]);

    let entries = (0..50)
        .map(|i| Entry4 {
            cookie: i + 3,
            name: Opaque::from(format!("f{i}").as_str()),
            attrs: sample_attrs().encode(&Bitmap::from_bits(&[FATTR4_TYPE, FATTR4_FILEID])),
        })
        .collect();
    let res = Compound4Res {
        status: Nfsstat4::Noent.code(),
        tag: Opaque::default(),
        resarray: vec![
            NfsResop4::Putrootfh(StatusRes::ok()),
            NfsResop4::Getfh(GetfhRes::Ok(GetfhResOk { object: fh(3) })),
            NfsResop4::Access(AccessRes::Ok(AccessResOk {
                supported: 0x3f,
                access: 0x3,
            })),
            NfsResop4::Readdir(ReaddirRes::Ok(ReaddirResOk {
                cookieverf: [1; 8],
                reply: Dirlist4 { entries, eof: true },
            })),
            NfsResop4::Readdir(ReaddirRes::Ok(ReaddirResOk {
                cookieverf: [1; 8],
                reply: Dirlist4 {
                    entries: vec![],
                    eof: false,
                },
            })),
            NfsResop4::Read(ReadRes::Ok(ReadResOk {
                eof: true,
                data: Opaque(vec![1, 2, 3]),
            })),
            NfsResop4::Write(WriteRes::Ok(WriteResOk {
                count: 13,
                committed: StableHow4::FileSync4,
                writeverf: [9; 8],
            })),
            NfsResop4::Setattr(SetattrRes {
                status: 10032,
                attrsset: vec![],
            }),
            NfsResop4::Secinfo(SecinfoRes::Ok(SecinfoResOk(vec![
                Secinfo4::Flavor(AUTH_SYS),
                Secinfo4::RpcsecGss(RpcsecGssInfo {
                    oid: Opaque(vec![0x2a, 0x86]),
                    qop: 0,
                    service: RpcGssSvc::Privacy,
                }),
            ]))),
            NfsResop4::Rename(RenameRes::Ok(RenameResOk {
                source_cinfo: ChangeInfo4 {
                    atomic: true,
                    before: 1,
                    after: 2,
                },
                target_cinfo: ChangeInfo4::default(),
            })),
            NfsResop4::Lookup(StatusRes::err(Nfsstat4::Noent)),
        ],
    };
    roundtrip(&res);
    assert_eq!(res.resarray.last().map(|r| r.status()), Some(2));
    assert_eq!(shared_encoding(&res), res.to_xdr());
}

fn shared_encoding(res: &Compound4Res) -> Vec<u8> {
    let mut w = crate::xdr::Writer::new();
    res.clone().encode_shared(&mut w);
    w.into_inner()
}

#[test]
fn shared_read_payloads_encode_like_copied_ones() {
    let read = |n: usize, eof| {
        NfsResop4::Read(ReadRes::Ok(ReadResOk {
            eof,
            data: Opaque((0..n).map(|i| i as u8).collect()),
        }))
    };
    let res = Compound4Res {
        status: 0,
        tag: Opaque::from("t"),
        resarray: vec![
            NfsResop4::Putrootfh(StatusRes::ok()),
            read(1 << 20, false),
            read(65_537, true),
            read(3, true),
            NfsResop4::Read(ReadRes::Err(Nfsstat4::Io.code())),
        ],
    };
    let mut w = crate::xdr::Writer::new();
    res.clone().encode_shared(&mut w);
    assert!(w.segments().count() > 1, "big payloads are not copied");
    // What the session reply cache copies: everything after a header, shared payloads included.
    assert_eq!(w.copy_from(6), res.to_xdr()[6..]);
    assert_eq!(w.into_inner(), res.to_xdr());
    assert_eq!(Compound4Res::from_xdr(&res.to_xdr()).unwrap(), res);
}

#[test]
fn state_ops_compound_roundtrip() {
    let owner = StateOwner4 {
        clientid: 1,
        owner: Opaque::from("open id:\x00\x01"),
    };
    let args = compound(vec![
        seq(),
        NfsArgop4::Open(OpenArgs {
            seqid: 0,
            share_access: OPEN4_SHARE_ACCESS_BOTH | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
            share_deny: OPEN4_SHARE_DENY_NONE,
            owner: owner.clone(),
            openhow: Openflag4::Create(Createhow4::Exclusive41(Creatverfattr {
                cva_verf: [5; 8],
                cva_attrs: sample_attrs().encode(&Bitmap::from_bits(&[FATTR4_MODE])),
            })),
            claim: OpenClaim4::Null(Opaque::from("file")),
        }),
        NfsArgop4::Open(OpenArgs {
            seqid: 0,
            share_access: OPEN4_SHARE_ACCESS_READ,
            share_deny: 0,
            owner: owner.clone(),
            openhow: Openflag4::NoCreate,
            claim: OpenClaim4::Fh,
        }),
        NfsArgop4::Open(OpenArgs {
            seqid: 0,
            share_access: OPEN4_SHARE_ACCESS_READ,
            share_deny: 0,
            owner: owner.clone(),
            openhow: Openflag4::Create(Createhow4::Guarded(Fattr4::default())),
            claim: OpenClaim4::DelegateCur(OpenClaimDelegateCur4 {
                delegate_stateid: sid(4),
                file: Opaque::from("f"),
            }),
        }),
        NfsArgop4::Lock(LockArgs {
            locktype: NfsLockType4::WritewLt,
            reclaim: false,
            offset: 0,
            length: NFS4_UINT64_MAX,
            locker: Locker4::NewLockOwner(OpenToLockOwner4 {
                open_seqid: 0,
                open_stateid: sid(1),
                lock_seqid: 0,
                lock_owner: owner.clone(),
            }),
        }),
        NfsArgop4::Lock(LockArgs {
            locktype: NfsLockType4::ReadLt,
            reclaim: true,
            offset: 10,
            length: 10,
            locker: Locker4::ExistingLockOwner(ExistLockOwner4 {
                lock_stateid: sid(2),
                lock_seqid: 1,
            }),
        }),
        NfsArgop4::Lockt(LocktArgs {
            locktype: NfsLockType4::ReadLt,
            offset: 0,
            length: 1,
            owner: owner.clone(),
        }),
        NfsArgop4::Locku(LockuArgs {
            locktype: NfsLockType4::ReadLt,
            seqid: 0,
            lock_stateid: sid(2),
            offset: 0,
            length: 1,
        }),
        NfsArgop4::Close(CloseArgs {
            seqid: 0,
            open_stateid: sid(1),
        }),
        NfsArgop4::OpenDowngrade(OpenDowngradeArgs {
            open_stateid: sid(1),
            seqid: 0,
            share_access: 1,
            share_deny: 0,
        }),
        NfsArgop4::OpenConfirm(OpenConfirmArgs {
            open_stateid: sid(1),
            seqid: 1,
        }),
        NfsArgop4::ReleaseLockowner(ReleaseLockownerArgs {
            lock_owner: owner.clone(),
        }),
        NfsArgop4::Delegreturn(DelegreturnArgs {
            deleg_stateid: sid(8),
        }),
        NfsArgop4::Delegpurge(DelegpurgeArgs { clientid: 1 }),
        NfsArgop4::FreeStateid(FreeStateidArgs {
            fsa_stateid: sid(3),
        }),
        NfsArgop4::TestStateid(TestStateidArgs {
            ts_stateids: vec![sid(1), sid(2)],
        }),
        NfsArgop4::WantDelegation(WantDelegationArgs {
            wda_want: OPEN4_SHARE_ACCESS_WANT_READ_DELEG,
            wda_claim: DelegClaim4::Previous(OpenDelegationType4::Read),
        }),
        NfsArgop4::GetDirDelegation(GetDirDelegationArgs {
            gdda_signal_deleg_avail: true,
            gdda_notification_types: vec![0x3],
            gdda_child_attr_delay: Nfstime4::default(),
            gdda_dir_attr_delay: Nfstime4::default(),
            gdda_child_attributes: vec![],
            gdda_dir_attributes: vec![1],
        }),
    ]);
    roundtrip(&args);

    let denied = LockDenied {
        offset: 0,
        length: 5,
        locktype: NfsLockType4::WriteLt,
        owner: owner.clone(),
    };
    let res = Compound4Res {
        status: Nfsstat4::Denied.code(),
        tag: Opaque::default(),
        resarray: vec![
            NfsResop4::Open(OpenRes::Ok(OpenResOk {
                stateid: sid(1),
                cinfo: ChangeInfo4::default(),
                rflags: OPEN4_RESULT_LOCKTYPE_POSIX,
                attrset: vec![0, 2],
                delegation: OpenDelegation4::Write(OpenWriteDelegation4 {
                    stateid: sid(9),
                    recall: false,
                    space_limit: NfsSpaceLimit4::Blocks(NfsModifiedLimit4 {
                        num_blocks: 1,
                        bytes_per_block: 512,
                    }),
                    permissions: Nfsace4::default(),
                }),
            })),
            NfsResop4::Open(OpenRes::Ok(OpenResOk {
                stateid: sid(1),
                cinfo: ChangeInfo4::default(),
                rflags: 0,
                attrset: vec![],
                delegation: OpenDelegation4::NoneExt(OpenNoneDelegation4::Contention(true)),
            })),
            NfsResop4::Open(OpenRes::Ok(OpenResOk {
                stateid: sid(1),
                cinfo: ChangeInfo4::default(),
                rflags: 0,
                attrset: vec![],
                delegation: OpenDelegation4::NoneExt(OpenNoneDelegation4::Why(WND4_NOT_WANTED)),
            })),
            NfsResop4::Lock(LockRes::Ok(LockResOk {
                lock_stateid: sid(2),
            })),
            NfsResop4::Lockt(LocktRes::Ok),
            NfsResop4::Lockt(LocktRes::Err(Nfsstat4::Grace.code())),
            NfsResop4::Close(CloseRes::Ok(sid(1))),
            NfsResop4::TestStateid(TestStateidRes::Ok(TestStateidResOk {
                tsr_status_codes: vec![0, 10025],
            })),
            NfsResop4::GetDirDelegation(GetDirDelegationRes::Ok(
                GetDirDelegationResNonFatal::Unavail(false),
            )),
            NfsResop4::WantDelegation(WantDelegationRes::Ok(OpenDelegation4::None)),
            NfsResop4::Lock(LockRes::Denied(denied)),
        ],
    };
    roundtrip(&res);
    assert_eq!(res.resarray.last().map(|r| r.status()), Some(10010));
}

fn ff_layout() -> FfLayout4 {
    FfLayout4 {
        ffl_stripe_unit: 0,
        ffl_mirrors: vec![FfMirror4 {
            ffm_data_servers: vec![FfDataServer4 {
                ffds_deviceid: [3; 16],
                ffds_efficiency: 1,
                ffds_stateid: Stateid4::ANONYMOUS,
                ffds_fh_vers: vec![fh(4)],
                ffds_user: Opaque::from("1000"),
                ffds_group: Opaque::from("1000"),
            }],
        }],
        ffl_flags: FF_FLAGS_NO_LAYOUTCOMMIT | FF_FLAGS_NO_IO_THRU_MDS,
        ffl_stats_collect_hint: 0,
    }
}

#[test]
fn pnfs_flexfiles_compound_roundtrip() {
    let lat = FfIoLatency4 {
        ffil_ops_requested: 3,
        ..Default::default()
    };
    let update = FfLayoutupdate4 {
        ffl_addr: Netaddr4 {
            na_r_netid: Opaque::from("tcp"),
            na_r_addr: Opaque::from("a"),
        },
        ffl_fhandle: fh(4),
        ffl_read: lat,
        ffl_write: lat,
        ffl_duration: Nfstime4 {
            seconds: 1,
            nseconds: 0,
        },
        ffl_local: false,
    };
    let lr = FfLayoutreturn4 {
        fflr_ioerr_report: vec![FfIoerr4 {
            ffie_offset: 0,
            ffie_length: 10,
            ffie_stateid: sid(1),
            ffie_errors: vec![DeviceError4 {
                de_deviceid: [3; 16],
                de_status: Nfsstat4::Io.code(),
                de_opnum: OP_WRITE,
            }],
        }],
        fflr_iostats_report: vec![FfIostats4 {
            ffis_offset: 0,
            ffis_length: 10,
            ffis_stateid: sid(1),
            ffis_read: IoInfo4 {
                ii_count: 1,
                ii_bytes: 2,
            },
            ffis_write: IoInfo4::default(),
            ffis_deviceid: [3; 16],
            ffis_layoutupdate: update.clone(),
        }],
    };
    roundtrip(&lr);
    roundtrip(&ff_layout());
    let da = FfDeviceAddr4 {
        ffda_netaddrs: vec![Netaddr4 {
            na_r_netid: Opaque::from("tcp"),
            na_r_addr: Opaque::from("192.168.1.2.8.1"),
        }],
        ffda_versions: vec![FfDeviceVersions4 {
            ffdv_version: 3,
            ffdv_minorversion: 0,
            ffdv_rsize: 1 << 20,
            ffdv_wsize: 1 << 20,
            ffdv_tightly_coupled: false,
        }],
    };
    roundtrip(&da);
    roundtrip(&FfLayouthint4 {
        fflh_mirrors_hint: FfMirrorsHint::Valid(2),
    });

    let args = compound(vec![
        seq(),
        NfsArgop4::Layoutget(LayoutgetArgs {
            loga_signal_layout_avail: false,
            loga_layout_type: LAYOUT4_FLEX_FILES,
            loga_iomode: Layoutiomode4::Rw,
            loga_offset: 0,
            loga_length: NFS4_UINT64_MAX,
            loga_minlength: 0,
            loga_stateid: sid(1),
            loga_maxcount: 4096,
        }),
        NfsArgop4::Getdeviceinfo(GetdeviceinfoArgs {
            gdia_device_id: [3; 16],
            gdia_layout_type: LAYOUT4_FLEX_FILES,
            gdia_maxcount: 4096,
            gdia_notify_types: vec![],
        }),
        NfsArgop4::Getdevicelist(GetdevicelistArgs {
            gdla_layout_type: LAYOUT4_FLEX_FILES,
            gdla_maxdevices: 16,
            gdla_cookie: 0,
            gdla_cookieverf: [0; 8],
        }),
        NfsArgop4::Layoutcommit(LayoutcommitArgs {
            loca_offset: 0,
            loca_length: 100,
            loca_reclaim: false,
            loca_stateid: sid(5),
            loca_last_write_offset: Newoffset4::Offset(99),
            loca_time_modify: Newtime4::Unchanged,
            loca_layoutupdate: Layoutupdate4 {
                lou_type: LAYOUT4_FLEX_FILES,
                lou_body: Opaque(vec![]),
            },
        }),
        NfsArgop4::Layoutreturn(LayoutreturnArgs {
            lora_reclaim: false,
            lora_layout_type: LAYOUT4_FLEX_FILES,
            lora_iomode: Layoutiomode4::Any,
            lora_layoutreturn: Layoutreturn4::File(LayoutreturnFile4 {
                lrf_offset: 0,
                lrf_length: NFS4_UINT64_MAX,
                lrf_stateid: sid(5),
                lrf_body: Opaque(lr.to_xdr()),
            }),
        }),
        NfsArgop4::Layoutreturn(LayoutreturnArgs {
            lora_reclaim: false,
            lora_layout_type: LAYOUT4_FLEX_FILES,
            lora_iomode: Layoutiomode4::Any,
            lora_layoutreturn: Layoutreturn4::All,
        }),
        NfsArgop4::Layoutstats(LayoutstatsArgs {
            lsa_offset: 0,
            lsa_length: 1,
            lsa_stateid: sid(5),
            lsa_read: IoInfo4::default(),
            lsa_write: IoInfo4::default(),
            lsa_deviceid: [3; 16],
            lsa_layoutupdate: Layoutupdate4 {
                lou_type: LAYOUT4_FLEX_FILES,
                lou_body: Opaque(update.to_xdr()),
            },
        }),
        NfsArgop4::Layouterror(LayouterrorArgs {
            lea_offset: 0,
            lea_length: 1,
            lea_stateid: sid(5),
            lea_errors: vec![],
        }),
    ]);
    let b = roundtrip(&args);
    // The nested flexfiles bodies decode from the outer opaque.
    let back = Compound4Args::from_xdr(&b).unwrap();
    match &back.argarray[5] {
        NfsArgop4::Layoutreturn(LayoutreturnArgs {
            lora_layoutreturn: Layoutreturn4::File(f),
            ..
        }) => assert_eq!(
            FfLayoutreturn4::from_xdr(f.lrf_body.as_bytes()).unwrap(),
            lr
        ),
        other => panic!("{other:?}"),
    }

    let res = Compound4Res {
        status: 0,
        tag: Opaque::default(),
        resarray: vec![
            NfsResop4::Layoutget(LayoutgetRes::Ok(LayoutgetResOk {
                logr_return_on_close: true,
                logr_stateid: sid(5),
                logr_layout: vec![Layout4 {
                    lo_offset: 0,
                    lo_length: NFS4_UINT64_MAX,
                    lo_iomode: Layoutiomode4::Rw,
                    lo_content: LayoutContent4 {
                        loc_type: LAYOUT4_FLEX_FILES,
                        loc_body: Opaque(ff_layout().to_xdr()),
                    },
                }],
            })),
            NfsResop4::Layoutget(LayoutgetRes::TryLater(true)),
            NfsResop4::Getdeviceinfo(GetdeviceinfoRes::Ok(GetdeviceinfoResOk {
                gdir_device_addr: DeviceAddr4 {
                    da_layout_type: LAYOUT4_FLEX_FILES,
                    da_addr_body: Opaque(da.to_xdr()),
                },
                gdir_notification: vec![],
            })),
            NfsResop4::Getdeviceinfo(GetdeviceinfoRes::TooSmall(500)),
            NfsResop4::Getdevicelist(GetdevicelistRes::Ok(GetdevicelistResOk {
                gdlr_cookie: 1,
                gdlr_cookieverf: [0; 8],
                gdlr_deviceid_list: vec![[3; 16]],
                gdlr_eof: true,
            })),
            NfsResop4::Layoutcommit(LayoutcommitRes::Ok(LayoutcommitResOk {
                locr_newsize: Newsize4::Size(100),
            })),
            NfsResop4::Layoutreturn(LayoutreturnRes::Ok(LayoutreturnStateid::Absent)),
            NfsResop4::Layoutreturn(LayoutreturnRes::Ok(LayoutreturnStateid::Present(sid(6)))),
        ],
    };
    roundtrip(&res);
    assert_eq!(res.resarray[1].status(), Nfsstat4::Layouttrylater.code());
}

#[test]
fn v42_compound_roundtrip() {
    let args = compound(vec![
        seq(),
        NfsArgop4::Allocate(AllocateArgs {
            aa_stateid: sid(1),
            aa_offset: 0,
            aa_length: 10,
        }),
        NfsArgop4::Deallocate(DeallocateArgs {
            da_stateid: sid(1),
            da_offset: 0,
            da_length: 10,
        }),
        NfsArgop4::Copy(CopyArgs {
            ca_src_stateid: sid(1),
            ca_dst_stateid: sid(2),
            ca_src_offset: 0,
            ca_dst_offset: 0,
            ca_count: 0,
            ca_consecutive: true,
            ca_synchronous: true,
            ca_source_server: vec![
                Netloc4::Name(Opaque::from("srv")),
                Netloc4::Netaddr(Netaddr4::default()),
            ],
        }),
        NfsArgop4::CopyNotify(CopyNotifyArgs {
            cna_src_stateid: sid(1),
            cna_destination_server: Netloc4::Url(Opaque::from("nfs://x")),
        }),
        NfsArgop4::OffloadCancel(OffloadCancelArgs {
            oca_stateid: sid(3),
        }),
        NfsArgop4::OffloadStatus(OffloadStatusArgs {
            osa_stateid: sid(3),
        }),
        NfsArgop4::ReadPlus(ReadPlusArgs {
            rpa_stateid: sid(1),
            rpa_offset: 0,
            rpa_count: 10,
        }),
        NfsArgop4::Seek(SeekArgs {
            sa_stateid: sid(1),
            sa_offset: 0,
            sa_what: NFS4_CONTENT_HOLE,
        }),
        NfsArgop4::WriteSame(WriteSameArgs {
            wsa_stateid: sid(1),
            wsa_stable: StableHow4::DataSync4,
            wsa_adb: AppDataBlock4 {
                adb_offset: 0,
                adb_block_size: 512,
                adb_block_count: 2,
                adb_reloff_blocknum: 0,
                adb_block_num: 0,
                adb_reloff_pattern: 0,
                adb_pattern: Opaque(vec![0; 4]),
            },
        }),
        NfsArgop4::Clone(CloneArgs {
            cl_src_stateid: sid(1),
            cl_dst_stateid: sid(2),
            cl_src_offset: 0,
            cl_dst_offset: 0,
            cl_count: 0,
        }),
        NfsArgop4::IoAdvise(IoAdviseArgs {
            iaa_stateid: sid(1),
            iaa_offset: 0,
            iaa_count: 0,
            iaa_hints: vec![1 << IO_ADVISE4_SEQUENTIAL],
        }),
        NfsArgop4::Getxattr(GetxattrArgs {
            gxa_name: Opaque::from("user.a"),
        }),
        NfsArgop4::Setxattr(SetxattrArgs {
            sxa_option: SetxattrOption4::Create,
            sxa_key: Opaque::from("user.a"),
            sxa_value: Opaque::from("v"),
        }),
        NfsArgop4::Listxattrs(ListxattrsArgs {
            lxa_cookie: 0,
            lxa_maxcount: 100,
        }),
        NfsArgop4::Removexattr(RemovexattrArgs {
            rxa_name: Opaque::from("user.a"),
        }),
    ]);
    roundtrip(&args);
    let wr = WriteResponse4 {
        wr_callback_id: vec![],
        wr_count: 5,
        wr_committed: StableHow4::FileSync4,
        wr_writeverf: [1; 8],
    };
    let res = Compound4Res {
        status: 0,
        tag: Opaque::default(),
        resarray: vec![
            NfsResop4::Copy(CopyRes::Ok(CopyResOk {
                cr_response: wr.clone(),
                cr_requirements: CopyRequirements4 {
                    cr_consecutive: true,
                    cr_synchronous: true,
                },
            })),
            NfsResop4::Copy(CopyRes::NoReqs(CopyRequirements4 {
                cr_consecutive: false,
                cr_synchronous: true,
            })),
            NfsResop4::ReadPlus(ReadPlusRes::Ok(ReadPlusResOk {
                rpr_eof: false,
                rpr_contents: vec![
                    ReadPlusContent::Data(Data4 {
                        d_offset: 0,
                        d_data: Opaque(vec![1]),
                    }),
                    ReadPlusContent::Hole(DataInfo4 {
                        di_offset: 1,
                        di_length: 4095,
                    }),
                ],
            })),
            NfsResop4::Seek(SeekRes::Ok(SeekResOk {
                sr_eof: true,
                sr_offset: 0,
            })),
            NfsResop4::WriteSame(WriteSameRes::Ok(wr)),
            NfsResop4::OffloadStatus(OffloadStatusRes::Ok(OffloadStatusResOk {
                osr_count: 1,
                osr_complete: vec![0],
            })),
            NfsResop4::Listxattrs(ListxattrsRes::Ok(ListxattrsResOk {
                lxr_cookie: 1,
                lxr_names: vec![Opaque::from("user.a")],
                lxr_eof: true,
            })),
            NfsResop4::Getxattr(GetxattrRes::Err(Nfsstat4::Noxattr.code())),
            NfsResop4::Clone(StatusRes::ok()),
        ],
    };
    roundtrip(&res);
    assert_eq!(res.resarray[1].status(), Nfsstat4::OffloadNoReqs.code());
}

#[test]
fn callback_compound_roundtrip() {
    let args = CbCompound4Args {
        tag: Opaque::default(),
        minorversion: 1,
        callback_ident: 0,
        argarray: vec![
            NfsCbArgop4::Sequence(CbSequenceArgs {
                csa_sessionid: [1; 16],
                csa_sequenceid: 1,
                csa_slotid: 0,
                csa_highest_slotid: 0,
                csa_cachethis: false,
                csa_referring_call_lists: vec![ReferringCallList4 {
                    rcl_sessionid: [1; 16],
                    rcl_referring_calls: vec![ReferringCall4 {
                        rc_sequenceid: 4,
                        rc_slotid: 0,
                    }],
                }],
            }),
            NfsCbArgop4::Recall(CbRecallArgs {
                stateid: sid(1),
                truncate: false,
                fh: fh(1),
            }),
            NfsCbArgop4::Layoutrecall(CbLayoutrecallArgs {
                clora_type: LAYOUT4_FLEX_FILES,
                clora_iomode: Layoutiomode4::Any,
                clora_changed: true,
                clora_recall: Layoutrecall4::File(LayoutrecallFile4 {
                    lor_fh: fh(2),
                    lor_offset: 0,
                    lor_length: NFS4_UINT64_MAX,
                    lor_stateid: sid(3),
                }),
            }),
            NfsCbArgop4::Layoutrecall(CbLayoutrecallArgs {
                clora_type: LAYOUT4_FLEX_FILES,
                clora_iomode: Layoutiomode4::Rw,
                clora_changed: false,
                clora_recall: Layoutrecall4::Fsid(Fsid4 { major: 1, minor: 1 }),
            }),
            NfsCbArgop4::RecallAny(CbRecallAnyArgs {
                craa_objects_to_keep: 0,
                craa_type_mask: vec![1 << PNFS_FF_RCA4_TYPE_MASK_RW],
            }),
            NfsCbArgop4::NotifyDeviceid(CbNotifyDeviceidArgs {
                cnda_changes: vec![Notify4 {
                    notify_mask: vec![1 << NOTIFY_DEVICEID4_DELETE_BIT],
                    notify_vals: Opaque(
                        NotifyDeviceidDelete4 {
                            ndd_layouttype: 4,
                            ndd_deviceid: [3; 16],
                        }
                        .to_xdr(),
                    ),
                }],
            }),
            NfsCbArgop4::Getattr(CbGetattrArgs {
                fh: fh(1),
                attr_request: vec![0x18],
            }),
            NfsCbArgop4::Notify(CbNotifyArgs {
                cna_stateid: sid(1),
                cna_fh: fh(1),
                cna_changes: vec![],
            }),
            NfsCbArgop4::RecallSlot(CbRecallSlotArgs {
                rsa_target_highest_slotid: 1,
            }),
            NfsCbArgop4::Offload(CbOffloadArgs {
                coa_fh: fh(1),
                coa_stateid: sid(2),
                coa_offload_info: OffloadInfo4::Err(Nfsstat4::Io.code(), 4096),
            }),
            NfsCbArgop4::Illegal,
        ],
    };
    roundtrip(&args);
    let res = CbCompound4Res {
        status: 0,
        tag: Opaque::default(),
        resarray: vec![
            NfsCbResop4::Sequence(CbSequenceRes::Ok(CbSequenceResOk {
                csr_sessionid: [1; 16],
                csr_sequenceid: 1,
                csr_slotid: 0,
                csr_highest_slotid: 0,
                csr_target_highest_slotid: 0,
            })),
            NfsCbResop4::Layoutrecall(StatusRes::err(Nfsstat4::NomatchingLayout)),
            NfsCbResop4::Getattr(CbGetattrRes::Ok(CbGetattrResOk {
                obj_attributes: sample_attrs().encode(&Bitmap::from_bits(&[3, 4])),
            })),
        ],
    };
    roundtrip(&res);
    assert_eq!(res.resarray[1].opnum(), OP_CB_LAYOUTRECALL);
}

#[test]
fn unknown_opcode_stops_decoding() {
    // tag "", minorversion 1, 3 ops: PUTROOTFH, opcode 9999 with garbage body, GETFH.
    let mut b = Vec::new();
    for w in [0u32, 1, 3, OP_PUTROOTFH, 9999, 0xdead_beef, OP_GETFH] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    let c = Compound4Args::from_xdr(&b).unwrap();
    assert_eq!(
        c.argarray,
        vec![NfsArgop4::Putrootfh, NfsArgop4::Unknown(9999)]
    );
    assert_eq!(c.argarray[1].opnum(), 9999);
    roundtrip(&c);
}

#[test]
fn partial_decode_reports_failing_op() {
    let mut b = Vec::new();
    // tag "", minorversion 2, 3 ops: PUTROOTFH, LOOKUP (name len 100, truncated), GETFH.
    for w in [0u32, 2, 3, OP_PUTROOTFH, OP_LOOKUP, 100, 0] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    let p = Compound4Args::decode_partial(&mut Reader::new(&b)).unwrap();
    assert_eq!(p.argarray, vec![NfsArgop4::Putrootfh]);
    assert_eq!(p.error, Some((Some(OP_LOOKUP), XdrError::Eof)));
    assert!(Compound4Args::from_xdr(&b).is_err());
}

#[test]
fn hostile_inputs_error_cleanly() {
    let w = |ws: &[u32]| ws.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    // Huge op count.
    assert!(Compound4Args::from_xdr(&w(&[0, 1, 0xffff_ffff, OP_GETFH])).is_err());
    // Huge tag.
    assert!(Compound4Args::from_xdr(&w(&[0x7fff_ffff, 1, 0])).is_err());
    // Huge bitmap in GETATTR.
    assert!(Compound4Args::from_xdr(&w(&[0, 1, 1, OP_GETATTR, 0x4000_0000, 1])).is_err());
    // Bad discriminants: bool, enum, union.
    assert_eq!(
        Compound4Args::from_xdr(&w(&[0, 1, 1, OP_OPENATTR, 2])),
        Err(XdrError::BadBool(2))
    );
    assert_eq!(
        Compound4Args::from_xdr(&w(&[0, 1, 1, OP_SECINFO_NO_NAME, 7])),
        Err(XdrError::BadEnum(7))
    );
    let mut open = w(&[0, 1, 1, OP_OPEN, 0, 1, 0, 0, 0, 0]);
    open.extend_from_slice(&w(&[5])); // openflag4 discriminant 5
    assert_eq!(Compound4Args::from_xdr(&open), Err(XdrError::BadUnion(5)));
    // File handle longer than NFS4_FHSIZE.
    let mut putfh = w(&[0, 1, 1, OP_PUTFH, 129]);
    putfh.extend_from_slice(&[0; 132]);
    assert!(matches!(
        Compound4Args::from_xdr(&putfh),
        Err(XdrError::TooLong { .. })
    ));
    // A READDIR reply whose entry list never ends is bounded by the input.
    let mut rd = w(&[0, 0, 1, OP_READDIR, 0, 0, 0]);
    for _ in 0..1000 {
        rd.extend_from_slice(&w(&[1, 0, 0, 0, 0, 0]));
    }
    assert_eq!(Compound4Res::from_xdr(&rd), Err(XdrError::Eof));
    // Empty and short buffers.
    for n in 0..12 {
        assert!(Compound4Args::from_xdr(&vec![0u8; n]).is_err() || n >= 12);
        assert!(CbCompound4Args::from_xdr(&vec![0xffu8; n]).is_err());
    }
}

/// Hand-assembled from the RFC 8881 layout, as a Linux 6.x client sends it at mount:
/// COMPOUND { tag "", minorversion 1, [EXCHANGE_ID] } then [CREATE_SESSION].
#[test]
fn linux_client_exchange_id_and_create_session() {
    fn u32b(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_be_bytes());
    }
    fn opq(v: &mut Vec<u8>, s: &[u8]) {
        u32b(v, s.len() as u32);
        v.extend_from_slice(s);
        v.resize(v.len() + (4 - s.len() % 4) % 4, 0);
    }
    let mut b = Vec::new();
    u32b(&mut b, 0); // tag ""
    u32b(&mut b, 1); // minorversion
    u32b(&mut b, 1); // 1 op
    u32b(&mut b, 42); // OP_EXCHANGE_ID
    b.extend_from_slice(&[0x65, 0x4f, 0x1a, 0x2b, 0x00, 0x01, 0x86, 0xa0]); // co_verifier
    opq(&mut b, b"Linux NFSv4.1 client1.example.com");
    u32b(&mut b, 0x0000_0103); // SUPP_MOVED_REFER|SUPP_MOVED_MIGR|BIND_PRINC_STATEID
    u32b(&mut b, 0); // SP4_NONE
    u32b(&mut b, 1); // one nfs_impl_id4
    opq(&mut b, b"kernel.org");
    opq(
        &mut b,
        b"Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 x86_64",
    );
    b.extend_from_slice(&[0; 12]); // nii_date {0, 0}
    let c = Compound4Args::from_xdr(&b).unwrap();
    assert_eq!(c.minorversion, 1);
    match &c.argarray[..] {
        [NfsArgop4::ExchangeId(e)] => {
            assert_eq!(
                e.eia_clientowner.co_ownerid.as_str(),
                Some("Linux NFSv4.1 client1.example.com")
            );
            assert_eq!(
                e.eia_flags & EXCHGID4_FLAG_BIND_PRINC_STATEID,
                EXCHGID4_FLAG_BIND_PRINC_STATEID
            );
            assert_eq!(e.eia_state_protect, StateProtect4A::None);
            assert_eq!(
                e.eia_client_impl_id[0].nii_domain.as_str(),
                Some("kernel.org")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.to_xdr(), b);

    let mut b = Vec::new();
    u32b(&mut b, 0);
    u32b(&mut b, 1);
    u32b(&mut b, 1);
    u32b(&mut b, 43); // OP_CREATE_SESSION
    b.extend_from_slice(&[0x65, 0x4f, 0x1a, 0x2b, 0, 0, 0, 1]); // clientid
    u32b(&mut b, 1); // csa_sequence
    u32b(&mut b, 0x3); // PERSIST|CONN_BACK_CHAN
    for x in [0, 1_049_620, 1_049_480, 3_428, 8, 64, 0] {
        u32b(&mut b, x); // fore channel, no rdma_ird
    }
    for x in [0, 4_096, 4_096, 0, 2, 16, 0] {
        u32b(&mut b, x); // back channel
    }
    u32b(&mut b, 0x4000_0000); // csa_cb_program
    u32b(&mut b, 1); // one callback_sec_parms4
    u32b(&mut b, 1); // AUTH_SYS
    u32b(&mut b, 0); // stamp
    opq(&mut b, b"client1");
    u32b(&mut b, 0); // uid
    u32b(&mut b, 0); // gid
    u32b(&mut b, 0); // no gids
    let c = Compound4Args::from_xdr(&b).unwrap();
    match &c.argarray[..] {
        [NfsArgop4::CreateSession(cs)] => {
            assert_eq!(cs.csa_clientid, 0x654f_1a2b_0000_0001);
            assert_eq!(cs.csa_fore_chan_attrs.ca_maxrequestsize, 1_049_620);
            assert_eq!(cs.csa_back_chan_attrs.ca_maxrequests, 16);
            assert_eq!(cs.csa_cb_program, NFS4_CALLBACK);
            assert!(
                matches!(&cs.csa_sec_parms[..], [CallbackSecParms4::AuthSys(a)] if a.machinename.as_str() == Some("client1"))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.to_xdr(), b);
}

#[test]
fn file_attrs_encode_decode() {
    let a = sample_attrs();
    // Requested: a superset, including attributes that are None.
    let req = Bitmap::from_bits(&[
        FATTR4_TYPE,
        FATTR4_SIZE,
        FATTR4_FILEID,
        FATTR4_MODE,
        FATTR4_OWNER,
        FATTR4_SPACE_USED,
        FATTR4_TIME_MODIFY,
        FATTR4_FS_LAYOUT_TYPES,
        FATTR4_LAYOUT_BLKSIZE,
    ]);
    let f = a.encode(&req);
    let mask = Bitmap::from(f.attrmask.clone());
    assert!(mask.get(FATTR4_SIZE) && !mask.get(FATTR4_SPACE_USED) && !mask.get(FATTR4_CHANGE));
    let d = FileAttrs::decode(&f).unwrap();
    assert_eq!(d.size, Some(4096));
    assert_eq!(d.owner, a.owner);
    assert_eq!(d.change, None);
    assert_eq!(d.fs_layout_types, Some(vec![LAYOUT4_FLEX_FILES]));
    // Everything present round-trips.
    assert_eq!(FileAttrs::decode(&a.encode_all()).unwrap(), a);
    // Wire layout: type (1) then size (4), in bit order.
    let f = a.encode(&Bitmap::from_bits(&[FATTR4_SIZE, FATTR4_TYPE]));
    assert_eq!(f.attrmask, vec![0b10010]);
    assert_eq!(
        f.attr_vals.as_bytes(),
        &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]
    );

    // Settable attributes.
    let s = FileAttrs {
        mode: Some(0o755),
        time_modify_set: Some(Settime4::ServerTime),
        time_access_set: Some(Settime4::ClientTime(Nfstime4 {
            seconds: -1,
            nseconds: 9,
        })),
        ..Default::default()
    };
    assert_eq!(FileAttrs::decode(&s.encode_all()).unwrap(), s);
}

#[test]
fn file_attrs_errors() {
    // Unknown attribute number.
    let f = Fattr4 {
        attrmask: vec![0, 0, 0, 1],
        attr_vals: Opaque::default(),
    };
    assert_eq!(FileAttrs::decode(&f), Err(AttrError::NotSupported(96)));
    assert_eq!(
        FileAttrs::decode(&f).unwrap_err().status(),
        Nfsstat4::Attrnotsupp
    );
    // Truncated values.
    let f = Fattr4 {
        attrmask: vec![1 << FATTR4_SIZE],
        attr_vals: Opaque(vec![0; 4]),
    };
    assert_eq!(
        FileAttrs::decode(&f).unwrap_err().status(),
        Nfsstat4::Badxdr
    );
    // Trailing bytes.
    let f = Fattr4 {
        attrmask: vec![1 << FATTR4_SIZE],
        attr_vals: Opaque(vec![0; 12]),
    };
    assert_eq!(
        FileAttrs::decode(&f).unwrap_err().status(),
        Nfsstat4::Badxdr
    );
    // Bad values.
    let f = Fattr4 {
        attrmask: vec![1 << FATTR4_TYPE],
        attr_vals: Opaque(vec![0, 0, 0, 99]),
    };
    assert_eq!(FileAttrs::decode(&f), Err(AttrError::Inval(FATTR4_TYPE)));
    let f = FileAttrs {
        mode: Some(0o10000),
        ..Default::default()
    }
    .encode_all();
    assert_eq!(FileAttrs::decode(&f), Err(AttrError::Inval(FATTR4_MODE)));
    let f = FileAttrs {
        owner: Some(Opaque(vec![0xff, 0xfe])),
        ..Default::default()
    }
    .encode_all();
    assert_eq!(FileAttrs::decode(&f), Err(AttrError::Inval(FATTR4_OWNER)));
    let f = FileAttrs {
        time_modify_set: Some(Settime4::ClientTime(Nfstime4 {
            seconds: 0,
            nseconds: 1_000_000_000,
        })),
        ..Default::default()
    }
    .encode_all();
    assert_eq!(
        FileAttrs::decode(&f),
        Err(AttrError::Inval(FATTR4_TIME_MODIFY_SET))
    );
    // settime4 with a bad discriminant is bad XDR.
    let f = Fattr4 {
        attrmask: vec![0, 1 << (FATTR4_TIME_ACCESS_SET - 32)],
        attr_vals: Opaque(vec![0, 0, 0, 2]),
    };
    assert_eq!(
        FileAttrs::decode(&f).unwrap_err().status(),
        Nfsstat4::Badxdr
    );
}

#[test]
fn bitmap_helper() {
    let mut b = Bitmap::new();
    b.set(1);
    b.set(33);
    b.set(75);
    assert_eq!(b.iter().collect::<Vec<_>>(), vec![1, 33, 75]);
    assert_eq!(b.to_vec(), vec![2, 2, 1 << 11]);
    let c = Bitmap::from_bits(&[1, 75, 80]);
    assert_eq!(b.intersection(&c).iter().collect::<Vec<_>>(), vec![1, 75]);
    assert_eq!(b.union(&c).iter().collect::<Vec<_>>(), vec![1, 33, 75, 80]);
    assert_eq!(b.difference(&c).iter().collect::<Vec<_>>(), vec![33]);
    b.clear(75);
    assert_eq!(b.to_vec(), vec![2, 2]);
    assert!(!b.get(1000) && !b.is_empty() && Bitmap::from(vec![0, 0]).is_empty());
    assert!(Bitmap::from_bits(&[33]).is_subset(&b));
    assert_eq!(Bitmap::from_words(&[0, 0, 0]).to_vec(), Vec::<u32>::new());
}

#[test]
fn nfsstat4_codes() {
    for s in Nfsstat4::ALL {
        assert_eq!(Nfsstat4::from_code(s.code()), Some(*s));
        assert_eq!(Nfsstat4::from_xdr(&s.to_xdr()).unwrap(), *s);
    }
    assert_eq!(Nfsstat4::from_code(10073), None);
    assert_eq!(Nfsstat4::Badxdr.code(), 10036);
    assert_eq!(Nfsstat4::DelegRevoked.code(), 10087);
    assert_eq!(Nfsstat4::OffloadNoReqs.code(), 10094);
    assert_eq!(Nfsstat4::ALL.len(), 113);
}

#[test]
fn every_opcode_has_an_arm() {
    for op in 3..=75u32 {
        // Decode a COMPOUND with just this opcode and no body: it must be a known op that fails
        // on EOF (or a void op that succeeds), never Unknown.
        let b: Vec<u8> = [0u32, 2, 1, op]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        match Compound4Args::from_xdr(&b) {
            Ok(c) => assert_ne!(c.argarray[0], NfsArgop4::Unknown(op), "op {op}"),
            Err(e) => assert_eq!(e, XdrError::Eof, "op {op}"),
        }
        let r: Vec<u8> = [0u32, 0, 1, op, 10008, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        let res = Compound4Res::from_xdr(&r).unwrap();
        assert_eq!(res.resarray[0].opnum(), op);
    }
    for op in 3..=15u32 {
        let r: Vec<u8> = [0u32, 0, 1, op, 10008, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        let res = CbCompound4Res::from_xdr(&r).unwrap();
        assert_eq!(res.resarray[0].opnum(), op);
    }
}

#[test]
fn mutated_compounds_never_panic() {
    let attrs = sample_attrs().encode_all();
    let c = compound(vec![
        seq(),
        NfsArgop4::Putfh(PutfhArgs { object: fh(1) }),
        NfsArgop4::Setattr(SetattrArgs {
            stateid: sid(1),
            obj_attributes: attrs,
        }),
        NfsArgop4::Layoutreturn(LayoutreturnArgs {
            lora_reclaim: false,
            lora_layout_type: LAYOUT4_FLEX_FILES,
            lora_iomode: Layoutiomode4::Any,
            lora_layoutreturn: Layoutreturn4::All,
        }),
        NfsArgop4::Getattr(GetattrArgs {
            attr_request: vec![0xffff_ffff, 0xffff_ffff],
        }),
    ]);
    let b = c.to_xdr();
    for i in 0..b.len() {
        for v in [0x00u8, 0x01, 0x7f, 0x80, 0xff] {
            let mut m = b.clone();
            m[i] = v;
            if let Ok(d) = Compound4Args::from_xdr(&m) {
                assert_eq!(Compound4Args::from_xdr(&d.to_xdr()).as_ref(), Ok(&d));
                for op in &d.argarray {
                    if let NfsArgop4::Setattr(s) = op {
                        let _ = FileAttrs::decode(&s.obj_attributes);
                    }
                }
            }
            let _ = Compound4Res::from_xdr(&m);
            let _ = CbCompound4Args::from_xdr(&m);
        }
    }
}

#[test]
fn error_results_for_every_opcode_are_valid_xdr() {
    for op in (3..=75u32).chain([OP_ILLEGAL, 9999]) {
        for status in [0u32, 2, 10008, 10010, 10017, 10005, 10058, 10094] {
            let r = NfsResop4::from_status(op, status);
            let b = r.to_xdr();
            assert_eq!(
                NfsResop4::from_xdr(&b).as_ref(),
                Ok(&r),
                "op {op} status {status}"
            );
            if !(3..=75).contains(&op) {
                assert_eq!(r.opnum(), OP_ILLEGAL);
                assert_eq!(r.status(), Nfsstat4::OpIllegal.code());
            } else if status != 0 {
                assert_eq!(r.status(), status, "op {op}");
            }
        }
    }
    for op in (3..=15u32).chain([OP_CB_ILLEGAL]) {
        let r = NfsCbResop4::from_status(op, 10008);
        assert_eq!(NfsCbResop4::from_xdr(&r.to_xdr()).as_ref(), Ok(&r));
    }
}

/// RFC 9754: the `*_ATTRS_DELEG` delegation arms, the reclaim of one, the delegated times and
/// `open_arguments`, with their constants as Linux's `include/linux/nfs4.h` and knfsd's
/// `nfs4_1.x` have them.
#[test]
fn rfc9754_open_arguments_and_delegated_times() {
    assert_eq!(
        (
            FATTR4_TIME_DELEG_ACCESS,
            FATTR4_TIME_DELEG_MODIFY,
            FATTR4_OPEN_ARGUMENTS
        ),
        (84, 85, 86)
    );
    assert_eq!(OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS, 0x10_0000);
    assert_eq!(OPEN4_SHARE_ACCESS_WANT_OPEN_XOR_DELEGATION, 0x20_0000);
    let w = OpenDelegation4::WriteAttrsDeleg(OpenWriteDelegation4 {
        stateid: sid(1),
        recall: false,
        space_limit: NfsSpaceLimit4::Size(1 << 20),
        permissions: Nfsace4::default(),
    });
    assert_eq!(&roundtrip(&w)[..4], &[0, 0, 0, 5]);
    let r = OpenDelegation4::ReadAttrsDeleg(OpenReadDelegation4 {
        stateid: sid(2),
        recall: true,
        permissions: Nfsace4::default(),
    });
    assert_eq!(&roundtrip(&r)[..4], &[0, 0, 0, 4]);
    // An arm past WRITE_ATTRS_DELEG is no open_delegation4.
    let mut b = w.to_xdr();
    b[3] = 6;
    assert!(OpenDelegation4::from_xdr(&b).is_err());
    roundtrip(&OpenClaim4::Previous(OpenDelegationType4::WriteAttrsDeleg));
    assert_eq!(
        OpenClaim4::from_xdr(&[0, 0, 0, 1, 0, 0, 0, 5]),
        Ok(OpenClaim4::Previous(OpenDelegationType4::WriteAttrsDeleg))
    );

    let t = Nfstime4 {
        seconds: -1,
        nseconds: 999_999_999,
    };
    let a = FileAttrs {
        time_deleg_access: Some(t),
        time_deleg_modify: Some(t),
        open_arguments: Some(OpenArguments4 {
            oa_share_access: vec![0xe],
            oa_share_deny: vec![0xf],
            oa_share_access_want: vec![0x0010_0038],
            oa_open_claim: vec![0x37],
            oa_create_mode: vec![0xf],
        }),
        ..Default::default()
    };
    let f = a.encode_all();
    assert_eq!(f.attrmask, vec![0, 0, (1 << 20) | (1 << 21) | (1 << 22)]);
    assert_eq!(FileAttrs::decode(&f), Ok(a));
    // Every cut of the values is bad XDR, never a panic.
    for cut in 0..f.attr_vals.len() {
        let g = Fattr4 {
            attrmask: f.attrmask.clone(),
            attr_vals: Opaque(f.attr_vals.0[..cut].to_vec()),
        };
        assert_eq!(
            FileAttrs::decode(&g).unwrap_err().status(),
            Nfsstat4::Badxdr
        );
    }
    // A bitmap that claims more words than there are bytes.
    let g = Fattr4 {
        attrmask: vec![0, 0, 1 << 22],
        attr_vals: Opaque(vec![0xff, 0xff, 0xff, 0xff]),
    };
    assert_eq!(
        FileAttrs::decode(&g).unwrap_err().status(),
        Nfsstat4::Badxdr
    );
    // A reported time with nanoseconds past a second is invalid.
    let g = FileAttrs {
        time_deleg_modify: Some(Nfstime4 {
            seconds: 1,
            nseconds: 1_000_000_000,
        }),
        ..Default::default()
    }
    .encode_all();
    assert_eq!(
        FileAttrs::decode(&g),
        Err(AttrError::Inval(FATTR4_TIME_DELEG_MODIFY))
    );
}
