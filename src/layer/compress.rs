//! Layer compression: gzip (parallel, `gzp`) and zstd (multi-threaded), both deterministic,
//! and decompression with format detection.
//!
//! Owns the one-pass pipeline `input → DiffID hasher → compressor → blob hasher → output`.
//! Knows nothing about tar entries or the store.
//!
//! Determinism: gzip output depends only on the input, the level ([`GZIP_LEVEL`]) and the block
//! size ([`GZIP_BLOCK`]) — `gzp` cuts blocks at fixed offsets and primes each with the previous
//! 32 KiB, so the thread count does not change a byte. zstd with `nbWorkers >= 1` is
//! deterministic whatever the worker count (zstd ≥ 1.5); we always use at least one worker.

use std::io::{self, Read, Write};

use gzp::ZWriter;
use gzp::deflate::Gzip;
use gzp::par::compress::ParCompressBuilder;

use super::LayerError;
use crate::oci::{DiffId, Digest, HashingReader, HashingWriter};

/// gzip level (the `gzip`/Docker default).
pub const GZIP_LEVEL: u32 = 6;
/// Bytes per independently compressed gzip block.
pub const GZIP_BLOCK: usize = 1 << 20;
/// zstd level.
pub const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window accepted on decompression: 2^27 = 128 MiB.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Memory the xz decoder may use (its dictionary is bounded by this): 128 MiB, like zstd.
pub const XZ_MEMLIMIT: u64 = 128 << 20;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What one [`compress`] pass measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressInfo {
    /// Digest of the uncompressed input.
    pub diff_id: DiffId,
    pub uncompressed_size: u64,
    /// Digest of the compressed output (the blob).
    pub digest: Digest,
    /// Size of the compressed output.
    pub size: u64,
}

fn workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8)
}

/// Copies `input` to `out`, telling read errors from write errors.
fn pump(input: &mut impl Read, out: &mut impl Write) -> Result<(), LayerError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(LayerError::ReadStream { source }),
        };
        out.write_all(&buf[..n]).map_err(|source| LayerError::Write { source })?;
    }
}

/// Compresses `input` into `out` in one streaming pass, measuring both sides.
pub fn compress(input: impl Read, c: Compression, out: impl Write + Send) -> Result<CompressInfo, LayerError> {
    compress_with(input, c, None, out, workers())
}

/// Levels [`compress_level`] accepts: gzip 0–9, zstd 1–22 (none for uncompressed).
pub fn level_range(c: Compression) -> Option<std::ops::RangeInclusive<u32>> {
    match c {
        Compression::None => None,
        Compression::Gzip => Some(0..=9),
        Compression::Zstd => Some(1..=22),
    }
}

/// [`compress`] at `level` ([`GZIP_LEVEL`] / [`ZSTD_LEVEL`] when None); a level outside
/// [`level_range`] is an error.
pub fn compress_level(
    input: impl Read,
    c: Compression,
    level: Option<u32>,
    out: impl Write + Send,
) -> Result<CompressInfo, LayerError> {
    compress_with(input, c, level, out, workers())
}

/// [`compress_level`] with an explicit number of compression threads (the output does not
/// depend on it; tests prove that).
fn compress_with(
    input: impl Read,
    c: Compression,
    level: Option<u32>,
    out: impl Write + Send,
    n_workers: usize,
) -> Result<CompressInfo, LayerError> {
    let mut hashed_out = HashingWriter::new(out);
    let (diff_id, uncompressed_size) = compress_raw(input, c, level, &mut hashed_out, n_workers)?;
    let (_, digest, size) = hashed_out.finish();
    Ok(CompressInfo { diff_id, uncompressed_size, digest, size })
}

/// [`compress_level`] into a writer that hashes what it is given itself (a store ingest, which
/// then verifies the blob): the output is not hashed twice. Returns the input's DiffID and size.
pub fn compress_into(
    input: impl Read,
    c: Compression,
    level: Option<u32>,
    out: &mut (impl Write + Send),
) -> Result<(DiffId, u64), LayerError> {
    compress_raw(input, c, level, out, workers())
}

/// Compresses `input` into `out` in one streaming pass, hashing the input (the DiffID).
fn compress_raw<W: Write + Send>(
    input: impl Read,
    c: Compression,
    level: Option<u32>,
    out: &mut W,
    n_workers: usize,
) -> Result<(DiffId, u64), LayerError> {
    if let Some(level) = level
        && !level_range(c).is_some_and(|r| r.contains(&level))
    {
        return Err(LayerError::CompressionLevel { level });
    }
    let mut reader = HashingReader::new(input);
    match c {
        Compression::None => pump(&mut reader, out)?,
        Compression::Gzip => {
            let gz_err = |op| move |e: gzp::GzpError| LayerError::Compress { op, source: io::Error::other(e) };
            std::thread::scope(|scope| {
                let mut z = ParCompressBuilder::<Gzip>::new()
                    .num_threads(n_workers)
                    .map_err(gz_err("configure gzip"))?
                    .buffer_size(GZIP_BLOCK)
                    .map_err(gz_err("configure gzip"))?
                    .compression_level(flate2::Compression::new(level.unwrap_or(GZIP_LEVEL)))
                    .from_borrowed_writer(&mut *out, scope);
                let pumped = pump(&mut reader, &mut z);
                // Always finish: dropping an unfinished ParCompress panics on error.
                let finished = z.finish().map_err(gz_err("finish gzip stream"));
                pumped?;
                finished.map(|_| ())
            })?;
        }
        Compression::Zstd => {
            let zerr = |op| move |source| LayerError::Compress { op, source };
            let mut enc = zstd::stream::write::Encoder::new(&mut *out, level.map_or(ZSTD_LEVEL, |l| l as i32))
                .map_err(zerr("start zstd"))?;
            enc.multithread(n_workers as u32).map_err(zerr("configure zstd"))?;
            enc.include_checksum(true).map_err(zerr("configure zstd"))?;
            pump(&mut reader, &mut enc)?;
            enc.finish().map_err(zerr("finish zstd stream"))?;
        }
    }
    out.flush().map_err(|source| LayerError::Write { source })?;
    let (_, diff, uncompressed_size) = reader.finish();
    Ok((DiffId(diff), uncompressed_size))
}

