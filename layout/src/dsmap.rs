//! The data-server registry as data. The MDS owns one [`DsMap`] and changes it as DSs register,
//! miss heartbeats or are drained; placement and device addresses are pure functions of it.
//!
//! The generation number moves on every change that can alter placement or what a client is
//! told about a device (membership, state, addresses, failure domain, capacity), so anything
//! derived from the map (cached placements, device addresses already handed out) can tell it is
//! out of date by comparing one integer. Usage reports arrive with every heartbeat and are
//! deliberately not such a change: they would otherwise invalidate everything every few seconds.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use proto::nfs4::Deviceid4;
use thiserror::Error;

/// A data server's identity, stable across restarts and address changes (it names the chunks the
/// DS holds, so it must outlive any particular process or port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DsId(pub u64);

/// Leading bytes of every device id we hand out. A client may present any 16 bytes in
/// GETDEVICEINFO; the prefix lets the MDS refuse foreign ids without a map lookup, and the
/// version byte leaves room to change the encoding without colliding with ids already cached by
/// clients.
const DEVICEID_PREFIX: [u8; 8] = *b"cfs-ds\x00\x01";

impl DsId {
    /// The pNFS device id a client caches for this DS.
    pub fn device_id(self) -> Deviceid4 {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&DEVICEID_PREFIX);
        d[8..].copy_from_slice(&self.0.to_be_bytes());
        d
    }

    /// Inverse of [`DsId::device_id`]; `None` for ids we never issued.
    pub fn from_device_id(d: &Deviceid4) -> Option<DsId> {
        let (prefix, id) = d.split_at(8);
        if prefix != DEVICEID_PREFIX {
            return None;
        }
        let id: [u8; 8] = id.try_into().ok()?;
        Some(DsId(u64::from_be_bytes(id)))
    }
}

/// Sixteen hex digits, as every log line, `cfs admin status`, the console and `/metrics` show a
/// data server (its log said "data server listening ds_id=..." in this form).
impl fmt::Display for DsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Whether a DS may receive new chunks and appear in new layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsState {
    Up,
    /// Missed heartbeats: nothing new goes there, and layouts avoid it.
    Down,
    /// Being emptied by an operator: still serves what it holds, receives nothing new.
    Draining,
}

/// One data server as the MDS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsInfo {
    pub id: DsId,
    /// Where the DS listens; what the MDS and other DSs connect to.
    pub addr: SocketAddr,
    /// `(netid, address)` pairs clients are told, in preference order. Configuration, because
    /// only the operator knows the network path: a qemu guest reaches host 127.0.0.1:P as
    /// 10.0.2.2:P. Empty means "clients reach `addr` directly".
    pub advertised: Vec<(String, SocketAddr)>,
    /// DSs sharing a domain can fail together (host, rack, disk). Empty means the DS is a domain
    /// of its own.
    pub failure_domain: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub state: DsState,
}

impl DsInfo {
    /// An Up DS in its own failure domain, advertised at its listening address.
    pub fn new(id: DsId, addr: SocketAddr) -> Self {
        DsInfo {
            id,
            addr,
            advertised: Vec::new(),
            failure_domain: String::new(),
            capacity_bytes: 0,
            used_bytes: 0,
            state: DsState::Up,
        }
    }

    /// The failure domain placement compares; a DS with none configured is alone in its own.
    pub fn domain_key(&self) -> String {
        if self.failure_domain.is_empty() {
            format!("\0{}", self.id.0)
        } else {
            self.failure_domain.clone()
        }
    }

    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes.saturating_sub(self.used_bytes)
    }

    /// Identical apart from usage, which changes with every heartbeat.
    fn same_config(&self, other: &DsInfo) -> bool {
        self.id == other.id
            && self.addr == other.addr
            && self.advertised == other.advertised
            && self.failure_domain == other.failure_domain
            && self.capacity_bytes == other.capacity_bytes
            && self.state == other.state
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DsMapError {
    #[error("{0} is already registered")]
    Duplicate(DsId),
    #[error("{0} is not registered")]
    Unknown(DsId),
}

/// All known data servers, ordered by id so iteration (and so everything derived) is
/// deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsMap {
    generation: u64,
    servers: BTreeMap<DsId, DsInfo>,
}

