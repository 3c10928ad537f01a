//! File attributes (RFC 8881 §5, RFC 7862 §12.2, RFC 8275, RFC 8276): the `FATTR4_*` numbers,
//! the attribute value types, a [`Bitmap`] helper, and [`FileAttrs`], the typed view of a
//! `fattr4` (`FileAttrs::encode` / `FileAttrs::decode`).
use super::basic::*;
use super::pnfs::Layouthint4;
use crate::xdr::{Opaque, Reader, Writer, Xdr, XdrError};
use crate::Xdr;

pub const FATTR4_SUPPORTED_ATTRS: u32 = 0;
pub const FATTR4_TYPE: u32 = 1;
pub const FATTR4_FH_EXPIRE_TYPE: u32 = 2;
pub const FATTR4_CHANGE: u32 = 3;
pub const FATTR4_SIZE: u32 = 4;
pub const FATTR4_LINK_SUPPORT: u32 = 5;
pub const FATTR4_SYMLINK_SUPPORT: u32 = 6;
pub const FATTR4_NAMED_ATTR: u32 = 7;
pub const FATTR4_FSID: u32 = 8;
pub const FATTR4_UNIQUE_HANDLES: u32 = 9;
pub const FATTR4_LEASE_TIME: u32 = 10;
pub const FATTR4_RDATTR_ERROR: u32 = 11;
pub const FATTR4_ACL: u32 = 12;
pub const FATTR4_ACLSUPPORT: u32 = 13;
pub const FATTR4_ARCHIVE: u32 = 14;
pub const FATTR4_CANSETTIME: u32 = 15;
pub const FATTR4_CASE_INSENSITIVE: u32 = 16;
pub const FATTR4_CASE_PRESERVING: u32 = 17;
pub const FATTR4_CHOWN_RESTRICTED: u32 = 18;
pub const FATTR4_FILEHANDLE: u32 = 19;
pub const FATTR4_FILEID: u32 = 20;
pub const FATTR4_FILES_AVAIL: u32 = 21;
pub const FATTR4_FILES_FREE: u32 = 22;
pub const FATTR4_FILES_TOTAL: u32 = 23;
pub const FATTR4_FS_LOCATIONS: u32 = 24;
pub const FATTR4_HIDDEN: u32 = 25;
pub const FATTR4_HOMOGENEOUS: u32 = 26;
pub const FATTR4_MAXFILESIZE: u32 = 27;
pub const FATTR4_MAXLINK: u32 = 28;
pub const FATTR4_MAXNAME: u32 = 29;
pub const FATTR4_MAXREAD: u32 = 30;
pub const FATTR4_MAXWRITE: u32 = 31;
pub const FATTR4_MIMETYPE: u32 = 32;
pub const FATTR4_MODE: u32 = 33;
pub const FATTR4_NO_TRUNC: u32 = 34;
pub const FATTR4_NUMLINKS: u32 = 35;
pub const FATTR4_OWNER: u32 = 36;
pub const FATTR4_OWNER_GROUP: u32 = 37;
pub const FATTR4_QUOTA_AVAIL_HARD: u32 = 38;
pub const FATTR4_QUOTA_AVAIL_SOFT: u32 = 39;
pub const FATTR4_QUOTA_USED: u32 = 40;
pub const FATTR4_RAWDEV: u32 = 41;
pub const FATTR4_SPACE_AVAIL: u32 = 42;
pub const FATTR4_SPACE_FREE: u32 = 43;
pub const FATTR4_SPACE_TOTAL: u32 = 44;
pub const FATTR4_SPACE_USED: u32 = 45;
pub const FATTR4_SYSTEM: u32 = 46;
pub const FATTR4_TIME_ACCESS: u32 = 47;
pub const FATTR4_TIME_ACCESS_SET: u32 = 48;
pub const FATTR4_TIME_BACKUP: u32 = 49;
pub const FATTR4_TIME_CREATE: u32 = 50;
pub const FATTR4_TIME_DELTA: u32 = 51;
pub const FATTR4_TIME_METADATA: u32 = 52;
pub const FATTR4_TIME_MODIFY: u32 = 53;
pub const FATTR4_TIME_MODIFY_SET: u32 = 54;
pub const FATTR4_MOUNTED_ON_FILEID: u32 = 55;
pub const FATTR4_DIR_NOTIF_DELAY: u32 = 56;
pub const FATTR4_DIRENT_NOTIF_DELAY: u32 = 57;
pub const FATTR4_DACL: u32 = 58;
pub const FATTR4_SACL: u32 = 59;
pub const FATTR4_CHANGE_POLICY: u32 = 60;
pub const FATTR4_FS_STATUS: u32 = 61;
pub const FATTR4_FS_LAYOUT_TYPES: u32 = 62;
pub const FATTR4_LAYOUT_HINT: u32 = 63;
pub const FATTR4_LAYOUT_TYPES: u32 = 64;
pub const FATTR4_LAYOUT_BLKSIZE: u32 = 65;
pub const FATTR4_LAYOUT_ALIGNMENT: u32 = 66;
pub const FATTR4_FS_LOCATIONS_INFO: u32 = 67;
pub const FATTR4_MDSTHRESHOLD: u32 = 68;
pub const FATTR4_RETENTION_GET: u32 = 69;
pub const FATTR4_RETENTION_SET: u32 = 70;
pub const FATTR4_RETENTEVT_GET: u32 = 71;
pub const FATTR4_RETENTEVT_SET: u32 = 72;
pub const FATTR4_RETENTION_HOLD: u32 = 73;
pub const FATTR4_MODE_SET_MASKED: u32 = 74;
pub const FATTR4_SUPPATTR_EXCLCREAT: u32 = 75;
pub const FATTR4_FS_CHARSET_CAP: u32 = 76;
pub const FATTR4_CLONE_BLKSIZE: u32 = 77;
pub const FATTR4_SPACE_FREED: u32 = 78;
pub const FATTR4_CHANGE_ATTR_TYPE: u32 = 79;
pub const FATTR4_SEC_LABEL: u32 = 80;
/// RFC 8275.
pub const FATTR4_MODE_UMASK: u32 = 81;
/// RFC 8276.
pub const FATTR4_XATTR_SUPPORT: u32 = 82;
/// RFC 9754 §5.2: the holder of a `*_ATTRS_DELEG` delegation reports the times it kept.
pub const FATTR4_TIME_DELEG_ACCESS: u32 = 84;
pub const FATTR4_TIME_DELEG_MODIFY: u32 = 85;
/// RFC 9754 §3.1: which OPEN arguments the server supports.
pub const FATTR4_OPEN_ARGUMENTS: u32 = 86;

