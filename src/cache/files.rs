//! The compact on-disk form of a COPY/ADD file list: sorted `path NUL digest[32]` entries,
//! zstd-compressed (paths share long prefixes, so 200k files take a few MB at most).

use std::borrow::Cow;

use crate::oci::Digest;

const ZSTD_LEVEL: i32 = 3;

/// `files` sorted by path (borrowed when it already is).
pub(super) fn sorted(files: &[(String, Digest)]) -> Cow<'_, [(String, Digest)]> {
    if files.is_sorted_by(|a, b| a.0 <= b.0) {
        Cow::Borrowed(files)
    } else {
        let mut owned = files.to_vec();
        owned.sort_by(|a, b| a.0.cmp(&b.0));
        Cow::Owned(owned)
    }
}

/// The uncompressed encoding of a sorted list; its digest tells whether a list changed.
pub(super) fn encode(files: &[(String, Digest)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(files.iter().map(|(p, _)| p.len() + 33).sum());
    for (path, digest) in files {
        out.extend_from_slice(path.as_bytes());
        out.push(0);
        out.extend_from_slice(digest.as_bytes());
    }
    out
}

pub(super) fn compress(encoded: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(encoded, ZSTD_LEVEL)
}

/// The list back from its compressed form; `None` when the bytes are not a list we wrote.
pub(super) fn decompress(compressed: &[u8]) -> Option<Vec<(String, Digest)>> {
    let mut encoded = Vec::new();
    zstd::stream::copy_decode(compressed, &mut encoded).ok()?;
    let mut files = Vec::new();
    let mut rest = &encoded[..];
    while !rest.is_empty() {
        let nul = rest.iter().position(|&b| b == 0)?;
        let path = std::str::from_utf8(&rest[..nul]).ok()?.to_string();
        let raw: [u8; 32] = rest.get(nul + 1..nul + 33)?.try_into().ok()?;
        files.push((path, Digest::from_bytes(raw)));
        rest = &rest[nul + 33..];
    }
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_sorted() {
        let files = vec![("b".to_string(), Digest::of(b"b")), ("a/\u{e9}".to_string(), Digest::of(b"a"))];
        let sorted = sorted(&files);
        assert_eq!(sorted[0].0, "a/\u{e9}");
        let back = decompress(&compress(&encode(&sorted)).unwrap()).unwrap();
        assert_eq!(back, sorted.to_vec());
        assert_eq!(decompress(&compress(&encode(&[])).unwrap()), Some(vec![]));
        assert_eq!(decompress(b"not zstd"), None);
        assert_eq!(decompress(&compress(b"path\0short").unwrap()), None);
    }
}
