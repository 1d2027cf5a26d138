//! Docker's credentials file (`config.json`): reading `auths`, `credHelpers` and `credsStore`,
//! and writing entries for `login`/`logout` (0600, temp file + rename).
//!
//! Lookup order of the file: `--authfile` > `REGISTRY_AUTH_FILE` > `$DOCKER_CONFIG/config.json` >
//! `~/.docker/config.json`. A registry with a credential helper (`credHelpers`, `credsStore`)
//! keeps its secrets there: `login` stores into it, `logout` erases from it, a failing helper is
//! an error. Insecure registries, mirrors and CA directories come from slipway's own
//! configuration (`settings`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use super::RegistryError;
use super::auth::Credentials;

/// Where the credentials file is: `explicit`, else the environment's choice.
pub fn auth_file_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    home.join(".docker/config.json")
}

/// A parsed credentials file (absent = empty); unknown keys are kept when writing it back.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
    doc: Map<String, Value>,
    /// The file's mode when it was read, if group or others may read or write it.
    loose_mode: Option<u32>,
}

/// The keys a registry may be listed under in `auths` (Docker Hub has historic spellings).
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    if registry == crate::oci::DEFAULT_REGISTRY {
        keys.insert(0, "https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
        keys.push("registry-1.docker.io".to_string());
    }
    keys
}

impl AuthFile {
    /// Reads the file at `path`; a missing file is an empty one.
    pub fn read(path: &Path) -> Result<AuthFile, RegistryError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AuthFile { path: path.to_path_buf(), doc: Map::new(), loose_mode: None });
            }
            Err(source) => return Err(RegistryError::AuthFile { path: path.to_path_buf(), source }),
        };
        let doc = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => Map::new(),
            Err(source) => return Err(RegistryError::AuthFileJson { path: path.to_path_buf(), source }),
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
        let loose_mode = (mode & 0o077 != 0).then_some(mode);
        Ok(AuthFile { path: path.to_path_buf(), doc, loose_mode })
    }

    /// The file's mode if others than its owner may read or write it (worth a warning: it
    /// holds secrets; `save` writes it 0600).
    pub fn loose_mode(&self) -> Option<u32> {
        self.loose_mode
    }

    /// The credential helper that keeps `registry`'s credentials (`credHelpers`, else
    /// `credsStore`), if the file names one.
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let named = self.doc.get("credHelpers").and_then(|h| h.get(registry)).and_then(Value::as_str);
        let store = self.doc.get("credsStore").and_then(Value::as_str);
        named.or(store).filter(|h| !h.is_empty()).map(str::to_string)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Credentials for `registry` (`host[:port]` as in references): a credential helper named in
    /// `credHelpers`, else the `auths` entry, else `credsStore`. A helper that fails is an error,
    /// never a reason to try credentials meant for another host.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(helper) = self.doc.get("credHelpers").and_then(|h| h.get(registry)).and_then(Value::as_str) {
            return helper_get(helper, registry);
        }
        let auths = self.doc.get("auths").and_then(Value::as_object);
        for key in keys_for(registry) {
            let Some(entry) = auths.and_then(|a| a.get(&key)) else { continue };
            if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|source| {
                    RegistryError::AuthFileBase64 { path: self.path.clone(), key: key.clone(), source }
                })?;
                let text = String::from_utf8_lossy(&decoded).into_owned();
                let Some((user, pass)) = text.split_once(':') else {
                    return Err(RegistryError::AuthFileFormat {
                        path: self.path.clone(),
                        reason: format!("auths.{key}.auth is not base64 of user:password"),
                    });
                };
                return Ok(Some(Credentials::Basic { username: user.to_string(), password: pass.to_string() }));
            }
            if let Some(token) = entry.get("identitytoken").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                return Ok(Some(Credentials::IdentityToken(token.to_string())));
            }
        }
        if let Some(store) = self.doc.get("credsStore").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return helper_get(store, registry);
        }
        Ok(None)
    }

    /// Sets `auths.<registry>.auth` to base64 of `user:password`.
    pub fn set(&mut self, registry: &str, username: &str, password: &str) {
        let auths = self.doc.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        if let Some(map) = auths.as_object_mut() {
            let mut entry = Map::new();
            entry.insert("auth".to_string(), Value::String(encoded));
            map.insert(registry.to_string(), Value::Object(entry));
        }
    }

    /// Removes every `auths` entry of `registry`; returns whether one existed.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(map) = self.doc.get_mut("auths").and_then(Value::as_object_mut) else { return false };
        let mut removed = false;
        for key in keys_for(registry) {
            removed |= map.remove(&key).is_some();
        }
        removed
    }

    /// Writes the file: a 0600 temp file beside it, fsync, rename (the directory is made 0700).
    pub fn save(&self) -> Result<(), RegistryError> {
        let io = |source| RegistryError::AuthFile { path: self.path.clone(), source };
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io)?;
        }
        let mut tmp = tempfile::Builder::new().prefix(".config.json.").tempfile_in(&dir).map_err(io)?;
        // NamedTempFile is created 0600 already.
        let text = serde_json::to_string_pretty(&Value::Object(self.doc.clone()))
            .map_err(|source| RegistryError::AuthFileJson { path: self.path.clone(), source })?;
        tmp.write_all(text.as_bytes()).map_err(io)?;
        tmp.write_all(b"\n").map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; returns its stdout.