/// RFC 9754 §3.1 `open_args_share_access4`, `open_args_share_deny4`,
/// `open_args_share_access_want4`, `open_args_open_claim4`, `open_args_createmode4`: bit
/// numbers in the bitmaps of [`OpenArguments4`].
pub const OPEN_ARGS_SHARE_ACCESS_READ: u32 = 1;
pub const OPEN_ARGS_SHARE_ACCESS_WRITE: u32 = 2;
pub const OPEN_ARGS_SHARE_ACCESS_BOTH: u32 = 3;
pub const OPEN_ARGS_SHARE_DENY_NONE: u32 = 0;
pub const OPEN_ARGS_SHARE_DENY_READ: u32 = 1;
pub const OPEN_ARGS_SHARE_DENY_WRITE: u32 = 2;
pub const OPEN_ARGS_SHARE_DENY_BOTH: u32 = 3;
pub const OPEN_ARGS_SHARE_ACCESS_WANT_ANY_DELEG: u32 = 3;
pub const OPEN_ARGS_SHARE_ACCESS_WANT_NO_DELEG: u32 = 4;
pub const OPEN_ARGS_SHARE_ACCESS_WANT_CANCEL: u32 = 5;
pub const OPEN_ARGS_SHARE_ACCESS_WANT_SIGNAL_DELEG_WHEN_RESRC_AVAIL: u32 = 17;
pub const OPEN_ARGS_SHARE_ACCESS_WANT_PUSH_DELEG_WHEN_UNCONTENDED: u32 = 18;
pub const OPEN_ARGS_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS: u32 = 20;
pub const OPEN_ARGS_SHARE_ACCESS_WANT_OPEN_XOR_DELEGATION: u32 = 21;
pub const OPEN_ARGS_OPEN_CLAIM_NULL: u32 = 0;
pub const OPEN_ARGS_OPEN_CLAIM_PREVIOUS: u32 = 1;
pub const OPEN_ARGS_OPEN_CLAIM_DELEGATE_CUR: u32 = 2;
pub const OPEN_ARGS_OPEN_CLAIM_DELEGATE_PREV: u32 = 3;
pub const OPEN_ARGS_OPEN_CLAIM_FH: u32 = 4;
pub const OPEN_ARGS_OPEN_CLAIM_DELEG_CUR_FH: u32 = 5;
pub const OPEN_ARGS_OPEN_CLAIM_DELEG_PREV_FH: u32 = 6;
pub const OPEN_ARGS_CREATEMODE_UNCHECKED4: u32 = 0;
pub const OPEN_ARGS_CREATE_MODE_GUARDED: u32 = 1;
pub const OPEN_ARGS_CREATEMODE_EXCLUSIVE4: u32 = 2;
pub const OPEN_ARGS_CREATE_MODE_EXCLUSIVE4_1: u32 = 3;

