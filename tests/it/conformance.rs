//! Conformance with BuildKit, data-driven: every case under `fixtures/conformance/<area>/<case>/`
//! is a `Dockerfile`, an optional `context/` directory and an `expect.toml` that says what
//! BuildKit builds from them (which of its tests asserts it, the files of the image — content,
//! kind, mode, owner, link target — and the paths it must not have) or how the build fails.
//!
//! The base image is busybox, pushed to a local registry and named by the build-arg `BASE`
//! (cases start with `ARG BASE` / `FROM $BASE`), so every case also pulls its base as a user's
//! build would. A case that records a `difference` is a known, written-down difference: it must
//! still fail, so a fix cannot go unnoticed (the harness then says to remove the note).
//! `docs/conformance.md` lists every case; the harness checks that it does.
//!
//! A build may be given secrets and ssh agents (written to files outside the context, as
//! BuildKit's tests hand them to its session), and the builds of a case may share one store,
//! so that a later build sees the build cache and the cache mounts of the earlier ones.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::support::build::BuildEnv;
use crate::support::describe;
use crate::support::registry::Registry;

/// What a case expects.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The BuildKit test (or documentation) that asserts this behaviour.
    #[serde(default)]
    buildkit: String,
    /// Extra `slipway build` arguments.
    #[serde(default)]
    args: Vec<String>,
    /// Build secrets, id → value: each value is written to a file outside the context and
    /// passed as `--secret id=ID,src=FILE`.
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// SSH agent ids to forward: for each, a key pair is made with `ssh-keygen` (ed25519, no
    /// passphrase) outside the context and the private key passed as `--ssh ID=KEY` (slipway
    /// serves it from an agent of its own, as BuildKit's tests give a key file to its ssh
    /// provider).
    #[serde(default)]
    ssh: Vec<String>,
    /// Context files, path → content, (re)written before this build: with `one_store`, what
    /// changes between two builds of the same case.
    #[serde(default)]
    write: BTreeMap<String, String>,
    /// Context preparation git cannot carry (modes, symlinks, empty directories).
    #[serde(default)]
    setup: Vec<Setup>,
    /// Files the image must have.
    #[serde(default)]
    files: Vec<FileExpect>,
    /// Paths the image must not have.
    #[serde(default)]
    absent: Vec<String>,
    /// Fields of the image config's `config` object (`Entrypoint`, `Env`, ...) and their values.
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    /// Fields of the image config's `config` object that must not be set (absent or null).
    #[serde(default)]
    unset: Vec<String>,
    /// The build must fail instead.
    failure: Option<Failure>,
    /// Paths whose content must be the same as in the image of the build before (a cache
    /// hit that BuildKit's tests observe this way); only with `one_store`.
    #[serde(default)]
    unchanged: Vec<String>,
    /// A known difference from BuildKit, with its reason: the case must fail.
    difference: Option<String>,
    /// Builds of the same Dockerfile and context with other arguments and expectations (each a
    /// table of `args`, `secrets`, `ssh`, `write`, `files`, `absent`, `config`, `unset`,
    /// `unchanged`, `failure`); every one must hold.
    #[serde(default)]
    variants: Vec<Expect>,
    /// Run the `variants` one after another in one store and one context, instead of each in
    /// fresh ones: a build sees the build cache and the cache mounts the ones before left.
    #[serde(default)]
    one_store: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    path: String,
    /// Octal permission bits to set.
    mode: Option<String>,
    /// Make `path` a symbolic link to this target.
    symlink: Option<String>,
    /// Make `path` an (empty) directory.
    #[serde(default)]
    dir: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExpect {
    path: String,
    /// `file`, `dir` or `symlink`.
    kind: Option<String>,
    content: Option<String>,
    /// Texts the content must hold.
    #[serde(default)]
    contains: Vec<String>,
    /// Texts the content must not hold.
    #[serde(default)]
    lacks: Vec<String>,
    /// Octal permission bits (`0755`).
    mode: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    /// A symbolic link's target.
    link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Failure {
    /// The Dockerfile line the error names (`Dockerfile:LINE:`).
    line: Option<u32>,
    /// Text the error output contains (a string, or a list of texts it contains each of).
    contains: Texts,
}

/// One text or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Texts {
    One(String),
    Many(Vec<String>),
}

