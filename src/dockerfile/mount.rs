//! `RUN --mount=...` values: CSV fields parsed into a typed [`Mount`] with BuildKit's rules
//! (types bind/cache/tmpfs/secret/ssh, option aliases, per-type options, defaults).
//! Values stay raw: a numeric option holding a variable is kept as [`Deferred::Unexpanded`]
//! for the builder to parse after expansion.

use thiserror::Error;

/// The kinds of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// A directory of the build context or of another stage/image.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An in-memory filesystem.
    Tmpfs,
    /// A build secret file.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    const ALL: [(&'static str, MountType); 5] = [
        ("bind", MountType::Bind),
        ("cache", MountType::Cache),
        ("tmpfs", MountType::Tmpfs),
        ("secret", MountType::Secret),
        ("ssh", MountType::Ssh),
    ];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, t)| *t == self).map(|(n, _)| *n).expect("every type is listed")
    }
}

/// Cache sharing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Concurrent writers allowed (default).
    Shared,
    /// A fresh cache for each concurrent writer.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// A value parsed now, or raw text holding a variable to parse after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferred<T> {
    /// Parsed.
    Value(T),
    /// Holds `$`: the builder expands, then parses it.
    Unexpanded(String),
}

/// One parsed `--mount`. String values are raw (unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount type (default bind).
    pub kind: MountType,
    /// `from=`: stage, image or context to mount from.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// Read-only: explicit `ro`/`rw`, else read-only except for cache and tmpfs.
    pub read_only: bool,
    /// `id=` (cache id, secret id, ssh id).
    pub id: Option<String>,
    /// `sharing=` (cache only; defaults to shared for caches).
    pub sharing: Option<Sharing>,
    /// `mode=` (octal; cache, secret, ssh).
    pub mode: Option<Deferred<u32>>,
    /// `uid=` (cache, secret, ssh).
    pub uid: Option<Deferred<u32>>,
    /// `gid=` (cache, secret, ssh).
    pub gid: Option<Deferred<u32>>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `size=` in bytes (tmpfs).
    pub size: Option<Deferred<u64>>,
}

/// Why a `--mount` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MountError {
    /// The CSV could not be read.
    #[error("failed to parse csv: {0}")]
    Csv(&'static str),
    /// Unknown `type=`.
    #[error("unsupported mount type {0:?}")]
    UnknownType(String),
    /// An option without `=` that needs a value.
    #[error("invalid field {0:?}: must be a key=value pair")]
    NotKeyValue(String),
    /// An unknown key.
    #[error("unexpected key {key:?} in {field:?}")]
    UnknownKey { key: String, field: String },
    /// A key that this mount type does not take.
    #[error("unexpected key {key:?} for mount type {kind:?}")]
    KeyNotForType { key: String, kind: &'static str },
    /// A malformed value.
    #[error("invalid value {value:?} for {key}")]
    InvalidValue { key: String, value: String },
    /// `from=` with a variable (BuildKit asks for an alias stage).
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    /// mode/uid/gid on a bind or tmpfs mount.
    #[error("{key} not allowed for {kind:?} type mounts")]
    FileInfoNotAllowed { key: &'static str, kind: &'static str },
    /// Inconsistent secret options.
    #[error("invalid secret mount: {0}")]
    Secret(&'static str),
}

/// Splits one CSV record (RFC 4180 quoting: `"a,b"`, `""` inside quotes).
fn csv_fields(value: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(MountError::Csv("extraneous or missing \" in quoted-field")),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(MountError::Csv("extraneous or missing \" in quoted-field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(MountError::Csv("bare \" in non-quoted-field")),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, MountError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(MountError::InvalidValue { key: key.to_string(), value: value.to_string() }),
    }
}

fn deferred_u32(key: &str, value: &str, radix: u32) -> Result<Deferred<u32>, MountError> {
    if value.contains('$') {
        return Ok(Deferred::Unexpanded(value.to_string()));
    }
    u32::from_str_radix(value, radix)
        .map(Deferred::Value)
        .map_err(|_| MountError::InvalidValue { key: key.to_string(), value: value.to_string() })
}

/// Parses a size like `64m`, `1.5g`, `1024` (binary units, case-insensitive, optional `b`/`ib`).
fn parse_size(value: &str) -> Option<u64> {
    let lower = value.trim().to_ascii_lowercase();
    let num_len = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_len);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    // Sizes are whole bytes; the fraction of a byte is dropped as BuildKit does.
    Some((num * mult) as u64)
}

