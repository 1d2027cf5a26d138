//! `build -o/--output`, as buildx spells it: `type=TYPE,KEY=VALUE,...` (CSV: a field with a
//! comma is quoted, `"name=a:1,b:2"`), `-o DIR` (type=local), `-o -` (type=tar to stdout), plus
//! the shortcuts `--push` (type=image,push=true) and `--load` (type=image: into the store, which
//! is slipway's daemon). Every value is checked when the command line is parsed, before anything
//! is read or run; [`write`] then sends the built image to each output in turn.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::image::{Image, LayerOptions, SaveFormat, SaveOptions, SaveTarget};
use crate::layer::{Compression, level_range};
use crate::oci::{LayerCompression, Reference};
use crate::progress::Reporter;
use crate::store::Store;

/// Where an output writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// `dest=-`: standard output.
    Stdout,
    Path(PathBuf),
}

/// The exporter of one `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    /// The image in the store (tagged with `name=` and `-t`), pushed with `push=true`.
    Image,
    /// An OCI layout: an archive (`tar=true`, the default) or a directory.
    Oci,
    /// A docker archive (`docker load`, `skopeo docker-archive:`).
    Docker,
    /// The target stage's final filesystem as one tar.
    Tar,
    /// The target stage's final filesystem written into a directory.
    Local,
}

impl OutputType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OutputType::Image => "image",
            OutputType::Oci => "oci",
            OutputType::Docker => "docker",
            OutputType::Tar => "tar",
            OutputType::Local => "local",
        }
    }

    /// The keys this type takes (buildx's names; the ones slipway implements).
    fn keys(self) -> &'static [&'static str] {
        const IMAGE: &[&str] = &[
            "name",
            "push",
            "compression",
            "compression-level",
            "force-compression",
            "oci-mediatypes",
            "rewrite-timestamp",
        ];
        const OCI: &[&str] = &[
            "dest",
            "tar",
            "name",
            "compression",
            "compression-level",
            "force-compression",
            "oci-mediatypes",
            "rewrite-timestamp",
        ];
        const DOCKER: &[&str] = &["dest", "name", "rewrite-timestamp"];
        const FILES: &[&str] = &["dest"];
        match self {
            OutputType::Image => IMAGE,
            OutputType::Oci => OCI,
            OutputType::Docker => DOCKER,
            OutputType::Tar | OutputType::Local => FILES,
        }
    }
}

/// One `-o`, its values checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: OutputType,
    pub dest: Option<Dest>,
    /// `name=`: names besides `-t` (image: tags in the store and where to push; oci, docker:
    /// names in the archive).
    pub names: Vec<Reference>,
    /// `push=true` (type=image).
    pub push: bool,
    /// `compression=` of the layers written (default gzip).
    pub compression: LayerCompression,
    /// `compression-level=`, `force-compression=`, `oci-mediatypes=`.
    pub layers: LayerOptions,
    /// `tar=false` (type=oci): an OCI layout directory instead of an archive.
    pub tar: bool,
    /// `rewrite-timestamp=true`: the build clamps every layer's mtimes to SOURCE_DATE_EPOCH.
    pub rewrite_timestamp: bool,
}

impl Output {
    fn new(kind: OutputType) -> Output {
        Output {
            kind,
            dest: None,
            names: Vec::new(),
            push: false,
            compression: LayerCompression::Gzip,
            layers: LayerOptions::default(),
            tar: true,
            rewrite_timestamp: false,
        }
    }
}

impl Output {
    /// The names the image goes to: `name=` then every `-t` not among them.
    pub fn destinations(&self, tags: &[Reference]) -> Vec<Reference> {
        let mut names = self.names.clone();
        for tag in tags {
            if !names.contains(tag) {
                names.push(tag.clone());
            }
        }
        names
    }
}

/// Splits one CSV record as Go's `encoding/csv` (buildx) reads it — the Dockerfile frontend's
/// reader of `--mount` values, the one implementation.
fn split_csv(spec: &str) -> Result<Vec<String>, String> {
    crate::dockerfile::csv_fields(spec).map_err(|e| format!("{e} in {spec:?}"))
}

pub(super) fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{key}={value:?} is not true or false")),
    }
}