impl Texts {
    fn all(&self) -> &[String] {
        match self {
            Texts::One(text) => std::slice::from_ref(text),
            Texts::Many(texts) => texts,
        }
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/conformance")
}

/// One registry and one busybox base for every area tested by this process.
fn base() -> &'static (Registry, String) {
    static BASE: OnceLock<(Registry, String)> = OnceLock::new();
    BASE.get_or_init(|| {
        let registry = Registry::for_the_process();
        let reference = format!("{}/conformance/busybox:1", registry.host());
        let env = BuildEnv::new();
        env.tc.ok(&["push", "bb", &reference]);
        (registry, reference)
    })
}

/// Runs every case of `area`; fails listing each case that does not hold.
fn run_area(area: &str) {
    let dir = fixtures().join(area);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    let mut failed = Vec::new();
    let mut differences = 0;
    for case in &cases {
        let name = format!("{area}/{}", case.file_name().unwrap().to_string_lossy());
        let expect: Expect = toml::from_str(&std::fs::read_to_string(case.join("expect.toml")).unwrap())
            .unwrap_or_else(|e| panic!("{name}/expect.toml: {e}"));
        assert!(!expect.buildkit.is_empty(), "{name}: say which BuildKit test asserts this");
        check_shape(&name, &expect);
        let result = run_builds(case, &expect);
        match (&expect.difference, result) {
            (None, Ok(())) => {}
            (None, Err(why)) => failed.push(format!("{name}: {why}")),
            (Some(_), Err(_)) => differences += 1,
            (Some(_), Ok(())) => failed.push(format!("{name}: now behaves as BuildKit: remove its `difference`")),
        }
    }
    eprintln!("conformance {area}: {} of {} cases as BuildKit", cases.len() - differences, cases.len());
    assert!(failed.is_empty(), "{} case(s) of {area} fail:\n{}", failed.len(), failed.join("\n\n"));
}

/// Fields that belong to the case put in a variant (TOML puts every key after `[[variants]]`
/// into the last variant) or that cannot hold: refused, rather than silently ignored.
fn check_shape(name: &str, expect: &Expect) {
    for variant in &expect.variants {
        assert!(
            variant.buildkit.is_empty()
                && variant.setup.is_empty()
                && variant.difference.is_none()
                && variant.variants.is_empty()
                && !variant.one_store,
            "{name}: `buildkit`, `setup`, `difference`, `variants` and `one_store` belong to the case: \
             write them before the first [[variants]]"
        );
    }
    let unchanged = !expect.unchanged.is_empty() || expect.variants.iter().any(|v| !v.unchanged.is_empty());
    assert!(!unchanged || expect.one_store, "{name}: `unchanged` compares with the build before: needs `one_store`");
}

/// Every build of `case`: the case itself, or each of its `variants` (in one store when the
/// case says `one_store`, else each in its own); stops at the first that does not hold.
fn run_builds(case: &Path, expect: &Expect) -> Result<(), String> {
    let builds: Vec<&Expect> = match expect.variants.is_empty() {
        true => vec![expect],
        false => expect.variants.iter().collect(),
    };
    let several = builds.len() > 1;
    let mut shared: Option<BuildEnv> = None;
    // The image of the build before, unpacked (for `unchanged`).
    let mut previous: Option<(tempfile::TempDir, PathBuf)> = None;
    for (n, build) in builds.into_iter().enumerate() {
        let env = match shared.take() {
            Some(env) if expect.one_store => env,
            _ => prepared_env(case, &expect.setup),
        };
        let result = run_case(&env, build, previous.as_ref().map(|(_, rootfs)| rootfs.as_path()));
        let at = |why: String| match several {
            true => format!("build {} of the variants: {why}", n + 1),
            false => why,
        };
        previous = result.map_err(at)?;
        if expect.one_store {
            shared = Some(env);
        }
    }
    Ok(())
}

/// A store and the case's context (`context/`, the Dockerfile, then `setup`).
fn prepared_env(case: &Path, setup: &[Setup]) -> BuildEnv {
    let env = BuildEnv::new();
    let context = case.join("context");
    if context.is_dir() {
        copy_tree(&context, &env.ctx());
    }
    std::fs::copy(case.join("Dockerfile"), env.ctx().join("Dockerfile")).unwrap();
    for step in setup {
        prepare(&env.ctx(), step);
    }
    env
}

