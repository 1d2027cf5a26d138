//! `slipway build --platform P1,P2,…`: the platform list, what a multi-platform build refuses
//! before anything runs, and its results delivered — the index tagged in the store (by the
//! engine), pushed (every platform's blobs and manifest, then the index), written as an OCI
//! layout or as one directory per platform — and summed up.

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::build::Pusher;
use crate::cli::args::BuildArgs;
use crate::cli::outputs::{Dest, Output, OutputType};
use crate::cli::{EXIT_FAILURE, units};
use crate::engine::{AnnotationTarget, BuildError, IndexOutput};
use crate::image::{SaveFormat, SaveOptions, SaveTarget};
use crate::oci::{Platform, Reference};
use crate::progress::Reporter;
use crate::store::Store;

/// `--platform`'s value: platforms separated by commas (buildx), each once, in the order given;
/// none means this machine's.
pub(super) fn parse(value: Option<&str>) -> Result<Vec<Platform>> {
    let Some(value) = value else { return Ok(vec![Platform::host()]) };
    let mut platforms: Vec<Platform> = Vec::new();
    for word in value.split(',').map(str::trim) {
        if word.is_empty() {
            bail!("--platform {value:?} has an empty platform");
        }
        let platform: Platform = word.parse().with_context(|| format!("--platform {word:?}"))?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}

/// What a build of several platforms cannot do yet, refused before anything is read or run.
pub(super) fn refuse(args: &BuildArgs, outputs: &[Output]) -> Result<()> {
    let not_yet = |what: &str| bail!("{what} is not supported with several platforms yet");
    if !args.cache_from.is_empty() {
        return not_yet("--cache-from");
    }
    if !args.cache_to.is_empty() {
        return not_yet("--cache-to");
    }
    for output in outputs {
        match output.kind {
            OutputType::Docker => {
                bail!("type=docker holds one platform (as buildx says): use type=oci, or one --platform")
            }
            OutputType::Tar => return not_yet("type=tar (type=local writes a directory per platform)"),
            OutputType::Image | OutputType::Oci | OutputType::Local => {}
        }
    }
    Ok(())
}

/// A platform as a directory name: `linux_arm64`, `linux_arm_v7` (buildx's local exporter).
pub(crate) fn dir_name(platform: &Platform) -> String {
    platform.to_string().replace('/', "_")
}

/// What delivering a multi-platform build needs from the build command.
pub(super) struct Delivery<'a> {
    pub store: &'a Store,
    /// `--annotation`s (the `index-descriptor` ones go into an OCI layout's `index.json`).
    pub annotations: &'a [crate::engine::Annotation],
    pub tags: &'a [Reference],
    pub epoch: Option<i64>,
    pub progress: &'a Reporter,
    pub pusher: &'a Pusher<'a>,
}

/// How a multi-platform build ends: interrupted (128+N), its outputs delivered and summed up (0),
/// or its error rendered by `render` (1).
pub(super) fn conclude(
    result: Result<IndexOutput, BuildError>,
    interrupted: Option<u8>,
    outputs: &[Output],
    d: &Delivery<'_>,
    args: &BuildArgs,
    render: &dyn Fn(&BuildError) -> String,
) -> Result<u8> {
    match (result, interrupted) {
        (_, Some(code)) => {
            eprintln!("error: build interrupted");
            Ok(code)
        }
        (Ok(built), None) => {
            deliver(outputs, d, &built)?;
            finish(args, d.tags, &built, d.progress)?;
            Ok(0)
        }
        (Err(e), None) => {
            eprint!("{}", render(&e));
            Ok(EXIT_FAILURE)
        }
    }
}

/// Writes the outputs (the store's tags are the engine's), then the pushes.
fn deliver(outputs: &[Output], d: &Delivery<'_>, built: &IndexOutput) -> Result<()> {
    for output in outputs {
        let Some(dest) = &output.dest else { continue };
        let what = match dest {
            Dest::Stdout => format!("type={} to stdout", output.kind.name()),
            Dest::Path(p) => format!("type={} to {}", output.kind.name(), p.display()),
        };
        write_one(output, dest, d, built).with_context(|| format!("writing the output {what}"))?;
        if !d.progress.is_silent()
            && let Dest::Path(p) = dest
        {
            eprintln!("wrote {} ({})", p.display(), output.kind.name());
        }
    }
    for output in outputs.iter().filter(|o| o.push) {
        d.pusher.push_index(output, d.tags, built)?;
    }
    Ok(())
}

