//! slipway's own registry configuration: `config.toml` (insecure registries, mirrors, a
//! `certs.d`-style directory of CA certificates). Docker's `config.json` (credentials) is
//! `config`'s business.
//!
//! Where the file is: `$SLIPWAY_CONFIG`, else `/etc/slipway/config.toml` for root, else
//! `$XDG_CONFIG_HOME/slipway/config.toml` (`~/.config/…`). A missing file is an empty one; a
//! file that does not parse, or has a key of the wrong type, is an error (never ignored).
//!
//! ```toml
//! [registry]
//! insecure = ["build-cache.lan:5000"]     # TLS not verified, plain HTTP allowed
//! certs-dir = "/etc/slipway/certs.d"      # <dir>/<host[:port]>/*.crt (default: beside this file)
//!
//! [registry.mirrors]
//! "docker.io" = ["mirror.lan:5000"]       # tried first on pull, in order
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::RegistryError;

/// The registry part of `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Registries (`host[:port]`) reached without TLS verification, plain HTTP allowed.
    pub insecure: Vec<String>,
    /// Mirrors (`host[:port]`) of each registry, tried in order before it on pull.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// `<dir>/<host[:port]>/*.crt`: extra CA certificates per registry (Docker's `certs.d`).
    pub certs_dir: Option<PathBuf>,
}

/// Where `config.toml` is read from (see the module docs).
pub fn settings_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SLIPWAY_CONFIG").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/etc/slipway/config.toml");
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/")).join(".config"),
    };
    base.join("slipway/config.toml")
}

impl Settings {
    /// Reads `path`; a missing file gives the defaults (and `certs.d` beside it, if present).
    pub fn load(path: &Path) -> Result<Settings, RegistryError> {
        let beside = path.parent().map(|dir| dir.join("certs.d")).filter(|d| d.is_dir());
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Settings { certs_dir: beside, ..Settings::default() });
            }
            Err(source) => return Err(RegistryError::SettingsRead { path: path.to_path_buf(), source }),
        };
        let bad = |reason: String| RegistryError::Settings { path: path.to_path_buf(), reason };
        let table: toml::Table =
            text.parse().map_err(|source| RegistryError::SettingsToml { path: path.to_path_buf(), source })?;
        let mut settings = Settings { certs_dir: beside, ..Settings::default() };
        let Some(registry) = table.get("registry") else { return Ok(settings) };
        let registry = registry.as_table().ok_or_else(|| bad("[registry] is not a table".into()))?;
        for (key, value) in registry {
            match key.as_str() {
                "insecure" => {
                    settings.insecure =
                        strings(value).ok_or_else(|| bad(format!("registry.{key}: not a list of strings")))?
                }
                "certs-dir" => {
                    let dir = value.as_str().ok_or_else(|| bad(format!("registry.{key}: not a string")))?;
                    let dir = PathBuf::from(dir);
                    // Relative to the file, like Docker's daemon.json paths are not: say so.
                    settings.certs_dir =
                        Some(if dir.is_absolute() { dir } else { path.parent().unwrap_or(Path::new(".")).join(dir) });
                }
                "mirrors" => {
                    let mirrors = value.as_table().ok_or_else(|| bad("registry.mirrors is not a table".into()))?;
                    for (name, list) in mirrors {
                        let list = strings(list)
                            .ok_or_else(|| bad(format!("registry.mirrors.{name}: not a list of strings")))?;
                        settings.mirrors.insert(name.clone(), list);
                    }
                }
                other => return Err(bad(format!("unknown key registry.{other}"))),
            }
        }
        Ok(settings)
    }

    /// Whether `registry` is configured insecure.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|r| r == registry)
    }

    /// The mirrors of `registry`, in the order to try them.
    pub fn mirrors_for(&self, registry: &str) -> &[String] {
        self.mirrors.get(registry).map(Vec::as_slice).unwrap_or(&[])
    }

    /// How to reach `registry` under these settings: insecure when `tls_verify` is false or the
    /// registry is listed insecure, with its `certs.d` CA files; default retries and timeouts.
    pub fn client_options(
        &self,
        registry: &str,
        credentials: Option<super::Credentials>,
        tls_verify: bool,
    ) -> super::ClientOptions {
        super::ClientOptions {
            insecure: !tls_verify || self.is_insecure(registry),
            credentials,
            retry: None,
            ca_files: self.ca_files(registry),
            idle_timeout: None,
        }
    }

    /// The CA certificate files for `registry` under `certs_dir` (`<host[:port]>/*.crt`,
    /// sorted), if any.
    pub fn ca_files(&self, registry: &str) -> Vec<PathBuf> {
        let Some(dir) = &self.certs_dir else { return Vec::new() };
        // `host:port` is a valid directory name; a registry name never holds a `/`.
        if registry.contains('/') || registry.starts_with('.') {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(dir.join(super::api_host(registry))) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        files.sort();
        files
    }
}

fn strings(value: &toml::Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|v| v.as_str().map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_insecure_mirrors_and_certs_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        std::fs::write(
            &path,
            "[registry]\ninsecure = [\"a:5000\"]\ncerts-dir = \"certs\"\n[registry.mirrors]\n\"docker.io\" = [\"m1\", \"m2:5000\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("certs/a:5000")).unwrap();
        std::fs::write(dir.path().join("certs/a:5000/ca.crt"), "pem").unwrap();
        std::fs::write(dir.path().join("certs/a:5000/notes.txt"), "x").unwrap();
        let settings = Settings::load(&path).unwrap();
        assert!(settings.is_insecure("a:5000") && !settings.is_insecure("a"));
        assert_eq!(settings.mirrors_for("docker.io"), ["m1", "m2:5000"]);
        assert!(settings.mirrors_for("quay.io").is_empty());
        assert_eq!(settings.ca_files("a:5000"), [dir.path().join("certs/a:5000/ca.crt")]);
        assert!(settings.ca_files("../a:5000").is_empty());
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for text in ["[registry]\ninsecure = \"a\"\n", "[registry]\nmirrorz = {}\n", "registry = 1\n", "[registry\n"] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("config.toml"), "{text}: {err}");
        }
    }
}
