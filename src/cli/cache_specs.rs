//! `build --cache-to` and `--cache-from` values, as buildx spells them (CSV `KEY=VALUE` fields,
//! the same reader as `-o`), checked before anything runs.

use std::path::PathBuf;

use crate::cli::outputs::{check_level, parse_bool as boolean, parse_compression, parse_level};
use crate::engine::{CacheExport, CacheFrom, CacheTo, DEFAULT_MOUNTS_MAX_SIZE};
#[cfg(test)]
use crate::oci::LayerCompression;
use crate::oci::Reference;

/// The tag a local cache is written under and read from when none is given.
pub const DEFAULT_LOCAL_TAG: &str = "latest";

fn fields(spec: &str, flag: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for field in crate::dockerfile::csv_fields(spec).map_err(|e| format!("{e} in {spec:?}"))? {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("{field:?} in {flag} {spec:?} is not KEY=VALUE"));
        };
        pairs.push((key.trim().to_ascii_lowercase(), value.to_string()));
    }
    Ok(pairs)
}

fn reference(value: &str) -> Result<Reference, String> {
    Reference::parse(value).map_err(|e| format!("ref={value:?}: {e}"))
}

fn unsupported_type(kind: &str) -> String {
    match kind {
        "gha" | "s3" | "azblob" => format!("cache type {kind:?} is not supported (registry, local, inline)"),
        _ => format!("unknown cache type {kind:?} (registry, local, inline)"),
    }
}

/// Parses one `--cache-from`: `REF`, `type=registry,ref=REF`, `type=local,src=DIR[,tag=TAG]`.
pub fn parse_cache_from(spec: &str) -> Result<CacheFrom, String> {
    if !spec.contains('=') {
        return Ok(CacheFrom::Registry(reference(spec)?));
    }
    let pairs = fields(spec, "--cache-from")?;
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let kind = get("type").unwrap_or("registry");
    let allowed: &[&str] = match kind {
        "registry" => &["type", "ref"],
        "local" => &["type", "src", "tag"],
        other => return Err(unsupported_type(other)),
    };
    if let Some((key, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "--cache-from type={kind} does not take the key {key:?} (it takes {})",
            allowed[1..].join(", ")
        ));
    }
    match kind {
        "registry" => Ok(CacheFrom::Registry(reference(get("ref").ok_or("--cache-from type=registry needs ref=")?)?)),
        _ => {
            let src = get("src").filter(|s| !s.is_empty()).ok_or("--cache-from type=local needs src=")?;
            Ok(CacheFrom::Local {
                src: PathBuf::from(src),
                tag: Some(get("tag").unwrap_or(DEFAULT_LOCAL_TAG).to_string()),
            })
        }
    }
}

