//! `slipway history`, `slipway diff` and `slipway layers`: images from any source, read through
//! `inspect`. Tables are for people; `--format json` is the versioned schema of docs/inspect.md.

use anyhow::{Context, Result};
use serde_json::json;

use super::open_store;
use super::registry::{connect, settings};
use crate::cli::args::{DiffArgs, Format, GlobalArgs, HistoryArgs, ImageSourceArgs, LayersArgs, RegistryArgs};
use crate::cli::table::{ago, print_table};
use crate::cli::units::size;
use crate::inspect::{self, ChangeKind, DiffOptions, ImageArg, OpenOptions, Opened};
use crate::oci::Platform;
use crate::progress::Reporter;
use crate::store::Store;

/// Version of the JSON documents these commands print.
const JSON_VERSION: u32 = 1;

/// Opens each of `words` (in order) and hands them to `body`.
fn with_images<T>(
    global: &GlobalArgs,
    source: &ImageSourceArgs,
    words: &[&str],
    progress: &Reporter,
    body: impl FnOnce(&Store, Vec<Opened<'_>>) -> Result<T>,
) -> Result<T> {
    open_images(global, &source.registry, source.platform.as_deref(), words, progress, body)
}

/// [`with_images`] with the registry flags and platform given apart (`slipway inspect`).
pub(super) fn open_images<T>(
    global: &GlobalArgs,
    registry: &RegistryArgs,
    platform: Option<&str>,
    words: &[&str],
    progress: &Reporter,
    body: impl FnOnce(&Store, Vec<Opened<'_>>) -> Result<T>,
) -> Result<T> {
    let store = open_store(global)?;
    let lease = store.lease("inspect")?;
    let settings = settings()?;
    let connect = |host: &str| connect(registry, &settings, host);
    let platform_given = platform.is_some();
    let platform = match platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let opts = OpenOptions { store: &store, lease: &lease, platform, platform_given, connect: &connect, progress };
    let mut opened = Vec::new();
    for word in words {
        let arg = ImageArg::parse(word)?;
        opened.push(inspect::open(&arg, &opts).with_context(|| format!("reading image {word}"))?);
    }
    body(&store, opened)
}

fn print_json(value: serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// The image fields every JSON document starts with.
fn image_json(image: &Opened) -> serde_json::Value {
    json!({
        "name": image.name,
        "source": image.kind,
        "id": image.id,
        "manifest_digest": image.manifest_digest,
        "layers": image.layers.len(),
    })
}

pub fn history(global: &GlobalArgs, args: &HistoryArgs, progress: &Reporter) -> Result<u8> {
    with_images(global, &args.source, &[&args.image], progress, |_, images| {
        let image = &images[0];
        let listings = image.list_all().with_context(|| format!("reading the layers of {}", image.name))?;
        let rows = inspect::history(image, &listings);
        if args.source.format == Format::Json {
            print_json(json!({ "version": JSON_VERSION, "image": image_json(image), "history": rows }))?;
            return Ok(0);
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut table = Vec::new();
        for (n, row) in rows.iter().enumerate() {
            let id = match (n, row.diff_id) {
                (0, _) if row.empty_layer => short(&image.id.to_string(), args.no_trunc),
                (_, Some(d)) => short(&d.digest().to_string(), args.no_trunc),
                _ => "<missing>".to_string(),
            };
            let created = match (&row.created, args.human) {
                (Some(c), true) => {
                    crate::oci::time::parse_rfc3339(c).map(|t| ago(now - t)).unwrap_or_else(|| c.clone())
                }
                (Some(c), false) => c.clone(),
                (None, _) => String::new(),
            };
            let by = row.created_by.clone().unwrap_or_default().replace('\n', " ");
            let by = if args.no_trunc || by.chars().count() <= 45 {
                by
            } else {
                format!("{}…", by.chars().take(44).collect::<String>())
            };
            let bytes = if args.human { size(row.size) } else { row.size.to_string() };
            let files = row.files.map(|f| format!("+{} ~{} -{}", f.added, f.changed, f.deleted)).unwrap_or_default();
            table.push([id, created, by, bytes, files, row.comment.clone().unwrap_or_default()]);
        }
        print_table(&["LAYER", "CREATED", "CREATED BY", "SIZE", "FILES (+A ~C -D)", "COMMENT"], &table);
        Ok(0)
    })
}

/// `sha256:abcdef…` → `abcdef012345` (12 hex digits) unless `full`.
fn short(digest: &str, full: bool) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if full { digest.to_string() } else { hex.chars().take(12).collect() }
}

pub fn diff(global: &GlobalArgs, args: &DiffArgs, progress: &Reporter) -> Result<u8> {
    let opts = DiffOptions { path: args.path.as_ref().map(|p| inspect::clean_path(p.as_bytes())), layer: args.layer };
    let mut words = vec![args.a.as_str()];
    if let Some(b) = &args.b {
        if args.layer.is_some() {
            anyhow::bail!("--layer applies to one image; with two, diff compares their whole filesystems");
        }
        words.push(b);
    }
    with_images(global, &args.source, &words, progress, |_, images| match &images[..] {
        [image] => diff_one(image, &opts, args.source.format),
        [a, b] => diff_two(a, b, &opts, args.source.format),
        _ => unreachable!("one or two images"),
    })
}

fn diff_one(image: &Opened, opts: &DiffOptions, format: Format) -> Result<u8> {
    let needed = inspect::layers_needed(image, opts)?;
    let listings: Vec<_> = image.list(&needed)?.into_values().collect();
    let layers = inspect::diff_layers(image, &listings, opts);
    if format == Format::Json {
        print_json(json!({ "version": JSON_VERSION, "image": image_json(image), "layers": layers }))?;
        return Ok(0);
    }
    for (n, layer) in layers.iter().enumerate() {
        if n > 0 {
            println!();
        }
        let by = layer.created_by.as_deref().map(|c| format!(" {}", c.replace('\n', " "))).unwrap_or_default();
        println!("layer {} {}{by}", layer.layer, short(&layer.diff_id.digest().to_string(), false));
        print_changes(&layer.changes);
    }
    Ok(0)
}

fn diff_two(a: &Opened, b: &Opened, opts: &DiffOptions, format: Format) -> Result<u8> {
    let result = inspect::diff_images(a, b, opts)?;
    if format == Format::Json {
        print_json(json!({ "version": JSON_VERSION, "a": image_json(a), "b": image_json(b), "diff": result }))?;
        return Ok(0);
    }
    print_changes(&result.changes);
    Ok(0)
}

fn print_changes(changes: &[inspect::Change]) {
    for c in changes {
        let letter = match c.kind {
            ChangeKind::A => "A",
            ChangeKind::C => "C",
            ChangeKind::D => "D",
        };
        let mut what = Vec::new();
        if let Some(t) = &c.type_change {
            what.push(format!("type {:?} → {:?}", t.old, t.new).to_lowercase());
        }
        if let Some(d) = &c.content {
            let s =
                |d: &Option<crate::oci::Digest>| d.map(|d| short(&d.to_string(), false)).unwrap_or_else(|| "-".into());
            what.push(format!("content {} → {}", s(&d.old), s(&d.new)));
        }
        if let Some(p) = &c.size {
            what.push(format!("size {} → {}", p.old, p.new));
        }
        if let Some(p) = &c.mode {
            what.push(format!("mode {} → {}", p.old, p.new));
        }
        if let Some(p) = &c.owner {
            what.push(format!("owner {} → {}", p.old, p.new));
        }
        if let Some(p) = &c.target {
            what.push(format!("target {} → {}", p.old, p.new));
        }
        if what.is_empty() {
            println!("{letter} {}", c.path);
        } else {
            println!("{letter} {}   ({})", c.path, what.join(", "));
        }
    }
}

pub fn layers(global: &GlobalArgs, args: &LayersArgs, progress: &Reporter) -> Result<u8> {
    with_images(global, &args.source, &[&args.image], progress, |_, images| {
        let image = &images[0];
        let listings = image.list_all().with_context(|| format!("reading the layers of {}", image.name))?;
        let report = inspect::waste(image, &listings);
        let mut failed = Vec::new();
        if let Some(pct) = args.fail_under.filter(|p| report.efficiency < *p) {
            failed.push(format!("efficiency {:.1}% is under {pct}%", report.efficiency));
        }
        if let Some(max) = args.max_wasted.filter(|m| report.wasted_bytes > *m) {
            failed.push(format!("{} bytes wasted, more than {max}", report.wasted_bytes));
        }
        if args.source.format == Format::Json {
            print_json(json!({
                "version": JSON_VERSION,
                "image": image_json(image),
                "report": report,
                "gates": { "passed": failed.is_empty(), "failures": failed },
            }))?;
        } else {
            print_waste(&report, args.top);
            for f in &failed {
                eprintln!("gate failed: {f}");
            }
        }
        Ok(if failed.is_empty() { 0 } else { 1 })
    })
}

fn print_waste(report: &inspect::WasteReport, top: usize) {
    let take = |n: usize| if top == 0 { n } else { n.min(top) };
    let rows: Vec<[String; 5]> = report
        .layers
        .iter()
        .map(|l| {
            let by = l.created_by.clone().unwrap_or_default().replace('\n', " ");
            let by =
                if by.chars().count() <= 60 { by } else { format!("{}…", by.chars().take(59).collect::<String>()) };
            [l.layer.to_string(), size(l.size), l.entries.to_string(), size(l.wasted), by]
        })
        .collect();
    print_table(&["LAYER", "SIZE", "ENTRIES", "WASTED", "CREATED BY"], &rows);
    println!();
    println!(
        "efficiency {:.1}%: {} of {} wasted ({} overwritten or deleted by a later layer, {} duplicate content)",
        report.efficiency,
        size(report.wasted_bytes),
        size(report.total_bytes),
        size(report.overwritten_bytes),
        size(report.duplicate_bytes)
    );
    if !report.wasted_files.is_empty() {
        let n = report.wasted_files.len();
        println!("\noverwritten or deleted later ({n} file{}):", if n == 1 { "" } else { "s" });
        for f in &report.wasted_files[..take(report.wasted_files.len())] {
            let how = if f.deleted { "deleted" } else { "overwritten" };
            println!("  {:>8}  {}  (layer {}, {how} by layer {})", size(f.size), f.path, f.layer, f.by_layer);
        }
    }
    if !report.duplicates.is_empty() {
        let n = report.duplicates.len();
        println!("\nidentical content at several paths ({n} group{}):", if n == 1 { "" } else { "s" });
        for d in &report.duplicates[..take(report.duplicates.len())] {
            let copies: Vec<String> = d.copies.iter().map(|(p, l)| format!("{p} (layer {l})")).collect();
            println!("  {:>8} × {}  {}", size(d.size), d.copies.len(), copies.join(", "));
        }
    }
    if !report.leftovers.is_empty() {
        println!("\nleftovers (not counted as wasted):");
        for l in &report.leftovers {
            println!("  {:>8}  {} files  {}  e.g. {}", size(l.bytes), l.files, l.kind, l.examples.join(", "));
        }
    }
}