fn write_one(output: &Output, dest: &Dest, d: &Delivery<'_>, built: &IndexOutput) -> Result<()> {
    let index = crate::image::IndexToSave {
        members: built
            .document
            .manifests
            .iter()
            .cloned()
            .zip(built.platforms.iter().map(|(_, o)| o.image.clone()))
            .collect(),
        annotations: built.document.annotations.clone(),
        entry_annotations: crate::engine::annotation_map(d.annotations, AnnotationTarget::IndexDescriptor, None),
    };
    let save = |format| SaveOptions {
        format,
        compression: output.compression,
        layers: output.layers,
        mtime: d.epoch.and_then(|e| u64::try_from(e).ok()).unwrap_or(0),
    };
    let names = output.destinations(d.tags);
    match (output.kind, dest) {
        (OutputType::Oci, Dest::Path(dir)) if !output.tar => {
            let target = SaveTarget::Dir(dir.clone());
            crate::image::save_index(d.store, &index, &names, &save(SaveFormat::OciDir), target, d.progress)?;
        }
        (OutputType::Oci, _) => {
            super::super::outputs::stream_to(dest, |out| {
                let options = save(SaveFormat::OciArchive);
                crate::image::save_index(d.store, &index, &names, &options, SaveTarget::Stream(out), d.progress)?;
                Ok(())
            })?;
        }
        (OutputType::Local, Dest::Path(dir)) => {
            for (platform, out) in &built.platforms {
                let sub = dir.join(dir_name(platform));
                crate::image::write_rootfs_dir(d.store, &out.image, d.epoch, &sub, d.progress)?;
            }
        }
        (OutputType::Docker | OutputType::Tar, _) => unreachable!("refused before the build"),
        (OutputType::Local, Dest::Stdout) | (OutputType::Image, _) => unreachable!("checked by parse_output"),
    }
    Ok(())
}

/// `--iidfile`, `--metadata-file` (the index's digest, as buildx writes them for several
/// platforms), then the summary or `-q`'s digest.
fn finish(args: &BuildArgs, tags: &[Reference], built: &IndexOutput, progress: &Reporter) -> Result<()> {
    let digest = built.index.digest.to_string();
    if let Some(path) = &args.iidfile {
        super::write_output_file(path, digest.as_bytes())?;
    }
    if let Some(path) = &args.metadata_file {
        let mut meta = json!({
            "containerimage.digest": digest,
            "containerimage.descriptor": {
                "mediaType": built.index.media_type.to_string(),
                "digest": digest,
                "size": built.index.size,
            },
        });
        if !tags.is_empty() {
            let names: Vec<String> = tags.iter().map(Reference::to_string).collect();
            meta["image.name"] = json!(names.join(","));
        }
        let mut text = serde_json::to_string_pretty(&meta)?;
        text.push('\n');
        super::write_output_file(path, text.as_bytes())?;
    }
    if args.quiet {
        println!("{digest}");
        return Ok(());
    }
    if progress.is_silent() {
        return Ok(());
    }
    let (mut run, mut cached, mut bytes) = (0, 0, 0);
    for (_, out) in &built.platforms {
        run += out.steps_run;
        cached += out.steps_cached;
        bytes += out.bytes_written;
    }
    let duration = built.platforms.iter().map(|(_, o)| o.duration).max().unwrap_or_default();
    let platforms: Vec<String> = built.platforms.iter().map(|(p, _)| p.to_string()).collect();
    eprintln!(
        "built {digest} for {} in {:.1}s: {} layer steps ({run} run, {cached} cached), {} of new layers",
        platforms.join(", "),
        duration.as_secs_f64(),
        run + cached,
        units::size(bytes)
    );
    for (platform, out) in &built.platforms {
        eprintln!("  {platform}: {}", out.image.id());
    }
    for tag in tags {
        eprintln!("named {}", tag.familiar());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_lists_are_buildxs() {
        let names = |v: &str| parse(Some(v)).unwrap().iter().map(Platform::to_string).collect::<Vec<_>>();
        assert_eq!(names("linux/amd64,linux/arm64"), ["linux/amd64", "linux/arm64"]);
        assert_eq!(names("linux/arm64, linux/arm64,linux/amd64"), ["linux/arm64", "linux/amd64"], "each once");
        assert_eq!(parse(None).unwrap(), [Platform::host()]);
        assert!(parse(Some("linux/amd64,")).is_err());
        assert!(parse(Some("linux/amd64,not a platform")).is_err());
        assert_eq!(dir_name(&"linux/arm/v7".parse().unwrap()), "linux_arm_v7");
    }
}
