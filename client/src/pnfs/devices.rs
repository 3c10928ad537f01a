//! Data servers: GETDEVICEINFO answers, cached per device ID, and one multiplexed NFSv3
//! connection per (device, uid, gid) — AUTH_SYS credentials are fixed per connection, and READ
//! layouts may carry another uid than RW ones.
use super::dsconn::{DsConn, FabricClient};
use super::layouts::DsTarget;
use super::PnfsError;
use crate::client::Client;
use crate::compound::CompoundBuilder;
use proto::nfs3_client::Nfs3Client;
use proto::nfs4::*;
use proto::xdr::Xdr;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Data-server connections are soft, as the kernel's are: a dead DS must be noticed quickly so
/// the I/O can go elsewhere.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// After a DS fails at the transport level it is not tried again for this long: I/O that
/// needs it fails at once (and goes to another mirror, layout or the MDS) instead of each
/// asking GETDEVICEINFO and connecting anew.
pub const HOLD_DOWN: Duration = Duration::from_secs(2);

/// Largest `ff_device_addr4` we accept.
const MAX_DEVICE_ADDR: u32 = 64 << 10;

/// What GETDEVICEINFO told us about one data server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub addrs: Vec<SocketAddr>,
    /// Fabric endpoints (`ofi+PROVIDER` netids): (provider, address).
    pub fabric: Vec<(String, SocketAddr)>,
    pub rsize: u32,
    pub wsize: u32,
}

/// Picks what we can use from a flexfiles device address: the TCP addresses (the connection
/// races them) and the NFSv3 version entry, the only data path we speak.
pub fn parse_device_addr(da: &DeviceAddr4) -> Result<DeviceInfo, PnfsError> {
    if da.da_layout_type != LAYOUT4_FLEX_FILES {
        return Err(PnfsError::BadDevice(format!(
            "layout type {} is not flexfiles",
            da.da_layout_type
        )));
    }
    let ff = FfDeviceAddr4::from_xdr(da.da_addr_body.as_bytes())
        .map_err(|e| PnfsError::BadDevice(format!("ff_device_addr4: {e}")))?;
    let v3 = ff
        .ffda_versions
        .iter()
        .find(|v| v.ffdv_version == 3)
        .ok_or_else(|| PnfsError::BadDevice("no NFSv3 version offered".into()))?;
    let mut addrs = Vec::new();
    let mut fabric = Vec::new();
    for na in &ff.ffda_netaddrs {
        let netid = String::from_utf8_lossy(na.na_r_netid.as_bytes());
        if let Some(provider) = netid.strip_prefix("ofi+") {
            if let Some(Ok(a)) = std::str::from_utf8(na.na_r_addr.as_bytes())
                .ok()
                .map(layout::uaddr::from_uaddr)
            {
                fabric.push((provider.to_string(), a));
            }
            continue;
        }
        if netid != "tcp" && netid != "tcp6" {
            continue;
        }
        match std::str::from_utf8(na.na_r_addr.as_bytes())
            .ok()
            .map(layout::uaddr::from_uaddr)
        {
            Some(Ok(a)) => addrs.push(a),
            _ => tracing::debug!("skipping unparsable DS address {:?}", na.na_r_addr),
        }
    }
    if addrs.is_empty() {
        return Err(PnfsError::BadDevice("no TCP address".into()));
    }
    // A server advertising 0 would make us loop on empty I/O; 4 KiB is the least that works.
    Ok(DeviceInfo {
        addrs,
        fabric,
        rsize: v3.ffdv_rsize.max(4096),
        wsize: v3.ffdv_wsize.max(4096),
    })
}

type ConnKey = (Deviceid4, u32, u32);
type ConnSlot = Arc<tokio::sync::Mutex<Option<DsConn>>>;

#[derive(Default)]
pub struct Devices {
    infos: Mutex<HashMap<Deviceid4, Arc<DeviceInfo>>>,
    conns: Mutex<HashMap<ConnKey, ConnSlot>>,
    fetches: std::sync::atomic::AtomicU64,
    /// Devices that failed recently, until when they are left alone.
    down: Mutex<HashMap<Deviceid4, Instant>>,
    /// The fabric endpoint, opened the first time a device offers the configured provider
    /// (None: not configured, or it would not open; then TCP).
    fabric: tokio::sync::OnceCell<Option<Arc<FabricClient>>>,
}

