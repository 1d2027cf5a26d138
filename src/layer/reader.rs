//! A strict, streaming tar parser for untrusted layers.
//!
//! Owns header parsing, PAX / GNU long-name extensions and the byte and entry limits; knows
//! nothing about the filesystem. Where tar implementations disagree (catalogue C7) it rejects
//! rather than picks a reading: see the module doc of `layer` for the list. Memory is bounded:
//! extension headers are capped at [`MAX_EXTENSION`] bytes and entry data is streamed.

use std::io::{self, Read};

use super::tarfmt::{self, BLOCK, field, flag};
use super::{LayerError, Limit};
use crate::dirfd;

/// Largest PAX / GNU long-name header we read into memory.
pub const MAX_EXTENSION: u64 = 1 << 20;
/// Largest run of zero padding accepted after the end-of-archive marker.
const MAX_TRAILER: u64 = 1 << 20;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    /// A hardlink to `Entry::link`, a path inside the same archive or a lower layer.
    Link,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One parsed tar entry (extensions applied), without its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path exactly as stored (raw bytes, may be non-UTF-8, may have a trailing `/`).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Link target for `Link` and `Symlink`, empty otherwise.
    pub link: Vec<u8>,
    /// Permission bits including setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch (PAX fractions are floored).
    pub mtime: i64,
    /// Data bytes following the header (0 for everything but `Regular`).
    pub size: u64,
    pub devmajor: u32,
    pub devminor: u32,
    /// `SCHILY.xattr.*` records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What [`super::list`] returns: an entry's metadata.
pub type EntryInfo = Entry;

impl Entry {
    /// The path for error messages.
    pub fn display_path(&self) -> String {
        dirfd::display(&self.path)
    }
}

/// Limits the reader enforces while it reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

/// Extension headers seen before the entry they apply to.
#[derive(Default)]
struct Pending {
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }
}

