//! Raw clap structures. Validation into typed options happens in `commands`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// A daemonless container image builder and layer store.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Store root (default: /var/lib/slipway as root, $XDG_DATA_HOME/slipway otherwise)
    #[arg(long, global = true, env = "SLIPWAY_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Progress on stderr: auto = tty on a terminal when CI is unset, else plain; quiet = errors only
    #[arg(long, global = true, value_enum, default_value_t = ProgressArg::Auto, value_name = "MODE")]
    pub progress: ProgressArg,
    /// Rootfs snapshotter (default: overlay where it can be mounted, else copy)
    #[arg(long, global = true, env = "SLIPWAY_SNAPSHOTTER", value_enum, value_name = "KIND")]
    pub snapshotter: Option<SnapshotterArg>,
    /// Executor for RUN and `run`: embedded (namespaces built by slipway), or an OCI runtime: runc, crun or a path to one
    #[arg(long, global = true, env = "SLIPWAY_RUNTIME", value_name = "embedded|runc|crun|PATH")]
    pub runtime: Option<String>,
    /// Isolation of RUN and `run`: default (namespaces), or chroot (weaker isolation, see --help)
    ///
    /// default: the executor's sandbox, its own pid, mount, ipc, uts and network namespaces. chroot: for slipway
    /// running as root where it may not create namespaces (a default Kubernetes pod, some CI runners); steps run
    /// chrooted into their snapshot (in a mount namespace of their own where one can be made) with fewer
    /// capabilities, no_new_privs and --ulimit, but WITHOUT pid, network, ipc or uts isolation: a step sees and can
    /// signal the host's processes of its user, uses the host's network (--network none is refused) and hostname,
    /// and sees the host's /proc where one is mounted. Without a mount namespace RUN --mount, secrets files and
    /// --add-host are refused. Read SECURITY.md before using it on untrusted Dockerfiles. Not with --runtime
    #[arg(long, global = true, env = "SLIPWAY_ISOLATION", value_enum, value_name = "MODE")]
    pub isolation: Option<IsolationArg>,
}

/// `--isolation chroot` with `--runtime` is a usage error: the chroot executor is its own.
pub fn check_isolation(cli: Cli) -> Result<Cli, clap::Error> {
    if cli.global.isolation == Some(IsolationArg::Chroot) && cli.global.runtime.is_some() {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        return Err(cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            "--isolation chroot cannot be used with --runtime (or SLIPWAY_RUNTIME): chroot isolation has its own executor",
        ));
    }
    Ok(cli)
}

/// The `--isolation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    Default,
    Chroot,
}

/// `--progress` modes (rendered by `cli::progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Tty,
    Plain,
    Rawjson,
    Quiet,
}

/// The `--snapshotter` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotterArg {
    Overlay,
    Copy,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version
    Version,
    /// Show the store root and the parts slipway uses on this machine
    Info(InfoArgs),
    /// Create a one-layer image from a root filesystem (like `docker import`)
    Import(ImportArgs),
    /// List images
    Images(ImagesArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove image names
    Rmi(RmiArgs),
    /// Print an image's manifest and config as JSON (a local image, or oci:, oci-archive:, docker-archive:, docker:// sources)
    Inspect(InspectArgs),
    /// Show an image's history: each entry's command and size, and the files its layer added, changed and deleted
    #[command(after_help = IMAGE_SOURCES_HELP)]
    History(HistoryArgs),
    /// Show file-level changes: each layer of one image against the layers below it, or image A against image B
    #[command(after_help = IMAGE_SOURCES_HELP)]
    Diff(DiffArgs),
    /// Waste analysis: bytes per layer, bytes overwritten or deleted later, identical content stored twice, leftovers; a CI gate
    #[command(after_help = LAYERS_HELP)]
    Layers(LayersArgs),
    /// Write images to an OCI layout or archive, or a docker archive
    Save(SaveArgs),
    /// Read images from an OCI layout or archive, or a docker archive
    Load(LoadArgs),
    /// Remove blobs nothing references (tags, build-cache roots, live leases), stale temp files and, with --all or --cache-mounts, unused cache mounts; with --keep-storage, also what was least recently used until the store fits a size
    #[command(after_help = PRUNE_HELP)]
    Prune(PruneArgs),
    /// Show what the store's disk space is used by: images (shared and unique bytes), build cache, layer snapshots, cache mounts, build logs
    #[command(after_help = DF_HELP)]
    Df(DfArgs),
    /// Check the store for corrupt, missing and orphaned blobs, temp residue and bad permissions
    #[command(after_help = FSCK_EXIT_HELP)]
    Fsck(FsckArgs),
    /// Build an image from a Dockerfile and a context directory (or a tar on stdin)
    #[command(after_help = BUILD_HELP)]
    Build(Box<BuildArgs>),
    /// List, show, read the logs of and remove past builds (their records stay in the store)
    Builds(BuildsArgs),
    /// Parse a Dockerfile, resolve its stages and run the lint rules
    Check(CheckArgs),
    /// List the build context: each file with its size and status (used by a COPY, ADD or bind mount, sent for nothing, or excluded by which .dockerignore line), the largest directories
    #[command(after_help = CONTEXT_HELP)]
    Context(ContextArgs),
    /// Run a command in a throwaway container of an image
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// The sandbox helper `exec` re-executes (internal)
    #[command(name = "__exec-init", hide = true)]
    ExecInit {
        #[arg(long)]
        report_fd: i32,
    },
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to one or more registries
    Push(PushArgs),
    /// Store credentials for a registry in the credentials file
    Login(LoginArgs),
    /// Remove a registry's credentials from the credentials file
    Logout(LogoutArgs),
}

