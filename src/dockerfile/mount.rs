//! `RUN --mount=...` and `RUN --device=...` values: CSV fields parsed into a typed
//! [`Mount`] / [`Device`] with BuildKit's rules (mount types bind/cache/tmpfs/secret/ssh,
//! option aliases, per-type options, defaults). Values may hold variables: [`RunMount`]
//! keeps the raw text, typed right away when it has no `$`, otherwise typed by
//! [`RunMount::resolve`] once the builder can expand them.

use thiserror::Error;

use super::error::{Suggestion, suggest};

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

/// One parsed `--mount`.
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
    pub mode: Option<u32>,
    /// `uid=` (cache, secret, ssh).
    pub uid: Option<u32>,
    /// `gid=` (cache, secret, ssh).
    pub gid: Option<u32>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `size=` in bytes (tmpfs).
    pub size: Option<u64>,
}

/// A `--mount` flag of a `RUN`: its raw value, typed when it holds no variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// The flag value as written (after flag unquoting), unexpanded.
    pub raw: String,
    /// The typed mount, when `raw` has no `$` (nothing to expand).
    pub parsed: Option<Mount>,
}

impl RunMount {
    /// Validates a raw value as far as possible before expansion: the CSV, the keys, every
    /// value without a variable, `from` without a variable.
    pub fn new(raw: &str) -> Result<RunMount, MountError> {
        if raw.contains('$') {
            parse(raw, None)?;
            return Ok(RunMount { raw: raw.to_string(), parsed: None });
        }
        let mount = parse(raw, Some(&mut |v: &str| Ok(v.to_string())))?;
        Ok(RunMount { raw: raw.to_string(), parsed: Some(mount) })
    }

    /// The typed mount, expanding each value with `expand` first (as BuildKit does at
    /// build time).
    pub fn resolve(&self, expand: Expand<'_>) -> Result<Mount, MountError> {
        parse(&self.raw, Some(expand))
    }
}

