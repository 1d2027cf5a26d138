//! `--secret` and `--ssh`: buildx's forms, read (secrets) or opened (agents) once before the
//! build starts.
//!
//! `id=ID,src=PATH` (also `source=`, `type=file`), `id=ID,env=VAR` (also `type=env`), and `id=ID`
//! alone, which reads the environment variable `ID` when it is set and the file `ID` otherwise
//! (buildx's rule). Errors name the id, the file or the variable, never a value.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use crate::exec::Secret;

/// Largest secret read (BuildKit's limit is 500 KiB too).
const MAX_SECRET_BYTES: u64 = 500 * 1024;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(String),
    Env(String),
}

/// Parses one `--secret` value into its id and source.
pub fn parse_secret(value: &str) -> Result<(String, SecretSource)> {
    let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
    for field in value.split(',') {
        let Some((key, val)) = field.split_once('=') else {
            bail!("--secret {value:?}: {field:?} is not KEY=VALUE (id=ID,src=PATH or id=ID,env=VARIABLE)");
        };
        match key.to_ascii_lowercase().as_str() {
            "id" => id = Some(val.to_string()),
            "type" if val == "file" || val == "env" => kind = Some(val.to_string()),
            "type" => bail!("--secret {value:?}: unsupported type {val:?} (file or env)"),
            "src" | "source" => src = Some(val.to_string()),
            "env" => env = Some(val.to_string()),
            _ => bail!("--secret {value:?}: unexpected key {key:?} (id, type, src, env)"),
        }
    }
    let Some(id) = id.filter(|i| !i.is_empty()) else { bail!("--secret {value:?}: id is required") };
    let source = match (kind.as_deref(), src, env) {
        (_, Some(_), Some(_)) => bail!("--secret {value:?}: give src or env, not both"),
        (Some("env"), Some(_), None) => bail!("--secret {value:?}: type=env takes env=, not src="),
        (_, Some(path), None) => SecretSource::File(path),
        (Some("file"), None, Some(_)) => bail!("--secret {value:?}: type=file takes src=, not env="),
        (_, None, Some(var)) => SecretSource::Env(var),
        (Some("file"), None, None) => SecretSource::File(id.clone()),
        (Some(_), None, None) => SecretSource::Env(id.clone()),
        (None, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None, None) => SecretSource::File(id.clone()),
    };
    Ok((id, source))
}

/// Reads every secret; the last one given for an id wins.
pub fn read_secrets(values: &[(String, SecretSource)]) -> Result<BTreeMap<String, Secret>> {
    let mut secrets = BTreeMap::new();
    for (id, source) in values {
        let bytes = match source {
            SecretSource::File(path) => {
                read_capped(path).with_context(|| format!("reading secret {id} from {path}"))?
            }
            SecretSource::Env(var) => match std::env::var_os(var) {
                Some(v) => std::os::unix::ffi::OsStringExt::into_vec(v),
                None => bail!("secret {id}: environment variable {var} is not set"),
            },
        };
        secrets.insert(id.clone(), Secret::new(bytes));
    }
    Ok(secrets)
}

fn read_capped(path: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        bail!("the file is larger than {} KiB, the most a secret may hold", MAX_SECRET_BYTES / 1024);
    }
    Ok(bytes)
}

/// Parses one `--ssh` value: `ID` (the caller's `SSH_AUTH_SOCK`) or `ID=PATH[,PATH...]` (one
/// agent socket, or key files).
pub fn parse_ssh(value: &str) -> Result<(String, Vec<std::path::PathBuf>)> {
    let (id, paths) = match value.split_once('=') {
        Some((id, paths)) => (id, paths.split(',').filter(|p| !p.is_empty()).map(Into::into).collect()),
        None => (value, Vec::new()),
    };
    if id.is_empty() || id.contains(',') {
        bail!("--ssh {value:?}: expected ID or ID=SOCKET|KEY[,KEY...] (default: your SSH_AUTH_SOCK)");
    }
    Ok((id.to_string(), paths))
}

/// Opens every `--ssh` agent (starting `ssh-agent` for key files); they stay up while the
/// returned agents live. The last one given for an id wins.
pub fn open_agents(values: &[(String, Vec<std::path::PathBuf>)]) -> Result<BTreeMap<String, crate::engine::SshAgent>> {
    let mut agents = BTreeMap::new();
    for (id, paths) in values {
        agents.insert(id.clone(), crate::engine::SshAgent::open(id, paths)?);
    }
    Ok(agents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_forms() {
        let p = |v: &str| parse_secret(v).unwrap();
        assert_eq!(p("id=a,src=/f"), ("a".into(), SecretSource::File("/f".into())));
        assert_eq!(p("id=a,source=/f,type=file"), ("a".into(), SecretSource::File("/f".into())));
        assert_eq!(p("id=a,env=TOKEN"), ("a".into(), SecretSource::Env("TOKEN".into())));
        assert_eq!(p("type=env,id=GH"), ("GH".into(), SecretSource::Env("GH".into())));
        assert_eq!(
            p("id=./no-such-variable-here"),
            ("./no-such-variable-here".into(), SecretSource::File("./no-such-variable-here".into()))
        );
        assert_eq!(p("id=PATH"), ("PATH".into(), SecretSource::Env("PATH".into())), "a set variable wins");
        for bad in ["src=/f", "id=a,src=/f,env=B", "id=a,type=ssh", "id=a,bogus=1", "id=a,flag"] {
            assert!(parse_secret(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_forms() {
        assert_eq!(parse_ssh("default").unwrap(), ("default".to_string(), vec![]));
        assert_eq!(parse_ssh("gh=/k1,/k2").unwrap(), ("gh".to_string(), vec!["/k1".into(), "/k2".into()]));
        assert!(parse_ssh("=x").is_err() && parse_ssh("a,b").is_err());
    }

    #[test]
    fn reading_names_the_source_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "hunter2").unwrap();
        let path = file.display().to_string();
        let read = read_secrets(&[("s".into(), SecretSource::File(path.clone()))]).unwrap();
        assert_eq!(read["s"].bytes(), b"hunter2");
        std::fs::write(&file, vec![b'x'; 600 * 1024]).unwrap();
        let err = format!("{:#}", read_secrets(&[("s".into(), SecretSource::File(path))]).unwrap_err());
        assert!(err.contains("secret s") && err.contains("500 KiB"), "{err}");
        let err = format!(
            "{:#}",
            read_secrets(&[("t".into(), SecretSource::Env("SLIPWAY_NO_SUCH_VAR".into()))]).unwrap_err()
        );
        assert!(err.contains("SLIPWAY_NO_SUCH_VAR is not set"), "{err}");
    }
}