/// Streams entries out of an uncompressed tar.
pub struct TarReader<R> {
    inner: R,
    offset: u64,
    /// Data bytes of the current entry not read yet.
    remaining: u64,
    /// Padding after the current entry's data.
    pad: u64,
    entries: u64,
    limits: ReadLimits,
    done: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, limits: ReadLimits) -> TarReader<R> {
        TarReader { inner, offset: 0, remaining: 0, pad: 0, entries: 0, limits, done: false }
    }

    /// Bytes consumed from the stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn malformed(&self, reason: &'static str) -> LayerError {
        LayerError::Malformed { offset: self.offset, reason }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, LayerError> {
        let n = loop {
            match self.inner.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(LayerError::ReadStream { source }),
            }
        };
        self.offset += n as u64;
        if self.offset > self.limits.max_bytes {
            return Err(LayerError::LimitExceeded { limit: Limit::Bytes, max: self.limits.max_bytes });
        }
        Ok(n)
    }

    /// Fills `buf`; returns false on a clean EOF before the first byte.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<bool, LayerError> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.read_some(&mut buf[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(self.malformed("truncated archive"));
            }
            filled += n;
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), LayerError> {
        let mut scratch = [0u8; 8192];
        while n > 0 {
            let want = n.min(scratch.len() as u64) as usize;
            let got = self.read_some(&mut scratch[..want])?;
            if got == 0 {
                return Err(self.malformed("truncated archive"));
            }
            n -= got as u64;
        }
        Ok(())
    }

    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, LayerError> {
        if size > MAX_EXTENSION {
            return Err(self.malformed("extended header larger than 1 MiB"));
        }
        let mut data = vec![0u8; size as usize];
        if !self.read_full(&mut data)? {
            return Err(self.malformed("truncated archive"));
        }
        self.skip(tarfmt::padding(size))?;
        Ok(data)
    }

    fn count_entry(&mut self) -> Result<(), LayerError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(LayerError::LimitExceeded { limit: Limit::Entries, max: self.limits.max_entries });
        }
        Ok(())
    }

    /// Reads data of the current entry; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, LayerError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = self.remaining.min(buf.len() as u64) as usize;
        let n = self.read_some(&mut buf[..want])?;
        if n == 0 {
            return Err(self.malformed("truncated archive"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// The next entry, skipping whatever data of the previous one was not read.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        if self.done {
            return Ok(None);
        }
        let leftover = self.remaining + self.pad;
        self.remaining = 0;
        self.pad = 0;
        self.skip(leftover)?;

        let mut pending = Pending::default();
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_full(&mut block)? {
                if !pending.is_empty() {
                    return Err(self.malformed("extended header without an entry"));
                }
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                if !pending.is_empty() {
                    return Err(self.malformed("extended header without an entry"));
                }
                self.finish_trailer()?;
                return Ok(None);
            }
            self.count_entry()?;
            let stored = tarfmt::parse_numeric(&block[field::CHKSUM]);
            let ok = stored.is_some_and(|s| {
                s == tarfmt::checksum(&block) || i64::try_from(s).ok() == Some(tarfmt::checksum_signed(&block))
            });
            if !ok {
                return Err(self.malformed("header checksum mismatch"));
            }
            let Some(ustar_size) = tarfmt::parse_numeric(&block[field::SIZE]) else {
                return Err(self.malformed("invalid size field"));
            };
            let typeflag = block[field::TYPEFLAG];
            match typeflag {
                flag::PAX => {
                    if pending.pax.is_some() {
                        return Err(self.malformed("two pax extended headers before one entry"));
                    }
                    let data = self.read_extension(ustar_size)?;
                    let Some(records) = tarfmt::parse_pax(&data) else {
                        return Err(self.malformed("malformed pax record"));
                    };
                    let owned = records.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                    pending.pax = Some(owned);
                }
                flag::PAX_GLOBAL => {
                    if !pending.is_empty() {
                        return Err(self.malformed("global header between an extended header and its entry"));
                    }
                    let data = self.read_extension(ustar_size)?;
                    let Some(records) = tarfmt::parse_pax(&data) else {
                        return Err(self.malformed("malformed pax record"));
                    };
                    if records.iter().any(|(k, _)| changes_entries(k)) {
                        return Err(self.malformed("global pax header overrides entry fields"));
                    }
                }
                flag::GNU_LONGNAME | flag::GNU_LONGLINK => {
                    let slot = if typeflag == flag::GNU_LONGNAME { &pending.long_name } else { &pending.long_link };
                    if slot.is_some() {
                        return Err(self.malformed("two gnu long-name headers before one entry"));
                    }
                    let mut data = self.read_extension(ustar_size)?;
                    if let Some(nul) = data.iter().position(|&b| b == 0) {
                        data.truncate(nul);
                    }
                    if typeflag == flag::GNU_LONGNAME {
                        pending.long_name = Some(data);
                    } else {
                        pending.long_link = Some(data);
                    }
                }
                _ => {
                    let entry = self.build_entry(&block, ustar_size, pending)?;
                    self.remaining = entry.size;
                    self.pad = tarfmt::padding(entry.size);
                    let end = self.offset.saturating_add(entry.size).saturating_add(self.pad);
                    if end > self.limits.max_bytes {
                        return Err(LayerError::LimitExceeded { limit: Limit::Bytes, max: self.limits.max_bytes });
                    }
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// After the first zero block: only zero padding may follow, and not much of it.
    fn finish_trailer(&mut self) -> Result<(), LayerError> {
        self.done = true;
        let mut seen: u64 = 0;
        let mut buf = [0u8; 8192];
        loop {
            let n = self.read_some(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(self.malformed("data after the end-of-archive marker"));
            }
            seen += n as u64;
            if seen > MAX_TRAILER {
                return Err(self.malformed("more than 1 MiB of padding after the end-of-archive marker"));
            }
        }
    }

    fn build_entry(&self, block: &[u8; BLOCK], ustar_size: u64, pending: Pending) -> Result<Entry, LayerError> {
        let posix = &block[field::MAGIC] == b"ustar\0";
        let mut path = cstr(&block[field::NAME]).to_vec();
        if posix {
            let prefix = cstr(&block[field::PREFIX]);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&path);
                path = full;
            }
        }
        let mut link = cstr(&block[field::LINKNAME]).to_vec();
        let typeflag = block[field::TYPEFLAG];
        let num = |range: std::ops::Range<usize>| tarfmt::parse_numeric(&block[range]);
        let (Some(mode), Some(mut uid), Some(mut gid), Some(mtime_raw)) =
            (num(field::MODE), num(field::UID), num(field::GID), num(field::MTIME))
        else {
            return Err(self.malformed("invalid numeric field"));
        };
        let mut mtime = i64::try_from(mtime_raw).map_err(|_| self.malformed("invalid mtime"))?;
        let mut size = ustar_size;
        let mut xattrs = Vec::new();

        let had_long_name = pending.long_name.is_some();
        let had_long_link = pending.long_link.is_some();
        if let Some(name) = pending.long_name {
            path = name;
        }
        if let Some(name) = pending.long_link {
            link = name;
        }
        let entry_name = |p: &[u8]| dirfd::display(p);
        if let Some(records) = pending.pax {
            for (key, value) in records {
                match key.as_slice() {
                    b"path" => {
                        if had_long_name {
                            return Err(self.malformed("both a gnu long name and a pax path"));
                        }
                        path = value;
                    }
                    b"linkpath" => {
                        if had_long_link {
                            return Err(self.malformed("both a gnu long link and a pax linkpath"));
                        }
                        link = value;
                    }
                    b"size" => {
                        let Some(v) = parse_decimal(&value) else {
                            return Err(self.malformed("invalid pax size"));
                        };
                        if ustar_size != 0 && ustar_size != v {
                            return Err(self.malformed("pax size contradicts the ustar size"));
                        }
                        size = v;
                    }
                    b"uid" => uid = parse_decimal(&value).ok_or_else(|| self.malformed("invalid pax uid"))?,
                    b"gid" => gid = parse_decimal(&value).ok_or_else(|| self.malformed("invalid pax gid"))?,
                    b"mtime" => mtime = parse_time(&value).ok_or_else(|| self.malformed("invalid pax mtime"))?,
                    k if k.starts_with(b"SCHILY.xattr.") => {
                        xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), value));
                    }
                    k if k.starts_with(b"GNU.sparse.") => {
                        return Err(LayerError::UnsupportedEntry { entry: entry_name(&path), kind: 'S' });
                    }
                    _ => {}
                }
            }
        }

        if path.is_empty() {
            return Err(self.malformed("entry with an empty path"));
        }
        if path.contains(&0) || link.contains(&0) {
            return Err(LayerError::InvalidEntry { entry: entry_name(&path), reason: "path contains a NUL byte" });
        }
        let kind = match typeflag {
            flag::REGULAR | flag::CONTIGUOUS => EntryKind::Regular,
            // Pre-POSIX archives mark directories by a trailing slash on a regular entry.
            flag::REGULAR_OLD if path.ends_with(b"/") => EntryKind::Directory,
            flag::REGULAR_OLD => EntryKind::Regular,
            flag::LINK => EntryKind::Link,
            flag::SYMLINK => EntryKind::Symlink,
            flag::CHAR => EntryKind::CharDevice,
            flag::BLOCK => EntryKind::BlockDevice,
            flag::DIR => EntryKind::Directory,
            flag::FIFO => EntryKind::Fifo,
            other => {
                return Err(LayerError::UnsupportedEntry { entry: entry_name(&path), kind: char::from(other) });
            }
        };
        if kind != EntryKind::Regular && size != 0 {
            return Err(LayerError::InvalidEntry {
                entry: entry_name(&path),
                reason: "non-regular entry carries data",
            });
        }
        if matches!(kind, EntryKind::Link | EntryKind::Symlink) && link.is_empty() {
            return Err(LayerError::InvalidEntry { entry: entry_name(&path), reason: "link with an empty target" });
        }
        if !matches!(kind, EntryKind::Link | EntryKind::Symlink) {
            link.clear();
        }
        let (devmajor, devminor) = if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            let (Some(ma), Some(mi)) = (num(field::DEVMAJOR), num(field::DEVMINOR)) else {
                return Err(self.malformed("invalid device number"));
            };
            let (Ok(ma), Ok(mi)) = (u32::try_from(ma), u32::try_from(mi)) else {
                return Err(self.malformed("invalid device number"));
            };
            (ma, mi)
        } else {
            (0, 0)
        };
        Ok(Entry { path, kind, link, mode: (mode & 0o7777) as u32, uid, gid, mtime, size, devmajor, devminor, xattrs })
    }
}