/// `change_attr_type4`.
pub const NFS4_CHANGE_TYPE_IS_MONOTONIC_INCR: u32 = 0;
pub const NFS4_CHANGE_TYPE_IS_VERSION_COUNTER: u32 = 1;
pub const NFS4_CHANGE_TYPE_IS_VERSION_COUNTER_NOPNFS: u32 = 2;
pub const NFS4_CHANGE_TYPE_IS_TIME_METADATA: u32 = 3;
pub const NFS4_CHANGE_TYPE_IS_UNDEFINED: u32 = 4;

/// `fs_charset_cap4` bits.
pub const FSCHARSET_CAP4_CONTAINS_NON_UTF8: u32 = 0x1;
pub const FSCHARSET_CAP4_ALLOWS_ONLY_UTF8: u32 = 0x2;

/// `fs4_status_type`.
pub const STATUS4_FIXED: u32 = 1;
pub const STATUS4_UPDATED: u32 = 2;
pub const STATUS4_VERSIONED: u32 = 3;
pub const STATUS4_WRITABLE: u32 = 4;
pub const STATUS4_REFERRAL: u32 = 5;

/// `mdsthreshold4` hint bits.
pub const THRESHOLD_RD: u32 = 0;
pub const THRESHOLD_WR: u32 = 1;
pub const THRESHOLD_RD_IO: u32 = 2;
pub const THRESHOLD_WR_IO: u32 = 3;

/// `FSLI4*` (fs_locations_info4) flags and indices.
pub const FSLI4IF_VAR_SUB: u32 = 0x0000_0001;
pub const FSLI4GF_WRITABLE: u32 = 0x01;
pub const FSLI4GF_CUR_REQ: u32 = 0x02;
pub const FSLI4GF_ABSENT: u32 = 0x04;
pub const FSLI4GF_GOING: u32 = 0x08;
pub const FSLI4GF_SPLIT: u32 = 0x10;
pub const FSLI4TF_RDMA: u32 = 0x01;

