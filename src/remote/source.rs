//! Reading an `ADD` source word that names something remote, with BuildKit's rules: an
//! `http(s)://` URL whose path ends in `.git`, a `git://` or `ssh://` URL, `git@host:path` (and
//! `file://…/repo.git`, which slipway adds for local bare repositories) is a git repository;
//! any other `http(s)://` URL is a file to download (never unpacked, even when it is an archive).
//!
//! A git source says what to check out either in its fragment, `#ref:subdir`, or (Dockerfile
//! 1.18) in its query, `?ref=…&tag=…&branch=…&checksum=…|commit=…&subdir=…&keep-git-dir=…&submodules=…`;
//! not both. Every part git could read as an option is refused here, before git runs
//! (catalogue A6: CVE-2019-13139's `#--upload-pack=…`), and `subdir` may not leave the
//! checkout (CVE-2026-33748).

use url::Url;

use super::RemoteError;

/// A remote `ADD` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSource {
    /// A file to download.
    Http(Url),
    Git(GitSource),
}

/// What names the commit of a git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefKind {
    /// The remote's `HEAD`.
    Head,
    /// `#name` or `?ref=name`: a full ref (`refs/…`), else a tag or a branch of that name (tags
    /// first, as git resolves names), or a commit id.
    Any(String),
    /// `?tag=name`.
    Tag(String),
    /// `?branch=name`.
    Branch(String),
}

/// A git repository, the commit to check out and what of it to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// What git fetches from: the word without its fragment and git query.
    pub remote: String,
    pub reference: RefKind,
    /// `?checksum=` / `?commit=`: the commit the ref must resolve to (a prefix of its id).
    pub checksum: Option<String>,
    /// The directory of the checkout to copy, relative and cleaned (`None`: the whole tree).
    pub subdir: Option<String>,
    /// `?keep-git-dir=`.
    pub keep_git_dir: Option<bool>,
    /// `?submodules=` (default: submodules are checked out).
    pub submodules: bool,
}

impl GitSource {
    /// Whether the remote is a local repository (`file://`).
    pub fn is_file(&self) -> bool {
        self.remote.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("file://"))
    }
}

/// Reads `word`; `None` when it is not remote (a context path).
pub fn parse(word: &str) -> Result<Option<RemoteSource>, RemoteError> {
    let lower = word.to_ascii_lowercase();
    let scp = lower.starts_with("git@");
    let git_scheme = ["git://", "ssh://", "file://"].iter().any(|p| lower.starts_with(p));
    let http = lower.starts_with("http://") || lower.starts_with("https://");
    if !(scp || git_scheme || http) {
        return Ok(None);
    }
    let invalid = |reason: &str| RemoteError::Invalid { word: word.to_string(), reason: reason.to_string() };
    let (before_fragment, fragment) = match word.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (word, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    if http && !base.ends_with(".git") {
        let url = Url::parse(word).map_err(|_| invalid("not a valid URL"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL names no host"));
        }
        return Ok(Some(RemoteSource::Http(url)));
    }
    if lower.starts_with("file://") && !base.to_ascii_lowercase().ends_with(".git") {
        return Ok(None);
    }
    check_remote(word, base)?;
    let mut git = GitSource {
        remote: base.to_string(),
        reference: RefKind::Head,
        checksum: None,
        subdir: None,
        keep_git_dir: None,
        submodules: true,
    };
    match (fragment, query) {
        (Some(_), Some(_)) => return Err(invalid("a git source takes a fragment or a query, not both")),
        (Some(fragment), None) => {
            let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
            if !reference.is_empty() {
                git.reference = RefKind::Any(reference.to_string());
            }
            git.subdir = (!subdir.is_empty()).then(|| subdir.to_string());
        }
        (None, Some(query)) => apply_query(word, query, &mut git)?,
        (None, None) => {}
    }
    check_git(word, &mut git)?;
    Ok(Some(RemoteSource::Git(git)))
}

fn apply_query(word: &str, query: &str, git: &mut GitSource) -> Result<(), RemoteError> {
    let invalid = |reason: String| RemoteError::Invalid { word: word.to_string(), reason };
    let flag = |key: &str, value: &str| match value {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(invalid(format!("{key}={value} is not a boolean"))),
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        let set = |slot: &mut RefKind, kind: RefKind| match slot {
            RefKind::Head => {
                *slot = kind;
                Ok(())
            }
            _ => Err(invalid("only one of ref, tag and branch may be given".to_string())),
        };
        match key.as_ref() {
            "ref" => set(&mut git.reference, RefKind::Any(value))?,
            "tag" => set(&mut git.reference, RefKind::Tag(value))?,
            "branch" => set(&mut git.reference, RefKind::Branch(value))?,
            "checksum" | "commit" => git.checksum = Some(value),
            "subdir" => git.subdir = Some(value),
            "keep-git-dir" => git.keep_git_dir = Some(flag("keep-git-dir", &value)?),
            "submodules" => git.submodules = flag("submodules", &value)?,
            other => return Err(invalid(format!("unknown query parameter {other:?}"))),
        }
    }
    Ok(())
}

/// The remote itself: a URL git accepts, whose host git or ssh cannot read as an option.
fn check_remote(word: &str, remote: &str) -> Result<(), RemoteError> {
    let refuse = |reason| RemoteError::Unsafe { word: word.to_string(), reason };
    if remote.starts_with('-') || remote.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refuse("the repository URL starts with '-' or holds spaces or control characters"));
    }
    let host = match remote.strip_prefix("git@") {
        Some(rest) => rest.split(':').next().unwrap_or(""),
        None => match Url::parse(remote) {
            Ok(url) if url.scheme() == "file" => return Ok(()),
            Ok(url) => {
                return url
                    .host_str()
                    .filter(|h| !h.starts_with('-'))
                    .map(|_| ())
                    .ok_or_else(|| refuse("the repository URL names no host, or one starting with '-'"));
            }
            Err(_) => {
                return Err(RemoteError::Invalid { word: word.to_string(), reason: "not a valid URL".to_string() });
            }
        },
    };
    if host.is_empty() || host.starts_with('-') || host.contains('/') {
        return Err(refuse("the repository's host is empty or starts with '-'"));
    }
    Ok(())
}

