//! `ADD` of remote sources (#14 items 1 and 2): files from URLs served on 127.0.0.1 by the test
//! (`support::files`), trees from git repositories over `file://` and from `git daemon` on
//! 127.0.0.1 (`support::git`). Nothing here reaches outside the machine.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::build::{BuildEnv, StepEvents, steps};
use crate::support::describe;
use crate::support::files::{FileServer, Reply};
use crate::support::git::{GitDaemon, Repo, git};
use base64::Engine;

const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
const LAST_MODIFIED_SECS: &str = "1700000000";

fn sha256(bytes: &[u8]) -> String {
    slipway::oci::Digest::of(bytes).to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Files under the store's blobs: a failing step must add none.
fn blob_count(env: &BuildEnv) -> usize {
    std::fs::read_dir(env.tc.root().join("blobs/sha256")).map_or(0, |d| d.count())
}

/// The step whose name contains `needle`, from rawjson events.
fn step<'a>(all: &'a [StepEvents], needle: &str) -> &'a StepEvents {
    all.iter().find(|s| s.name.contains(needle)).unwrap_or_else(|| panic!("no step {needle:?} in {all:#?}"))
}

#[test]
fn a_url_becomes_a_0600_file_named_by_its_path_with_last_modified_as_mtime() {
    let server = FileServer::start();
    let hello = b"hello from the server\n".repeat(100);
    server.file("/dl/hello.txt", &hello, &[("Last-Modified", LAST_MODIFIED)]);
    server.file("/", b"root\n", &[]);
    server.file("/cd/", b"notes\n", &[("Content-Disposition", "attachment; filename=\"../notes.txt\"")]);
    let tarball = std::fs::read(fixture("release-tarball/tool-1.0.tar.gz")).unwrap();
    server.file("/dl/tool-1.0.tar.gz", &tarball, &[]);
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM bb\n\
         ADD {hello} /data/\n\
         ADD --chown=1000:1001 --chmod=640 {hello} /owned\n\
         ADD {root} /unnamed/\n\
         ADD {cd} /disp/\n\
         ADD {tar} /tars/\n",
        hello = server.url("/dl/hello.txt"),
        root = server.url("/"),
        cd = server.url("/cd/"),
        tar = server.url("/dl/tool-1.0.tar.gz"),
    ));
    let all = env.build_events(&["-t", "img"]);
    let out = env.run_stdout(
        "img",
        &["sh", "-c", "stat -c '%n %a %u:%g %Y %s' /data/hello.txt /owned; ls /unnamed; ls /disp; ls /tars"],
    );
    let size = hello.len();
    assert_eq!(
        out,
        format!(
            "/data/hello.txt 600 0:0 {LAST_MODIFIED_SECS} {size}\n/owned 640 1000:1001 {LAST_MODIFIED_SECS} {size}\n\
             __unnamed__\nnotes.txt\ntool-1.0.tar.gz\n"
        ),
        "a remote archive is never unpacked"
    );
    // The download's size is reported on its task, in bytes.
    let task = all
        .iter()
        .find(|e| e["type"] == "task_started" && e["name"].as_str().unwrap_or("").contains("/dl/hello.txt"))
        .expect("a task for the download");
    let last = all
        .iter()
        .rfind(|e| e["type"] == "task_progress" && e["id"] == task["id"])
        .unwrap_or_else(|| panic!("no progress for the download: {all:#?}"));
    assert_eq!((last["current"].as_u64(), last["unit"].as_str()), (Some(size as u64), Some("bytes")));
}