/// `fs_location4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct FsLocation4 {
    pub server: Vec<Utf8str>,
    pub rootpath: Pathname4,
}
/// `fs_locations4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct FsLocations4 {
    pub fs_root: Pathname4,
    pub locations: Vec<FsLocation4>,
}
/// `fs_locations_server4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct FsLocationsServer4 {
    pub fls_currency: i32,
    pub fls_info: Opaque,
    pub fls_server: Utf8str,
}
/// `fs_locations_item4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct FsLocationsItem4 {
    pub fli_entries: Vec<FsLocationsServer4>,
    pub fli_rootpath: Pathname4,
}
/// `fs_locations_info4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct FsLocationsInfo4 {
    pub fli_flags: u32,
    pub fli_valid_for: i32,
    pub fli_fs_root: Pathname4,
    pub fli_items: Vec<FsLocationsItem4>,
}
/// `nfsacl41`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Nfsacl41 {
    pub na41_flag: u32,
    pub na41_aces: Vec<Nfsace4>,
}
/// `mode_masked4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct ModeMasked4 {
    pub mm_value_to_set: Mode4,
    pub mm_mask_bits: Mode4,
}
/// `mode_umask4` (RFC 8275).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct ModeUmask4 {
    pub mu_mode: Mode4,
    pub mu_umask: Mode4,
}
/// `change_policy4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct ChangePolicy4 {
    pub cp_major: u64,
    pub cp_minor: u64,
}
/// `fs4_status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Fs4Status {
    pub fss_absent: bool,
    pub fss_type: u32,
    pub fss_source: Utf8str,
    pub fss_current: Utf8str,
    pub fss_age: i32,
    pub fss_version: Nfstime4,
}
/// `threshold_item4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct ThresholdItem4 {
    pub thi_layout_type: Layouttype4,
    pub thi_hintset: Bitmap4,
    pub thi_hintlist: Opaque,
}
/// `mdsthreshold4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Mdsthreshold4 {
    pub mth_hints: Vec<ThresholdItem4>,
}
/// `retention_get4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct RetentionGet4 {
    pub rg_duration: u64,
    #[xdr(max = 1)]
    pub rg_begin_time: Vec<Nfstime4>,
}
/// `retention_set4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct RetentionSet4 {
    pub rs_enable: bool,
    #[xdr(max = 1)]
    pub rs_duration: Vec<u64>,
}
/// `labelformat_spec4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct LabelformatSpec4 {
    pub lfs_lfs: u32,
    pub lfs_pi: u32,
}
/// `sec_label4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct SecLabel4 {
    pub slai_lfs: LabelformatSpec4,
    pub slai_data: Opaque,
}

/// `open_arguments4` (RFC 9754 §3.1): each bitmap names, by the `OPEN_ARGS_*` bit numbers,
/// the values of one OPEN argument the server supports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct OpenArguments4 {
    pub oa_share_access: Bitmap4,
    pub oa_share_deny: Bitmap4,
    pub oa_share_access_want: Bitmap4,
    pub oa_open_claim: Bitmap4,
    pub oa_create_mode: Bitmap4,
}

/// A `bitmap4` as a set of bit numbers. Converts to/from the wire `Vec<u32>`. Trailing zero
/// words are dropped on construction, so equality is equality of the sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Bitmap(Vec<u32>);

/// Bytes `FileAttrs::encode` starts its buffer with: Linux's GETATTR after OPEN or LOOKUP asks
/// for ~120 bytes of values; more grows the buffer as before.
const ENCODE_CAPACITY: usize = 256;

/// Bits above this are never set by [`Bitmap::set`] (attribute numbers are small).
pub const BITMAP_MAX_BIT: u32 = 4095;

fn trim(mut v: Vec<u32>) -> Vec<u32> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

