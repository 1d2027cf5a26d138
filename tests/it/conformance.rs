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
    /// A known difference from BuildKit, with its reason: the case must fail.
    difference: Option<String>,
    /// Builds of the same Dockerfile and context with other arguments and expectations (each a
    /// table of `args`, `files`, `absent`, `config`, `unset`, `failure`); every one must hold.
    #[serde(default)]
    variants: Vec<Expect>,
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
    /// Text the error output contains.
    contains: String,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/conformance")
}

/// One registry and one busybox base for every area tested by this process.
fn base() -> &'static (Registry, String) {
    static BASE: OnceLock<(Registry, String)> = OnceLock::new();
    BASE.get_or_init(|| {
        let registry = Registry::start();
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
        let result = match expect.variants.is_empty() {
            true => run_case(case, &expect.setup, &expect),
            false => expect.variants.iter().try_for_each(|variant| run_case(case, &expect.setup, variant)),
        };
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

/// One build of `case` (its context prepared with `setup`) checked against `expect`.
fn run_case(case: &Path, setup: &[Setup], expect: &Expect) -> Result<(), String> {
    let (_, base) = base();
    let env = BuildEnv::new();
    let context = case.join("context");
    if context.is_dir() {
        copy_tree(&context, &env.ctx());
    }
    std::fs::copy(case.join("Dockerfile"), env.ctx().join("Dockerfile")).unwrap();
    for step in setup {
        prepare(&env.ctx(), step);
    }
    let mut args: Vec<&str> = vec!["-t", "case:1", "--build-arg"];
    let base_arg = format!("BASE={base}");
    args.push(&base_arg);
    args.extend(expect.args.iter().map(String::as_str));
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
        if !stderr.contains(&failure.contains) {
            return Err(format!("the error does not say {:?}:\n{stderr}", failure.contains));
        }
        return Ok(());
    }
    if !out.status.success() {
        return Err(format!("the build failed:\n{}", describe(&out)));
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = raw_unpack(&env, scratch.path());
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
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("\n")),
    }
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

areas!(add, args, cmd, copy, dockerignore, exclude, heredoc, metadata, multistage, onbuild, platform, user, workdir);