/// Parses one `-o` value (clap's value parser: an error is a usage error, before anything runs).
pub fn parse_output(spec: &str) -> Result<Output, String> {
    if !spec.contains('=') {
        return Ok(match spec {
            "" => return Err("an empty --output".to_string()),
            "-" => Output { dest: Some(Dest::Stdout), ..Output::new(OutputType::Tar) },
            dir => Output { dest: Some(Dest::Path(PathBuf::from(dir))), ..Output::new(OutputType::Local) },
        });
    }
    let mut pairs = Vec::new();
    for field in split_csv(spec)? {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("{field:?} in --output {spec:?} is not KEY=VALUE"));
        };
        pairs.push((key.trim().to_ascii_lowercase(), value.to_string()));
    }
    let kind = match pairs.iter().find(|(k, _)| k == "type").map(|(_, v)| v.as_str()) {
        Some("image") => OutputType::Image,
        Some("oci") => OutputType::Oci,
        Some("docker") => OutputType::Docker,
        Some("tar") => OutputType::Tar,
        Some("local") => OutputType::Local,
        Some("registry") => return Err("type=registry: use type=image,push=true (or --push)".to_string()),
        Some(other) => return Err(format!("unknown output type {other:?} (image, oci, docker, tar, local)")),
        None => return Err(format!("--output {spec:?} has no type=")),
    };
    let mut output = Output::new(kind);
    for (key, value) in pairs.iter().filter(|(k, _)| k != "type") {
        if !kind.keys().contains(&key.as_str()) {
            return Err(format!(
                "type={} does not take the key {key:?} (it takes {})",
                kind.name(),
                kind.keys().join(", ")
            ));
        }
        set_key(&mut output, key, value)?;
    }
    check(&output)?;
    Ok(output)
}

fn set_key(output: &mut Output, key: &str, value: &str) -> Result<(), String> {
    match key {
        "dest" if value == "-" => output.dest = Some(Dest::Stdout),
        "dest" if value.is_empty() => return Err("dest= is empty".to_string()),
        "dest" => output.dest = Some(Dest::Path(PathBuf::from(value))),
        "name" => {
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let reference = Reference::parse(name).map_err(|e| format!("name={name:?}: {e}"))?;
                output.names.push(reference);
            }
        }
        "push" => output.push = parse_bool(key, value)?,
        "tar" => output.tar = parse_bool(key, value)?,
        "rewrite-timestamp" => output.rewrite_timestamp = parse_bool(key, value)?,
        "compression" => output.compression = parse_compression(value)?,
        "compression-level" => output.layers.level = Some(parse_level(value)?),
        "force-compression" => output.layers.force = parse_bool(key, value)?,
        "oci-mediatypes" => output.layers.docker_media_types = !parse_bool(key, value)?,
        _ => unreachable!("keys are checked against the type's list"),
    }
    Ok(())
}

/// `compression=` of an output or a cache export.
pub(super) fn parse_compression(value: &str) -> Result<LayerCompression, String> {
    match value {
        "gzip" => Ok(LayerCompression::Gzip),
        "zstd" => Ok(LayerCompression::Zstd),
        "uncompressed" => Ok(LayerCompression::None),
        "estargz" => Err("compression=estargz is not supported (gzip, zstd, uncompressed)".to_string()),
        _ => Err(format!("unknown compression {value:?} (gzip, zstd, uncompressed)")),
    }
}

/// `compression-level=`, checked against the compression by [`check_level`].
pub(super) fn parse_level(value: &str) -> Result<u32, String> {
    value.parse::<u32>().map_err(|_| format!("compression-level={value:?} is not a number"))
}

/// A level the compression has.
pub(super) fn check_level(compression: LayerCompression, level: Option<u32>) -> Result<(), String> {
    let algorithm = match compression {
        LayerCompression::None => Compression::None,
        LayerCompression::Gzip => Compression::Gzip,
        LayerCompression::Zstd => Compression::Zstd,
    };
    match level {
        Some(level) if !level_range(algorithm).is_some_and(|r| r.contains(&level)) => {
            Err(format!("compression-level={level} is out of range (gzip 0-9, zstd 1-22, none for uncompressed)"))
        }
        _ => Ok(()),
    }
}

/// What one output needs whatever else the command line says.
fn check(output: &Output) -> Result<(), String> {
    let kind = output.kind.name();
    check_level(output.compression, output.layers.level)?;
    if output.layers.docker_media_types && output.compression == LayerCompression::Zstd {
        return Err("oci-mediatypes=false cannot carry zstd layers (Docker has no zstd media type)".to_string());
    }
    match (output.kind, &output.dest) {
        (OutputType::Image, _) => {}
        (_, None) => return Err(format!("type={kind} needs dest=")),
        (OutputType::Local, Some(Dest::Stdout)) => {
            return Err("type=local writes a directory: use type=tar,dest=- for a stream".to_string());
        }
        (OutputType::Oci, Some(Dest::Stdout)) if !output.tar => {
            return Err("type=oci,tar=false writes a directory: give dest=DIR".to_string());
        }
        _ => {}
    }
    Ok(())
}