/// Exit codes of `build`, shown by `slipway build --help`.
const BUILD_HELP: &str = "RUN --mount types (BuildKit's syntax): bind (default; source/target/from/rw: files of the \
context, a stage or an image, read-only unless rw, writes discarded; their content is in the cache key), cache \
(id/target/sharing=shared|private|locked/from/source/mode/uid/gid/ro: a directory of the store kept across builds, \
never in the key; `slipway info` lists them, `slipway prune --cache-mounts` clears them), tmpfs (target/size: \
nothing reaches the layer), secret (id/target/env/required/mode/uid/gid: from --secret, never stored), ssh \
(id/target/required/mode/uid/gid: an agent from --ssh, SSH_AUTH_SOCK set). RUN --security=insecure needs \
--allow security.insecure.\n\nOutputs (-o, buildx's syntax, several at once; docs/outputs.md): the image is always in the store \
(tagged with -t and type=image's name=); type=image,push=true (= --push) pushes it with compression=gzip|zstd|uncompressed, \
compression-level=N, force-compression=true, oci-mediatypes=false (Docker schema2); rewrite-timestamp=true clamps the mtimes \
of every layer, the base's too, and the history to SOURCE_DATE_EPOCH; type=oci/docker/tar write archives (dest=FILE, by \
temp file + rename, or - for stdout), type=local,dest=DIR (or -o DIR) the target stage's filesystem. Unknown types and keys \
are refused before anything runs.\n\nADD of remote sources: an http(s) URL is downloaded (mode 0600, mtime from Last-Modified, \
never unpacked; --checksum=sha256:HEX checked before the layer; a 304 to the next build's conditional request is a \
cache hit); a git repository (https://host/r.git, git://, ssh://, git@host:r.git, file:///path/r.git) is checked out \
at #REF:SUBDIR or ?ref=|tag=|branch=|checksum=|subdir=|keep-git-dir=|submodules= (--checksum=COMMIT, \
--keep-git-dir), keyed on the commit. The proxy build-args (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, ...) apply to both.\n\nExit status: 0 built; 1 the Dockerfile or a step failed, or the build was refused before it \
started (a feature slipway does not have, an unprivileged user); nothing is tagged; 2 usage or internal error; \
130/143 interrupted by SIGINT/SIGTERM. An output that cannot be written after a successful build exits 2.";

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/dockerfile; `-` reads it from stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Name the image NAME[:TAG] (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// A build-time variable; `KEY` alone takes the value from the environment
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, Option<String>)>,
    /// The stage to build (default: the last one)
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Run every step, taking nothing from the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Run every step of this stage, taking nothing from the cache (repeatable)
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Set an image label (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The platform to build for (default: this machine's; RUN steps need it to match)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Network of RUN steps without --network: default (private, outbound through slirp4netns where available), none, host (needs --allow network.host)
    #[arg(long, value_enum, value_name = "MODE")]
    pub network: Option<BuildNetworkArg>,
    /// Allow an entitlement (repeatable): network.host (RUN --network=host), security.insecure (RUN --security=insecure runs privileged: every capability, /proc/sys and /sys writable, /dev/fuse, /dev/kvm, /dev/net/tun, /dev/loop*)
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_parser = ["network.host", "security.insecure"])]
    pub allow: Vec<String>,
    /// A secret for RUN --mount=type=secret (repeatable): id=ID,src=FILE or id=ID,env=VARIABLE; id=ID alone reads the variable ID when set, else the file ID. Never stored in the image, the cache or a log
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]", value_parser = crate::cli::secrets::parse_secret)]
    pub secrets: Vec<(String, crate::cli::secrets::SecretSource)>,
    /// An SSH agent for RUN --mount=type=ssh (repeatable): default or ID uses your SSH_AUTH_SOCK; ID=SOCKET forwards that agent; ID=KEY[,KEY...] serves key files from an ssh-agent started for the build
    #[arg(long = "ssh", value_name = "ID[=SOCKET|KEY[,KEY...]]", value_parser = crate::cli::secrets::parse_ssh)]
    pub ssh: Vec<(String, Vec<PathBuf>)>,
    /// An /etc/hosts entry of RUN steps (repeatable): HOST:IP or HOST=IP; IP host-gateway is the host as the step's network reaches it (10.0.2.2 through slirp4netns, 127.0.0.1 with the host network)
    #[arg(long = "add-host", value_name = "HOST:IP", value_parser = parse_add_host)]
    pub add_hosts: Vec<(String, crate::engine::HostIp)>,
    /// Size of RUN steps' /dev/shm (e.g. 128m, 1g; default 64m)
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::units::parse_memory)]
    pub shm_size: Option<u64>,
    /// A resource limit of RUN steps (repeatable): NAME=SOFT[:HARD], Docker's names (nofile, nproc, core, stack, memlock, …; -1 is unlimited)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimits: Vec<crate::exec::Ulimit>,
    /// A named context (repeatable): NAME=DIR (a local directory), NAME=docker-image://REF, NAME=oci-layout://DIR[:TAG][@DIGEST] (an image of an OCI layout) or NAME=GIT (a repository, ADD's syntax: https://host/r.git#ref:subdir, ?ref=…&subdir=…); FROM NAME, COPY --from=NAME and RUN --mount=from=NAME read it instead of a stage or image of that name
    #[arg(long = "build-context", value_name = "NAME=DIR|docker-image://REF|oci-layout://DIR[:TAG][@DIGEST]", value_parser = parse_build_context)]
    pub build_contexts: Vec<(String, crate::engine::NamedContext)>,
    /// An annotation (repeatable): [TYPE[,TYPE…][PLATFORM]:]KEY=VALUE, buildx's types: manifest (the default: each image manifest), index (the index of a multi-platform build), manifest-descriptor (each platform's entry in that index), index-descriptor (the index's entry in a -o type=oci layout); [OS/ARCH] limits a manifest or manifest-descriptor annotation to that platform
    #[arg(long = "annotation", value_name = "[TYPE[PLATFORM]:]KEY=VALUE", value_parser = parse_annotation)]
    pub annotations: Vec<crate::engine::Annotation>,
    /// Resolve every FROM and --from image in its registry again, even when the store has it (the build says what changed)
    #[arg(long)]
    pub pull: bool,
    /// Layer steps (RUN, COPY, ADD) run at once across stages (default: the number of CPUs)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Write the image id (its config digest) to FILE
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata as JSON (buildx's keys) to FILE
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Clamp timestamps (config, history, new layer mtimes) to this Unix time; also from SOURCE_DATE_EPOCH
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
    /// Print only the image id on stdout, no progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Push the image to every `-t` name after it is built (their registries); = --output type=image,push=true
    #[arg(long)]
    pub push: bool,
    /// Where the result goes, as buildx spells it (repeatable): type=image[,name=N][,push=true][,compression=gzip|zstd|uncompressed][,rewrite-timestamp=true] (the store, the default), type=oci,dest=FILE|-[,tar=false] (dest=DIR), type=docker,dest=FILE|-, type=tar,dest=FILE|-, type=local,dest=DIR; DIR alone = type=local, `-` = type=tar to stdout
    #[arg(short = 'o', long = "output", value_name = "type=TYPE[,KEY=VALUE...]|DIR|-", value_parser = crate::cli::outputs::parse_output)]
    pub outputs: Vec<crate::cli::outputs::Output>,
    /// The image into the store (what every build does; buildx's shortcut for type=docker, slipway's store being its daemon)
    #[arg(long)]
    pub load: bool,
    /// Read build cache records (repeatable; the first record found wins): REF or type=registry,ref=REF (a cache --cache-to wrote, or an image with inline records), type=local,src=DIR[,tag=TAG]; layers are fetched only when read
    #[arg(long = "cache-from", value_name = "type=TYPE,KEY=VALUE...|REF", value_parser = crate::cli::cache_specs::parse_cache_from)]
    pub cache_from: Vec<crate::engine::CacheFrom>,
    /// Export the build cache (repeatable): type=registry,ref=REF | type=local,dest=DIR[,tag=TAG] | type=inline, with mode=min|max, compression=gzip|zstd|uncompressed, compression-level=N, ignore-error=true
    #[arg(long = "cache-to", value_name = "type=TYPE,KEY=VALUE...", value_parser = crate::cli::cache_specs::parse_cache_to)]
    pub cache_to: Vec<crate::engine::CacheExport>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The build context directory, or `-` for a tar archive on stdin
    #[arg(value_name = "CONTEXT")]
    pub context: String,
}