#[test]
fn checksum_is_verified_before_any_layer_is_written() {
    let server = FileServer::start();
    let body = b"release 1.0\n";
    server.file("/r.txt", body, &[]);
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM bb\nADD --checksum={} {} /r.txt\n", sha256(body), server.url("/r.txt")));
    env.build_ok(&["-t", "good"]);
    assert_eq!(env.run_stdout("good", &["cat", "/r.txt"]), "release 1.0\n");

    let wrong = sha256(b"something else");
    env.dockerfile(&format!("FROM bb\nADD --checksum={wrong} {} /r.txt\n", server.url("/r.txt")));
    let before = blob_count(&env);
    let out = env.build(&["-t", "bad", "--no-cache"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("checksum mismatch")
            && err.contains(&server.url("/r.txt"))
            && err.contains(&wrong)
            && err.contains(&sha256(body)),
        "{err}"
    );
    assert_eq!(blob_count(&env), before, "no layer was written");
    assert!(!env.tc.run(&["inspect", "bad"]).status.success());

    env.dockerfile(&format!("FROM bb\nADD --checksum=md5:abc {} /r.txt\n", server.url("/r.txt")));
    let out = env.build(&[]);
    assert!(!out.status.success() && stderr(&out).contains("invalid --checksum"), "{}", describe(&out));
}

/// Catalogue A5 in part (the rest, with the size limit, in `catalogue_ac`): a redirect to
/// `file://` is refused, a loop stops after 10.
#[test]
fn redirects_are_followed_without_credentials_to_another_port() {
    let first = FileServer::start();
    let second = FileServer::start();
    second.file("/f", b"moved\n", &[]);
    first.redirect("/r", 302, &second.url("/f"));
    first.redirect("/to-file", 302, "file:///etc/passwd");
    first.redirect("/loop", 302, "/loop");
    let url = format!("http://user:secret@{}/r", first.host());
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM bb\nADD {url} /moved\n"));
    env.build_ok(&["-t", "img"]);
    assert_eq!(env.run_stdout("img", &["cat", "/moved"]), "moved\n");
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("user:secret"));
    let sent: Vec<_> = first.log().iter().map(|s| s.header("authorization").map(str::to_string)).collect();
    assert_eq!(sent, vec![Some(expected)], "the URL's own host gets its credentials");
    let log = second.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].header("authorization"), None, "another port gets none: {log:?}");
    let history = String::from_utf8_lossy(&env.tc.ok(&["history", "--no-trunc", "img"]).stdout).into_owned();
    assert!(!history.contains("secret") && history.contains("user:***@"), "{history}");

    for (path, message) in [("/to-file", "not http or https"), ("/loop", "more than 10 redirects")] {
        env.dockerfile(&format!("FROM bb\nADD {} /x\n", first.url(path)));
        let out = env.build(&[]);
        assert!(!out.status.success() && stderr(&out).contains(message), "{path}: {}", describe(&out));
    }
    assert_eq!(first.statuses("/loop").len(), 11, "at most 10 redirects are followed");
}

#[test]
fn an_unchanged_url_is_a_hit_after_a_conditional_request_and_a_change_is_explained() {
    let server = FileServer::start();
    server.file("/f", b"one\n", &[("ETag", "\"a\"")]);
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM bb\nADD {} /f\nRUN cat /f\n", server.url("/f")));
    let first = steps(&env.build_events(&["-t", "img"]));
    assert_eq!(step(&first, "ADD").cache.as_deref(), Some("miss"));
    let second = steps(&env.build_events(&["-t", "img"]));
    assert_eq!(step(&second, "ADD").cache.as_deref(), Some("hit"), "{second:#?}");
    assert_eq!(step(&second, "RUN").cache.as_deref(), Some("hit"));
    assert_eq!(server.statuses("/f"), vec![200, 304], "the second build asked with If-None-Match");
    assert_eq!(server.log()[1].header("if-none-match"), Some("\"a\""));

    server.file("/f", b"two\n", &[("ETag", "\"b\"")]);
    let third = steps(&env.build_events(&["-t", "img"]));
    let add = step(&third, "ADD");
    assert_eq!(add.cache.as_deref(), Some("miss"));
    assert_eq!(add.reason.as_deref(), Some(format!("{} changed (etag \"a\" → etag \"b\")", server.url("/f")).as_str()));
    assert_eq!(env.run_stdout("img", &["cat", "/f"]), "two\n");

    // A resource that keeps its content under a new ETag is still a hit.
    server.file("/f", b"two\n", &[("ETag", "\"c\"")]);
    let fourth = steps(&env.build_events(&["-t", "img"]));
    assert_eq!(step(&fourth, "ADD").cache.as_deref(), Some("hit"), "{fourth:#?}");
    // --no-cache downloads without asking.
    let before = server.log().len();
    env.build_ok(&["--no-cache"]);
    let log = server.log();
    assert_eq!((log.len() - before, log.last().unwrap().header("if-none-match")), (1, None));
}

