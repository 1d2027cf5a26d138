//! `save` and `load`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::open_store;
use crate::cli::args::{CompressionArg, GlobalArgs, LoadArgs, SaveArgs, SaveFormatArg};
use crate::image::{self, LoadInput, SaveFormat, SaveOptions, SaveTarget};
use crate::oci::LayerCompression;
use crate::progress::Reporter;

pub fn save(global: &GlobalArgs, args: &SaveArgs, progress: &Reporter) -> Result<u8> {
    let store = open_store(global)?;
    let format = match args.format {
        SaveFormatArg::OciDir => SaveFormat::OciDir,
        SaveFormatArg::OciArchive => SaveFormat::OciArchive,
        SaveFormatArg::DockerArchive => SaveFormat::DockerArchive,
    };
    let compression = match args.compression {
        CompressionArg::Gzip => LayerCompression::Gzip,
        CompressionArg::Zstd => LayerCompression::Zstd,
        CompressionArg::Uncompressed => LayerCompression::None,
    };
    let mtime = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let opts = SaveOptions { format, compression, layers: Default::default(), mtime };
    match (format, args.output.as_str()) {
        (SaveFormat::OciDir, "-") => bail!("--format oci-dir writes a directory: give -o DIR"),
        (SaveFormat::OciDir, dir) => {
            image::save(&store, &args.images, &opts, SaveTarget::Dir(PathBuf::from(dir)), progress)
                .with_context(|| format!("saving to {dir}"))?;
        }
        (_, "-") => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or a pipe");
            }
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            image::save(&store, &args.images, &opts, SaveTarget::Stream(Box::new(out)), progress)?;
        }
        (_, file) => save_file(&store, &args.images, &opts, Path::new(file), progress)?,
    }
    Ok(0)
}

/// Writes an archive to a temporary file beside `path` and renames it into place, so a failed
/// save never leaves a partial archive under the requested name.
fn save_file(
    store: &crate::store::Store,
    images: &[String],
    opts: &SaveOptions,
    path: &Path,
    progress: &Reporter,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    let writer = std::io::BufWriter::new(tmp.reopen().with_context(|| format!("cannot write {}", path.display()))?);
    image::save(store, images, opts, SaveTarget::Stream(Box::new(writer)), progress)
        .with_context(|| format!("saving to {}", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn load(global: &GlobalArgs, args: &LoadArgs, progress: &Reporter) -> Result<u8> {
    let store = open_store(global)?;
    let input = if args.input == "-" {
        if std::io::stdin().is_terminal() {
            bail!("refusing to read an archive from a terminal: use -i FILE or a pipe");
        }
        LoadInput::Stream(Box::new(std::io::BufReader::new(std::io::stdin().lock())))
    } else {
        let path = Path::new(&args.input);
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            LoadInput::Dir(path.to_path_buf())
        } else {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            LoadInput::Stream(Box::new(std::io::BufReader::new(file)))
        }
    };
    let report = image::load(&store, input, progress).with_context(|| format!("loading {}", args.input))?;
    for loaded in &report.images {
        if args.quiet {
            println!("{}", loaded.id);
        } else if loaded.names.is_empty() {
            println!("Loaded image ID: {}", loaded.id);
        } else {
            for name in &loaded.names {
                println!("Loaded image: {name}");
            }
        }
    }
    Ok(0)
}