/// `build --network` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildNetworkArg {
    Default,
    None,
    Host,
}

/// `NAME=VALUE` of `--build-context`: a local directory or `docker-image://REF`; the other
/// forms buildx has (`oci-layout://`, git and HTTP URLs) are refused here, before any work.
fn parse_build_context(s: &str) -> Result<(String, crate::engine::NamedContext), String> {
    let (name, value) =
        s.split_once('=').ok_or_else(|| format!("invalid --build-context {s:?}: expected NAME=VALUE"))?;
    if name.is_empty() || value.is_empty() {
        return Err(format!("invalid --build-context {s:?}: expected NAME=VALUE"));
    }
    let name = name.to_lowercase();
    if let Some(reference) = value.strip_prefix("docker-image://") {
        let reference = crate::oci::Reference::parse(reference)
            .map_err(|e| format!("invalid --build-context {s:?}: {reference:?} is not an image reference: {e}"))?;
        return Ok((name, crate::engine::NamedContext::Image(reference)));
    }
    if let Some(rest) = value.strip_prefix("oci-layout://") {
        return parse_oci_layout_context(s, &name, rest);
    }
    match crate::remote::source::parse(value) {
        Ok(Some(crate::remote::RemoteSource::Git(source))) => {
            return Ok((name, crate::engine::NamedContext::Git(source)));
        }
        Ok(Some(crate::remote::RemoteSource::Http(_))) => {
            return Err(format!(
                "--build-context {name}={value}: an HTTP URL that is no git repository is not supported yet (a directory, docker-image://, oci-layout:// and git repositories are)"
            ));
        }
        Ok(None) => {}
        Err(e) => return Err(format!("invalid --build-context {s:?}: {e}")),
    }
    for scheme in ["https://", "http://", "git@", "ssh://", "git://", "target:"] {
        if value.starts_with(scheme) {
            return Err(format!(
                "--build-context {name}={value}: {scheme} contexts are not supported yet (a directory or docker-image://REF are)"
            ));
        }
    }
    let dir = std::fs::canonicalize(value)
        .map_err(|e| format!("--build-context {name}={value}: cannot open the directory: {e}"))?;
    if !dir.is_dir() {
        return Err(format!("--build-context {name}={value}: not a directory"));
    }
    Ok((name, crate::engine::NamedContext::Dir(dir)))
}

