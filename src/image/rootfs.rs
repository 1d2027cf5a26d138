//! An image's final filesystem out of the store: `build -o type=local` (a directory) and
//! `type=tar` (one tar stream of that tree).
//!
//! The layers are applied in order with the safe [`layer::apply`] into a scratch directory of
//! the store (whiteouts resolved there, never in the caller's directory), then that tree is
//! written by the deterministic [`layer::write_dir`] — as the tar itself, or streamed through a
//! pipe into `apply` again on the destination, which so gets the same confinement (nothing is
//! written outside it, no link in it is followed) and keeps what it held besides.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::{Image, ImageError};
use crate::layer::{self, ApplyOptions, WriteOptions};
use crate::progress::Reporter;
use crate::store::{ScratchDir, Store};

/// Applies every layer of `image` into a new scratch directory of the store.
fn flatten(store: &Store, image: &Image, progress: &Reporter) -> Result<ScratchDir, ImageError> {
    let scratch = store.scratch_dir("rootfs")?;
    let options = ApplyOptions::default();
    for (index, layer) in image.manifest.layers.iter().enumerate() {
        let task = progress.start(|| format!("apply layer {} of {}", index + 1, image.manifest.layers.len()));
        let applied = store
            .open_blob(&layer.digest)
            .map_err(ImageError::from)
            .and_then(|blob| Ok(layer::decompress(blob)?))
            .and_then(|plain| Ok(layer::apply(plain, scratch.path(), &options)?));
        task.finish(applied)?;
    }
    Ok(scratch)
}

/// Writes the final filesystem of `image` as one tar stream to `out` (entries in byte order,
/// mtimes later than `epoch` clamped to it when given).
pub fn write_rootfs_tar(
    store: &Store,
    image: &Image,
    epoch: Option<i64>,
    out: impl Write,
    progress: &Reporter,
) -> Result<(), ImageError> {
    let scratch = flatten(store, image, progress)?;
    layer::write_dir(scratch.path(), &WriteOptions { source_date_epoch: epoch }, out)?;
    Ok(())
}

/// Writes the final filesystem of `image` into the directory `dest` (created when missing;
/// what it holds besides stays), ownership kept when the caller is root.
pub fn write_rootfs_dir(
    store: &Store,
    image: &Image,
    epoch: Option<i64>,
    dest: &Path,
    progress: &Reporter,
) -> Result<(), ImageError> {
    let scratch = flatten(store, image, progress)?;
    std::fs::create_dir_all(dest).map_err(ImageError::io(dest))?;
    let (read, write) = rustix::pipe::pipe().map_err(|e| ImageError::io(dest)(e.into()))?;
    let (read, write) = (File::from(read), File::from(write));
    let task = progress.start(|| format!("write {}", dest.display()));
    let result = std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let opts = WriteOptions { source_date_epoch: epoch };
            layer::write_dir(scratch.path(), &opts, std::io::BufWriter::new(write)).map(|_| ())
        });
        let applied = layer::apply(std::io::BufReader::new(read), dest, &ApplyOptions::default());
        let written = writer.join().expect("the tar writer does not panic");
        // A failed apply closes the pipe, so the writer's broken pipe is only its echo.
        applied?;
        written?;
        Ok(())
    });
    task.finish(result)
}