/// Why a `--mount` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MountError {
    /// The CSV could not be read.
    #[error("failed to parse csv: {0}")]
    Csv(&'static str),
    /// Unknown `type=`, with the closest type.
    #[error("unsupported mount type {0:?}{1}")]
    UnknownType(String, Suggestion),
    /// An option without `=` that needs a value.
    #[error("invalid field {0:?}: must be a key=value pair")]
    NotKeyValue(String),
    /// An unknown key, with the closest key (BuildKit's wording and quotes).
    #[error("unexpected key '{key}' in '{field}'{suggestion}")]
    UnknownKey { key: String, field: String, suggestion: Suggestion },
    /// A key that this mount type does not take.
    #[error("unexpected key '{key}' for mount type '{kind}'")]
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
    /// `sharing=` on something other than a cache.
    #[error("invalid cache sharing set for {0:?} mount")]
    SharingNotCache(&'static str),
    /// Inconsistent secret options.
    #[error("invalid secret mount: {0}")]
    Secret(&'static str),
    /// `--device` naming the device twice.
    #[error("device name already set to {0:?}")]
    DeviceName(String),
    /// The expander failed on a value.
    #[error("expanding {value:?}")]
    Expand {
        value: String,
        #[source]
        source: Box<super::expand::ExpandError>,
    },
}

/// Splits one CSV record as Go's `encoding/csv` reads it (BuildKit's `--mount` and buildx's
/// `-o` values): RFC 4180 quoting, `"a,b"`, `""` inside quotes, no bare quote in a field.
pub fn csv_fields(value: &str) -> Result<Vec<String>, MountError> {
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

fn parse_u32(key: &str, value: &str, radix: u32) -> Result<u32, MountError> {
    u32::from_str_radix(value, radix)
        .map_err(|_| MountError::InvalidValue { key: key.to_string(), value: value.to_string() })
}

/// Parses a size like `64m`, `1.5g`, `1024` (binary units, case-insensitive, optional `b`/`ib`).
fn parse_size(value: &str) -> Option<u64> {
    let lower = value.trim().to_ascii_lowercase();
    let num_len = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_len);
    let num: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
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

/// A `RUN --device=` value: `name[,required[=bool]]` or `name=NAME,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device name (a CDI name or a path).
    pub name: String,
    /// Fail when the device is not available.
    pub required: bool,
}

/// Parses a `--device` value.
pub fn parse_device(value: &str) -> Result<Device, MountError> {
    let mut device = Device { name: String::new(), required: false };
    for field in csv_fields(value)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        match (key.as_str(), val) {
            ("required", None) => device.required = true,
            ("required", Some(v)) => device.required = parse_bool(&key, v)?,
            ("name", Some(v)) if device.name.is_empty() => device.name = v.to_string(),
            ("name", Some(_)) => return Err(MountError::DeviceName(device.name)),
            _ if device.name.is_empty() => device.name = field.clone(),
            (_, None) => return Err(MountError::NotKeyValue(field.clone())),
            (_, Some(_)) => {
                let suggestion = suggest(&key, ["name", "required"]);
                return Err(MountError::UnknownKey { key, field: field.clone(), suggestion });
            }
        }
    }
    Ok(device)
}

/// An expander for mount values.
type Expand<'a> = &'a mut dyn FnMut(&str) -> Result<String, super::expand::ExpandError>;

/// Parses one `--mount` value. With an expander every value is expanded, then parsed.
/// Without one (validation before expansion) values holding `$` are not interpreted, and
/// when the type itself is a variable the type-dependent checks are skipped.
fn parse(value: &str, mut expand: Option<Expand<'_>>) -> Result<Mount, MountError> {
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
    let mut type_unknown = false;
    for field in csv_fields(value)? {
        let (key, raw_val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(raw_val) = raw_val else {
            match key.as_str() {
                "readonly" | "ro" => (m.read_only, ro_auto) = (true, false),
                "readwrite" | "rw" => (m.read_only, ro_auto) = (false, false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) || type_unknown => m.required = true,
                "required" => {
                    return Err(MountError::KeyNotForType { key, kind: m.kind.as_str() });
                }
                _ => return Err(MountError::NotKeyValue(field.clone())),
            }
            continue;
        };
        if key == "from" && raw_val.find('$').is_some_and(|i| i + 1 < raw_val.len()) {
            return Err(MountError::FromVariable);
        }
        let expanded;
        let val = match expand.as_mut() {
            Some(f) => {
                expanded = f(raw_val)
                    .map_err(|source| MountError::Expand { value: raw_val.to_string(), source: Box::new(source) })?;
                expanded.as_str()
            }
            None if raw_val.contains('$') => {
                if !KEYS.contains(&key.as_str()) {
                    return Err(unknown_key(key, &field));
                }
                type_unknown |= key == "type";
                if matches!(key.as_str(), "readonly" | "ro" | "readwrite" | "rw") {
                    ro_auto = false;
                }
                continue;
            }
            None => raw_val,
        };
        match key.as_str() {
            "type" => {
                let lower = val.to_ascii_lowercase();
                m.kind = MountType::ALL.iter().find(|(n, _)| *n == lower).map(|(_, t)| *t).ok_or_else(|| {
                    let suggestion = suggest(val, MountType::ALL.iter().map(|(n, _)| *n));
                    MountError::UnknownType(val.to_string(), suggestion)
                })?;
            }
            "from" => m.from = Some(val.to_string()),
            "source" | "src" => m.source = Some(val.to_string()),
            "target" | "dst" | "destination" => m.target = Some(val.to_string()),
            "readonly" | "ro" => (m.read_only, ro_auto) = (parse_bool(&key, val)?, false),
            "readwrite" | "rw" => (m.read_only, ro_auto) = (!parse_bool(&key, val)?, false),
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) || type_unknown => {
                m.required = parse_bool(&key, val)?
            }
            "required" => {
                return Err(MountError::KeyNotForType { key, kind: m.kind.as_str() });
            }
            "size" if m.kind == MountType::Tmpfs || type_unknown => {
                m.size = Some(parse_size(val).ok_or_else(|| MountError::InvalidValue { key, value: val.to_string() })?);
            }
            "size" => {
                return Err(MountError::KeyNotForType { key, kind: m.kind.as_str() });
            }
            "id" => m.id = Some(val.to_string()),
            "sharing" => {
                m.sharing = Some(match val.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(MountError::InvalidValue { key, value: val.to_string() });
                    }
                });
            }
            "mode" => m.mode = Some(parse_u32(&key, val, 8)?),
            "uid" => m.uid = Some(parse_u32(&key, val, 10)?),
            "gid" => m.gid = Some(parse_u32(&key, val, 10)?),
            "env" => m.env = Some(val.to_string()),
            _ => {
                return Err(unknown_key(key, &field));
            }
        }
    }
    if type_unknown {
        return Ok(m);
    }
    validate(m, ro_auto)
}

/// Keys a mount accepts, in BuildKit's order (the first of equally close ones is suggested).
const KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