impl Devices {
    /// The device's addresses and I/O sizes, asking the MDS the first time.
    pub async fn info(&self, c: &Client, dev: &Deviceid4) -> Result<Arc<DeviceInfo>, PnfsError> {
        if let Some(i) = self.infos.lock().ok().and_then(|m| m.get(dev).cloned()) {
            return Ok(i);
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let res = c
            .compound(
                CompoundBuilder::new().op(NfsArgop4::Getdeviceinfo(GetdeviceinfoArgs {
                    gdia_device_id: *dev,
                    gdia_layout_type: LAYOUT4_FLEX_FILES,
                    gdia_maxcount: MAX_DEVICE_ADDR,
                    gdia_notify_types: Vec::new(),
                })),
            )
            .await?;
        let da = res
            .into_iter()
            .find_map(|r| match r {
                NfsResop4::Getdeviceinfo(GetdeviceinfoRes::Ok(ok)) => Some(ok.gdir_device_addr),
                _ => None,
            })
            .ok_or_else(|| PnfsError::BadDevice("GETDEVICEINFO without a result".into()))?;
        let info = Arc::new(parse_device_addr(&da)?);
        tracing::debug!(addrs = ?info.addrs, "device info");
        if let Ok(mut m) = self.infos.lock() {
            m.insert(*dev, info.clone());
        }
        Ok(info)
    }

    /// A connection to the target's DS with its credentials; connects (racing the advertised
    /// addresses) when there is none or the last one closed. Callers of one key wait for one
    /// connect rather than each opening their own.
    pub async fn conn(&self, c: &Client, t: &DsTarget) -> Result<DsConn, PnfsError> {
        if self.held_down(&t.device) {
            return Err(PnfsError::HeldDown);
        }
        let slot = {
            let mut m = self
                .conns
                .lock()
                .map_err(|_| PnfsError::BadDevice("connection table poisoned".into()))?;
            m.entry((t.device, t.uid, t.gid)).or_default().clone()
        };
        let mut g = slot.lock().await;
        if let Some(conn) = g.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        let info = self.info(c, &t.device).await?;
        if let Some(f) = self.fabric_conn(c, &info).await {
            tracing::debug!(peer = %f.peer_addr(), "data server over the fabric");
            *g = Some(f.clone());
            return Ok(f);
        }
        let mut conn = Nfs3Client::connect(&info.addrs, CONNECT_TIMEOUT, t.uid, t.gid)
            .await
            .map_err(|e| {
                // The address may be what changed (a restarted DS): ask again next time.
                self.forget_info(&t.device);
                self.hold_down(&t.device);
                PnfsError::Ds(e)
            })?;
        conn.set_timeout(CALL_TIMEOUT);
        tracing::debug!(peer = %conn.peer_addr(), "connected to data server");
        let conn = DsConn::Tcp(conn);
        *g = Some(conn.clone());
        Ok(conn)
    }

    /// Bytes moved over the fabric endpoint (0 without one).
    pub fn fabric_bytes(&self) -> u64 {
        match self.fabric.get() {
            Some(Some(f)) => f.bytes.load(std::sync::atomic::Ordering::Relaxed),
            _ => 0,
        }
    }

    /// The fabric path to a device, when the client has a provider configured, the device
    /// offers it, and the endpoint opens.
    async fn fabric_conn(&self, c: &Client, info: &DeviceInfo) -> Option<DsConn> {
        let provider = c.config().fabric.as_deref()?;
        let addr = info
            .fabric
            .iter()
            .find(|(p, _)| p == provider)
            .map(|(_, a)| *a)?;
        let fc = self
            .fabric
            .get_or_init(|| async {
                match FabricClient::open(provider, addr.ip().is_loopback(), CALL_TIMEOUT) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::warn!(provider, "no fabric endpoint, data over TCP: {e}");
                        None
                    }
                }
            })
            .await
            .as_ref()?;
        match fc.conn(addr) {
            Ok(f) => Some(DsConn::Fabric(f)),
            Err(e) => {
                tracing::warn!(%addr, "fabric peer: {e}; data over TCP");
                None
            }
        }
    }

    /// After a transport failure: close the connection so the next use reconnects (a timed-out
    /// call may have left it half alive), and re-read the device's addresses.
    pub fn forget(&self, t: &DsTarget) {
        let slot = self
            .conns
            .lock()
            .ok()
            .and_then(|m| m.get(&(t.device, t.uid, t.gid)).cloned());
        if let Some(slot) = slot {
            if let Ok(mut g) = slot.try_lock() {
                if let Some(conn) = g.take() {
                    conn.close();
                }
            }
        }
        self.forget_info(&t.device);
        self.hold_down(&t.device);
    }

    /// Starts a hold-down; one already running is not extended, so a DS that came back is
    /// tried again when it ends even while I/O keeps failing over from it.
    fn hold_down(&self, dev: &Deviceid4) {
        if self.held_down(dev) {
            return;
        }
        if let Ok(mut m) = self.down.lock() {
            m.insert(*dev, Instant::now() + HOLD_DOWN);
        }
    }

    fn held_down(&self, dev: &Deviceid4) -> bool {
        let Ok(mut m) = self.down.lock() else {
            return false;
        };
        match m.get(dev) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                m.remove(dev);
                false
            }
            None => false,
        }
    }

    fn forget_info(&self, dev: &Deviceid4) {
        if let Ok(mut m) = self.infos.lock() {
            m.remove(dev);
        }
    }

    /// Largest READ and WRITE for the target's device (1 MiB for our DSs); the default until
    /// GETDEVICEINFO has been answered.
    pub fn io_sizes(&self, dev: &Deviceid4) -> (u32, u32) {
        self.infos
            .lock()
            .ok()
            .and_then(|m| m.get(dev).map(|i| (i.rsize, i.wsize)))
            .unwrap_or((1 << 20, 1 << 20))
    }

    /// GETDEVICEINFOs sent.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn close_all(&self) {
        let slots: Vec<ConnSlot> = self
            .conns
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for s in slots {
            if let Ok(g) = s.try_lock() {
                if let Some(c) = g.as_ref() {
                    c.close();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layout::dsmap::{DsId, DsInfo};

    #[test]
    fn device_addr_from_the_layout_crate_parses() {
        let a: SocketAddr = "127.0.0.1:20491".parse().expect("addr");
        let mut info = DsInfo::new(DsId(7), a);
        info.advertised = vec![
            ("tcp".into(), "10.0.2.2:20491".parse().expect("addr")),
            ("tcp".into(), a),
        ];
        let da = layout::flexfiles::build_device_addr(&info).expect("build");
        let d = parse_device_addr(&da).expect("parse");
        assert_eq!(
            d.addrs,
            vec!["10.0.2.2:20491".parse::<SocketAddr>().expect("addr"), a]
        );
        assert_eq!((d.rsize, d.wsize), (1 << 20, 1 << 20));
    }

    #[test]
    fn refuses_what_we_cannot_use() {
        let mut da = DeviceAddr4 {
            da_layout_type: LAYOUT4_NFSV4_1_FILES,
            da_addr_body: proto::xdr::Opaque(Vec::new()),
        };
        assert!(parse_device_addr(&da).is_err());
        da.da_layout_type = LAYOUT4_FLEX_FILES;
        assert!(parse_device_addr(&da).is_err(), "empty body");
        let v4 = FfDeviceAddr4 {
            ffda_netaddrs: vec![Netaddr4 {
                na_r_netid: "tcp".into(),
                na_r_addr: "127.0.0.1.8.1".into(),
            }],
            ffda_versions: vec![FfDeviceVersions4 {
                ffdv_version: 4,
                ffdv_minorversion: 1,
                ffdv_rsize: 1 << 20,
                ffdv_wsize: 1 << 20,
                ffdv_tightly_coupled: true,
            }],
        };
        da.da_addr_body = proto::xdr::Opaque(v4.to_xdr());
        assert!(parse_device_addr(&da).is_err(), "no v3");
        let mut rdma = v4.clone();
        rdma.ffda_versions[0].ffdv_version = 3;
        rdma.ffda_netaddrs[0].na_r_netid = "rdma".into();
        da.da_addr_body = proto::xdr::Opaque(rdma.to_xdr());
        assert!(parse_device_addr(&da).is_err(), "no tcp address");
        rdma.ffda_netaddrs[0].na_r_netid = "tcp".into();
        da.da_addr_body = proto::xdr::Opaque(rdma.to_xdr());
        let d = parse_device_addr(&da).expect("tcp v3");
        assert_eq!(
            d.addrs,
            vec!["127.0.0.1:2049".parse::<SocketAddr>().expect("a")]
        );
    }
}