/// The outputs of a build: every `-o`, `--push` and `--load`, checked together (one stdout,
/// names to push to, SOURCE_DATE_EPOCH for rewrite-timestamp). No `-o` is the store alone.
pub fn plan(
    outputs: &[Output],
    push: bool,
    load: bool,
    tags: &[Reference],
    quiet: bool,
    epoch: Option<i64>,
) -> Result<Vec<Output>> {
    let mut all = outputs.to_vec();
    // `--push` beside an `-o type=image,push=true` adds no second push.
    if push && !all.iter().any(|o| o.push) {
        all.push(Output { push: true, ..Output::new(OutputType::Image) });
    }
    if load {
        all.push(Output::new(OutputType::Image));
    }
    let to_stdout = all.iter().filter(|o| o.dest == Some(Dest::Stdout)).count();
    if to_stdout > 1 {
        bail!("only one --output can write to stdout (dest=-)");
    }
    if to_stdout == 1 && quiet {
        bail!("-q prints the image id on stdout, where an --output writes: drop one of them");
    }
    for output in &all {
        if output.push && output.names.is_empty() && tags.is_empty() {
            bail!("--push needs at least one -t NAME (or name=) to push to");
        }
        if output.rewrite_timestamp && epoch.is_none() {
            bail!("rewrite-timestamp=true needs SOURCE_DATE_EPOCH (--source-date-epoch or the environment variable)");
        }
    }
    Ok(all)
}

/// What writing the outputs needs from the build command.
pub struct Written<'a> {
    pub store: &'a Store,
    pub image: &'a Image,
    /// `-t` names.
    pub tags: &'a [Reference],
    /// SOURCE_DATE_EPOCH: tar entry times of archives, mtimes of type=tar/local files.
    pub epoch: Option<i64>,
    pub progress: &'a Reporter,
}

/// Writes every output but the store's (the build tagged it) and the pushes (the caller's).
pub fn write(outputs: &[Output], w: &Written<'_>) -> Result<()> {
    for output in outputs {
        let Some(dest) = &output.dest else { continue };
        let what = match dest {
            Dest::Stdout => format!("type={} to stdout", output.kind.name()),
            Dest::Path(p) => format!("type={} to {}", output.kind.name(), p.display()),
        };
        write_one(output, dest, w).with_context(|| format!("writing the output {what}"))?;
        if !w.progress.is_silent()
            && let Dest::Path(p) = dest
        {
            eprintln!("wrote {} ({})", p.display(), output.kind.name());
        }
    }
    Ok(())
}

fn write_one(output: &Output, dest: &Dest, w: &Written<'_>) -> Result<()> {
    let names = output.destinations(w.tags);
    let save = |format| SaveOptions {
        format,
        compression: output.compression,
        layers: output.layers,
        mtime: w.epoch.and_then(|e| u64::try_from(e).ok()).unwrap_or(0),
    };
    let images = [(w.image.clone(), names)];
    match (output.kind, dest) {
        (OutputType::Oci, Dest::Path(dir)) if !output.tar => {
            crate::image::save_images(
                w.store,
                &images,
                &save(SaveFormat::OciDir),
                SaveTarget::Dir(dir.clone()),
                w.progress,
            )?;
        }
        (OutputType::Oci | OutputType::Docker, _) => {
            let format =
                if output.kind == OutputType::Oci { SaveFormat::OciArchive } else { SaveFormat::DockerArchive };
            stream_to(dest, |out| {
                Ok(crate::image::save_images(w.store, &images, &save(format), SaveTarget::Stream(out), w.progress)?)
            })?;
        }
        (OutputType::Tar, _) => {
            stream_to(dest, |out| Ok(crate::image::write_rootfs_tar(w.store, w.image, w.epoch, out, w.progress)?))?;
        }
        (OutputType::Local, Dest::Path(dir)) => {
            crate::image::write_rootfs_dir(w.store, w.image, w.epoch, dir, w.progress)?;
        }
        (OutputType::Local, Dest::Stdout) | (OutputType::Image, _) => unreachable!("checked by parse_output"),
    }
    Ok(())
}

