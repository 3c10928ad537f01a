//! Writes seed inputs for the fuzz targets into `corpus/<target>/` (run from `proto/fuzz`).
use proto::nfs4::*;
use proto::xdr::{Opaque, Xdr};
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn sid(n: u8) -> Stateid4 {
    Stateid4 {
        seqid: n as u32,
        other: [n; 12],
    }
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

/// RPCSEC_GSS seeds, each prefixed with the selector byte `rpcsec_gss` switches on.
fn rpcsec_gss_seeds() {
    use proto::rpc::gss::{GssCred, GssInitRes, GssProc, GssService};
    use proto::rpc::{encode_call, Auth, RPCSEC_GSS};
    let cred = GssCred {
        proc_: GssProc::Data,
        seq_num: 9,
        service: GssService::Integrity,
        handle: vec![0xab; 16],
    };
    let mut b = vec![0u8];
    b.extend_from_slice(&cred.encode());
    write("rpcsec_gss", "cred", &b);
    let mut w = proto::xdr::Writer::new();
    GssInitRes {
        handle: vec![1; 16],
        major: 0,
        minor: 0,
        seq_window: 512,
        token: vec![0x60; 40],
    }
    .encode(&mut w);
    let mut b = vec![1u8];
    b.extend_from_slice(&w.buf);
    write("rpcsec_gss", "init_res", &b);
    let mut w = proto::xdr::Writer::new();
    w.opaque(&[0, 0, 0, 9, 1, 2, 3, 4]);
    w.opaque(&[0x04, 0x04, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 9, 7, 7, 7, 7]);
    let mut b = vec![2u8];
    b.extend_from_slice(&w.buf);
    write("rpcsec_gss", "integ_body", &b);
    let auth = Auth::Other {
        flavor: RPCSEC_GSS,
        body: cred.encode(),
    };
    let verf = Auth::Other {
        flavor: RPCSEC_GSS,
        body: vec![0x04, 0x04, 0x05, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9],
    };
    let mut w = encode_call(77, 100003, 4, 1, &auth, &verf);
    w.u32(0);
    let mut b = vec![3u8];
    b.extend_from_slice(&w.buf[4..]);
    write("rpcsec_gss", "call", &b);
}

fn main() {
    rpcsec_gss_seeds();
    let attrs = FileAttrs {
        mode: Some(0o644),
        size: Some(0),
        owner: Some(Opaque::from("1000")),
        owner_group: Some(Opaque::from("1000")),
        time_modify_set: Some(Settime4::ServerTime),
        time_access_set: Some(Settime4::ClientTime(Nfstime4 {
            seconds: 5,
            nseconds: 6,
        })),
        ..Default::default()
    }
    .encode_all();
    let owner = StateOwner4 {
        clientid: 1,
        owner: Opaque::from("open id:1"),
    };
    let c = |ops: Vec<NfsArgop4>| Compound4Args {
        tag: Opaque::default(),
        minorversion: 2,
        argarray: ops,
    };
    let seeds: Vec<(&str, Compound4Args)> = vec![
        (
            "exchange_id",
            Compound4Args {
                tag: Opaque::default(),
                minorversion: 1,
                argarray: vec![NfsArgop4::ExchangeId(ExchangeIdArgs {
                    eia_clientowner: ClientOwner4 {
                        co_verifier: [1; 8],
                        co_ownerid: Opaque::from("Linux NFSv4.1 host"),
                    },
                    eia_flags: 0x103,
                    eia_state_protect: StateProtect4A::None,
                    eia_client_impl_id: vec![NfsImplId4 {
                        nii_domain: Opaque::from("kernel.org"),
                        nii_name: Opaque::from("Linux"),
                        nii_date: Nfstime4::default(),
                    }],
                })],
            },
        ),
        (
            "create_session",
            c(vec![NfsArgop4::CreateSession(CreateSessionArgs {
                csa_clientid: 1,
                csa_sequence: 1,
                csa_flags: 3,
                csa_fore_chan_attrs: ChannelAttrs4 {
                    ca_maxrequests: 64,
                    ..Default::default()
                },
                csa_back_chan_attrs: ChannelAttrs4::default(),
                csa_cb_program: NFS4_CALLBACK,
                csa_sec_parms: vec![CallbackSecParms4::AuthSys(AuthsysParms::default())],
            })]),
        ),
        (
            "open_create",
            c(vec![
                seq(),
                NfsArgop4::Putfh(PutfhArgs {
                    object: NfsFh4::from(vec![1; 24]),
                }),
                NfsArgop4::Open(OpenArgs {
                    seqid: 0,
                    share_access: OPEN4_SHARE_ACCESS_BOTH,
                    share_deny: 0,
                    owner: owner.clone(),
                    openhow: Openflag4::Create(Createhow4::Guarded(attrs.clone())),
                    claim: OpenClaim4::Null(Opaque::from("f")),
                }),
                NfsArgop4::Getfh,
                NfsArgop4::Getattr(GetattrArgs {
                    attr_request: vec![0x0010_011a, 0x00b0_a23a, 0x2],
                }),
            ]),
        ),
        (
            "setattr_create",
            c(vec![
                seq(),
                NfsArgop4::Putrootfh,
                NfsArgop4::Setattr(SetattrArgs {
                    stateid: sid(0),
                    obj_attributes: attrs.clone(),
                }),
                NfsArgop4::Create(CreateArgs {
                    objtype: Createtype4::Lnk(Opaque::from("t")),
                    objname: Opaque::from("l"),
                    createattrs: attrs.clone(),
                }),
                NfsArgop4::Lock(LockArgs {
                    locktype: NfsLockType4::WriteLt,
                    reclaim: false,
                    offset: 0,
                    length: u64::MAX,
                    locker: Locker4::NewLockOwner(OpenToLockOwner4 {
                        open_seqid: 0,
                        open_stateid: sid(1),
                        lock_seqid: 0,
                        lock_owner: owner,
                    }),
                }),
            ]),
        ),
        (
            "pnfs",
            c(vec![
                seq(),
                NfsArgop4::Layoutget(LayoutgetArgs {
                    loga_signal_layout_avail: false,
                    loga_layout_type: LAYOUT4_FLEX_FILES,
                    loga_iomode: Layoutiomode4::Rw,
                    loga_offset: 0,
                    loga_length: u64::MAX,
                    loga_minlength: 0,
                    loga_stateid: sid(1),
                    loga_maxcount: 4096,
                }),
                NfsArgop4::Layoutreturn(LayoutreturnArgs {
                    lora_reclaim: false,
                    lora_layout_type: LAYOUT4_FLEX_FILES,
                    lora_iomode: Layoutiomode4::Any,
                    lora_layoutreturn: Layoutreturn4::File(LayoutreturnFile4 {
                        lrf_offset: 0,
                        lrf_length: u64::MAX,
                        lrf_stateid: sid(2),
                        lrf_body: Opaque(FfLayoutreturn4::default().to_xdr()),
                    }),
                }),
                NfsArgop4::Copy(CopyArgs {
                    ca_src_stateid: sid(1),
                    ca_dst_stateid: sid(2),
                    ca_src_offset: 0,
                    ca_dst_offset: 0,
                    ca_count: 0,
                    ca_consecutive: true,
                    ca_synchronous: false,
                    ca_source_server: vec![Netloc4::Name(Opaque::from("s"))],
                }),
            ]),
        ),
        (
            "deleg_timestamps",
            c(vec![
                seq(),
                NfsArgop4::Putrootfh,
                NfsArgop4::Open(OpenArgs {
                    seqid: 0,
                    share_access: OPEN4_SHARE_ACCESS_BOTH
                        | OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS,
                    share_deny: 0,
                    owner: StateOwner4 {
                        clientid: 1,
                        owner: Opaque::from("open id:2"),
                    },
                    openhow: Openflag4::NoCreate,
                    claim: OpenClaim4::Previous(OpenDelegationType4::WriteAttrsDeleg),
                }),
                NfsArgop4::Setattr(SetattrArgs {
                    stateid: sid(3),
                    obj_attributes: FileAttrs {
                        time_deleg_access: Some(Nfstime4 {
                            seconds: 7,
                            nseconds: 8,
                        }),
                        time_deleg_modify: Some(Nfstime4 {
                            seconds: 9,
                            nseconds: 10,
                        }),
                        ..Default::default()
                    }
                    .encode_all(),
                }),
                NfsArgop4::Getattr(GetattrArgs {
                    attr_request: vec![0, 0, 0x0070_0000],
                }),
            ]),
        ),
    ];
    for (name, s) in &seeds {
        write("compound4", name, &s.to_xdr());
    }
    let open_args = FileAttrs {
        open_arguments: Some(OpenArguments4 {
            oa_share_access: vec![0xe],
            oa_share_deny: vec![0xf],
            oa_share_access_want: vec![0x0010_0038],
            oa_open_claim: vec![0x37],
            oa_create_mode: vec![0xf],
        }),
        ..Default::default()
    };
    let res = Compound4Res {
        status: 0,
        tag: Opaque::default(),
        resarray: vec![
            NfsResop4::Open(OpenRes::Ok(OpenResOk {
                stateid: sid(1),
                cinfo: ChangeInfo4::default(),
                rflags: OPEN4_RESULT_LOCKTYPE_POSIX,
                attrset: vec![],
                delegation: OpenDelegation4::WriteAttrsDeleg(OpenWriteDelegation4 {
                    stateid: sid(2),
                    recall: false,
                    space_limit: NfsSpaceLimit4::Size(1 << 26),
                    permissions: Nfsace4::default(),
                }),
            })),
            NfsResop4::Getattr(GetattrRes::Ok(GetattrResOk {
                obj_attributes: open_args.encode_all(),
            })),
        ],
    };
    write("compound4", "open_attrs_deleg_res", &res.to_xdr());
    let res = Compound4Res {
        status: 0,
        tag: Opaque::default(),
        resarray: vec![NfsResop4::Readdir(ReaddirRes::Ok(ReaddirResOk {
            cookieverf: [0; 8],
            reply: Dirlist4 {
                entries: vec![Entry4 {
                    cookie: 3,
                    name: Opaque::from("a"),
                    attrs: attrs.clone(),
                }],
                eof: true,
            },
        }))],
    };
    write("compound4", "readdir_res", &res.to_xdr());

    let cb = CbCompound4Args {
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
                csa_referring_call_lists: vec![],
            }),
            NfsCbArgop4::Layoutrecall(CbLayoutrecallArgs {
                clora_type: LAYOUT4_FLEX_FILES,
                clora_iomode: Layoutiomode4::Any,
                clora_changed: true,
                clora_recall: Layoutrecall4::All,
            }),
            NfsCbArgop4::Recall(CbRecallArgs {
                stateid: sid(1),
                truncate: false,
                fh: NfsFh4::from(vec![1; 8]),
            }),
        ],
    };
    write("cb_compound4", "cb_seq_recall", &cb.to_xdr());
    let ff = FfLayout4 {
        ffl_stripe_unit: 0,
        ffl_mirrors: vec![FfMirror4 {
            ffm_data_servers: vec![FfDataServer4 {
                ffds_deviceid: [3; 16],
                ffds_efficiency: 1,
                ffds_stateid: sid(0),
                ffds_fh_vers: vec![NfsFh4::from(vec![4; 16])],
                ffds_user: Opaque::from("0"),
                ffds_group: Opaque::from("0"),
            }],
        }],
        ffl_flags: FF_FLAGS_NO_IO_THRU_MDS,
        ffl_stats_collect_hint: 0,
    };
    let mut b = vec![0u8];
    b.extend_from_slice(&ff.to_xdr());
    write("cb_compound4", "ff_layout", &b);
}