/// Wraps `input` in the decompressor its magic bytes call for: gzip, zstd, bzip2, xz (the last
/// two for `ADD` archives), or none for a plain tar. zstd frames asking for a window over
/// 128 MiB, and xz streams needing more than 128 MiB of decoder memory, fail while reading.
pub fn decompress(mut input: impl Read + 'static) -> Result<Box<dyn Read>, LayerError> {
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        match input.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(LayerError::ReadStream { source }),
        }
    }
    let head = magic[..got].to_vec();
    let whole = io::Cursor::new(head.clone()).chain(input);
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(whole)));
    }
    let zstd_frame = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    let zstd_skippable = head.len() >= 4 && head[1..4] == [0x2a, 0x4d, 0x18] && head[0] & 0xf0 == 0x50;
    if zstd_frame || zstd_skippable {
        let zerr = |source| LayerError::Compress { op: "start zstd decoder", source };
        let mut dec = zstd::stream::read::Decoder::new(whole).map_err(zerr)?;
        dec.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(zerr)?;
        return Ok(Box::new(dec));
    }
    if head.starts_with(b"BZh") {
        return Ok(Box::new(bzip2::read::MultiBzDecoder::new(whole)));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        let stream = xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)
            .map_err(|e| LayerError::Compress { op: "start xz decoder", source: io::Error::other(e) })?;
        return Ok(Box::new(xz2::read::XzDecoder::new_stream(whole, stream)));
    }
    Ok(Box::new(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial, a few gzip blocks long.
        (0..3 * GZIP_BLOCK + 123).map(|i| ((i * 7) % 251) as u8 ^ ((i >> 12) as u8)).collect()
    }

    #[test]
    fn round_trips_and_measures() {
        let data = sample();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut blob = Vec::new();
            let info = compress(&data[..], c, &mut blob).unwrap();
            assert_eq!(info.diff_id.digest(), Digest::of(&data), "{c:?}");
            assert_eq!(info.uncompressed_size, data.len() as u64);
            assert_eq!(info.digest, Digest::of(&blob));
            assert_eq!(info.size, blob.len() as u64);
            let mut back = Vec::new();
            decompress(io::Cursor::new(blob)).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{c:?}");
        }
    }

    #[test]
    fn output_is_deterministic() {
        let data = sample();
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut a = Vec::new();
            let mut b = Vec::new();
            compress(&data[..], c, &mut a).unwrap();
            compress(&data[..], c, &mut b).unwrap();
            assert_eq!(a, b, "{c:?}");
        }
    }

    #[test]
    fn output_does_not_depend_on_the_thread_count() {
        // Several zstd jobs (level 3 cuts ~8 MiB jobs) and many gzip blocks.
        let data: Vec<u8> = sample().repeat(7);
        for c in [Compression::Gzip, Compression::Zstd] {
            let blobs: Vec<Vec<u8>> = [1, 2, 4]
                .into_iter()
                .map(|n| {
                    let mut blob = Vec::new();
                    compress_with(&data[..], c, None, &mut blob, n).unwrap();
                    blob
                })
                .collect();
            assert!(blobs[0] == blobs[1] && blobs[1] == blobs[2], "{c:?} output depends on the thread count");
        }
    }

    #[test]
    fn levels_change_the_output_and_are_checked() {
        let data = sample();
        for c in [Compression::Gzip, Compression::Zstd] {
            let (mut fast, mut best, mut default) = (Vec::new(), Vec::new(), Vec::new());
            compress_level(&data[..], c, Some(1), &mut fast).unwrap();
            compress_level(&data[..], c, Some(9), &mut best).unwrap();
            compress_level(&data[..], c, None, &mut default).unwrap();
            assert!(fast != best, "{c:?}: the level is used");
            let mut plain = Vec::new();
            compress(&data[..], c, &mut plain).unwrap();
            assert!(default == plain, "{c:?}: no level is the default level");
            let mut back = Vec::new();
            decompress(io::Cursor::new(best)).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data);
        }
        assert!(compress_level(&data[..], Compression::Gzip, Some(10), Vec::new()).is_err());
        assert!(compress_level(&data[..], Compression::Zstd, Some(23), Vec::new()).is_err());
        assert!(compress_level(&data[..], Compression::None, Some(1), Vec::new()).is_err());
    }

    #[test]
    fn refuses_huge_zstd_window() {
        let data = vec![7u8; 1 << 16];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.window_log(30).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.write_all(&data).unwrap();
        let blob = enc.finish().unwrap();
        let mut out = Vec::new();
        let res = decompress(io::Cursor::new(blob)).unwrap().read_to_end(&mut out);
        assert!(res.is_err(), "a 1 GiB window was accepted");
    }

    #[test]
    fn decompresses_bzip2_and_xz() {
        let data = sample();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&data).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&data).unwrap();
        for blob in [bz.finish().unwrap(), xz.finish().unwrap()] {
            let mut back = Vec::new();
            decompress(io::Cursor::new(blob)).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data);
        }
    }
}
