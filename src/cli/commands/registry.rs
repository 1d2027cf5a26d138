//! `pull`, `push`, `login` and `logout`.

use std::io::Read;

use anyhow::{Context, Result, bail};

use super::open_store;
use crate::cli::args::{CompressionArg, GlobalArgs, LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryArgs};
use crate::image;
use crate::oci::{ImageIndex, LayerCompression, Platform, Reference, canonical};
use crate::progress::Reporter;
use crate::registry::{
    self, AuthFile, Client, ClientOptions, PullOptions, PushOptions, Settings, auth_file_path, settings_path,
};
use crate::store::{Lease, Store};

/// Env var overriding the `PATCH` chunk size and the single-`PUT` limit of pushes (bytes; tests).
const CHUNK_SIZE_ENV: &str = "SLIPWAY_PUSH_CHUNK_SIZE";

/// Env var overriding the idle timeout of registry requests (milliseconds; tests).
const IDLE_TIMEOUT_ENV: &str = "SLIPWAY_REGISTRY_IDLE_TIMEOUT_MS";

/// slipway's registry settings (`config.toml`).
pub(super) fn settings() -> Result<Settings> {
    Ok(Settings::load(&settings_path())?)
}

/// How to reach `registry`: the settings' rules (`--tls-verify=false` or a configured insecure
/// registry, `certs.d`), with the idle timeout the environment may set (tests).
fn client_options(
    args: &RegistryArgs,
    settings: &Settings,
    registry: &str,
    credentials: Option<registry::Credentials>,
) -> ClientOptions {
    let mut options = settings.client_options(registry, credentials, args.tls_verify);
    options.idle_timeout =
        std::env::var(IDLE_TIMEOUT_ENV).ok().and_then(|ms| ms.parse().ok()).map(std::time::Duration::from_millis);
    options
}

/// A client for `registry` with the credentials the credentials file has for it.
pub(super) fn connect(
    args: &RegistryArgs,
    settings: &Settings,
    registry: &str,
) -> Result<Client, registry::RegistryError> {
    let path = auth_file_path(args.authfile.as_deref());
    let credentials = AuthFile::read(&path)?.credentials(registry)?;
    Client::connect(registry, client_options(args, settings, registry, credentials))
}