#[test]
fn the_proxy_build_args_are_honoured() {
    let proxy = FileServer::start();
    proxy.file("/tool.txt", b"through the proxy\n", &[]);
    let direct = FileServer::start();
    direct.file("/direct.txt", b"direct\n", &[]);
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM bb\nADD http://example.invalid/tool.txt /t\nADD {} /d\n", direct.url("/direct.txt")));
    let proxy_arg = format!("HTTP_PROXY=http://{}", proxy.host());
    env.build_ok(&["-t", "img", "--build-arg", &proxy_arg, "--build-arg", "no_proxy=127.0.0.1"]);
    assert_eq!(env.run_stdout("img", &["cat", "/t", "/d"]), "through the proxy\ndirect\n");
    let targets: Vec<String> = proxy.log().iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, vec!["http://example.invalid/tool.txt".to_string()], "NO_PROXY kept 127.0.0.1 direct");
    assert_eq!(direct.statuses("/direct.txt"), vec![200]);
    let history = String::from_utf8_lossy(&env.tc.ok(&["history", "--no-trunc", "img"]).stdout).into_owned();
    assert!(!history.contains(&proxy.host()), "proxy values stay out of the image: {history}");
}

#[test]
fn a_stalled_download_times_out() {
    let server = FileServer::start();
    server.serve(
        "/slow",
        Reply { status: 200, body: b"late".to_vec(), delay: Duration::from_secs(20), ..Reply::default() },
    );
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM bb\nADD {} /x\n", server.url("/slow")));
    let started = Instant::now();
    let out = env.build_cmd(&[]).env("SLIPWAY_ADD_TIMEOUT_MS", "500").output().unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains(&server.url("/slow")), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(15), "gave up after {:?}", started.elapsed());
}

/// A repository: v1 (tag) with app/hello.sh "v1", main one commit later with "v2", branch dev
/// with "dev". Returns the repo and the commits of v1 and main.
fn sample_repo(dir: &Path) -> (Repo, String, String) {
    let repo = Repo::new(dir, "r");
    let v1 = repo.commit(&[("README", "readme\n"), ("app/hello.sh", "echo v1\n")], "one");
    repo.tag("v1");
    let main = repo.commit(&[("app/hello.sh", "echo v2\n")], "two");
    git(&repo.work, &["checkout", "-q", "-b", "dev"]);
    repo.commit(&[("app/hello.sh", "echo dev\n")], "dev");
    git(&repo.work, &["checkout", "-q", "main"]);
    (repo, v1, main)
}

#[test]
fn git_sources_over_file_tags_branches_commits_subdirs_and_the_git_dir() {
    let env = BuildEnv::new();
    let (repo, v1, main) = sample_repo(env.tc.path());
    let url = repo.file_url();
    env.dockerfile(&format!(
        "FROM bb\n\
         ADD {url}#v1:app /tag/\n\
         ADD {url}#main /main/\n\
         ADD {url}?branch=dev&subdir=app /devbranch/\n\
         ADD {url}#{v1} /commit/\n\
         ADD --keep-git-dir {url}#main /kept/\n\
         ADD --checksum={main} {url}?ref=main&subdir=app /sum/\n\
         ADD {url}?tag=v1&keep-git-dir=true /qkept/\n\
         ADD --chown=7:8 --chmod=700 {url}#v1:app /owned/\n"
    ));
    env.build_ok(&["-t", "img"]);
    let script = "cat /tag/hello.sh /main/app/hello.sh /devbranch/hello.sh /commit/app/hello.sh /sum/hello.sh; \
                  cat /kept/.git/HEAD /qkept/.git/HEAD; ls -a /main; test ! -e /kept/.git/FETCH_HEAD && echo no-fetch-head; \
                  stat -c '%u:%g' /main/README; stat -c '%a %u:%g' /owned/hello.sh";
    let out = env.run_stdout("img", &["sh", "-c", script]);
    assert_eq!(
        out,
        format!(
            "echo v1\necho v2\necho dev\necho v1\necho v2\n{main}\n{v1}\n.\n..\nREADME\napp\nno-fetch-head\n0:0\n\
             700 7:8\n"
        )
    );
}

