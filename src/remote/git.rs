//! Checking out one commit of a git source with the `git` program.
//!
//! git runs with a clean environment: no system or user configuration (`GIT_CONFIG_NOSYSTEM`,
//! `GIT_CONFIG_GLOBAL=/dev/null`, `HOME` a directory of ours), no prompt, the build's proxy
//! variables, the `file` protocol allowed only for a `file://` remote. Every word that comes from
//! the Dockerfile was checked by [`super::source`] (nothing starts with `-`, refs are ref names,
//! commit ids hex) and is passed after `--` or as a value git cannot read as an option.
//!
//! [`GitFetcher::resolve`] names the commit (`git ls-remote` for a ref, or the id itself): the
//! build's cache key. [`GitFetcher::checkout`] then fetches only that commit (`--depth 1`; a
//! commit given by id is fetched directly when the server allows it, else with a full fetch),
//! checks it out, updates submodules unless told not to, and removes `.git` unless it is kept.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::RemoteError;
use super::source::{GitSource, RefKind, is_commit_id};

/// How git runs ssh for `git@host:…` and `ssh://` remotes: no configuration file, no prompt, no
/// key file (only the build's `--ssh default` agent, as BuildKit), and the hosts known to the
/// caller (`~/.ssh/known_hosts`, copied into `home`, and the system's) checked — a changed key
/// fails — while a host never seen is accepted, where BuildKit checks no host key at all
/// without a known-hosts list.
fn ssh_command(home: &Path) -> String {
    let known = home.join(KNOWN_HOSTS);
    let quoted = format!("'{}'", known.display().to_string().replace('\'', "'\\''"));
    format!(
        "ssh -F /dev/null -o BatchMode=yes -o IdentityFile=none -o StrictHostKeyChecking=accept-new \
         -o UserKnownHostsFile={quoted}"
    )
}

/// The known-hosts file of git's ssh, in its `HOME`.
const KNOWN_HOSTS: &str = "known_hosts";

/// Copies the caller's `$HOME/.ssh/known_hosts`, when there is one, into git's `home`.
fn seed_known_hosts(home: &Path) -> Result<(), RemoteError> {
    let Some(caller) = std::env::var_os("HOME").map(PathBuf::from) else { return Ok(()) };
    let theirs = caller.join(".ssh").join(KNOWN_HOSTS);
    let ours = home.join(KNOWN_HOSTS);
    match std::fs::copy(&theirs, &ours) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RemoteError::io("copy", &theirs, e)),
    }
}

/// Where `git` is looked for when `PATH` has none.
const FALLBACK_GIT: &str = "/usr/bin/git";

/// Runs git for one build.
pub struct GitFetcher {
    program: PathBuf,
    /// `HOME` for git: an empty directory of ours.
    home: PathBuf,
    /// The build's proxy variables.
    proxy_env: Vec<(String, String)>,
    /// An ssh agent for `git@host:…` and `ssh://` remotes (the build's `--ssh default`).
    ssh_auth_sock: Option<PathBuf>,
}

/// The commit a source names, and how to fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The full commit id.
    pub commit: String,
    /// The ref to fetch it by (`None`: by its id).
    pub fetch_ref: Option<String>,
}

/// A checked-out tree.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The work tree (with `.git` only when kept).
    pub dir: PathBuf,
    pub commit: String,
    /// The commit's committer time (Unix seconds).
    pub commit_time: i64,
}

impl GitFetcher {
    /// `scratch` holds git's `HOME` (and, for [`checkout`](Self::checkout), the repository).
    pub fn new(
        scratch: &Path,
        proxy_env: Vec<(String, String)>,
        ssh_auth_sock: Option<PathBuf>,
    ) -> Result<GitFetcher, RemoteError> {
        let home = scratch.join("home");
        std::fs::create_dir_all(&home).map_err(|e| RemoteError::io("create", &home, e))?;
        seed_known_hosts(&home)?;
        Ok(GitFetcher { program: find_git(), home, proxy_env, ssh_auth_sock })
    }