/// One build in `env` checked against `expect` (`previous`: the build before's unpacked image,
/// for `unchanged`); gives the image unpacked, none when the build was to fail.
fn run_case(
    env: &BuildEnv,
    expect: &Expect,
    previous: Option<&Path>,
) -> Result<Option<(tempfile::TempDir, PathBuf)>, String> {
    let (_, base) = base();
    for (path, content) in &expect.write {
        env.write(path, content);
    }
    let mut args: Vec<String> = vec!["-t".into(), "case:1".into(), "--build-arg".into(), format!("BASE={base}")];
    args.extend(expect.args.iter().cloned());
    // Outside the context, so that nothing of them can reach the image through it.
    let private = env.tc.path().join("private");
    std::fs::create_dir_all(&private).unwrap();
    for (id, value) in &expect.secrets {
        let file = private.join(format!("secret-{id}"));
        std::fs::write(&file, value).unwrap();
        args.extend(["--secret".into(), format!("id={id},src={}", file.display())]);
    }
    for id in &expect.ssh {
        let key = private.join(format!("ssh-{id}"));
        if !key.exists() {
            keygen(&key);
        }
        args.extend(["--ssh".into(), format!("{id}={}", key.display())]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.build(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(failure) = &expect.failure {
        if out.status.success() {
            return Err("the build succeeded; BuildKit fails it".to_string());
        }
        if let Some(line) = failure.line
            && !stderr.contains(&format!("Dockerfile:{line}:"))
        {
            return Err(format!("the error does not name Dockerfile:{line}:\n{stderr}"));
        }
        if let Some(text) = failure.contains.all().iter().find(|text| !stderr.contains(text.as_str())) {
            return Err(format!("the error does not say {text:?}:\n{stderr}"));
        }
        return Ok(None);
    }
    if !out.status.success() {
        return Err(format!("the build failed:\n{}", describe(&out)));
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = raw_unpack(env, scratch.path());
    let mut problems = Vec::new();
    let config = env.config("case:1");
    for (key, want) in &expect.config {
        let want = serde_json::to_value(want).unwrap();
        let got = &config["config"][key];
        if *got != want {
            problems.push(format!("config {key}: {got}, expected {want}"));
        }
    }
    for key in &expect.unset {
        let got = &config["config"][key];
        if !got.is_null() {
            problems.push(format!("config {key}: {got}, expected it unset"));
        }
    }
    for file in &expect.files {
        if let Err(why) = check_file(&rootfs, file) {
            problems.push(why);
        }
    }
    for path in &expect.absent {
        if rootfs.join(path.trim_start_matches('/')).symlink_metadata().is_ok() {
            problems.push(format!("{path} exists; BuildKit's image does not have it"));
        }
    }
    for path in &expect.unchanged {
        let Some(previous) = previous else {
            panic!("`unchanged` needs a successful build before it in a `one_store` case");
        };
        let read = |root: &Path| std::fs::read(root.join(path.trim_start_matches('/')));
        match (read(previous), read(&rootfs)) {
            (Ok(before), Ok(now)) if before == now => {}
            (Ok(before), Ok(now)) => problems.push(format!(
                "{path} is {:?}, the build before's {:?}: BuildKit's stays the same",
                String::from_utf8_lossy(&now),
                String::from_utf8_lossy(&before)
            )),
            (before, now) => problems.push(format!("{path}: before {before:?}, now {now:?}")),
        }
    }
    match problems.is_empty() {
        true => Ok(Some((scratch, rootfs))),
        false => Err(problems.join("\n")),
    }
}

/// `ssh-keygen`: an ed25519 key pair without passphrase at `key` and `key.pub`.
fn keygen(key: &Path) {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "slipway-conformance", "-f"])
        .arg(key)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn ssh-keygen (scripts/install-deps installs openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {}", describe(&out));
}

/// The image's root filesystem as umoci unpacks it (`raw unpack`: no runtime config, whose
/// user umoci would have to find in the image).
fn raw_unpack(env: &BuildEnv, dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    env.tc.ok(&["save", "case:1", "--format", "oci-dir", "-o", layout.to_str().unwrap()]);
    let rootfs = dir.join("rootfs");
    let out = std::process::Command::new("umoci")
        .args(["raw", "unpack", "--image", &format!("{}:1", layout.display()), rootfs.to_str().unwrap()])
        .output()
        .expect("run umoci");
    assert!(out.status.success(), "umoci raw unpack: {}", describe(&out));
    rootfs
}

fn check_file(rootfs: &Path, file: &FileExpect) -> Result<(), String> {
    let path = rootfs.join(file.path.trim_start_matches('/'));
    let meta = path.symlink_metadata().map_err(|e| format!("{}: {e}", file.path))?;
    let kind = match meta.file_type() {
        t if t.is_symlink() => "symlink",
        t if t.is_dir() => "dir",
        t if t.is_file() => "file",
        _ => "other",
    };
    let mut wrong = BTreeMap::new();
    if let Some(want) = &file.kind
        && want != kind
    {
        wrong.insert("kind", format!("{kind}, expected {want}"));
    }
    if let Some(want) = &file.mode {
        let want = u32::from_str_radix(want, 8).expect("octal mode in expect.toml");
        let mode = meta.permissions().mode() & 0o7777;
        if kind != "symlink" && mode != want {
            wrong.insert("mode", format!("{mode:04o}, expected {want:04o}"));
        }
    }
    if let Some(uid) = file.uid
        && meta.uid() != uid
    {
        wrong.insert("uid", format!("{}, expected {uid}", meta.uid()));
    }
    if let Some(gid) = file.gid
        && meta.gid() != gid
    {
        wrong.insert("gid", format!("{}, expected {gid}", meta.gid()));
    }
    if let Some(want) = &file.content {
        let content = std::fs::read_to_string(&path).unwrap_or_default();
        if &content != want {
            wrong.insert("content", format!("{content:?}, expected {want:?}"));
        }
    }
    if !file.contains.is_empty() || !file.lacks.is_empty() {
        let content = std::fs::read_to_string(&path).unwrap_or_default();
        for text in &file.contains {
            if !content.contains(text.as_str()) {
                wrong.insert("content", format!("{content:?} does not hold {text:?}"));
            }
        }
        for text in &file.lacks {
            if content.contains(text.as_str()) {
                wrong.insert("content", format!("{content:?} holds {text:?}"));
            }
        }
    }
    if let Some(want) = &file.link {
        let target = std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
        if &target != want {
            wrong.insert("link", format!("{target:?}, expected {want:?}"));
        }
    }
    match wrong.is_empty() {
        true => Ok(()),
        false => Err(format!("{}: {wrong:?}", file.path)),
    }
}

fn prepare(context: &Path, setup: &Setup) {
    let path = context.join(&setup.path);
    if setup.dir {
        std::fs::create_dir_all(&path).unwrap();
    }
    if let Some(target) = &setup.symlink {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
    }
    if let Some(mode) = &setup.mode {
        let mode = u32::from_str_radix(mode, 8).expect("octal mode in expect.toml");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `docs/conformance.md` names every case (`area/case`), and no case that does not exist.
#[test]
fn the_document_lists_every_case() {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/conformance.md")).unwrap();
    let mut cases = Vec::new();
    for area in std::fs::read_dir(fixtures()).unwrap() {
        let area = area.unwrap().path();
        for case in std::fs::read_dir(&area).unwrap() {
            let case = case.unwrap().path();
            let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
            cases.push(format!("{}/{}", name(&area), name(&case)));
        }
    }
    let missing: Vec<&String> = cases.iter().filter(|c| !doc.contains(&format!("`{c}`"))).collect();
    assert!(missing.is_empty(), "docs/conformance.md does not list: {missing:?}");
    let listed = doc.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(listed, cases.len(), "docs/conformance.md lists a case that does not exist");
}

macro_rules! areas {
    ($($area:ident),* $(,)?) => {
        $(
            #[test]
            fn $area() {
                run_area(stringify!($area));
            }
        )*
    };
}

areas!(
    add,
    args,
    cmd,
    copy,
    dockerignore,
    exclude,
    heredoc,
    metadata,
    mount,
    multistage,
    onbuild,
    platform,
    secret,
    security,
    ssh,
    user,
    workdir,
);