/// Catalogue A6: refs `#-bfoo`, `#--upload-pack=…`, `?ref=--…`, subdirs leaving the checkout
/// and a host starting with `-` are refused before git runs, at the ADD's line; the store stays
/// consistent and nothing runs on the host.
#[test]
fn git_checksum_mismatch_and_option_like_parts_are_refused() {
    let env = BuildEnv::new();
    let (repo, v1, main) = sample_repo(env.tc.path());
    let url = repo.file_url();
    env.dockerfile(&format!("FROM bb\nADD --checksum={v1} {url}#main /x/\n"));
    let before = blob_count(&env);
    let out = env.build(&[]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("checksum mismatch"), "{}", describe(&out));
    assert!(err.contains(&url) && err.contains(&v1) && err.contains(&main), "{err}");
    assert_eq!(blob_count(&env), before, "no layer was written");
    env.dockerfile(&format!("FROM bb\nADD {url}?ref=main&checksum={} /x/\n", &v1[..10]));
    let out = env.build(&[]);
    assert!(!out.status.success() && stderr(&out).contains("checksum mismatch"), "{}", describe(&out));

    let marker = env.tc.path().join("pwned");
    let cases = [
        format!("{url}#-bfoo"),
        format!("{url}#--upload-pack=touch{}", marker.display()),
        format!("{url}?ref=--upload-pack=touch"),
        format!("{url}#main:../../.."),
        format!("{url}?subdir=app/../../x"),
        "git@-oProxyCommand=touch:r.git".to_string(),
    ];
    for word in cases {
        env.dockerfile(&format!("FROM bb\nADD {word} /x/\n"));
        let out = env.build(&[]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains("refused git source"), "{word}: {}", describe(&out));
        assert!(err.contains("Dockerfile:2"), "the error names the line: {err}");
    }
    assert!(!marker.exists());
    assert_eq!(blob_count(&env), before, "no layer was written");
    env.tc.ok(&["fsck", "--strict"]);
}

/// Catalogue A6: server-provided symlinks out of the checkout — a subdir through an absolute link
/// or a `../..` chain — resolve inside the checkout (not found), never on the host.
#[test]
fn a_subdir_through_a_symlink_stays_inside_the_checkout() {
    let env = BuildEnv::new();
    let repo = Repo::new(env.tc.path(), "links");
    let secret = env.tc.path().join("host-secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key"), "host file").unwrap();
    std::os::unix::fs::symlink(&secret, repo.work.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../..", repo.work.join("up")).unwrap();
    repo.commit(&[("inside/f", "in\n")], "links");
    let url = repo.file_url();
    for subdir in ["abs", "up/etc"] {
        env.dockerfile(&format!("FROM bb\nADD {url}#main:{subdir} /x/\n"));
        let out = env.build(&["-t", "img"]);
        assert!(
            !out.status.success() && stderr(&out).contains("not found"),
            "{subdir}: a link out of the checkout is resolved inside it: {}",
            describe(&out)
        );
    }
    // Links themselves are copied as links.
    env.dockerfile(&format!("FROM bb\nADD {url}#main /x/\n"));
    env.build_ok(&["-t", "img"]);
    let out = env.run_stdout("img", &["sh", "-c", "readlink /x/abs; cat /x/inside/f"]);
    assert_eq!(out, format!("{}\nin\n", secret.display()));
    assert_eq!(std::fs::read_to_string(secret.join("key")).unwrap(), "host file");
    assert_eq!(std::fs::read_dir(&secret).unwrap().count(), 1, "something was written beside the host file");
    env.tc.ok(&["fsck", "--strict"]);
}