fn helper_run(helper: &str, registry: &str, action: &str, input: &[u8]) -> Result<String, RegistryError> {
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let io = |action: &'static str| {
        move |source| RegistryError::CredentialHelperIo {
            helper: helper.to_string(),
            registry: registry.to_string(),
            action,
            source,
        }
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("run"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input explains itself by its status and output.
        if let Err(e) = stdin.write_all(input) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(io("write to")(e));
            }
        }
    }
    let out = child.wait_with_output().map_err(io("read the output of"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(fail(format!("{action} exited with {}: {}", out.status, stdout.trim())));
    }
    Ok(stdout)
}

/// Stores `username`/`secret` for `registry` in `docker-credential-<helper>` (`login`).
pub fn helper_store(helper: &str, registry: &str, username: &str, secret: &str) -> Result<(), RegistryError> {
    let input = serde_json::json!({ "ServerURL": registry, "Username": username, "Secret": secret });
    helper_run(helper, registry, "store", input.to_string().as_bytes()).map(|_| ())
}

/// Erases `registry`'s credentials from `docker-credential-<helper>` (`logout`).
pub fn helper_erase(helper: &str, registry: &str) -> Result<(), RegistryError> {
    helper_run(helper, registry, "erase", registry.as_bytes()).map(|_| ())
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin.
fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let stdout = match helper_run(helper, registry, "get", registry.as_bytes()) {
        Ok(stdout) => stdout,
        // The protocol's answer for "nothing stored".
        Err(RegistryError::CredentialHelper { reason, .. }) if reason.contains("credentials not found") => {
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    let value: Value = serde_json::from_slice(stdout.as_bytes()).map_err(|e| fail(format!("invalid answer: {e}")))?;
    let user = value.get("Username").and_then(Value::as_str).unwrap_or_default();
    let secret = value.get("Secret").and_then(Value::as_str).unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    if user == "<token>" {
        return Ok(Some(Credentials::IdentityToken(secret.to_string())));
    }
    Ok(Some(Credentials::Basic { username: user.to_string(), password: secret.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        let mut file = AuthFile::read(&path).unwrap();
        assert!(file.credentials("127.0.0.1:5000").unwrap().is_none());
        file.set("127.0.0.1:5000", "u", "p:w");
        file.save().unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let file = AuthFile::read(&path).unwrap();
        match file.credentials("127.0.0.1:5000").unwrap() {
            Some(Credentials::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("u", "p:w"))
            }
            other => panic!("{other:?}"),
        }
        assert!(file.credentials("other:5000").unwrap().is_none());
        let mut file = file;
        assert!(file.remove("127.0.0.1:5000"));
        assert!(file.credentials("127.0.0.1:5000").unwrap().is_none());
    }
}