    fn command(&self, source: &GitSource) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin")))
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1")
            .env("GIT_HTTP_LOW_SPEED_TIME", "60")
            .env("LC_ALL", "C")
            .envs(self.proxy_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        if let Some(sock) = &self.ssh_auth_sock {
            cmd.env("SSH_AUTH_SOCK", sock);
        }
        cmd.env("GIT_SSH_COMMAND", ssh_command(&self.home));
        if source.is_file() {
            cmd.args(["-c", "protocol.file.allow=always"]);
        }
        cmd.args(["-c", "advice.detachedHead=false", "-c", "core.hooksPath=/dev/null"]);
        cmd
    }

    fn run(
        &self,
        source: &GitSource,
        what: &'static str,
        args: &[&str],
        dir: Option<&Path>,
    ) -> Result<String, RemoteError> {
        let mut cmd = self.command(source);
        if let Some(dir) = dir {
            cmd.arg("-C").arg(dir);
        }
        cmd.args(args);
        let out = cmd.output().map_err(|source| RemoteError::Spawn { program: self.program.clone(), source })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(RemoteError::Git { what, url: super::redact(&source.remote), stderr });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The commit `source` names: the id it gives, else what `git ls-remote` says its ref is
    /// (an annotated tag peeled to its commit; tags before branches for a bare name).
    pub fn resolve(&self, source: &GitSource) -> Result<Resolved, RemoteError> {
        let candidates: Vec<String> = match &source.reference {
            RefKind::Any(name) if is_commit_id(name) => {
                return Ok(Resolved { commit: name.to_ascii_lowercase(), fetch_ref: None });
            }
            RefKind::Head => vec!["HEAD".into()],
            RefKind::Any(name) if name.starts_with("refs/") => vec![name.clone()],
            RefKind::Any(name) => vec![format!("refs/tags/{name}"), format!("refs/heads/{name}")],
            RefKind::Tag(name) => vec![format!("refs/tags/{name}")],
            RefKind::Branch(name) => vec![format!("refs/heads/{name}")],
        };
        let mut args = vec!["ls-remote", "--"];
        args.push(&source.remote);
        let patterns: Vec<String> = candidates.iter().flat_map(|c| [c.clone(), format!("{c}^{{}}")]).collect();
        args.extend(patterns.iter().map(String::as_str));
        let listing = self.run(source, "ls-remote", &args, None)?;
        let lines: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
        for candidate in &candidates {
            let peeled = format!("{candidate}^{{}}");
            let found = lines.iter().find(|(_, r)| *r == peeled).or_else(|| lines.iter().find(|(_, r)| r == candidate));
            if let Some((sha, _)) = found {
                return Ok(Resolved { commit: sha.to_string(), fetch_ref: Some(candidate.clone()) });
            }
        }
        let name = match &source.reference {
            RefKind::Head => "HEAD".to_string(),
            RefKind::Any(n) | RefKind::Tag(n) | RefKind::Branch(n) => n.clone(),
        };
        Err(RemoteError::GitRef { url: super::redact(&source.remote), reason: format!("no ref {name:?}") })
    }

    /// Fetches `resolved` into `repo` (a new directory), checks it out, and prepares the tree.
    pub fn checkout(&self, source: &GitSource, resolved: &Resolved, repo: &Path) -> Result<Checkout, RemoteError> {
        let repo_arg =
            repo.to_str().ok_or_else(|| RemoteError::io("use", repo, std::io::ErrorKind::InvalidInput.into()))?;
        self.run(source, "init", &["init", "-q", "--", repo_arg], None)?;
        let at = Some(repo);
        let fetched = match &resolved.fetch_ref {
            Some(r) => {
                self.run(source, "fetch", &["fetch", "-q", "--depth", "1", "--no-tags", "--", &source.remote, r], at)
            }
            None => self.run(
                source,
                "fetch",
                &["fetch", "-q", "--depth", "1", "--no-tags", "--", &source.remote, &resolved.commit],
                at,
            ),
        };
        if fetched.is_err() && resolved.fetch_ref.is_none() {
            // The server does not serve commits by id: fetch every branch and tag.
            let all = [
                "fetch",
                "-q",
                "--",
                &source.remote,
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*",
            ];
            self.run(source, "fetch", &all, at)?;
        } else {
            fetched?;
        }
        let object = format!("{}^{{commit}}", resolved.commit);
        let commit =
            self.run(source, "rev-parse", &["rev-parse", "--verify", "-q", "--end-of-options", &object], at)?;
        let commit = commit.trim().to_string();
        if commit != resolved.commit {
            return Err(RemoteError::GitRef {
                url: super::redact(&source.remote),
                reason: format!("fetched {commit}, expected {}", resolved.commit),
            });
        }
        self.run(source, "checkout", &["checkout", "-q", "--detach", &commit, "--"], at)?;
        if source.submodules && repo.join(".gitmodules").exists() {
            self.run(
                source,
                "submodule update",
                &["submodule", "update", "-q", "--init", "--recursive", "--depth", "1"],
                at,
            )?;
        }
        let time = self.run(source, "show", &["show", "-s", "--format=%ct", &commit, "--"], at)?;
        let commit_time = time.trim().parse::<i64>().map_err(|_| RemoteError::GitRef {
            url: super::redact(&source.remote),
            reason: format!("commit time {time:?}"),
        })?;
        let git_dir = repo.join(".git");
        if source.keep_git_dir == Some(true) {
            // FETCH_HEAD names the URL it came from, credentials included.
            let _ = std::fs::remove_file(git_dir.join("FETCH_HEAD"));
        } else {
            std::fs::remove_dir_all(&git_dir).map_err(|e| RemoteError::io("remove", &git_dir, e))?;
        }
        Ok(Checkout { dir: repo.to_path_buf(), commit, commit_time })
    }
}

/// Sets the modification time of everything under `dir` (links themselves, not their targets).
pub fn set_mtimes(dir: &Path, secs: i64) -> Result<(), RemoteError> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let t = Timespec { tv_sec: secs, tv_nsec: 0 };
    let times = Timestamps { last_access: t, last_modification: t };
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(|e| RemoteError::io("walk", dir, e.into()))?;
        utimensat(CWD, entry.path(), &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| RemoteError::io("set times of", entry.path(), e.into()))?;
    }
    Ok(())
}

