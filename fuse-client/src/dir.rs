//! Directory listings: READDIR pages (with each entry's attributes and file handle, so a
//! READDIRPLUS answer needs no LOOKUPs) kept per open directory and handed to the kernel a
//! buffer at a time. FUSE offsets are the server's cookies; 1 and 2, which NFSv4 reserves,
//! are "." and "..".
use client::proto::nfs4::*;
use client::{Client, CompoundBuilder, Error, NfsFh4, Result, Stat};
use tokio::sync::Mutex;

/// One READDIR reply's worth (as the kernel client asks): ~1,000 entries of a 10,000-entry
/// directory per round trip.
const PAGE_BYTES: u32 = 64 * 1024;

pub const DOT: u64 = 1;
pub const DOTDOT: u64 = 2;

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub cookie: u64,
    pub fh: Option<NfsFh4>,
    pub stat: Stat,
}

#[derive(Default)]
struct Page {
    /// The cookie the page was read after (0: the start).
    after: u64,
    entries: Vec<Entry>,
    eof: bool,
    verf: Verifier4,
}

pub struct DirHandle {
    pub fh: NfsFh4,
    page: Mutex<Page>,
}

pub fn entry_attrs() -> Vec<u32> {
    let mut a = client::STAT_ATTRS.to_vec();
    a.push(FATTR4_FILEHANDLE);
    a
}

impl DirHandle {
    pub fn new(fh: NfsFh4) -> DirHandle {
        DirHandle {
            fh,
            page: Mutex::new(Page::default()),
        }
    }

    /// Entries after `cookie`, as many as the next page holds (empty at the end).
    pub async fn after(&self, c: &Client, cookie: u64) -> Result<Vec<Entry>> {
        let mut p = self.page.lock().await;
        if let Some(i) = position_after(&p, cookie) {
            if i < p.entries.len() || p.eof {
                return Ok(p.entries[i..].to_vec());
            }
        }
        let (entries, eof, verf) = read_page(c, &self.fh, cookie, p.verf).await?;
        *p = Page {
            after: cookie,
            entries,
            eof,
            verf,
        };
        Ok(p.entries.clone())
    }
}

/// Where the entries after `cookie` start in the held page, if it holds them.
fn position_after(p: &Page, cookie: u64) -> Option<usize> {
    if p.entries.is_empty() && !p.eof {
        return None;
    }
    if cookie == p.after {
        return Some(0);
    }
    p.entries
        .iter()
        .position(|e| e.cookie == cookie)
        .map(|i| i + 1)
}

async fn read_page(
    c: &Client,
    dir: &NfsFh4,
    cookie: u64,
    verf: Verifier4,
) -> Result<(Vec<Entry>, bool, Verifier4)> {
    let verf = if cookie == 0 { [0u8; 8] } else { verf };
    let res = c
        .compound(
            CompoundBuilder::new()
                .putfh(dir)
                .op(NfsArgop4::Readdir(ReaddirArgs {
                    cookie,
                    cookieverf: verf,
                    dircount: PAGE_BYTES / 4,
                    maxcount: PAGE_BYTES,
                    attr_request: Bitmap::from_bits(&entry_attrs()).to_vec(),
                })),
        )
        .await?;
    let ok = res
        .into_iter()
        .find_map(|r| match r {
            NfsResop4::Readdir(ReaddirRes::Ok(ok)) => Some(ok),
            _ => None,
        })
        .ok_or_else(|| Error::Protocol("reply lacks the READDIR result".into()))?;
    let mut out = Vec::with_capacity(ok.reply.entries.len());
    for e in ok.reply.entries {
        let a = FileAttrs::decode(&e.attrs)?;
        out.push(Entry {
            name: String::from_utf8_lossy(e.name.as_bytes()).into_owned(),
            cookie: e.cookie,
            fh: a.filehandle.clone(),
            stat: Stat::from(&a),
        });
    }
    if out.is_empty() && !ok.reply.eof {
        return Err(Error::Protocol(
            "READDIR returned no entries and no EOF".into(),
        ));
    }
    Ok((out, ok.reply.eof, ok.cookieverf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(cookie: u64) -> Entry {
        Entry {
            name: format!("n{cookie}"),
            cookie,
            fh: None,
            stat: Stat::default(),
        }
    }

    #[test]
    fn a_held_page_serves_every_cookie_inside_it() {
        let p = Page {
            after: 10,
            entries: vec![e(11), e(15), e(20)],
            eof: false,
            verf: [0; 8],
        };
        assert_eq!(position_after(&p, 10), Some(0));
        assert_eq!(position_after(&p, 15), Some(2));
        assert_eq!(
            position_after(&p, 20),
            Some(3),
            "end of page: read the next"
        );
        assert_eq!(position_after(&p, 99), None);
        assert_eq!(
            position_after(&Page::default(), 0),
            None,
            "nothing read yet"
        );
    }
}