/// Parses one `--cache-to`: `type=registry,ref=REF`, `type=local,dest=DIR[,tag=TAG]`,
/// `type=inline`, with `mode=min|max`, `compression=`, `compression-level=`, `ignore-error=`.
pub fn parse_cache_to(spec: &str) -> Result<CacheExport, String> {
    let pairs = if spec.contains('=') {
        fields(spec, "--cache-to")?
    } else {
        vec![("type".to_string(), "registry".to_string()), ("ref".to_string(), spec.to_string())]
    };
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let kind = get("type").unwrap_or("registry");
    let common = [
        "type",
        "mode",
        "compression",
        "compression-level",
        "ignore-error",
        "oci-mediatypes",
        "image-manifest",
        "mounts",
        "mounts-max-size",
    ];
    let own: &[&str] = match kind {
        "registry" => &["ref"],
        "local" => &["dest", "tag"],
        "inline" => &[],
        other => return Err(unsupported_type(other)),
    };
    for (key, value) in &pairs {
        if kind == "inline" && (key == "mounts" || key == "mounts-max-size") {
            return Err(format!("--cache-to type=inline does not take {key}= (the image carries no cache mount)"));
        }
        if !common.contains(&key.as_str()) && !own.contains(&key.as_str()) {
            return Err(format!("--cache-to type={kind} does not take the key {key:?}"));
        }
        // The cache is always an OCI image manifest with OCI media types.
        if (key == "oci-mediatypes" || key == "image-manifest") && !boolean(key, value)? {
            return Err(format!("--cache-to {key}=false is not supported: the cache is an OCI image manifest"));
        }
    }
    let max = match get("mode").unwrap_or("min") {
        "min" => false,
        "max" => true,
        other => return Err(format!("mode={other:?} is not min or max")),
    };
    let compression = parse_compression(get("compression").unwrap_or("gzip"))?;
    let level = get("compression-level").map(parse_level).transpose()?;
    check_level(compression, level)?;
    let ignore_error = get("ignore-error").map(|v| boolean("ignore-error", v)).transpose()?.unwrap_or(false);
    let to = match kind {
        "registry" => CacheTo::Registry(reference(get("ref").ok_or("--cache-to type=registry needs ref=")?)?),
        "local" => CacheTo::Local {
            dest: PathBuf::from(get("dest").filter(|d| !d.is_empty()).ok_or("--cache-to type=local needs dest=")?),
            tag: get("tag").unwrap_or(DEFAULT_LOCAL_TAG).to_string(),
        },
        _ if max => return Err("--cache-to type=inline supports mode=min only".to_string()),
        _ => CacheTo::Inline,
    };
    let mounts = get("mounts").map(|v| boolean("mounts", v)).transpose()?.unwrap_or(false);
    let mounts_max_size = match get("mounts-max-size") {
        None => DEFAULT_MOUNTS_MAX_SIZE,
        Some(v) => crate::cli::units::parse_storage(v).map_err(|e| format!("mounts-max-size={v:?}: {e}"))?,
    };
    Ok(CacheExport { to, max, compression, level, ignore_error, mounts, mounts_max_size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_values_as_buildx_spells_them() {
        let e =
            parse_cache_to("type=registry,ref=127.0.0.1:5000/app:cache,mode=max,compression=zstd,compression-level=3")
                .unwrap();
        assert!(e.max && e.compression == LayerCompression::Zstd && e.level == Some(3) && !e.ignore_error);
        assert!(matches!(e.to, CacheTo::Registry(ref r) if r.to_string() == "127.0.0.1:5000/app:cache"));
        let l = parse_cache_to("type=local,dest=/tmp/c,ignore-error=true").unwrap();
        assert!(!l.max && l.ignore_error && l.to == CacheTo::Local { dest: "/tmp/c".into(), tag: "latest".into() });
        assert_eq!(parse_cache_to("type=inline").unwrap().to, CacheTo::Inline);
        assert!(matches!(parse_cache_to("127.0.0.1:5000/app:cache").unwrap().to, CacheTo::Registry(_)));
        let err = |s: &str| parse_cache_to(s).unwrap_err();
        assert!(err("type=inline,mode=max").contains("mode=min only"));
        assert!(err("type=gha").contains("not supported"));
        assert!(err("type=local").contains("needs dest="));
        let m = parse_cache_to("type=local,dest=/c,mounts=true,mounts-max-size=10MiB").unwrap();
        assert!(m.mounts && m.mounts_max_size == 10 << 20);
        assert!(!l.mounts && l.mounts_max_size == DEFAULT_MOUNTS_MAX_SIZE);
        assert!(err("type=inline,mounts=true").contains("no cache mount"));
        assert!(err("type=local,dest=/c,mounts=maybe").contains("not true or false"));
        assert!(err("type=registry,ref=r,oci-mediatypes=false").contains("OCI image manifest"));
        assert!(err("type=registry,ref=r,mode=all").contains("min or max"));
        assert!(err("type=registry,ref=r,dest=x").contains("does not take"));
        assert!(err("type=registry,ref=r,compression-level=30").contains("out of range"));
    }

    #[test]
    fn cache_from_values_as_buildx_spells_them() {
        assert!(matches!(parse_cache_from("127.0.0.1:5000/app:cache").unwrap(), CacheFrom::Registry(_)));
        assert!(matches!(parse_cache_from("type=registry,ref=127.0.0.1:5000/a:c").unwrap(), CacheFrom::Registry(_)));
        assert_eq!(
            parse_cache_from("type=local,src=/c,tag=v1").unwrap(),
            CacheFrom::Local { src: "/c".into(), tag: Some("v1".into()) }
        );
        assert!(parse_cache_from("type=local").unwrap_err().contains("needs src="));
        assert!(parse_cache_from("type=registry,ref=r,mode=max").unwrap_err().contains("does not take"));
        assert!(parse_cache_from("type=s3,bucket=b").unwrap_err().contains("not supported"));
    }
}
