//! The tar byte format: 512-byte ustar header blocks, numeric fields and PAX records.
//!
//! Shared by the writer and the reader; knows nothing about files, whiteouts or OCI.
//! Offsets follow POSIX.1-2001 (ustar) with the GNU base-256 numeric extension on input.

pub(crate) const BLOCK: usize = 512;

/// Type flags we write or read.
pub(crate) mod flag {
    pub const REGULAR: u8 = b'0';
    pub const REGULAR_OLD: u8 = 0;
    pub const CONTIGUOUS: u8 = b'7';
    pub const LINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR: u8 = b'3';
    pub const BLOCK: u8 = b'4';
    pub const DIR: u8 = b'5';
    pub const FIFO: u8 = b'6';
    pub const PAX: u8 = b'x';
    pub const PAX_GLOBAL: u8 = b'g';
    pub const GNU_LONGNAME: u8 = b'L';
    pub const GNU_LONGLINK: u8 = b'K';
}

/// Field ranges inside a header block.
pub(crate) mod field {
    use std::ops::Range;
    pub const NAME: Range<usize> = 0..100;
    pub const MODE: Range<usize> = 100..108;
    pub const UID: Range<usize> = 108..116;
    pub const GID: Range<usize> = 116..124;
    pub const SIZE: Range<usize> = 124..136;
    pub const MTIME: Range<usize> = 136..148;
    pub const CHKSUM: Range<usize> = 148..156;
    pub const TYPEFLAG: usize = 156;
    pub const LINKNAME: Range<usize> = 157..257;
    pub const MAGIC: Range<usize> = 257..263;
    pub const VERSION: Range<usize> = 263..265;
    pub const DEVMAJOR: Range<usize> = 329..337;
    pub const DEVMINOR: Range<usize> = 337..345;
    pub const PREFIX: Range<usize> = 345..500;
}

/// Largest value of an 8-byte octal field (7 digits).
pub(crate) const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits).
pub(crate) const MAX_OCTAL_12: u64 = 0o77777777777;

/// The metadata of one header block, already fitted to ustar (the caller moves what does not fit
/// into PAX records and passes 0 / a truncated name here).
pub(crate) struct UstarFields<'a> {
    pub name: &'a [u8],
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub linkname: &'a [u8],
    pub devmajor: u32,
    pub devminor: u32,
}

/// Encodes one POSIX ustar header block (empty uname/gname, magic `ustar\0`, version `00`).
pub(crate) fn encode_header(f: &UstarFields<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put_bytes(&mut b[field::NAME], f.name);
    put_octal(&mut b[field::MODE], u64::from(f.mode));
    put_octal(&mut b[field::UID], f.uid);
    put_octal(&mut b[field::GID], f.gid);
    put_octal(&mut b[field::SIZE], f.size);
    put_octal(&mut b[field::MTIME], f.mtime);
    b[field::TYPEFLAG] = f.typeflag;
    put_bytes(&mut b[field::LINKNAME], f.linkname);
    b[field::MAGIC].copy_from_slice(b"ustar\0");
    b[field::VERSION].copy_from_slice(b"00");
    put_octal(&mut b[field::DEVMAJOR], u64::from(f.devmajor));
    put_octal(&mut b[field::DEVMINOR], u64::from(f.devminor));
    let sum = checksum(&b);
    // Six octal digits, NUL, space: the traditional layout GNU tar and Go write.
    let digits = format!("{sum:06o}");
    b[148..154].copy_from_slice(&digits.as_bytes()[digits.len() - 6..]);
    b[154] = 0;
    b[155] = b' ';
    b
}

fn put_bytes(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
}

/// Writes `v` as zero-padded octal filling all but the last byte, which stays NUL.
/// Callers guarantee `v` fits (they use PAX records otherwise).
fn put_octal(dst: &mut [u8], v: u64) {
    let width = dst.len() - 1;
    let s = format!("{v:0width$o}");
    let s = s.as_bytes();
    let start = s.len().saturating_sub(width);
    dst[..width].copy_from_slice(&s[start..]);
}

/// The unsigned header checksum, with the checksum field counted as spaces.
pub(crate) fn checksum(block: &[u8; BLOCK]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| if field::CHKSUM.contains(&i) { u64::from(b' ') } else { u64::from(b) })
        .sum()
}

/// The signed variant some historic writers used.
pub(crate) fn checksum_signed(block: &[u8; BLOCK]) -> i64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| if field::CHKSUM.contains(&i) { i64::from(b' ') } else { i64::from(b as i8) })
        .sum()
}

/// Parses an octal or GNU base-256 numeric field. `None` when it is not a number we accept
/// (negative base-256, garbage characters, overflow).
pub(crate) fn parse_numeric(raw: &[u8]) -> Option<u64> {
    if raw.first().is_some_and(|b| b & 0x80 != 0) {
        if raw[0] == 0xff {
            return None; // negative
        }
        let mut v: u64 = u64::from(raw[0] & 0x7f);
        for &b in &raw[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let mut i = 0;
    while i < raw.len() && (raw[i] == b' ' || raw[i] == 0) {
        i += 1;
    }
    let mut v: u64 = 0;
    while i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
        v = v.checked_mul(8)?.checked_add(u64::from(raw[i] - b'0'))?;
        i += 1;
    }
    // Only terminators may follow the digits.
    if raw[i..].iter().any(|&b| b != b' ' && b != 0) {
        return None;
    }
    Some(v)
}

/// Appends one PAX record `"<len> <key>=<value>\n"` to `out`.
pub(crate) fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = base + 1;
    loop {
        let digits = len.to_string().len();
        if base + digits == len {
            break;
        }
        len = base + digits;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Splits PAX extended-header data into `(key, value)` records. `None` if malformed.
pub(crate) fn parse_pax(data: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // Trailing NUL padding is tolerated only at the very end.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest.iter().position(|&b| b == b' ')?;
        let len_str = std::str::from_utf8(&rest[..space]).ok()?;
        if len_str.is_empty() || !len_str.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: usize = len_str.parse().ok()?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return None;
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=')?;
        if eq == 0 {
            return None;
        }
        records.push((&record[..eq], &record[eq + 1..]));
        rest = &rest[len..];
    }
    Some(records)
}

/// Number of padding bytes after `size` bytes of data.
pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_includes_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", b"a");
        assert_eq!(out, b"9 path=a\n");
        let mut out = Vec::new();
        let v = vec![b'x'; 93]; // 93 + 4 + 3 = 100 -> needs 3 digits
        pax_record(&mut out, b"path", &v);
        assert_eq!(out.len(), 103);
        assert!(out.starts_with(b"103 path="));
        let parsed = parse_pax(&out).unwrap();
        assert_eq!(parsed, vec![(&b"path"[..], &v[..])]);
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"   644 \0"), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"64x\0"), None);
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), Some(1 << 32));
        assert_eq!(parse_numeric(&[0xff; 12]), None);
    }

    #[test]
    fn header_checksum_validates() {
        let h = encode_header(&UstarFields {
            name: b"a",
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 3,
            mtime: 0,
            typeflag: flag::REGULAR,
            linkname: b"",
            devmajor: 0,
            devminor: 0,
        });
        assert_eq!(parse_numeric(&h[field::CHKSUM]), Some(checksum(&h)));
        assert_eq!(parse_numeric(&h[field::SIZE]), Some(3));
    }
}
