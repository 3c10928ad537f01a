//! libfabric's `static inline` calls (fi_domain, fi_endpoint, fi_send, fi_read, fi_cq_sread,
//! ...), which call through the operation tables a provider fills in, written out in Rust.
//! Every function here is `unsafe`: the caller passes live objects of this library.
use crate::sys;
use crate::{check, FabricError, Inner, Lib, Result};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

/// The provider's function `$f` in table `$t`, or an error if it left it empty.
macro_rules! op {
    ($t:expr, $f:ident) => {
        match (*$t).$f {
            Some(f) => f,
            None => {
                return Err(FabricError::Call {
                    call: stringify!($f),
                    code: -(libc::ENOSYS),
                    msg: "not provided".into(),
                })
            }
        }
    };
}

/// fi_fabric, fi_domain, fi_av_open, fi_cq_open, fi_endpoint, fi_ep_bind, fi_enable,
/// fi_getname. On failure everything opened so far is closed again.
///
/// # Safety
/// `info` is a live fi_getinfo result; on success the returned Inner owns it.
pub unsafe fn open(lib: &Lib, info: *mut sys::fi_info, provider: &str) -> Result<Inner> {
    let mut opened: Vec<*mut sys::fid> = Vec::new();
    let r = open_all(lib, info, &mut opened);
    if r.is_err() {
        for f in opened.into_iter().rev() {
            close(f);
        }
    }
    let (fabric, domain, av, cq, ep, name) = r?;
    let mr_mode = (*(*info).domain_attr).mr_mode as u32;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (std::process::id() as u64) << 32;
    Ok(Inner {
        info,
        fabric,
        domain,
        av,
        cq,
        ep,
        virt_addr: mr_mode & sys::FI_MR_VIRT_ADDR != 0,
        prov_key: mr_mode & sys::FI_MR_PROV_KEY != 0,
        name,
        peers: Mutex::new(Default::default()),
        next_key: AtomicU64::new(seed | 1),
        stop: AtomicBool::new(false),
        posted: Mutex::new(Vec::new()),
        provider: provider.to_string(),
    })
}

type Opened = (
    *mut sys::fid_fabric,
    *mut sys::fid_domain,
    *mut sys::fid_av,
    *mut sys::fid_cq,
    *mut sys::fid_ep,
    Vec<u8>,
);

unsafe fn open_all(
    lib: &Lib,
    info: *mut sys::fi_info,
    opened: &mut Vec<*mut sys::fid>,
) -> Result<Opened> {
    let mut fabric: *mut sys::fid_fabric = ptr::null_mut();
    check(
        "fi_fabric",
        (lib.fabric)((*info).fabric_attr, &mut fabric, ptr::null_mut()).into(),
    )?;
    opened.push(fabric.cast());

    let mut domain: *mut sys::fid_domain = ptr::null_mut();
    let f = op!((*fabric).ops, domain);
    check(
        "fi_domain",
        f(fabric, info, &mut domain, ptr::null_mut()).into(),
    )?;
    opened.push(domain.cast());

    let mut av_attr: sys::fi_av_attr = std::mem::zeroed();
    av_attr.type_ = sys::fi_av_type_FI_AV_UNSPEC;
    let mut av: *mut sys::fid_av = ptr::null_mut();
    let f = op!((*domain).ops, av_open);
    check(
        "fi_av_open",
        f(domain, &mut av_attr, &mut av, ptr::null_mut()).into(),
    )?;
    opened.push(av.cast());

    let mut cq_attr: sys::fi_cq_attr = std::mem::zeroed();
    cq_attr.size = 1024;
    cq_attr.format = sys::fi_cq_format_FI_CQ_FORMAT_MSG;
    cq_attr.wait_obj = sys::fi_wait_obj_FI_WAIT_UNSPEC;
    let mut cq: *mut sys::fid_cq = ptr::null_mut();
    let f = op!((*domain).ops, cq_open);
    check(
        "fi_cq_open",
        f(domain, &mut cq_attr, &mut cq, ptr::null_mut()).into(),
    )?;
    opened.push(cq.cast());

    let mut ep: *mut sys::fid_ep = ptr::null_mut();
    let f = op!((*domain).ops, endpoint);
    check(
        "fi_endpoint",
        f(domain, info, &mut ep, ptr::null_mut()).into(),
    )?;
    opened.push(ep.cast());

    let bind = op!((*ep).fid.ops, bind);
    check(
        "fi_ep_bind(av)",
        bind(&mut (*ep).fid, &mut (*av).fid, 0).into(),
    )?;
    check(
        "fi_ep_bind(cq)",
        bind(
            &mut (*ep).fid,
            &mut (*cq).fid,
            (sys::FI_TRANSMIT | sys::FI_RECV) as u64,
        )
        .into(),
    )?;
    let control = op!((*ep).fid.ops, control);
    check(
        "fi_enable",
        control(&mut (*ep).fid, sys::FI_ENABLE as i32, ptr::null_mut()).into(),
    )?;

    let mut name = vec![0u8; 128];
    let mut len = name.len();
    let getname = op!((*ep).cm, getname);
    check(
        "fi_getname",
        getname(&mut (*ep).fid, name.as_mut_ptr().cast(), &mut len).into(),
    )?;
    name.truncate(len);
    Ok((fabric, domain, av, cq, ep, name))
}