#[test]
fn submodules_are_checked_out_unless_told_not_to() {
    let env = BuildEnv::new();
    let lib = Repo::new(env.tc.path(), "lib");
    lib.commit(&[("lib.txt", "library\n")], "lib");
    let app = Repo::new(env.tc.path(), "app");
    app.commit(&[("main.txt", "app\n")], "app");
    git(&app.work, &["-c", "protocol.file.allow=always", "submodule", "add", "-q", &lib.file_url(), "vendor/lib"]);
    git(&app.work, &["commit", "-q", "-m", "submodule"]);
    git(&app.work, &["push", "-q", "origin", "main"]);
    let url = app.file_url();
    env.dockerfile(&format!("FROM bb\nADD {url}#main /with/\nADD {url}?ref=main&submodules=false /without/\n"));
    env.build_ok(&["-t", "img"]);
    let out = env.run_stdout("img", &["sh", "-c", "cat /with/vendor/lib/lib.txt; ls -A /without/vendor/lib | wc -l"]);
    assert_eq!(out, "library\n0\n");
}

#[test]
fn git_daemon_sources_commit_ids_and_commit_time_mtimes() {
    let env = BuildEnv::new();
    let (repo, v1, _) = sample_repo(env.tc.path());
    let daemon = GitDaemon::start(env.tc.path());
    let url = daemon.url("r.git");
    assert!(repo.bare.ends_with("r.git"));
    env.dockerfile(&format!("FROM bb\nADD {url}#v1:app /app/\nADD {url}#{v1} /byid/\n"));
    env.build_ok(&["-t", "img", "--source-date-epoch", "1700000000"]);
    let out = env.run_stdout(
        "img",
        &["sh", "-c", "cat /app/hello.sh /byid/app/hello.sh; stat -c '%Y' /app/hello.sh /byid/README"],
    );
    assert_eq!(out, "echo v1\necho v1\n1600000000\n1600000000\n", "files carry the commit's time");
}

#[test]
fn a_git_source_is_keyed_on_its_commit() {
    let env = BuildEnv::new();
    let (repo, _, main) = sample_repo(env.tc.path());
    env.dockerfile(&format!("FROM bb\nADD {}#main:app /app/\n", repo.file_url()));
    let first = steps(&env.build_events(&["-t", "img"]));
    assert_eq!(step(&first, "ADD").cache.as_deref(), Some("miss"));
    let second = steps(&env.build_events(&["-t", "img"]));
    assert_eq!(step(&second, "ADD").cache.as_deref(), Some("hit"));
    let next = repo.commit(&[("app/hello.sh", "echo v3\n")], "three");
    let third = steps(&env.build_events(&["-t", "img"]));
    let add = step(&third, "ADD");
    assert_eq!(add.cache.as_deref(), Some("miss"));
    let reason = add.reason.clone().unwrap_or_default();
    assert!(reason.contains(&format!("changed (commit {} → commit {})", &main[..12], &next[..12])), "{reason}");
    assert_eq!(env.run_stdout("img", &["cat", "/app/hello.sh"]), "echo v3\n");
}

#[test]
fn remote_and_local_sources_together_are_refused() {
    let env = BuildEnv::new();
    env.write("local.txt", "x");
    env.dockerfile("FROM bb\nADD https://127.0.0.1:1/a local.txt /d/\n");
    let out = env.build(&[]);
    assert!(!out.status.success() && stderr(&out).contains("together with other sources"), "{}", describe(&out));
    env.dockerfile("FROM bb\nADD --checksum=sha256:00 local.txt /d/\n");
    let out = env.build(&[]);
    assert!(
        !out.status.success() && stderr(&out).contains("--checksum needs exactly one source"),
        "{}",
        describe(&out)
    );
}

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/remote").join(rel)
}