/// Keys that a global header must not set: they would change how later entries are read.
fn changes_entries(key: &[u8]) -> bool {
    matches!(key, b"path" | b"linkpath" | b"size" | b"uid" | b"gid" | b"mtime")
        || key.starts_with(b"GNU.sparse.")
        || key.starts_with(b"SCHILY.xattr.")
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// PAX time: `[-]digits[.digits]`, floored to whole seconds.
fn parse_time(v: &[u8]) -> Option<i64> {
    let (neg, rest) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    let (int, frac) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => (&rest[..dot], &rest[dot + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = i64::try_from(parse_decimal(int)?).ok()?;
    let has_frac = frac.iter().any(|&b| b != b'0');
    Some(if neg { -secs - i64::from(has_frac) } else { secs })
}

#[cfg(test)]
mod tests {
    use super::super::tarfmt::{UstarFields, encode_header};
    use super::*;

    const LIMITS: ReadLimits = ReadLimits { max_bytes: 1 << 30, max_entries: 1000 };

    fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
        encode_header(&UstarFields {
            name,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            mtime: 0,
            typeflag,
            linkname: b"",
            devmajor: 0,
            devminor: 0,
        })
    }

    fn with_data(out: &mut Vec<u8>, h: [u8; BLOCK], data: &[u8]) {
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len() + tarfmt::padding(data.len() as u64) as usize, 0);
    }

    fn entries(bytes: &[u8]) -> Result<Vec<Entry>, LayerError> {
        let mut r = TarReader::new(bytes, LIMITS);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn gnu_long_name_applies_to_the_next_entry() {
        let long = vec![b'n'; 300];
        let mut t = Vec::new();
        let mut data = long.clone();
        data.push(0);
        with_data(&mut t, header(b"././@LongLink", flag::GNU_LONGNAME, data.len() as u64), &data);
        with_data(&mut t, header(b"short", flag::REGULAR, 2), b"hi");
        t.extend_from_slice(&[0u8; 1024]);
        let e = entries(&t).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, long);
        assert_eq!(e[0].size, 2);
    }

    #[test]
    fn rejects_ambiguous_extension_sequences() {
        let mut t = Vec::new();
        for _ in 0..2 {
            with_data(&mut t, header(b"././@LongLink", flag::GNU_LONGNAME, 2), b"a\0");
        }
        with_data(&mut t, header(b"x", flag::REGULAR, 0), b"");
        assert!(matches!(entries(&t), Err(LayerError::Malformed { .. })));

        let mut t = Vec::new();
        with_data(&mut t, header(b"././@LongLink", flag::GNU_LONGNAME, 2), b"a\0");
        t.extend_from_slice(&[0u8; 1024]);
        assert!(matches!(entries(&t), Err(LayerError::Malformed { .. })), "dangling long name");
    }

    #[test]
    fn rejects_data_after_the_end_marker_and_data_on_directories() {
        let mut t = Vec::new();
        with_data(&mut t, header(b"a", flag::REGULAR, 1), b"a");
        t.extend_from_slice(&[0u8; 1024]);
        with_data(&mut t, header(b"hidden", flag::REGULAR, 1), b"h");
        assert!(matches!(entries(&t), Err(LayerError::Malformed { .. })));

        let mut t = Vec::new();
        with_data(&mut t, header(b"d/", flag::DIR, 1), b"x");
        assert!(matches!(entries(&t), Err(LayerError::InvalidEntry { .. })));
    }

    #[test]
    fn enforces_limits() {
        let mut t = Vec::new();
        for i in 0..5u8 {
            with_data(&mut t, header(&[b'f', b'0' + i], flag::REGULAR, 600), &[1u8; 600]);
        }
        t.extend_from_slice(&[0u8; 1024]);
        let mut r = TarReader::new(&t[..], ReadLimits { max_bytes: 1 << 20, max_entries: 3 });
        let err = std::iter::from_fn(|| r.next_entry().transpose()).find_map(Result::err).unwrap();
        assert!(matches!(err, LayerError::LimitExceeded { limit: Limit::Entries, max: 3 }));
        let mut r = TarReader::new(&t[..], ReadLimits { max_bytes: 3000, max_entries: 100 });
        let err = std::iter::from_fn(|| r.next_entry().transpose()).find_map(Result::err).unwrap();
        assert!(matches!(err, LayerError::LimitExceeded { limit: Limit::Bytes, max: 3000 }));
    }

    #[test]
    fn pax_time_floors() {
        assert_eq!(parse_time(b"12"), Some(12));
        assert_eq!(parse_time(b"12.75"), Some(12));
        assert_eq!(parse_time(b"-1.5"), Some(-2));
        assert_eq!(parse_time(b"-1"), Some(-1));
        assert_eq!(parse_time(b"1x"), None);
        assert_eq!(parse_time(b""), None);
    }
}