/// fi_close.
pub unsafe fn close(f: *mut sys::fid) {
    if f.is_null() {
        return;
    }
    if let Some(c) = (*(*f).ops).close {
        let rc = c(f);
        if rc != 0 {
            tracing::debug!("fi_close: {rc}");
        }
    }
}

/// fi_av_insert of one address.
pub unsafe fn av_insert(av: *mut sys::fid_av, addr: &[u8]) -> Result<u64> {
    let mut out: sys::fi_addr_t = 0;
    let f = op!((*av).ops, insert);
    let n = f(av, addr.as_ptr().cast(), 1, &mut out, 0, ptr::null_mut());
    if n != 1 {
        return Err(FabricError::BadAddress);
    }
    Ok(out)
}

/// fi_av_remove of one address.
pub unsafe fn av_remove(av: *mut sys::fid_av, mut a: u64) {
    if let Some(f) = (*(*av).ops).remove {
        f(av, &mut a, 1, 0);
    }
}

/// fi_mr_reg.
pub unsafe fn mr_reg(
    domain: *mut sys::fid_domain,
    buf: *const u8,
    len: usize,
    access: u64,
    key: u64,
) -> Result<*mut sys::fid_mr> {
    let mut mr: *mut sys::fid_mr = ptr::null_mut();
    let f = op!((*domain).mr, reg);
    check(
        "fi_mr_reg",
        f(
            &mut (*domain).fid,
            buf.cast(),
            len,
            access,
            0,
            key,
            0,
            &mut mr,
            ptr::null_mut(),
        )
        .into(),
    )?;
    Ok(mr)
}

/// fi_mr_key (the key field, as libfabric 1.x's inline function reads it).
pub unsafe fn mr_key(mr: *mut sys::fid_mr) -> u64 {
    (*mr).key
}

/// fi_send (no descriptor: FI_MR_LOCAL is not in use).
pub unsafe fn send(
    ep: *mut sys::fid_ep,
    buf: *const u8,
    len: usize,
    to: u64,
    ctx: *mut c_void,
) -> isize {
    match (*(*ep).msg).send {
        Some(f) => f(ep, buf.cast(), len, ptr::null_mut(), to, ctx),
        None => -(libc::ENOSYS as isize),
    }
}

/// fi_recv from any peer.
pub unsafe fn recv(ep: *mut sys::fid_ep, buf: *mut u8, len: usize, ctx: *mut c_void) -> isize {
    match (*(*ep).msg).recv {
        Some(f) => f(ep, buf.cast(), len, ptr::null_mut(), u64::MAX, ctx),
        None => -(libc::ENOSYS as isize),
    }
}

/// fi_read: `len` bytes of the peer's (addr, key) into `buf`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn read(
    ep: *mut sys::fid_ep,
    buf: *mut u8,
    len: usize,
    from: u64,
    addr: u64,
    key: u64,
    ctx: *mut c_void,
) -> isize {
    match (*(*ep).rma).read {
        Some(f) => f(ep, buf.cast(), len, ptr::null_mut(), from, addr, key, ctx),
        None => -(libc::ENOSYS as isize),
    }
}

/// fi_write: `len` bytes of `buf` into the peer's (addr, key).
#[allow(clippy::too_many_arguments)]
pub unsafe fn write(
    ep: *mut sys::fid_ep,
    buf: *const u8,
    len: usize,
    to: u64,
    addr: u64,
    key: u64,
    ctx: *mut c_void,
) -> isize {
    match (*(*ep).rma).write {
        Some(f) => f(ep, buf.cast(), len, ptr::null_mut(), to, addr, key, ctx),
        None => -(libc::ENOSYS as isize),
    }
}

/// fi_cq_sread of up to `n` msg-format entries, waiting up to `timeout_ms`.
pub unsafe fn cq_sread(
    cq: *mut sys::fid_cq,
    buf: *mut sys::fi_cq_msg_entry,
    n: usize,
    timeout_ms: i32,
) -> isize {
    match (*(*cq).ops).sread {
        Some(f) => f(cq, buf.cast(), n, ptr::null(), timeout_ms),
        // No wait object: poll, sleeping briefly between empty polls.
        None => match (*(*cq).ops).read {
            Some(r) => {
                let got = r(cq, buf.cast(), n);
                if got == -(sys::FI_EAGAIN as isize) {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                got
            }
            None => -(libc::ENOSYS as isize),
        },
    }
}

/// fi_cq_readerr: the failed operation's context and error.
pub unsafe fn cq_readerr(cq: *mut sys::fid_cq) -> (*mut c_void, i32) {
    let mut e: sys::fi_cq_err_entry = std::mem::zeroed();
    match (*(*cq).ops).readerr {
        Some(f) if f(cq, &mut e, 0) > 0 => (e.op_context, e.err),
        _ => (ptr::null_mut(), 0),
    }
}

/// fi_cq_signal: wakes a thread in fi_cq_sread.
pub unsafe fn cq_signal(cq: *mut sys::fid_cq) {
    if let Some(f) = (*(*cq).ops).signal {
        f(cq);
    }
}