/// End to end: a release tarball pinned by `--checksum`, unpacked by a RUN, run.
#[test]
fn e2e_release_tarball_with_checksum_builds_and_runs() {
    let server = FileServer::start();
    let tarball = std::fs::read(fixture("release-tarball/tool-1.0.tar.gz")).unwrap();
    server.file("/releases/tool-1.0.tar.gz", &tarball, &[("Last-Modified", LAST_MODIFIED)]);
    let env = BuildEnv::new();
    std::fs::copy(fixture("release-tarball/Dockerfile"), env.ctx().join("Dockerfile")).unwrap();
    let arg = format!("SERVER={}", server.host());
    env.build_ok(&["-t", "tool", "--build-arg", &arg]);
    assert_eq!(env.tc.ok(&["run", "tool"]).stdout, b"tool 1.0\n");
}

/// End to end: a subdirectory of a tagged commit, served by `git daemon`, built and run.
#[test]
fn e2e_git_source_with_a_subdir_builds_and_runs() {
    let env = BuildEnv::new();
    let repo = Repo::new(env.tc.path(), "project");
    let tree = fixture("git-subdir/repo");
    let mut files = Vec::new();
    for entry in walk(&tree) {
        let rel = entry.strip_prefix(&tree).unwrap().to_str().unwrap().to_string();
        files.push((rel, std::fs::read_to_string(&entry).unwrap()));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    repo.commit(&refs, "release");
    repo.tag("v1.0");
    let daemon = GitDaemon::start(env.tc.path());
    std::fs::copy(fixture("git-subdir/Dockerfile"), env.ctx().join("Dockerfile")).unwrap();
    let arg = format!("REPO={}", daemon.url("project.git"));
    env.build_ok(&["-t", "greeter", "--build-arg", &arg]);
    assert_eq!(String::from_utf8_lossy(&env.tc.ok(&["run", "greeter"]).stdout), "hello from the app subdir\n");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// An `https://` source: a blob the local registry serves over TLS, its certificate trusted
/// through `SSL_CERT_FILE` as the registry client trusts it; without that trust the download
/// fails (the certificate is checked).
#[test]
fn an_https_url_is_downloaded_over_verified_tls() {
    use crate::support::registry::{Registry, RegistryConfig};
    let env = BuildEnv::new();
    let registry = Registry::start_with(RegistryConfig { tls: true, ..RegistryConfig::default() });
    let ca = registry.ca();
    let remote = format!("{}/tls/bb:1", registry.host());
    let push = env.tc.cmd().args(["push", "bb", &remote]).env("SSL_CERT_FILE", &ca).output().unwrap();
    assert!(push.status.success(), "{}", describe(&push));
    let inspect: serde_json::Value = serde_json::from_slice(&env.tc.ok(&["inspect", "bb"]).stdout).unwrap();
    let config = inspect[0]["Manifest"]["config"]["digest"].as_str().unwrap().to_string();
    let url = format!("https://{}/v2/tls/bb/blobs/{config}", registry.host());
    env.dockerfile(&format!("FROM bb\nADD --checksum={config} {url} /config.json\n"));
    let out = env.build_cmd(&["-t", "img:1"]).env("SSL_CERT_FILE", &ca).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let got = env.run_stdout("img:1", &["cat", "/config.json"]);
    assert_eq!(sha256(got.as_bytes()), config);
    let untrusted = env.build_cmd(&["--no-cache", "-t", "img:2"]).env_remove("SSL_CERT_FILE").output().unwrap();
    assert_eq!(untrusted.status.code(), Some(1), "{}", describe(&untrusted));
}

/// BuildKit's rule: COPY never fetches a URL; it fails at its line before anything runs.
#[test]
fn copy_of_a_url_is_refused_at_its_line() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nCOPY https://127.0.0.1:9/never /x\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2") && err.contains("source can't be a URL for COPY"), "{err}");
}

/// `ADD --link <url>`: the layer is made on nothing, so a change below keeps it a hit and the
/// same blob (BuildKit's --link); `--chown=root` works without the image's /etc/passwd.
#[test]
fn add_link_of_a_url_is_independent_of_the_layers_below() {
    let server = FileServer::start();
    server.file("/dl/tool.txt", b"tool\n", &[("Last-Modified", LAST_MODIFIED)]);
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM bb\nARG V\nRUN echo $V > /v\nADD --link --chown=root:0 {} /opt/\n",
        server.url("/dl/tool.txt")
    ));
    let layers = |tag: &str| env.config(tag)["rootfs"]["diff_ids"].as_array().unwrap().clone();
    env.build_events(&["--build-arg", "V=1", "-t", "one"]);
    let all = steps(&env.build_events(&["--build-arg", "V=2", "-t", "two"]));
    assert_eq!(step(&all, "RUN echo").cache.as_deref(), Some("miss"), "{all:#?}");
    assert_eq!(step(&all, "ADD --link").cache.as_deref(), Some("hit"), "{all:#?}");
    let (one, two) = (layers("one"), layers("two"));
    assert_ne!(one[one.len() - 2], two[two.len() - 2], "the RUN layers differ");
    assert_eq!(one.last(), two.last(), "the linked layer is the same");
    assert_eq!(env.run_stdout("two", &["sh", "-c", "cat /v /opt/tool.txt; stat -c %u /opt/tool.txt"]), "2\ntool\n0\n");
}