/// `DIR[:TAG][@sha256:…]` of an `oci-layout://` context (buildx's syntax).
fn parse_oci_layout_context(
    arg: &str,
    name: &str,
    rest: &str,
) -> Result<(String, crate::engine::NamedContext), String> {
    let bad = |why: String| format!("invalid --build-context {arg:?}: {why}");
    let (rest, digest) = match rest.rsplit_once('@') {
        Some((path, d)) => (path, Some(d.parse::<crate::oci::Digest>().map_err(|e| bad(format!("{d:?}: {e}")))?)),
        None => (rest, None),
    };
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) if !std::path::Path::new(rest).exists() && !tag.contains('/') => {
            (path, Some(tag.to_string()))
        }
        _ => (rest, None),
    };
    let dir = std::fs::canonicalize(path).map_err(|e| bad(format!("cannot open the layout {path}: {e}")))?;
    if !dir.join("index.json").is_file() {
        return Err(bad(format!("{} has no index.json (not an OCI layout)", dir.display())));
    }
    let selector = crate::image::LayoutSelector { tag, digest };
    Ok((name.to_string(), crate::engine::NamedContext::OciLayout { dir, selector }))
}

/// buildx's `--annotation [TYPE[PLATFORM]:]KEY=VALUE`; only the `manifest` type (the default)
/// exists for a single-platform image.
fn parse_annotation(s: &str) -> Result<crate::engine::Annotation, String> {
    use crate::engine::{Annotation, AnnotationTarget};
    let bad = |why: &str| format!("invalid --annotation {s:?}: {why}");
    let (key_part, value) = s.split_once('=').ok_or_else(|| bad("expected [TYPE:]KEY=VALUE"))?;
    let (types, key) = match key_part.split_once(':') {
        // A key may hold `:` itself (`org.example:x`) only after a type prefix.
        Some((types, key)) if types.starts_with(|c: char| c.is_ascii_lowercase()) && !types.contains('.') => {
            (Some(types), key)
        }
        _ => (None, key_part),
    };
    if key.is_empty() {
        return Err(bad("no key"));
    }
    let mut annotation = Annotation {
        targets: vec![AnnotationTarget::Manifest],
        platform: None,
        key: key.to_string(),
        value: value.to_string(),
    };
    if let Some(types) = types {
        let (kinds, plat) = match types.split_once('[') {
            Some((kinds, rest)) => (kinds, Some(rest.strip_suffix(']').ok_or_else(|| bad("unclosed [PLATFORM]"))?)),
            None => (types, None),
        };
        annotation.targets = kinds
            .split(',')
            .map(|kind| {
                AnnotationTarget::parse(kind).ok_or_else(|| {
                    bad(&format!("unknown type {kind:?} (manifest, index, manifest-descriptor, index-descriptor)"))
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(plat) = plat {
            if let Some(t) = annotation.targets.iter().find(|t| !t.per_platform()) {
                return Err(bad(&format!("{} annotations are not per platform: no [PLATFORM]", t.name())));
            }
            annotation.platform = Some(plat.parse::<crate::oci::Platform>().map_err(|e| bad(&e.to_string()))?);
        }
    }
    Ok(annotation)
}

/// `HOST:IP` or `HOST=IP` (the form for IPv6 addresses), IP may be `host-gateway`.
fn parse_add_host(s: &str) -> Result<(String, crate::engine::HostIp), String> {
    let (host, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| format!("invalid --add-host {s:?}: expected HOST:IP or HOST=IP"))?;
    if host.is_empty() {
        return Err(format!("invalid --add-host {s:?}: no host name"));
    }
    let ip = match ip {
        "host-gateway" => crate::engine::HostIp::Gateway,
        ip => crate::engine::HostIp::Ip(
            ip.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("invalid --add-host {s:?}: {ip:?} is not an IP address or host-gateway"))?,
        ),
    };
    Ok((host.to_string(), ip))
}

/// `NAME=SOFT[:HARD]`, Docker's `--ulimit`: the hard limit is the soft one when not given, `-1`
/// is unlimited.
fn parse_ulimit(s: &str) -> Result<crate::exec::Ulimit, String> {
    let bad = |why: &str| format!("invalid --ulimit {s:?}: {why}");
    let (name, limits) = s.split_once('=').ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    if !crate::exec::ULIMIT_NAMES.iter().any(|(n, _)| *n == name) {
        let names: Vec<&str> = crate::exec::ULIMIT_NAMES.iter().map(|(n, _)| *n).collect();
        return Err(bad(&format!("unknown name (one of {})", names.join(", "))));
    }
    let value = |v: &str| -> Result<u64, String> {
        match v {
            "-1" => Ok(libc::RLIM_INFINITY),
            v => v.parse().map_err(|_| bad(&format!("{v:?} is not a number"))),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => (value(limits)?, value(limits)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    Ok(crate::exec::Ulimit { name: name.to_string(), soft, hard })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Flags of every command that talks to a registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Credentials file (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Require HTTPS with a verified certificate; false accepts any certificate and allows plain HTTP (loopback registries may always fall back to HTTP). Extra CAs: SSL_CERT_FILE
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub tls_verify: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Platform to pick from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// The image reference, e.g. `127.0.0.1:5000/app:1` or `app@sha256:…`
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Write the pushed manifest digest to FILE
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Layer compression of the pushed image (zstd needs a registry and clients that know OCI zstd layers)
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// An image name or id in the store
    pub image: String,
    /// Where to push (default: the image's own name); several are pushed in turn
    pub destinations: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub registry_args: RegistryArgs,
    /// User name
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: String,
    /// Read the password from standard input (the only way to give it)
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry, e.g. `127.0.0.1:5000`
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Credentials file (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// The registry, e.g. `127.0.0.1:5000`
    pub registry: String,
}

/// What `slipway prune --keep-storage` does and its exit status, shown by `--help`.
const PRUNE_HELP: &str = "\
--keep-storage SIZE is a hard cap on the store root, measured as `du -s -B1 -x ROOT` measures it.
After the usual prune, it removes what was least recently used until the root is at or under
SIZE: build cache entries (and the blobs only they hold), untagged images, layer snapshots no
tagged image uses (and older than 10 minutes, SLIPWAY_PRUNE_SNAPSHOT_MIN_AGE seconds), cache
mounts no build holds, the logs of finished builds. It never removes a tagged image unless --all
is given; then tagged images go too, least recently used, after everything else. With
--keep-storage, --all removes nothing beyond what the cap needs. The report says what was removed
and what was kept and why. JSON: docs/df.md.

Exit status:
  0  done (with --keep-storage: the store is at or under SIZE)
  1  --keep-storage: the store is still over SIZE after removing everything it may remove
  2  prune itself failed";

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also drop the build cache's roots first, so only tagged images (and live builds) stay, and
    /// remove the `RUN --mount=type=cache` directories no build is using. With --keep-storage:
    /// tagged images may be removed too, last, and only as much as the cap needs
    #[arg(long)]
    pub all: bool,
    /// Only remove the `RUN --mount=type=cache` directories no build is using (blobs and
    /// snapshots stay)
    #[arg(long, conflicts_with = "all")]
    pub cache_mounts: bool,
    /// Then remove the least recently used build cache, untagged images, unused layer snapshots, free cache mounts and finished builds' logs until the store takes at most SIZE (10GB, 512MiB, 1.5g: powers of 1024, as buildx)
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::units::parse_storage, conflicts_with = "cache_mounts")]
    pub keep_storage: Option<u64>,
    /// Output format (JSON: docs/df.md)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// What `slipway df` counts, shown by `--help`.
const DF_HELP: &str = "\
Sizes are what `du -s -B1 -x ROOT` counts (allocated blocks, each file once, no symlink
followed): the rows add up to the whole store root. A blob belongs to the images when a tag or
an untagged image reaches it, else to the build cache when a cache entry does, else to other
blobs. SHARED is the part of an image other images use too, UNIQUE the rest. RECLAIMABLE is what
`slipway prune --keep-storage 0` would free (tagged images stay). JSON: docs/df.md.";

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Also list every image (size, shared, unique), build cache entry, layer snapshot, cache mount and build
    #[arg(short, long)]
    pub verbose: bool,
    /// Output format (JSON: docs/df.md)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The exit-status rule of `slipway fsck`, shown by `--help`.
const FSCK_EXIT_HELP: &str = "\
Exit status:
  0  no damage (orphans are never damage: `slipway prune` removes them)
  1  damage: a corrupt blob (content does not match its name, a symlink or special file, a bad
     name under blobs/), a missing blob (referenced by a tag, a cache root or a manifest), or a
     metadata file that cannot be read whole (the tag index, the metadata, snapshot or cache
     database); with --strict also temp residue (ingest files, and snapshots, mounts and
     temporary directories of processes that died), permission violations (root not 0700, blob
     not 0444) and leases of dead holders. After --repair, what was repaired no longer counts
     (residue removed, modes restored, stale leases deleted, corrupt blobs quarantined, a damaged
     cache database moved aside, a tag index that does not parse replaced by one naming every
     image the store holds salvaged:<hex>), except that a quarantined blob something references is then
     missing, which always counts.
  2  fsck itself failed";

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Also exit 1 on temp residue and permission violations (anything but orphans)
    #[arg(long)]
    pub strict: bool,
    /// Remove temp residue, restore modes, move corrupt blobs to the store's quarantine/ directory (never deletes a referenced blob; orphans are left to prune)
    #[arg(long)]
    pub repair: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// What `slipway builds` says about a build's id, shown by `--help`.
const BUILDS_HELP: &str = "Every `slipway build` leaves a record in the store, beside its step logs: when it ran, on \
what, how it ended, and per layer step the cache decision, duration, layer bytes and exit status. ID is a build's \
id as `builds ls` shows it, or any prefix of exactly one. The newest 50 builds are kept (`[builds] keep = N` in \
config.toml). JSON: docs/builds.md.";

#[derive(Debug, Args)]
#[command(after_help = BUILDS_HELP)]
pub struct BuildsArgs {
    #[command(subcommand)]
    pub command: BuildsCommand,
}

#[derive(Debug, Subcommand)]
pub enum BuildsCommand {
    /// List the kept builds, newest first
    Ls(BuildsLsArgs),
    /// Show one build: how it ended, and each layer step's cache decision, duration, layer bytes and exit status
    Show(BuildsShowArgs),
    /// Print a build's step logs, whole: every RUN step's, or one step's (numbered as `show` numbers them)
    Logs(BuildsLogsArgs),
    /// Remove builds: their records and logs
    Rm(BuildsRmArgs),
}

#[derive(Debug, Args)]
pub struct BuildsLsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct BuildsShowArgs {
    /// A build id, or a unique prefix of one
    pub id: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct BuildsLogsArgs {
    /// A build id, or a unique prefix of one
    pub id: String,
    /// Only this step's log (its number in `slipway builds show`), printed as the process wrote it
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    pub step: Option<u32>,
}

#[derive(Debug, Args)]
pub struct BuildsRmArgs {
    /// Build ids, or unique prefixes of them
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Remove every build that is not running
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A build-time variable; `KEY` alone takes the value from the environment
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, Option<String>)>,
    /// The stage to build (default: the last one)
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// The build context directory
    #[arg(default_value = ".", value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// What `slipway context --help` adds.
const CONTEXT_HELP: &str = "\
The ignore file and the Dockerfile are the ones `slipway build` with the same -f would use
(FILE.dockerignore beside -f FILE, else Dockerfile.dockerignore in the context, else
.dockerignore). Images are not read: a source whose value depends on a variable the base image
may set is reported as not resolved, and ONBUILD triggers of base images are not known.
JSON output: docs/context.md.

Exit status: 0 listed; 1 the Dockerfile has errors; 2 usage or internal error.";

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/dockerfile; `-` reads it from stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A build-time variable, as for build; `KEY` alone takes the value from the environment
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, Option<String>)>,
    /// The stage to build (default: the last one): only the stages it needs read the context
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// The platform to build for (default: this machine's), for TARGETPLATFORM and its parts
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The build context directory
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

fn parse_build_arg(value: &str) -> Result<(String, Option<String>), String> {
    let (key, val) = match value.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (value, None),
    };
    if key.is_empty() {
        return Err(format!("invalid build-arg {value:?}: the name is empty"));
    }
    Ok((key.to_owned(), val))
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A root filesystem: a directory, or a tar archive (plain, gzip or zstd; `-` = stdin)
    pub source: String,
    /// Name of the new image
    pub name: String,
    /// Clamp layer mtimes and the creation time to this Unix time (also from SOURCE_DATE_EPOCH)
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
    /// Platform written into the image config (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Show each image's OS/ARCH[/VARIANT] image (id, size, created), leaving out images without one (default: this machine's, else a multi-platform image's first)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Show only image ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// An image name or id
    pub source: String,
    /// The new name
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names or ids; an id removes every name of that image
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Platform to pick from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// An image: a local name or id, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME], docker://REF
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// How the inspection commands name images.
const IMAGE_SOURCES_HELP: &str = "IMAGE is a local name or id; oci:DIR[:TAG]; oci-archive:FILE[:TAG]; \
docker-archive:FILE[:NAME]; docker://REF, or a reference that names no local image (from a registry only the \
manifests, the config and the layers the answer needs are read, and kept in the store until `slipway prune`). \
JSON output: docs/inspect.md.";

/// `slipway layers --help`: sources and exit codes.
const LAYERS_HELP: &str = "IMAGE is a local name or id; oci:DIR[:TAG]; oci-archive:FILE[:TAG]; \
docker-archive:FILE[:NAME]; docker://REF, or a reference that names no local image. JSON output: \
docs/inspect.md.\n\nExit status: 0 the image passes the gates; 1 --fail-under or --max-wasted failed (the report is \
printed all the same); 2 the image could not be read.";

/// Where an inspected image is read from.
#[derive(Debug, Args)]
pub struct ImageSourceArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Platform to pick from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Output format (JSON: docs/inspect.md)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub source: ImageSourceArgs,
    /// Do not truncate ids and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// Sizes and dates for people (false: bytes and RFC 3339 times)
    #[arg(short = 'H', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub human: bool,
    /// The image (see below for the sources)
    pub image: String,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub source: ImageSourceArgs,
    /// With one image: only this layer (the base layer is 0, as `slipway history` and `slipway layers` number them)
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,
    /// Only paths at or below this one
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<String>,
    /// The image (with B: the old one)
    pub a: String,
    /// The new image to compare A with
    pub b: Option<String>,
}

#[derive(Debug, Args)]
pub struct LayersArgs {
    #[command(flatten)]
    pub source: ImageSourceArgs,
    /// Exit 1 when the efficiency score is below PCT (0-100)
    #[arg(long, value_name = "PCT")]
    pub fail_under: Option<f64>,
    /// Exit 1 when more than SIZE bytes are wasted (e.g. 10MB, 512KiB, 0: powers of 1024)
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::units::parse_storage)]
    pub max_wasted: Option<u64>,
    /// Files, duplicate groups and leftover examples listed per section (0: all)
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// The image (see below for the sources)
    pub image: String,
}

/// Archive formats of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormatArg {
    /// An OCI image layout directory
    OciDir,
    /// An OCI image layout as a tar archive
    OciArchive,
    /// What `docker load` reads (uncompressed layers)
    DockerArchive,
}

/// Layer compression of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Image names or ids
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Output path (a directory for oci-dir; `-` = stdout for the archive formats)
    #[arg(short, long, value_name = "PATH")]
    pub output: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = SaveFormatArg::DockerArchive)]
    pub format: SaveFormatArg,
    /// Layer compression of the OCI formats
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Input: an OCI layout directory, or an archive of any `save` format, plain or compressed (`-` = stdin)
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    pub input: String,
    /// Print only the loaded image ids
    #[arg(short, long)]
    pub quiet: bool,
}