/// Parses one `--mount` value (raw, unexpanded).
pub fn parse_mount(value: &str) -> Result<Mount, MountError> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        read_only: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        env: None,
        size: None,
    };
    let mut ro_auto = true;
    for field in csv_fields(value)? {
        let field = field.trim();
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => (m.read_only, ro_auto) = (true, false),
                "readwrite" | "rw" => (m.read_only, ro_auto) = (false, false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
                "required" => return Err(MountError::KeyNotForType { key, kind: m.kind.as_str() }),
                _ => return Err(MountError::NotKeyValue(field.to_string())),
            }
            continue;
        };
        match key.as_str() {
            "type" => {
                let lower = val.to_ascii_lowercase();
                m.kind = MountType::ALL
                    .iter()
                    .find(|(n, _)| *n == lower)
                    .map(|(_, t)| *t)
                    .ok_or_else(|| MountError::UnknownType(val.to_string()))?;
            }
            "from" => {
                if val.find('$').is_some_and(|i| i != val.len() - 1) {
                    return Err(MountError::FromVariable);
                }
                m.from = Some(val.to_string());
            }
            "source" | "src" => m.source = Some(val.to_string()),
            "target" | "dst" | "destination" => m.target = Some(val.to_string()),
            "readonly" | "ro" => (m.read_only, ro_auto) = (parse_bool(&key, val)?, false),
            "readwrite" | "rw" => (m.read_only, ro_auto) = (!parse_bool(&key, val)?, false),
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = parse_bool(&key, val)?,
            "required" => return Err(MountError::KeyNotForType { key, kind: m.kind.as_str() }),
            "size" if m.kind == MountType::Tmpfs => {
                m.size = Some(if val.contains('$') {
                    Deferred::Unexpanded(val.to_string())
                } else {
                    Deferred::Value(parse_size(val).ok_or_else(|| MountError::InvalidValue { key, value: val.to_string() })?)
                });
            }
            "size" => return Err(MountError::KeyNotForType { key, kind: m.kind.as_str() }),
            "id" => m.id = Some(val.to_string()),
            "sharing" => {
                if m.kind != MountType::Cache {
                    return Err(MountError::KeyNotForType { key, kind: m.kind.as_str() });
                }
                m.sharing = Some(match val.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(MountError::InvalidValue { key, value: val.to_string() }),
                });
            }
            "mode" => m.mode = Some(deferred_u32(&key, val, 8)?),
            "uid" => m.uid = Some(deferred_u32(&key, val, 10)?),
            "gid" => m.gid = Some(deferred_u32(&key, val, 10)?),
            "env" => m.env = Some(val.to_string()),
            _ => return Err(MountError::UnknownKey { key, field: field.to_string() }),
        }
    }
    let file_info_allowed = matches!(m.kind, MountType::Secret | MountType::Ssh | MountType::Cache);
    if !file_info_allowed {
        for (key, set) in [("mode", m.mode.is_some()), ("uid", m.uid.is_some()), ("gid", m.gid.is_some())] {
            if set {
                return Err(MountError::FileInfoNotAllowed { key, kind: m.kind.as_str() });
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::KeyNotForType { key: "sharing".into(), kind: m.kind.as_str() });
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountError::Secret("secret mount should not have a from"));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::Secret("one of source, target required"));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::Secret("both source and id can't be set"));
        }
    }
    if m.kind == MountType::Cache && m.sharing.is_none() {
        m.sharing = Some(Sharing::Shared);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount_defaults() {
        let m = parse_mount("type=cache,target=/root/.cache,id=x-$TARGETPLATFORM").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.id.as_deref(), Some("x-$TARGETPLATFORM"));
        assert!(!m.read_only);
        assert_eq!(m.sharing, Some(Sharing::Shared));
    }

    #[test]
    fn bind_is_read_only_unless_rw() {
        assert!(parse_mount("target=/src").unwrap().read_only);
        assert!(!parse_mount("type=bind,target=/src,rw").unwrap().read_only);
        assert!(!parse_mount("type=bind,target=/src,readwrite=true").unwrap().read_only);
    }

    #[test]
    fn options_per_type() {
        let m = parse_mount("type=secret,id=tok,env=TOKEN,required,mode=0400,uid=1000").unwrap();
        assert!(m.required);
        assert_eq!(m.mode, Some(Deferred::Value(0o400)));
        assert_eq!(m.uid, Some(Deferred::Value(1000)));
        assert_eq!(parse_mount("type=tmpfs,target=/t,size=64m").unwrap().size, Some(Deferred::Value(64 << 20)));
        assert_eq!(parse_mount("type=cache,target=/c,uid=$UID").unwrap().uid, Some(Deferred::Unexpanded("$UID".into())));
        assert!(parse_mount("type=bind,target=/x,required").is_err());
        assert!(parse_mount("type=bind,target=/x,sharing=locked").is_err());
        assert!(parse_mount("type=tmpfs,target=/x,mode=0700").is_err());
        assert!(parse_mount("type=nope").is_err());
        assert!(parse_mount("type=cache,bogus=1").is_err());
        assert!(parse_mount("type=cache,target").is_err());
        assert!(parse_mount("type=secret,from=x,id=y").is_err());
        assert!(parse_mount("type=bind,from=$X-y,target=/x").is_err());
        assert_eq!(parse_mount(r#""target=/a,b",type=cache"#).unwrap().target.as_deref(), Some("/a,b"));
    }
}