impl DsMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Registers a DS never seen before.
    pub fn add(&mut self, info: DsInfo) -> Result<(), DsMapError> {
        if self.servers.contains_key(&info.id) {
            return Err(DsMapError::Duplicate(info.id));
        }
        self.servers.insert(info.id, info);
        self.bump();
        Ok(())
    }

    /// Registers or re-registers a DS (a restarted DS announces itself again, possibly on a new
    /// port). Returns whether anything placement or clients care about changed.
    pub fn upsert(&mut self, info: DsInfo) -> bool {
        let changed = self
            .servers
            .get(&info.id)
            .is_none_or(|old| !old.same_config(&info));
        self.servers.insert(info.id, info);
        if changed {
            self.bump();
        }
        changed
    }

    pub fn remove(&mut self, id: DsId) -> Result<DsInfo, DsMapError> {
        let info = self.servers.remove(&id).ok_or(DsMapError::Unknown(id))?;
        self.bump();
        Ok(info)
    }

    /// Returns whether the state changed; repeating the current state (a heartbeat from a DS
    /// already Up) leaves the generation alone.
    pub fn set_state(&mut self, id: DsId, state: DsState) -> Result<bool, DsMapError> {
        let info = self.servers.get_mut(&id).ok_or(DsMapError::Unknown(id))?;
        if info.state == state {
            return Ok(false);
        }
        info.state = state;
        self.bump();
        Ok(true)
    }

    /// Records a heartbeat's usage figures. A capacity change bumps the generation (placement
    /// weights by capacity); `used_bytes` alone does not.
    pub fn set_usage(
        &mut self,
        id: DsId,
        capacity_bytes: u64,
        used_bytes: u64,
    ) -> Result<(), DsMapError> {
        let info = self.servers.get_mut(&id).ok_or(DsMapError::Unknown(id))?;
        info.used_bytes = used_bytes;
        if info.capacity_bytes != capacity_bytes {
            info.capacity_bytes = capacity_bytes;
            self.bump();
        }
        Ok(())
    }

    pub fn get(&self, id: DsId) -> Option<&DsInfo> {
        self.servers.get(&id)
    }

    /// Looks a DS up by the device id a client sent in GETDEVICEINFO or LAYOUTERROR.
    pub fn by_device_id(&self, d: &Deviceid4) -> Option<&DsInfo> {
        DsId::from_device_id(d).and_then(|id| self.get(id))
    }

    pub fn iter(&self) -> impl Iterator<Item = &DsInfo> {
        self.servers.values()
    }

    /// DSs that may receive new chunks and appear in new layouts.
    pub fn up(&self) -> impl Iterator<Item = &DsInfo> {
        self.servers.values().filter(|d| d.state == DsState::Up)
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(id: u64) -> DsInfo {
        DsInfo::new(
            DsId(id),
            format!("127.0.0.1:{}", 20000 + id).parse().unwrap(),
        )
    }

    #[test]
    fn device_id_round_trip_and_foreign_ids() {
        for id in [0, 1, 42, u64::MAX] {
            assert_eq!(DsId::from_device_id(&DsId(id).device_id()), Some(DsId(id)));
        }
        assert_eq!(DsId::from_device_id(&[0; 16]), None);
        let mut d = DsId(7).device_id();
        d[7] ^= 1;
        assert_eq!(DsId::from_device_id(&d), None);
    }

    #[test]
    fn generation_moves_on_membership_and_state_only() {
        let mut m = DsMap::new();
        assert_eq!(m.generation(), 0);
        m.add(ds(1)).unwrap();
        m.add(ds(2)).unwrap();
        assert_eq!(m.generation(), 2);
        assert_eq!(m.add(ds(1)), Err(DsMapError::Duplicate(DsId(1))));
        assert_eq!(m.generation(), 2);

        assert!(!m.set_state(DsId(1), DsState::Up).unwrap());
        assert_eq!(m.generation(), 2);
        assert!(m.set_state(DsId(1), DsState::Down).unwrap());
        assert_eq!(m.generation(), 3);
        assert_eq!(m.up().map(|d| d.id).collect::<Vec<_>>(), vec![DsId(2)]);

        m.set_usage(DsId(2), 1 << 40, 5).unwrap();
        assert_eq!(m.generation(), 4, "capacity change re-weights placement");
        m.set_usage(DsId(2), 1 << 40, 6).unwrap();
        assert_eq!(m.generation(), 4, "usage alone does not");
        assert_eq!(m.get(DsId(2)).unwrap().free_bytes(), (1 << 40) - 6);

        assert!(!m.upsert(m.get(DsId(2)).unwrap().clone()));
        let mut moved = ds(2);
        moved.addr = "127.0.0.1:1".parse().unwrap();
        moved.capacity_bytes = 1 << 40;
        assert!(m.upsert(moved));
        assert_eq!(m.generation(), 5);

        assert_eq!(m.remove(DsId(9)), Err(DsMapError::Unknown(DsId(9))));
        assert_eq!(
            m.set_state(DsId(9), DsState::Up),
            Err(DsMapError::Unknown(DsId(9)))
        );
        m.remove(DsId(1)).unwrap();
        assert_eq!(m.generation(), 6);
        assert_eq!(m.len(), 1);
        assert!(m.by_device_id(&DsId(2).device_id()).is_some());
        assert!(m.by_device_id(&DsId(1).device_id()).is_none());
    }

    #[test]
    fn unnamed_failure_domains_are_distinct() {
        let a = ds(1);
        let b = ds(2);
        assert_ne!(a.domain_key(), b.domain_key());
        let (mut c, mut d) = (ds(3), ds(4));
        c.failure_domain = "rack1".into();
        d.failure_domain = "rack1".into();
        assert_eq!(c.domain_key(), d.domain_key());
    }
}