fn unknown_key(key: String, field: &str) -> MountError {
    let suggestion = suggest(&key, KEYS);
    MountError::UnknownKey { key, field: field.to_string(), suggestion }
}

/// Type-dependent rules and defaults, once every field is read.
fn validate(mut m: Mount, ro_auto: bool) -> Result<Mount, MountError> {
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
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountError::Secret("secret mount should not have a from"));
        }
        if m.sharing.is_some() {
            return Err(MountError::Secret("secret mount should not define sharing"));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::Secret("one of source, target required"));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::Secret("both source and id can't be set"));
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(m.kind.as_str()));
    }
    if m.kind == MountType::Cache && m.sharing.is_none() {
        m.sharing = Some(Sharing::Shared);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_mount(raw: &str) -> Result<Mount, MountError> {
        RunMount::new(raw).map(|m| m.parsed.expect("no variable in the test value"))
    }

    #[test]
    fn cache_mount_defaults() {
        let m = parse_mount("type=cache,target=/root/.cache,id=x").unwrap();
        assert_eq!((m.kind, m.target.as_deref(), m.id.as_deref()), (MountType::Cache, Some("/root/.cache"), Some("x")));
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
        assert_eq!((m.mode, m.uid, m.env.as_deref()), (Some(0o400), Some(1000), Some("TOKEN")));
        for size in ["64m", "64M", "64mb", "64MiB", "64 m", "67108864"] {
            assert_eq!(
                parse_mount(&format!("type=tmpfs,target=/t,size={size}")).unwrap().size,
                Some(64 << 20),
                "{size}"
            );
        }
        // `sharing` is checked against the type once all fields are read.
        assert_eq!(parse_mount("sharing=locked,type=cache,target=/c").unwrap().sharing, Some(Sharing::Locked));
        assert_eq!(parse_mount(r#""target=/a,b",type=cache"#).unwrap().target.as_deref(), Some("/a,b"));
        for bad in [
            "type=bind,target=/x,required",
            "type=bind,target=/x,sharing=locked",
            "type=tmpfs,target=/x,mode=0700",
            "type=nope",
            "type=cache,bogus=1",
            "type=cache,target",
            "type=secret,from=x,id=y",
            "type=secret,src=a,id=y",
            "type=secret",
            "type=cache,mode=9",
            "target=/a,\"x",
        ] {
            assert!(RunMount::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_and_types_name_the_closest_one_in_buildkit_words() {
        let message = |raw: &str| RunMount::new(raw).unwrap_err().to_string();
        assert_eq!(message("typ=tmpfs"), "unexpected key 'typ' in 'typ=tmpfs' (did you mean `type`?)");
        assert_eq!(message("type=tmp"), "unsupported mount type \"tmp\" (did you mean `tmpfs`?)");
        assert_eq!(message("type=bogus"), "unsupported mount type \"bogus\"");
        assert_eq!(message("type=bind,required"), "unexpected key 'required' for mount type 'bind'");
    }

    #[test]
    fn devices() {
        assert_eq!(
            parse_device("vendor.com/gpu=all").unwrap(),
            Device { name: "vendor.com/gpu=all".into(), required: false }
        );
        assert_eq!(parse_device("/dev/fuse,required").unwrap(), Device { name: "/dev/fuse".into(), required: true });
        assert_eq!(parse_device("name=/dev/kvm,required=false").unwrap().name, "/dev/kvm");
        assert!(parse_device("/dev/a,name=/dev/b").is_err());
        assert!(parse_device("/dev/a,bogus").is_err());
    }

    #[test]
    fn variables_wait_for_expansion() {
        let m = RunMount::new("type=cache,target=/c,id=x-$TARGETPLATFORM,uid=$UID").unwrap();
        assert_eq!(m.parsed, None);
        let mut expand = |v: &str| Ok(v.replace("$TARGETPLATFORM", "linux/amd64").replace("$UID", "1000"));
        let resolved = m.resolve(&mut expand).unwrap();
        assert_eq!((resolved.id.as_deref(), resolved.uid), (Some("x-linux/amd64"), Some(1000)));
        assert!(RunMount::new("type=$T,sharing=locked,target=/x").is_ok(), "type unknown until expanded");
        assert!(RunMount::new("type=bind,from=$X-y,target=/x").is_err());
        assert!(RunMount::new("type=cache,bogus=$X").is_err());
        assert!(RunMount::new("type=cache,mode=$M,uid=abc").is_err(), "literal values are still checked");
    }
}
