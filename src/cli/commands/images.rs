//! `import`, `images`, `tag`, `rmi`, `inspect`: naming and reading images in the store.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::open_store;
use crate::cli::args::{Format, GlobalArgs, ImagesArgs, ImportArgs, InspectArgs, RmiArgs, TagArgs};
use crate::cli::table::{ago, print_table};
use crate::image::{self, ImportOptions, ImportSource};
use crate::oci::{Platform, Reference};
use crate::progress::Reporter;

pub fn import(global: &GlobalArgs, args: &ImportArgs, progress: &Reporter) -> Result<u8> {
    let store = open_store(global)?;
    let name = image::parse_name(&args.name)?;
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let opts = ImportOptions { source_date_epoch: args.source_date_epoch, platform };
    let source = if args.source == "-" {
        if std::io::stdin().is_terminal() {
            bail!("refusing to read a root filesystem archive from a terminal: pipe one in or give a path");
        }
        ImportSource::Tar(Box::new(std::io::stdin().lock()), "-".to_string())
    } else {
        let path = Path::new(&args.source);
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            ImportSource::Dir(path)
        } else {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let label = path.file_name().map_or_else(|| args.source.clone(), |n| n.to_string_lossy().into_owned());
            ImportSource::Tar(Box::new(file), label)
        }
    };
    let image = image::import(&store, source, &name, &opts, progress)
        .with_context(|| format!("importing {} as {}", args.source, name.familiar()))?;
    println!("{}", image.id());
    Ok(0)
}

pub fn images(global: &GlobalArgs, args: &ImagesArgs) -> Result<u8> {
    let store = open_store(global)?;
    let platform = args.platform.as_deref().map(str::parse::<Platform>).transpose()?;
    let rows = image::list(&store, platform.as_ref())?;
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for row in &rows {
            if seen.insert(row.id) {
                println!("{}", row.id.short());
            }
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => {
            let now = image::timestamp(None);
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|r| {
                    [
                        r.repository.clone(),
                        r.tag.clone(),
                        r.id.short(),
                        r.created.map_or_else(|| "N/A".to_string(), |c| ago(now - c)),
                        crate::cli::units::size(r.size),
                        r.platforms.join(","),
                    ]
                })
                .collect();
            print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "PLATFORMS"], &table);
        }
    }
    Ok(0)
}

pub fn tag(global: &GlobalArgs, args: &TagArgs) -> Result<u8> {
    let store = open_store(global)?;
    let target = image::parse_name(&args.target)?;
    // A name of a multi-platform image: the new name gets the whole index.
    if let Ok(source) = Reference::parse(&args.source)
        && let Some(descriptor) = store.get_tag(&source)?
        && descriptor.media_type.is_index()
    {
        store.set_tag(&target, descriptor)?;
        return Ok(0);
    }
    let image = image::resolve(&store, &args.source)?;
    store.set_tag(&target, image.manifest_descriptor.clone())?;
    Ok(0)
}

pub fn rmi(global: &GlobalArgs, args: &RmiArgs) -> Result<u8> {
    let store = open_store(global)?;
    for spec in &args.images {
        if let Ok(reference) = Reference::parse(spec) {
            if store.remove_tag(&reference)?.is_some() {
                println!("Untagged: {}", reference.familiar());
                continue;
            }
        }
        let image = image::resolve(&store, spec)?;
        for name in &image.names {
            store.remove_tag(name)?;
            println!("Untagged: {}", name.familiar());
        }
        store.remove_roots(&format!("untagged:{}", image.manifest_descriptor.digest.hex()))?;
        println!("Deleted: {}", image.id());
    }
    Ok(0)
}

/// Each image's manifest and config as JSON: a plain name is a local image, with its names and
/// descriptor; a source with a transport (`oci:`, the archives, `docker://`) is read through
/// `inspect`, with its source kind.
pub fn inspect(global: &GlobalArgs, args: &InspectArgs, progress: &Reporter) -> Result<u8> {
    let store = open_store(global)?;
    let mut out = Vec::new();
    for spec in &args.images {
        // A plain name is a local image (as `docker inspect`); `docker://REF` reads a registry.
        let platform = args.platform.as_deref().map(str::parse::<Platform>).transpose()?;
        let local = match crate::inspect::ImageArg::parse(spec)? {
            crate::inspect::ImageArg::Name(_) => Some(image::resolve_for(&store, spec, platform.as_ref())?),
            _ => None,
        };
        if let Some(image) = local {
            out.push(serde_json::json!({
                "Id": image.id(),
                "RepoTags": image.names.iter().map(Reference::familiar).collect::<Vec<_>>(),
                "Descriptor": image.manifest_descriptor,
                "Manifest": image.manifest,
                "Config": image.config,
            }));
            continue;
        }
        let platform = args.platform.as_deref();
        out.push(super::inspect::open_images(global, &args.registry, platform, &[spec], progress, |_, images| {
            let image = &images[0];
            Ok(serde_json::json!({
                "Id": image.id,
                "RepoTags": Vec::<String>::new(),
                "Source": image.kind,
                "ManifestDigest": image.manifest_digest,
                "Manifest": image.manifest,
                "Config": image.config,
            }))
        })?);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}