impl Bitmap {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// A bitmap with exactly these bits set.
    pub fn from_bits(bits: &[u32]) -> Self {
        let mut b = Self::new();
        for &x in bits {
            b.set(x);
        }
        b
    }
    pub fn from_words(words: &[u32]) -> Self {
        Self(trim(words.to_vec()))
    }
    /// The wire words (no trailing zero words).
    pub fn words(&self) -> &[u32] {
        &self.0
    }
    /// The wire form.
    pub fn to_vec(&self) -> Vec<u32> {
        self.0.clone()
    }
    /// Sets `bit`; bits above [`BITMAP_MAX_BIT`] are ignored.
    pub fn set(&mut self, bit: u32) {
        if bit > BITMAP_MAX_BIT {
            return;
        }
        let w = (bit / 32) as usize;
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (bit % 32);
    }
    pub fn clear(&mut self, bit: u32) {
        let w = (bit / 32) as usize;
        if let Some(x) = self.0.get_mut(w) {
            *x &= !(1 << (bit % 32));
        }
        let v = std::mem::take(&mut self.0);
        self.0 = trim(v);
    }
    pub fn get(&self, bit: u32) -> bool {
        let w = (bit / 32) as usize;
        self.0.get(w).is_some_and(|x| x & (1 << (bit % 32)) != 0)
    }
    pub fn contains(&self, bit: u32) -> bool {
        self.get(bit)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Set bits in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..32u32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| (i as u32).saturating_mul(32).saturating_add(b))
        })
    }
    pub fn intersection(&self, other: &Bitmap) -> Bitmap {
        Bitmap(trim(
            self.0
                .iter()
                .zip(other.0.iter())
                .map(|(a, b)| a & b)
                .collect(),
        ))
    }
    pub fn union(&self, other: &Bitmap) -> Bitmap {
        let n = self.0.len().max(other.0.len());
        Bitmap(
            (0..n)
                .map(|i| self.0.get(i).copied().unwrap_or(0) | other.0.get(i).copied().unwrap_or(0))
                .collect(),
        )
    }
    /// Bits of `self` not in `other`.
    pub fn difference(&self, other: &Bitmap) -> Bitmap {
        Bitmap(trim(
            self.0
                .iter()
                .enumerate()
                .map(|(i, a)| a & !other.0.get(i).copied().unwrap_or(0))
                .collect(),
        ))
    }
    /// True if every bit of `self` is in `other`.
    pub fn is_subset(&self, other: &Bitmap) -> bool {
        self.difference(other).is_empty()
    }
}
impl From<Vec<u32>> for Bitmap {
    fn from(v: Vec<u32>) -> Self {
        Bitmap(trim(v))
    }
}
impl From<&[u32]> for Bitmap {
    fn from(v: &[u32]) -> Self {
        Bitmap::from_words(v)
    }
}
impl From<Bitmap> for Vec<u32> {
    fn from(b: Bitmap) -> Self {
        b.0
    }
}
impl Xdr for Bitmap {
    fn encode(&self, w: &mut Writer) {
        self.0.encode(w)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        Ok(Bitmap::from(Vec::<u32>::decode(r)?))
    }
}

/// Why a `fattr4` could not be turned into [`FileAttrs`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// The mask names an attribute this implementation does not support (NFS4ERR_ATTRNOTSUPP).
    #[error("attribute {0} not supported")]
    NotSupported(u32),
    /// `attr_vals` is not valid XDR for the mask (NFS4ERR_BADXDR).
    #[error("bad XDR in attribute {attr:?}: {err}")]
    BadXdr { attr: Option<u32>, err: XdrError },
    /// A value is well-formed but invalid (NFS4ERR_INVAL).
    #[error("invalid value for attribute {0}")]
    Inval(u32),
}

impl AttrError {
    /// The status a server answers with.
    pub fn status(&self) -> Nfsstat4 {
        match self {
            AttrError::NotSupported(_) => Nfsstat4::Attrnotsupp,
            AttrError::BadXdr { .. } => Nfsstat4::Badxdr,
            AttrError::Inval(_) => Nfsstat4::Inval,
        }
    }
    fn from_xdr(attr: u32, err: XdrError) -> Self {
        match err {
            XdrError::BadEnum(_) => AttrError::Inval(attr),
            err => AttrError::BadXdr {
                attr: Some(attr),
                err,
            },
        }
    }
}

/// Declares `FileAttrs` (one `Option` per attribute) and its per-attribute codec from a table.
macro_rules! file_attrs {
    ($( $bit:ident => $field:ident : $ty:ty ),* $(,)?) => {
        /// Typed view of a `fattr4`: `Some` for each attribute present.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct FileAttrs {
            $( pub $field: Option<$ty>, )*
        }

        impl FileAttrs {
            /// Every attribute `FileAttrs` can carry, ascending.
            pub const KNOWN: &'static [u32] = &[$($bit),*];

            /// The attributes that are `Some`.
            pub fn present(&self) -> Bitmap {
                let mut b = Bitmap::new();
                $( if self.$field.is_some() { b.set($bit); } )*
                b
            }

            fn encode_one(&self, bit: u32, w: &mut Writer) -> bool {
                match bit {
                    $( $bit => match &self.$field {
                        Some(v) => {
                            Xdr::encode(v, w);
                            true
                        }
                        None => false,
                    }, )*
                    _ => false,
                }
            }

            fn decode_one(&mut self, bit: u32, r: &mut Reader<'_>) -> Result<(), AttrError> {
                match bit {
                    $( $bit => {
                        self.$field = Some(
                            <$ty as Xdr>::decode(r).map_err(|e| AttrError::from_xdr(bit, e))?,
                        );
                    } )*
                    _ => return Err(AttrError::NotSupported(bit)),
                }
                Ok(())
            }
        }
    };
}