/// The exit-status rule of `slipway run`, shown by `--help`.
const RUN_HELP: &str = "\
Stdin is not attached (the command reads end-of-file); there is no -i or -t yet.

Exit status:
  N        the command's own exit status
  128+S    the command was killed by signal S
  125      slipway itself failed (image not found, no command, a bad -w/-u/--cpus, sandbox set-up)
  126      the command is not executable
  127      the command was not found
  130/143  slipway was interrupted by SIGINT/SIGTERM (the container is torn down first)
  2        usage error (unknown flag, a --memory it cannot read)";

/// `--network` values of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// A private network namespace with outbound access through slirp4netns (the host's loopback unreachable)
    Default,
    /// A private network namespace with only loopback
    None,
    /// The host's network namespace
    Host,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Keep stdin open: pass slipway's stdin to the command
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Bind a host path into the container (absolute paths; the container side is created when missing)
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro|rw]")]
    pub volumes: Vec<String>,
    /// Set an environment variable (after the image's `Env`); `KEY` alone takes the caller's value
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// User to run as: name, uid, name:group or uid:gid (default: the image's `User`, else root)
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory, created when missing (default: the image's `WorkingDir`, else /)
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Replace the image's ENTRYPOINT (and drop its CMD); "" runs COMMAND without one
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Network: default = private with outbound access (slirp4netns), none = loopback only, host = the host's network
    #[arg(long, value_enum, default_value_t = NetworkArg::Default, value_name = "MODE")]
    pub network: NetworkArg,
    /// Memory limit, with Docker's units: b, k, m, g (e.g. 512m, 1g)
    #[arg(short = 'm', long, value_name = "BYTES", value_parser = super::units::parse_memory)]
    pub memory: Option<u64>,
    /// Most processes the container may have
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pids_limit: Option<u64>,
    /// CPU time limit in CPUs (e.g. 1.5)
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// An image name or id
    pub image: String,
    /// The command and its arguments (replace the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}