/// Runs `write` on stdout (never a terminal), or on a temporary file beside `dest` renamed into
/// place once complete: a failed output never leaves a partial file under its name.
pub(crate) fn stream_to(dest: &Dest, write: impl FnOnce(Box<dyn Write>) -> Result<()>) -> Result<()> {
    match dest {
        Dest::Stdout => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: give dest=FILE or use a pipe");
            }
            write(Box::new(std::io::BufWriter::new(std::io::stdout().lock())))
        }
        Dest::Path(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let tmp =
                tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
            let file = tmp.reopen().with_context(|| format!("cannot write {}", path.display()))?;
            write(Box::new(std::io::BufWriter::new(file)))?;
            tmp.as_file().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
            tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> Output {
        parse_output(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn err(spec: &str) -> String {
        parse_output(spec).expect_err(spec)
    }

    #[test]
    fn short_forms_are_buildxs() {
        assert_eq!(ok("out"), Output { dest: Some(Dest::Path("out".into())), ..Output::new(OutputType::Local) });
        assert_eq!(ok("-"), Output { dest: Some(Dest::Stdout), ..Output::new(OutputType::Tar) });
    }

    #[test]
    fn csv_fields_and_quoted_name_lists() {
        let o = ok("type=image,\"name=a.example/x:1,a.example/y:2\",push=true,compression=zstd,rewrite-timestamp=true");
        assert_eq!(o.kind, OutputType::Image);
        let names: Vec<String> = o.names.iter().map(Reference::to_string).collect();
        assert_eq!(names, ["a.example/x:1", "a.example/y:2"]);
        assert!(o.push && o.rewrite_timestamp);
        assert_eq!(o.compression, LayerCompression::Zstd);
        assert_eq!(split_csv("\"a=x\"\"y\",b").unwrap(), ["a=x\"y", "b"]);
        assert!(split_csv("a=\"x\"").is_err(), "a quote inside an unquoted field");
        assert!(split_csv("a=\"x").is_err());
        let o = ok("type=oci,dest=dir,tar=false");
        assert!(!o.tar);
        assert_eq!(ok("type=docker,dest=-").dest, Some(Dest::Stdout));
    }

    #[test]
    fn unknown_types_keys_and_values_are_named() {
        assert!(err("type=nope,dest=x").contains("unknown output type \"nope\""));
        assert!(err("dest=x").contains("has no type="));
        assert!(err("type=local,dest=x,push=true").contains("does not take the key \"push\""));
        assert!(err("type=image,push=maybe").contains("push=\"maybe\""));
        assert!(err("type=image,compression=lz4").contains("unknown compression \"lz4\""));
        assert!(err("type=oci,compression-level=x,dest=f").contains("not a number"));
        assert!(err("type=oci,compression-level=10,dest=f").contains("out of range"));
        assert!(err("type=image,compression-level=1,compression=uncompressed").contains("out of range"));
        assert!(err("type=image,compression=zstd,oci-mediatypes=false").contains("zstd"));
        let o = ok("type=image,compression-level=19,compression=zstd,force-compression=true,oci-mediatypes=true");
        assert_eq!(
            o.layers,
            LayerOptions { level: Some(19), force: true, docker_media_types: false, absent_ok: false }
        );
        assert!(ok("type=image,oci-mediatypes=false").layers.docker_media_types);
        assert!(err("type=tar").contains("needs dest="));
        assert!(err("type=local,dest=-").contains("type=tar,dest=-"));
        assert!(err("type=image,name=Not/A:Valid:Name").contains("name="));
        assert!(err("type=registry").contains("push=true"));
    }

    #[test]
    fn the_plan_checks_outputs_together() {
        let tags = [Reference::parse("x:1").unwrap()];
        let stdout = ok("-");
        assert!(plan(&[stdout.clone(), ok("type=oci,dest=-")], false, false, &tags, false, None).is_err());
        assert!(plan(std::slice::from_ref(&stdout), false, false, &tags, true, None).is_err());
        assert!(plan(&[], true, false, &[], false, None).is_err(), "--push without a name");
        let pushed = ok("type=image,push=true,compression=zstd");
        assert_eq!(plan(std::slice::from_ref(&pushed), true, false, &tags, false, None).unwrap(), [pushed]);
        let all = plan(&[], true, true, &tags, false, None).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].push && !all[1].push);
        let rewrite = ok("type=image,rewrite-timestamp=true");
        assert!(plan(std::slice::from_ref(&rewrite), false, false, &tags, false, None).is_err());
        assert!(plan(&[rewrite], false, false, &tags, false, Some(1)).is_ok());
    }
}