/// Git over ssh, as `git@host:path` and `ssh://` remotes reach it: the build's `--ssh default`
/// agent logs in (no key file of the machine is offered), a host never seen is accepted, a host
/// whose key differs from the caller's `~/.ssh/known_hosts` is refused, and without an agent the
/// error says what failed.
#[test]
fn git_over_ssh_with_the_builds_agent_and_the_callers_known_hosts() {
    use crate::support::sshd::{GIT_HOST, TestSshd};
    let git_host = TestSshd::start_git_host();
    // Another server: its host key stands for a changed key of the git host.
    let other = TestSshd::start();
    let env = BuildEnv::new();
    let (repo, _, _) = sample_repo(env.tc.path());
    let bare = repo.bare.display().to_string();
    env.dockerfile(&format!(
        "FROM bb\nADD git@{GIT_HOST}:{bare}#v1:app /scp/\nADD ssh://git@{GIT_HOST}:22{bare}#v1 /url/\n"
    ));
    // A HOME of the test's: its known_hosts is what the build copies.
    let home = env.tc.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = format!("default={}", git_host.client_key().display());
    let mut cmd = env.build_cmd(&["--ssh", &key, "-t", "img"]);
    cmd.env("HOME", &home);
    let out = cmd.output().unwrap();
    let logins = git_host.log();
    if !out.status.success() {
        panic!("{}\ngit host:\n{logins}", describe(&out));
    }
    assert!(logins.contains("Accepted publickey for git from 127.0.0.1"), "{logins}");
    let shown = env.run_stdout("img", &["sh", "-c", "cat /scp/hello.sh; ls /url"]);
    assert_eq!(shown, "echo v1\nREADME\napp\n");

    // A host key the caller knows otherwise: refused, naming the host key check.
    std::fs::write(home.join(".ssh/known_hosts"), other.known_hosts_line(GIT_HOST)).unwrap();
    let mut cmd = env.build_cmd(&["--no-cache", "--ssh", &key, "-t", "img"]);
    cmd.env("HOME", &home);
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("Host key verification failed"), "{}", describe(&out));

    // The right key there: accepted.
    std::fs::write(home.join(".ssh/known_hosts"), git_host.known_hosts_line(GIT_HOST)).unwrap();
    env.dockerfile(&format!("FROM bb\nADD git@{GIT_HOST}:{bare}#v1:app /scp/\n"));
    let mut cmd = env.build_cmd(&["--no-cache", "--ssh", &key, "-t", "img"]);
    cmd.env("HOME", &home);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));

    // No agent: the login fails and the error says so.
    let mut cmd = env.build_cmd(&["--no-cache", "-t", "img"]);
    cmd.env("HOME", &home);
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("Permission denied (publickey)"), "{}", describe(&out));
}