file_attrs! {
    FATTR4_SUPPORTED_ATTRS => supported_attrs: Bitmap,
    FATTR4_TYPE => ftype: NfsFtype4,
    FATTR4_FH_EXPIRE_TYPE => fh_expire_type: u32,
    FATTR4_CHANGE => change: u64,
    FATTR4_SIZE => size: u64,
    FATTR4_LINK_SUPPORT => link_support: bool,
    FATTR4_SYMLINK_SUPPORT => symlink_support: bool,
    FATTR4_NAMED_ATTR => named_attr: bool,
    FATTR4_FSID => fsid: Fsid4,
    FATTR4_UNIQUE_HANDLES => unique_handles: bool,
    FATTR4_LEASE_TIME => lease_time: u32,
    FATTR4_RDATTR_ERROR => rdattr_error: u32,
    FATTR4_ACL => acl: Vec<Nfsace4>,
    FATTR4_ACLSUPPORT => aclsupport: u32,
    FATTR4_ARCHIVE => archive: bool,
    FATTR4_CANSETTIME => cansettime: bool,
    FATTR4_CASE_INSENSITIVE => case_insensitive: bool,
    FATTR4_CASE_PRESERVING => case_preserving: bool,
    FATTR4_CHOWN_RESTRICTED => chown_restricted: bool,
    FATTR4_FILEHANDLE => filehandle: NfsFh4,
    FATTR4_FILEID => fileid: u64,
    FATTR4_FILES_AVAIL => files_avail: u64,
    FATTR4_FILES_FREE => files_free: u64,
    FATTR4_FILES_TOTAL => files_total: u64,
    FATTR4_FS_LOCATIONS => fs_locations: FsLocations4,
    FATTR4_HIDDEN => hidden: bool,
    FATTR4_HOMOGENEOUS => homogeneous: bool,
    FATTR4_MAXFILESIZE => maxfilesize: u64,
    FATTR4_MAXLINK => maxlink: u32,
    FATTR4_MAXNAME => maxname: u32,
    FATTR4_MAXREAD => maxread: u64,
    FATTR4_MAXWRITE => maxwrite: u64,
    FATTR4_MIMETYPE => mimetype: Utf8str,
    FATTR4_MODE => mode: Mode4,
    FATTR4_NO_TRUNC => no_trunc: bool,
    FATTR4_NUMLINKS => numlinks: u32,
    FATTR4_OWNER => owner: Utf8str,
    FATTR4_OWNER_GROUP => owner_group: Utf8str,
    FATTR4_QUOTA_AVAIL_HARD => quota_avail_hard: u64,
    FATTR4_QUOTA_AVAIL_SOFT => quota_avail_soft: u64,
    FATTR4_QUOTA_USED => quota_used: u64,
    FATTR4_RAWDEV => rawdev: Specdata4,
    FATTR4_SPACE_AVAIL => space_avail: u64,
    FATTR4_SPACE_FREE => space_free: u64,
    FATTR4_SPACE_TOTAL => space_total: u64,
    FATTR4_SPACE_USED => space_used: u64,
    FATTR4_SYSTEM => system: bool,
    FATTR4_TIME_ACCESS => time_access: Nfstime4,
    FATTR4_TIME_ACCESS_SET => time_access_set: Settime4,
    FATTR4_TIME_BACKUP => time_backup: Nfstime4,
    FATTR4_TIME_CREATE => time_create: Nfstime4,
    FATTR4_TIME_DELTA => time_delta: Nfstime4,
    FATTR4_TIME_METADATA => time_metadata: Nfstime4,
    FATTR4_TIME_MODIFY => time_modify: Nfstime4,
    FATTR4_TIME_MODIFY_SET => time_modify_set: Settime4,
    FATTR4_MOUNTED_ON_FILEID => mounted_on_fileid: u64,
    FATTR4_DIR_NOTIF_DELAY => dir_notif_delay: Nfstime4,
    FATTR4_DIRENT_NOTIF_DELAY => dirent_notif_delay: Nfstime4,
    FATTR4_DACL => dacl: Nfsacl41,
    FATTR4_SACL => sacl: Nfsacl41,
    FATTR4_CHANGE_POLICY => change_policy: ChangePolicy4,
    FATTR4_FS_STATUS => fs_status: Fs4Status,
    FATTR4_FS_LAYOUT_TYPES => fs_layout_types: Vec<Layouttype4>,
    FATTR4_LAYOUT_HINT => layout_hint: Layouthint4,
    FATTR4_LAYOUT_TYPES => layout_types: Vec<Layouttype4>,
    FATTR4_LAYOUT_BLKSIZE => layout_blksize: u32,
    FATTR4_LAYOUT_ALIGNMENT => layout_alignment: u32,
    FATTR4_FS_LOCATIONS_INFO => fs_locations_info: FsLocationsInfo4,
    FATTR4_MDSTHRESHOLD => mdsthreshold: Mdsthreshold4,
    FATTR4_RETENTION_GET => retention_get: RetentionGet4,
    FATTR4_RETENTION_SET => retention_set: RetentionSet4,
    FATTR4_RETENTEVT_GET => retentevt_get: RetentionGet4,
    FATTR4_RETENTEVT_SET => retentevt_set: RetentionSet4,
    FATTR4_RETENTION_HOLD => retention_hold: u64,
    FATTR4_MODE_SET_MASKED => mode_set_masked: ModeMasked4,
    FATTR4_SUPPATTR_EXCLCREAT => suppattr_exclcreat: Bitmap,
    FATTR4_FS_CHARSET_CAP => fs_charset_cap: u32,
    FATTR4_CLONE_BLKSIZE => clone_blksize: u32,
    FATTR4_SPACE_FREED => space_freed: u64,
    FATTR4_CHANGE_ATTR_TYPE => change_attr_type: u32,
    FATTR4_SEC_LABEL => sec_label: SecLabel4,
    FATTR4_MODE_UMASK => mode_umask: ModeUmask4,
    FATTR4_XATTR_SUPPORT => xattr_support: bool,
    FATTR4_TIME_DELEG_ACCESS => time_deleg_access: Nfstime4,
    FATTR4_TIME_DELEG_MODIFY => time_deleg_modify: Nfstime4,
    FATTR4_OPEN_ARGUMENTS => open_arguments: OpenArguments4,
}

