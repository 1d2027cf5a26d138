//! How many builds are kept: `[builds] keep` in slipway's `config.toml` (the file
//! `crate::registry::settings_path` finds; its `[registry]` table is the registry's business).
//!
//! ```toml
//! [builds]
//! keep = 50    # the newest builds whose records and logs stay in the store
//! ```

use std::path::Path;

use super::RecordError;

/// Builds kept when `config.toml` does not say.
pub const DEFAULT_KEEP: usize = 50;

/// The `[builds]` part of `config.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSettings {
    /// The newest builds whose records and logs are kept (at least 1: the build itself).
    pub keep: usize,
}

impl Default for RecordSettings {
    fn default() -> RecordSettings {
        RecordSettings { keep: DEFAULT_KEEP }
    }
}

impl RecordSettings {
    /// Reads `path`; a missing file, or one without `[builds]`, gives the defaults. A file that
    /// does not parse, a key of the wrong type and an unknown key under `[builds]` are errors.
    pub fn load(path: &Path) -> Result<RecordSettings, RecordError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RecordSettings::default()),
            Err(e) => return Err(RecordError::io("read", path, e)),
        };
        let bad = |reason: String| RecordError::Settings { path: path.to_path_buf(), reason };
        let table: toml::Table =
            text.parse().map_err(|source| RecordError::SettingsToml { path: path.to_path_buf(), source })?;
        let mut settings = RecordSettings::default();
        let Some(builds) = table.get("builds") else { return Ok(settings) };
        let builds = builds.as_table().ok_or_else(|| bad("[builds] is not a table".into()))?;
        for (key, value) in builds {
            match key.as_str() {
                "keep" => {
                    let keep = value.as_integer().filter(|n| *n >= 1);
                    let keep = keep.ok_or_else(|| bad("builds.keep: not a whole number of at least 1".into()))?;
                    settings.keep = usize::try_from(keep).unwrap_or(usize::MAX);
                }
                other => return Err(bad(format!("unknown key builds.{other}"))),
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RecordSettings, RecordError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        RecordSettings::load(&path)
    }

    #[test]
    fn keep_is_read_and_defaults_to_fifty() {
        assert_eq!(RecordSettings::load(Path::new("/nonexistent/config.toml")).unwrap().keep, 50);
        assert_eq!(load("[registry]\ninsecure = []\n").unwrap().keep, 50);
        assert_eq!(load("[builds]\nkeep = 3\n").unwrap().keep, 3);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        for (text, expected) in [
            ("[builds]\nkeep = 0\n", "builds.keep: not a whole number of at least 1"),
            ("[builds]\nkeep = \"5\"\n", "builds.keep: not a whole number of at least 1"),
            ("[builds]\nkept = 5\n", "unknown key builds.kept"),
            ("builds = 5\n", "[builds] is not a table"),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.to_string().ends_with(expected), "{text}: {err}");
        }
        assert!(matches!(load("[builds\n"), Err(RecordError::SettingsToml { .. })));
    }
}
