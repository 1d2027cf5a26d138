//! Layer tar streams: the deterministic writer, compression and the safe `apply`.
//!
//! Knows the tar format and OCI whiteouts; knows nothing of where blobs are stored (the store
//! hands us readers and writers, we hand back digests and sizes).
//!
//! * [`write_dir`] / [`TarWriter`] produce a reproducible tar (sorted, PAX for what ustar cannot
//!   hold, numeric ids, hardlinks as links, xattrs as `SCHILY.xattr.*`, mtimes clamped to
//!   `SOURCE_DATE_EPOCH` when asked).
//! * [`compress`] / [`decompress`] stream gzip (parallel, deterministic) and zstd (multi-threaded,
//!   deterministic) while computing the DiffID and the blob digest in one pass; `decompress`
//!   also reads bzip2 and xz (for `ADD` archives), with zstd window and xz memory capped.
//! * [`clamp_mtimes`] writes a layer again with every mtime later than an epoch set to it
//!   (`rewrite-timestamp`).
//! * [`apply`] unpacks an uncompressed layer onto a root directory with fd-relative syscalls
//!   only (`openat2(RESOLVE_IN_ROOT)` for parents, `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW` for
//!   leaves), handling OCI whiteouts and opaque directories.
//!
//! The tar parser used by `apply` and [`list`] is our own ([`reader`]): it is strict where
//! parsers disagree (catalogue C7): two extended headers of one kind before an entry, a GNU long
//! name together with a PAX `path`, a PAX `size` contradicting a non-zero ustar size, a global
//! header that changes `path`/`size`, a bad checksum, data after the end-of-archive marker, or a
//! non-regular entry carrying data are all rejected instead of guessed at.
//!
//! # Decisions
//!
//! * **Duplicate paths (catalogue C6)**: the image spec says a layer MUST NOT contain them; we
//!   accept them the way Docker and containerd do — *last entry wins* — because every entry is
//!   created by unlink-then-create with `O_CREAT|O_EXCL|O_NOFOLLOW` (or `mkdirat`, `symlinkat`,
//!   ...), so an earlier symlink at the same path is replaced, never written through. Directory
//!   over directory keeps the directory and updates its metadata.
//! * **`..` and absolute paths** in entry names and hardlink targets are cleaned lexically and
//!   clamped at the root (`/dummy/../etc` is `etc`), and symlinks met while resolving parents are
//!   resolved *inside* the root (`RESOLVE_IN_ROOT`), as containerd does: a planted
//!   `localetc -> /etc` makes `localetc/x` land in `<root>/etc/x`. Missing parent directories
//!   are created (0755, owned by the applier) like containerd's `mkparent`.
//! * **Sparse files** are written as plain data by the writer; `apply` turns runs of zero bytes
//!   back into holes. GNU sparse entries (`S`, `GNU.sparse.*`) are rejected.
//! * Xattrs `trusted.overlay.*` and `user.overlay.*` (overlayfs's own) are never written nor
//!   applied; `security.selinux` is never applied (it belongs to the host's policy).
//! * **`s -> ..` then `s/exploit/foo/bar` (catalogue C5)**: the catalogue expects an error; we
//!   land it at `<root>/exploit/foo/bar` instead, consistently with C1/C2 (`..` in a symlink is
//!   clamped at the root by `RESOLVE_IN_ROOT`) and with creating missing parents. Nothing is
//!   ever created outside the root. A parent that is a symlink to a *missing* directory is an
//!   error (we never create a directory at a symlink's target).
//! * Hardlink entries take no metadata of their own (mode, owner and times belong to the
//!   inode they link to), so a hardlink to a planted symlink cannot chmod anything (C4).
//! * Whiteouts and opaque markers only remove content this layer did not create (every created
//!   path and its ancestors are remembered for the duration of one `apply`), so an opaque marker
//!   at the end of the tar behaves as if it came first (C9). A `.wh.` prefix on a *parent*
//!   component, `.wh.`, `.wh..` and `.wh...` are invalid (C8); other `.wh..wh.*` names (aufs
//!   bookkeeping) are ignored.

mod apply;
mod compress;
pub mod reader;
mod rewrite;
mod tarfmt;
mod target;
mod writer;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use apply::{ApplyOptions, ApplyReport, apply, list};
pub use compress::{CompressInfo, Compression, compress, compress_into, compress_level, decompress, level_range};
pub use reader::{Entry, EntryInfo, EntryKind};
pub use rewrite::{ClampReport, clamp_mtimes};
pub use writer::{TarWriter, WriteOptions, write_dir};

/// A limit of [`ApplyOptions`] that a layer went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `ApplyOptions::max_bytes`: bytes of the uncompressed tar stream.
    Bytes,
    /// `ApplyOptions::max_entries`: entries in the tar stream (extension headers included).
    Entries,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Bytes => f.write_str("max_bytes"),
            Limit::Entries => f.write_str("max_entries"),
        }
    }
}

/// Everything that can go wrong writing, compressing or applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading the source tree (writer side) failed.
    #[error("failed to read {path}")]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A source file changed size while it was being archived.
    #[error("{path} changed while it was being archived")]
    SourceChanged { path: PathBuf },
    /// A name given to the writer cannot be stored.
    #[error("invalid name {name:?} for a layer entry: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// Writing the output stream failed.
    #[error("failed to write the layer stream")]
    Write {
        #[source]
        source: io::Error,
    },
    /// Reading the input stream failed.
    #[error("failed to read the layer stream")]
    ReadStream {
        #[source]
        source: io::Error,
    },
    /// The stream is not a tar archive we accept.
    #[error("malformed tar archive at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: &'static str },
    /// An entry is well formed but not acceptable in a layer.
    #[error("invalid layer entry {entry}: {reason}")]
    InvalidEntry { entry: String, reason: &'static str },
    /// A whiteout name that does not name anything (`.wh.`, `.wh..`, `.wh...`, ...).
    #[error("invalid whiteout {entry}")]
    InvalidWhiteout { entry: String },
    /// An entry type we do not unpack (GNU sparse, volume labels, ...).
    #[error("unsupported entry type {kind:?} for {entry}")]
    UnsupportedEntry { entry: String, kind: char },
    /// The layer went over a limit of [`ApplyOptions`].
    #[error("layer exceeds {limit} ({max})")]
    LimitExceeded { limit: Limit, max: u64 },
    /// The target root cannot be opened.
    #[error("failed to open the target root {path}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation for an entry failed.
    #[error("failed to {op} for layer entry {entry}")]
    Apply {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// An entry's owner is an id this process' user namespace does not map (a rootless
    /// store without a subordinate range, or a range too small): refused, never written
    /// with another owner.
    #[error(
        "layer entry {entry} is owned by {uid}:{gid}, which this user namespace does not map (a rootless slipway without a subordinate id range maps only root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER)"
    )]
    UnmappedOwner { entry: String, uid: u32, gid: u32 },
    /// A compression level the algorithm does not have (see `level_range`).
    #[error("compression level {level} is out of range (gzip 0-9, zstd 1-22, none for uncompressed)")]
    CompressionLevel { level: u32 },
    /// The compressor failed.
    #[error("failed to {op}")]
    Compress {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}