/// Attributes a client may set (SETATTR, CREATE/OPEN createattrs); the others are read-only
/// (SETATTR of one of them is NFS4ERR_INVAL).
pub const WRITABLE_ATTRS: &[u32] = &[
    FATTR4_SIZE,
    FATTR4_ACL,
    FATTR4_ARCHIVE,
    FATTR4_HIDDEN,
    FATTR4_MIMETYPE,
    FATTR4_MODE,
    FATTR4_OWNER,
    FATTR4_OWNER_GROUP,
    FATTR4_SYSTEM,
    FATTR4_TIME_ACCESS_SET,
    FATTR4_TIME_BACKUP,
    FATTR4_TIME_CREATE,
    FATTR4_TIME_MODIFY_SET,
    FATTR4_DACL,
    FATTR4_SACL,
    FATTR4_LAYOUT_HINT,
    FATTR4_RETENTION_SET,
    FATTR4_RETENTEVT_SET,
    FATTR4_RETENTION_HOLD,
    FATTR4_MODE_SET_MASKED,
    FATTR4_SEC_LABEL,
    FATTR4_MODE_UMASK,
    FATTR4_TIME_DELEG_ACCESS,
    FATTR4_TIME_DELEG_MODIFY,
];

/// True if `attr` is settable by a client.
pub fn is_writable(attr: u32) -> bool {
    WRITABLE_ATTRS.contains(&attr)
}