/// `git` from `PATH`, else `/usr/bin/git`.
fn find_git() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("git")).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from(FALLBACK_GIT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::source::{RemoteSource, parse};

    fn git(cmd: &[&str], dir: &Path) {
        let st = Command::new(find_git())
            .args(cmd)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .status()
            .unwrap();
        assert!(st.success(), "git {cmd:?}");
    }

    #[test]
    fn resolves_and_checks_out_tags_branches_and_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        git(&["init", "-q", "-b", "main"], &work);
        std::fs::create_dir(work.join("sub")).unwrap();
        std::fs::write(work.join("sub/f"), "one").unwrap();
        git(&["add", "."], &work);
        git(&["commit", "-q", "-m", "one"], &work);
        git(&["tag", "-a", "-m", "t", "v1"], &work);
        std::fs::write(work.join("sub/f"), "two").unwrap();
        git(&["commit", "-q", "-am", "two"], &work);
        let bare = tmp.path().join("r.git");
        git(&["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()], tmp.path());
        let scratch = tmp.path().join("scratch");
        let fetcher = GitFetcher::new(&scratch, Vec::new(), None).unwrap();
        let src = |frag: &str| match parse(&format!("file://{}{frag}", bare.display())).unwrap() {
            Some(RemoteSource::Git(g)) => g,
            other => panic!("{other:?}"),
        };
        let tag = fetcher.resolve(&src("#v1")).unwrap();
        let main = fetcher.resolve(&src("#main")).unwrap();
        assert_ne!(tag.commit, main.commit);
        assert_eq!(fetcher.resolve(&src("")).unwrap().commit, main.commit);
        let out = fetcher.checkout(&src("#v1"), &tag, &scratch.join("a")).unwrap();
        assert_eq!(std::fs::read_to_string(out.dir.join("sub/f")).unwrap(), "one");
        assert!(!out.dir.join(".git").exists());
        assert_eq!(out.commit_time, 1_700_000_000);
        let by_id = fetcher.resolve(&src(&format!("#{}", tag.commit))).unwrap();
        let out =
            fetcher.checkout(&src(&format!("?commit={}", &tag.commit[..10])), &by_id, &scratch.join("b")).unwrap();
        assert_eq!(std::fs::read_to_string(out.dir.join("sub/f")).unwrap(), "one");
        assert!(matches!(fetcher.resolve(&src("#nope")), Err(RemoteError::GitRef { .. })));
    }
}