pub fn pull(global: &GlobalArgs, args: &PullArgs, progress: &Reporter) -> Result<u8> {
    let reference = image::parse_name(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let store = open_store(global)?;
    let settings = settings()?;
    let options = PullOptions { platform, ..PullOptions::default() };
    let mirrors = settings.mirrors_for(reference.registry());
    let connect = |registry: &str| connect(&args.registry, &settings, registry);
    let report = registry::pull_with_mirrors(mirrors, &connect, &store, &reference, &options, progress)
        .with_context(|| format!("pulling {reference}"))?;
    println!("{}", report.id);
    Ok(0)
}

/// What a push sends: one image, or the images of a multi-platform index.
enum Plan {
    Image(Box<image::Distributable>),
    Index(registry::IndexPush),
}

/// The multi-platform index `name` is tagged to, if it names one.
fn tagged_index(store: &crate::store::Store, name: &str) -> Result<Option<ImageIndex>> {
    let Ok(reference) = Reference::parse(name) else { return Ok(None) };
    let Some(descriptor) = store.get_tag(&reference)? else { return Ok(None) };
    if !descriptor.media_type.is_index() {
        return Ok(None);
    }
    let bytes = store.read_blob(&descriptor.digest, image::MAX_JSON_BLOB)?;
    let index: ImageIndex =
        canonical::from_bytes("index", &bytes).with_context(|| format!("index {} of {name}", descriptor.digest))?;
    Ok(Some(index))
}

pub fn push(global: &GlobalArgs, args: &PushArgs, progress: &Reporter) -> Result<u8> {
    let store = open_store(global)?;
    let index = tagged_index(&store, &args.image)?;
    let destinations: Vec<Reference> = if args.destinations.is_empty() {
        let named = match &index {
            Some(_) => true,
            None => {
                let img = image::resolve(&store, &args.image)?;
                Reference::parse(&args.image).is_ok_and(|name| img.names.contains(&name))
            }
        };
        match Reference::parse(&args.image) {
            Ok(name) if named => vec![name],
            _ => bail!("{} is not an image name: say where to push it", args.image),
        }
    } else {
        args.destinations.iter().map(|d| image::parse_name(d)).collect::<Result<_, _>>()?
    };
    let mut options = PushOptions::default();
    if let Ok(value) = std::env::var(CHUNK_SIZE_ENV) {
        let size: u64 = value.parse().with_context(|| format!("{CHUNK_SIZE_ENV}={value:?} is not a byte count"))?;
        options.chunk_size = size.max(1);
        options.monolithic_limit = size;
    }
    let compression = match args.compression {
        CompressionArg::Gzip => LayerCompression::Gzip,
        CompressionArg::Zstd => LayerCompression::Zstd,
        CompressionArg::Uncompressed => LayerCompression::None,
    };
    let settings = settings()?;
    let lease = store.lease("push")?;
    let connect_to = |destination: &Reference| {
        connect(&args.registry, &settings, destination.registry())
            .with_context(|| format!("connecting to {}", destination.registry()))
    };
    let mut first_client = Some(connect_to(&destinations[0])?);
    let mut ahead = registry::UploadedAhead::default();
    let plan = match index {
        None => {
            let img = image::resolve(&store, &args.image)?;
            let client = first_client.as_ref().expect("connected above");
            let layers = (compression, &image::LayerOptions::default());
            let to = (client, &destinations[0], &options);
            let (image, uploaded) = distributable_ahead(&store, &img, layers, &lease, progress, to)?;
            ahead = uploaded;
            Plan::Image(Box::new(image))
        }
        Some(index) => {
            let mut entries = Vec::new();
            for entry in &index.manifests {
                let Some(platform) = &entry.platform else {
                    bail!("{}: index entry {} names no platform", args.image, entry.digest);
                };
                if !entry.media_type.is_manifest() {
                    bail!(
                        "{}: index entry {} is a {}, not an image manifest",
                        args.image,
                        entry.digest,
                        entry.media_type
                    );
                }
                let img = image::load_image(&store, entry, platform, Vec::new())
                    .with_context(|| format!("{}: the {platform} image", args.image))?;
                let image = image::distributable(&store, &img, compression, &lease, progress)?;
                entries.push(registry::IndexEntry { entry: entry.clone(), image });
            }
            // The stored index's own annotations go with it (its entries carry theirs).
            Plan::Index(registry::IndexPush { entries, annotations: index.annotations.clone() })
        }
    };
    let mut digest = None;
    for destination in &destinations {
        let client = match first_client.take() {
            Some(client) => client,
            None => connect_to(destination)?,
        };
        let report = match &plan {
            Plan::Image(image) => {
                let options = PushOptions { ahead: std::mem::take(&mut ahead), ..options.clone() };
                registry::push(&client, &store, image, destination, &options, progress)
            }
            Plan::Index(index) => registry::push_index(&client, &store, index, destination, &options, progress),
        }
        .with_context(|| format!("pushing {} to {destination}", args.image))?;
        println!("{}@{}", destination.name(), report.digest);
        digest = Some(report.digest);
    }
    if let (Some(path), Some(digest)) = (&args.digestfile, digest) {
        super::write_output_file(path, digest.to_string().as_bytes())?;
    }
    Ok(0)
}

/// `image::distributable_with`, the layers compressed now going to the registry of
/// `destination` while they are made (closed by `registry::push` to that destination, given them in `PushOptions::ahead`).
pub(super) fn distributable_ahead(
    store: &Store,
    img: &image::Image,
    layers: (LayerCompression, &image::LayerOptions),
    lease: &Lease,
    progress: &Reporter,
    (client, destination, options): (&Client, &Reference, &PushOptions),
) -> Result<(image::Distributable, registry::UploadedAhead)> {
    std::thread::scope(|scope| {
        let uploads = registry::UploadAhead::new(scope, client, destination, options);
        let start = || uploads.start();
        let image = image::distributable_copied(store, img, layers, lease, progress, &start);
        let ahead = uploads.finish();
        Ok((image?, ahead))
    })
}

pub fn login(args: &LoginArgs) -> Result<u8> {
    if !args.password_stdin {
        bail!("give the password on standard input with --password-stdin");
    }
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("the password on standard input is empty");
    }
    let credentials = registry::Credentials::Basic { username: args.username.clone(), password: password.clone() };
    let options = client_options(&args.registry_args, &settings()?, &args.registry, Some(credentials));
    let client =
        Client::connect(&args.registry, options).with_context(|| format!("connecting to {}", args.registry))?;
    client.check_login().with_context(|| format!("logging in to {}", args.registry))?;
    let path = auth_file_path(args.registry_args.authfile.as_deref());
    let mut file = AuthFile::read(&path)?;
    if let Some(helper) = file.helper_for(&args.registry) {
        registry::helper_store(&helper, &args.registry, &args.username, &password)?;
    } else {
        warn_loose(&file);
        file.set(&args.registry, &args.username, &password);
        file.save()?;
    }
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(args: &LogoutArgs) -> Result<u8> {
    let path = auth_file_path(args.authfile.as_deref());
    let mut file = AuthFile::read(&path)?;
    if let Some(helper) = file.helper_for(&args.registry) {
        registry::helper_erase(&helper, &args.registry)?;
        println!("Removed login credentials for {}", args.registry);
        return Ok(0);
    }
    warn_loose(&file);
    if !file.remove(&args.registry) {
        bail!("not logged in to {} (in {})", args.registry, path.display());
    }
    file.save()?;
    println!("Removed login credentials for {}", args.registry);
    Ok(0)
}

/// Warns that the credentials file was readable by others (it is rewritten 0600).
fn warn_loose(file: &AuthFile) {
    if let Some(mode) = file.loose_mode() {
        eprintln!(
            "warning: credentials file {} has mode {mode:04o}, readable by others; writing it 0600",
            file.path().display()
        );
    }
}