/// Set-only attributes: GETATTR of these is NFS4ERR_INVAL.
pub const WRITE_ONLY_ATTRS: &[u32] = &[
    FATTR4_TIME_ACCESS_SET,
    FATTR4_TIME_MODIFY_SET,
    FATTR4_RETENTION_SET,
    FATTR4_RETENTEVT_SET,
    FATTR4_MODE_SET_MASKED,
    FATTR4_MODE_UMASK,
];

impl FileAttrs {
    /// Encodes, in ascending bit order, exactly the requested attributes that are `Some`; the
    /// returned mask names them.
    pub fn encode(&self, requested: &Bitmap) -> Fattr4 {
        // Sized once: a GETATTR's values (a dozen numbers, times and owner strings) fit, so
        // the buffer is not grown five times from empty, nor the mask copied at the end.
        let mut w = Writer::with_capacity(ENCODE_CAPACITY);
        let mut mask = Bitmap(Vec::with_capacity(requested.0.len()));
        for bit in requested.iter() {
            if self.encode_one(bit, &mut w) {
                mask.set(bit);
            }
        }
        Fattr4 {
            attrmask: mask.0,
            attr_vals: Opaque(w.into_inner()),
        }
    }

    /// Encodes every attribute that is `Some`.
    pub fn encode_all(&self) -> Fattr4 {
        self.encode(&self.present())
    }

    /// Decodes a `fattr4`. Every bit of the mask must be an attribute `FileAttrs` models, the
    /// values must exactly fill `attr_vals`, and values must be in range.
    pub fn decode(f: &Fattr4) -> Result<FileAttrs, AttrError> {
        let mask = Bitmap::from_words(&f.attrmask);
        let mut r = Reader::new(f.attr_vals.as_bytes());
        let mut out = FileAttrs::default();
        for bit in mask.iter() {
            out.decode_one(bit, &mut r)?;
        }
        if r.remaining() != 0 {
            return Err(AttrError::BadXdr {
                attr: None,
                err: XdrError::Padding,
            });
        }
        out.validate()?;
        Ok(out)
    }

    fn validate(&self) -> Result<(), AttrError> {
        if self.mode.is_some_and(|m| m > 0o7777) {
            return Err(AttrError::Inval(FATTR4_MODE));
        }
        if let Some(m) = &self.mode_umask {
            if m.mu_mode > 0o7777 || m.mu_umask > 0o7777 {
                return Err(AttrError::Inval(FATTR4_MODE_UMASK));
            }
        }
        if let Some(m) = &self.mode_set_masked {
            if m.mm_value_to_set > 0o7777 || m.mm_mask_bits > 0o7777 {
                return Err(AttrError::Inval(FATTR4_MODE_SET_MASKED));
            }
        }
        for (bit, s) in [
            (FATTR4_OWNER, &self.owner),
            (FATTR4_OWNER_GROUP, &self.owner_group),
            (FATTR4_MIMETYPE, &self.mimetype),
        ] {
            if s.as_ref().is_some_and(|s| s.as_str().is_none()) {
                return Err(AttrError::Inval(bit));
            }
        }
        for (bit, t) in [
            (FATTR4_TIME_ACCESS_SET, &self.time_access_set),
            (FATTR4_TIME_MODIFY_SET, &self.time_modify_set),
        ] {
            if let Some(Settime4::ClientTime(t)) = t {
                if t.nseconds >= 1_000_000_000 {
                    return Err(AttrError::Inval(bit));
                }
            }
        }
        for (bit, t) in [
            (FATTR4_TIME_BACKUP, &self.time_backup),
            (FATTR4_TIME_CREATE, &self.time_create),
            (FATTR4_TIME_DELEG_ACCESS, &self.time_deleg_access),
            (FATTR4_TIME_DELEG_MODIFY, &self.time_deleg_modify),
        ] {
            if t.is_some_and(|t| t.nseconds >= 1_000_000_000) {
                return Err(AttrError::Inval(bit));
            }
        }
        Ok(())
    }
}
