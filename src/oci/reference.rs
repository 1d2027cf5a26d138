//! Image references with Docker's normalisation.
//!
//! `busybox` → `docker.io/library/busybox:latest`; `localhost:5000/a/b:t`; `name@sha256:…`.
//! The first path component is a registry when it contains `.` or `:`, is `localhost`, or has
//! an uppercase letter (as in Docker); otherwise the registry is `docker.io`, and a one-component
//! path on `docker.io` gets `library/`.

use std::fmt;
use std::str::FromStr;

use super::Digest;

/// The registry that names without a registry part refer to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference gets when it names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// A fully-qualified image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference {input:?}: empty")]
    Empty { input: String },
    #[error("invalid reference {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error("invalid reference {input:?}: invalid repository name component {component:?}")]
    Component { input: String, component: String },
    #[error("invalid reference {input:?}: invalid registry {registry:?}")]
    Registry { input: String, registry: String },
    #[error("invalid reference {input:?}: invalid tag {tag:?}")]
    Tag { input: String, tag: String },
    #[error("invalid reference {input:?}: {source}")]
    Digest {
        input: String,
        #[source]
        source: super::DigestError,
    },
    #[error("invalid reference {input:?}: repository name longer than 255 characters")]
    TooLong { input: String },
}

impl Reference {
    /// Parses and normalises; a reference without tag or digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_loose(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses and normalises without adding a default tag.
    pub fn parse_loose(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty { input: input.to_string() });
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest { input: input.to_string(), source })?;
                (n, Some(digest))
            }
            None => (input, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::Tag { input: input.to_string(), tag: tag.to_string() });
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty { input: input.to_string() });
        }
        let (mut registry, mut repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            registry = DEFAULT_REGISTRY.to_string();
        }
        if !valid_registry(&registry) {
            return Err(ReferenceError::Registry { input: input.to_string(), registry });
        }
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: input.to_string() });
        }
        for component in repository.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::Component { input: input.to_string(), component: component.to_string() });
            }
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(ReferenceError::TooLong { input: input.to_string() });
        }
        Ok(Reference { registry, repository, tag: tag.map(str::to_string), digest })
    }

    /// The registry host (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
    /// The same name with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }
    /// The same name pinned to a digest, without tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { tag: None, digest: Some(digest), ..self.clone() }
    }
    /// The short form Docker shows (`busybox:latest`, `user/app:1`, `localhost:5000/a:t`).
    pub fn familiar(&self) -> String {
        let mut name = if self.registry == DEFAULT_REGISTRY {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        };
        if let Some(tag) = &self.tag {
            name.push(':');
            name.push_str(tag);
        }
        if let Some(d) = &self.digest {
            name.push('@');
            name.push_str(&d.to_string());
        }
        name
    }
    /// The short name without tag or digest.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        }
    }
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        // [ipv6]:port
        let Some((h, after)) = rest.split_once(']') else {
            return false;
        };
        if !h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => return !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
                None => return false,
            },
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, want: &str) {
        assert_eq!(Reference::parse(input).unwrap().to_string(), want, "input {input}");
    }

    #[test]
    fn normalises_like_docker() {
        check("busybox", "docker.io/library/busybox:latest");
        check("busybox:1.36", "docker.io/library/busybox:1.36");
        check("user/app", "docker.io/user/app:latest");
        check("index.docker.io/library/alpine:3", "docker.io/library/alpine:3");
        check("localhost:5000/a/b:t", "localhost:5000/a/b:t");
        check("localhost/a", "localhost/a:latest");
        check("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest");
        check("ghcr.io/o/r/deep/name:v1.2-rc_3", "ghcr.io/o/r/deep/name:v1.2-rc_3");
        check("[::1]:5000/a:b", "[::1]:5000/a:b");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        check(&format!("busybox@{d}"), &format!("docker.io/library/busybox@{d}"));
        check(&format!("busybox:1@{d}"), &format!("docker.io/library/busybox:1@{d}"));
    }

    #[test]
    fn familiar_names() {
        assert_eq!(Reference::parse("busybox").unwrap().familiar(), "busybox:latest");
        assert_eq!(Reference::parse("user/app:2").unwrap().familiar(), "user/app:2");
        assert_eq!(Reference::parse("localhost:5000/a:t").unwrap().familiar(), "localhost:5000/a:t");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "a/B",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/-b",
            "a/b-",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "a..b/c",
            "host:port/x",
            ":tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(matches!(Reference::parse("Ab"), Err(ReferenceError::Uppercase { .. })));
    }
}
