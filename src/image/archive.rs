//! Where `save` writes an image layout: a directory, or a tar stream. Both receive the same
//! calls, so the three formats are written by one piece of code.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::ImageError;
use crate::oci::Digest;

/// A destination for an image layout.
pub(crate) trait LayoutSink {
    /// Adds a small file (`index.json`, `oci-layout`, `manifest.json`).
    fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ImageError>;
    /// Adds `blobs/sha256/<hex>` from a reader of exactly `size` bytes; repeated digests are skipped.
    fn add_blob(&mut self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), ImageError>;
    /// Whether a blob is already there (a caller can then skip opening it).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Flushes and closes.
    fn finish(self: Box<Self>) -> Result<(), ImageError>;
}

pub(crate) fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Writes into a directory (an `oci-dir` layout).
pub(crate) struct DirSink {
    root: PathBuf,
    written: HashSet<Digest>,
}

impl DirSink {
    pub(crate) fn new(root: &Path) -> Result<DirSink, ImageError> {
        fs::create_dir_all(root.join("blobs/sha256")).map_err(ImageError::io(root))?;
        Ok(DirSink { root: root.to_path_buf(), written: HashSet::new() })
    }

    fn write_atomic(&self, rel: &str, reader: &mut dyn Read) -> Result<u64, ImageError> {
        let dest = self.root.join(rel);
        let dir = dest.parent().expect("layout paths have a parent");
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(ImageError::io(dir))?;
        let n = io::copy(reader, &mut tmp).map_err(ImageError::io(&dest))?;
        tmp.as_file().sync_all().map_err(ImageError::io(&dest))?;
        tmp.persist(&dest).map_err(|e| ImageError::Io { path: dest.clone(), source: e.error })?;
        Ok(n)
    }
}

impl LayoutSink for DirSink {
    fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ImageError> {
        self.write_atomic(path, &mut &bytes[..]).map(|_| ())
    }

    fn add_blob(&mut self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), ImageError> {
        if !self.written.insert(*digest) {
            return Ok(());
        }
        let rel = blob_path(digest);
        if fs::metadata(self.root.join(&rel)).is_ok_and(|m| m.is_file() && m.len() == size) {
            return Ok(());
        }
        let n = self.write_atomic(&rel, reader)?;
        if n != size {
            return Err(ImageError::Archive { entry: rel, reason: format!("wrote {n} bytes, expected {size}") });
        }
        Ok(())
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.written.contains(digest)
    }

    fn finish(self: Box<Self>) -> Result<(), ImageError> {
        let dir = fs::File::open(&self.root).map_err(ImageError::io(&self.root))?;
        dir.sync_all().map_err(ImageError::io(&self.root))
    }
}

/// Writes a tar stream (`oci-archive`, `docker-archive`) with deterministic headers.
pub(crate) struct TarSink<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
    written: HashSet<Digest>,
    dirs_done: bool,
}

impl<W: Write> TarSink<W> {
    pub(crate) fn new(out: W, mtime: u64) -> TarSink<W> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        TarSink { builder, mtime, written: HashSet::new(), dirs_done: false }
    }

    fn header(&self, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h
    }

    fn dirs(&mut self) -> Result<(), ImageError> {
        if self.dirs_done {
            return Ok(());
        }
        self.dirs_done = true;
        for d in ["blobs/", "blobs/sha256/"] {
            let mut h = self.header(tar::EntryType::Directory, 0, 0o755);
            self.builder.append_data(&mut h, d, io::empty()).map_err(ImageError::io(d))?;
        }
        Ok(())
    }
}

impl<W: Write> LayoutSink for TarSink<W> {
    fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let mut h = self.header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
        self.builder.append_data(&mut h, path, bytes).map_err(ImageError::io(path))
    }

    fn add_blob(&mut self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), ImageError> {
        if !self.written.insert(*digest) {
            return Ok(());
        }
        self.dirs()?;
        let rel = blob_path(digest);
        let mut h = self.header(tar::EntryType::Regular, size, 0o644);
        // A short read must fail inside `append_data` rather than leave an entry whose data
        // does not match its header.
        let exact = ExactReader { inner: reader.take(size), left: size };
        self.builder.append_data(&mut h, &rel, exact).map_err(ImageError::io(&rel))
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.written.contains(digest)
    }

    fn finish(self: Box<Self>) -> Result<(), ImageError> {
        let mut out = self.builder.into_inner().map_err(ImageError::io("archive"))?;
        out.flush().map_err(ImageError::io("archive"))
    }
}

/// Reads exactly `left` bytes, failing with `UnexpectedEof` if the source ends early.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("blob ended {} bytes early", self.left)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