/// Refs, the checksum and the subdir: nothing git could read as an option, a valid ref name, a
/// hex commit id, a relative subdir inside the checkout (cleaned in place).
fn check_git(word: &str, git: &mut GitSource) -> Result<(), RemoteError> {
    let refuse = |reason| RemoteError::Unsafe { word: word.to_string(), reason };
    match &git.reference {
        RefKind::Head => {}
        RefKind::Any(name) | RefKind::Tag(name) | RefKind::Branch(name) => {
            if name.starts_with('-') {
                return Err(refuse("the ref starts with '-'"));
            }
            if !valid_ref(name) {
                return Err(refuse("the ref is not a valid git ref name"));
            }
        }
    }
    if let Some(sum) = &git.checksum
        && (sum.len() < 7 || sum.len() > 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(refuse("the checksum is not a commit id (7 to 64 hex digits)"));
    }
    if let Some(subdir) = &git.subdir {
        if subdir.starts_with('-') {
            return Err(refuse("the subdir starts with '-'"));
        }
        let mut parts = Vec::new();
        for part in subdir.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(refuse("the subdir leaves the repository ('..')")),
                p if p.starts_with('-') => return Err(refuse("a subdir component starts with '-'")),
                p => parts.push(p),
            }
        }
        git.subdir = (!parts.is_empty()).then(|| parts.join("/"));
    }
    Ok(())
}

/// `git check-ref-format`'s rules, plus no control characters or spaces.
fn valid_ref(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("..")
        && !name.contains("@{")
        && !name.contains("//")
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.starts_with('/')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
}

/// Whether `name` is a full or abbreviated commit id rather than a ref name.
pub fn is_commit_id(name: &str) -> bool {
    (name.len() == 40 || name.len() == 64) && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(word: &str) -> GitSource {
        match parse(word) {
            Ok(Some(RemoteSource::Git(g))) => g,
            other => panic!("{word}: {other:?}"),
        }
    }

    #[test]
    fn urls_and_git_sources_are_told_apart() {
        assert!(matches!(parse("https://h/x.tar.gz"), Ok(Some(RemoteSource::Http(_)))));
        assert!(matches!(parse("https://h/x.git/file"), Ok(Some(RemoteSource::Http(_)))));
        assert_eq!(parse("src/main.rs").unwrap(), None);
        assert_eq!(parse("file:///tmp/x").unwrap(), None);
        assert_eq!(git("https://h/r.git").reference, RefKind::Head);
        assert_eq!(git("git@github.com:a/b.git#v1").reference, RefKind::Any("v1".into()));
        assert_eq!(git("file:///srv/r.git#main:docs").subdir.as_deref(), Some("docs"));
        assert_eq!(git("git://127.0.0.1:9418/r.git").remote, "git://127.0.0.1:9418/r.git");
    }

    #[test]
    fn fragments_and_queries() {
        let g = git("https://h/r.git#main:a/./b/");
        assert_eq!((g.reference, g.subdir.as_deref()), (RefKind::Any("main".into()), Some("a/b")));
        assert_eq!(git("https://h/r.git#:sub").reference, RefKind::Head);
        let g = git("https://h/r.git?tag=v1&subdir=d&keep-git-dir=true&submodules=false&commit=abcdef0");
        assert_eq!(g.reference, RefKind::Tag("v1".into()));
        assert_eq!(g.remote, "https://h/r.git");
        assert_eq!((g.subdir.as_deref(), g.keep_git_dir, g.submodules), (Some("d"), Some(true), false));
        assert_eq!(g.checksum.as_deref(), Some("abcdef0"));
        assert_eq!(git("https://h/r.git?branch=dev").reference, RefKind::Branch("dev".into()));
        assert_eq!(git("https://h/r.git?ref=pull/42/head").reference, RefKind::Any("pull/42/head".into()));
        for bad in [
            "https://h/r.git?tag=a&branch=b",
            "https://h/r.git?x=1",
            "https://h/r.git?ref=a#b",
            "https://h/r.git?keep-git-dir=maybe",
        ] {
            assert!(matches!(parse(bad), Err(RemoteError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn option_like_parts_and_escapes_are_refused_a6() {
        for bad in [
            "https://h/r.git#-bfoo",
            "https://h/r.git#--upload-pack=touch${IFS}/tmp/pwn",
            "https://h/r.git?ref=--upload-pack=x",
            "https://h/r.git#main:../../..",
            "https://h/r.git?subdir=a/../../b",
            "https://h/r.git#main:-x",
            "git@-oProxyCommand=x:r.git",
            "https://h/r.git#a..b",
            "https://h/r.git?checksum=-1234567",
            "https://h/r.git?checksum=xyz",
        ] {
            assert!(matches!(parse(bad), Err(RemoteError::Unsafe { .. })), "{bad}: {:?}", parse(bad));
        }
    }

    #[test]
    fn commit_ids() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("abc1234"));
        assert!(!is_commit_id(&"g".repeat(40)));
    }
}
