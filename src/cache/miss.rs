//! Explained misses: what differs between the inputs a slot was last built from and today's.
//!
//! Pure: the database hands [`explain`] the remembered inputs and file list, and it returns the
//! first difference as a [`MissReason`] whose `Display` is the text after `cache miss: `.

use std::cmp::Ordering;
use std::fmt;

use super::key::{Component, KEY_VERSION, KeyInputs};
use crate::oci::Digest;

/// At most this many changed files are named in a [`MissReason::FilesChanged`]; the rest are
/// counted.
pub const MAX_FILES_SHOWN: usize = 3;

/// Values longer than this (in characters) are shortened for display.
const MAX_VALUE_CHARS: usize = 40;

/// Why a lookup missed, for humans: `Display` gives exactly the text after `cache miss: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// `--no-cache`: the builder did not look.
    NoCache,
    /// `--no-cache-filter STAGE` named the step's stage.
    NoCacheFilter { stage: String },
    /// The step was never built here, or what it was built from equals today's inputs (the record
    /// was pruned or lost).
    NoRecord,
    /// The slot was last built under another [`KEY_VERSION`].
    KeyVersionChanged { old: u32, new: u32 },
    /// The `base` component: the stage's base image (or base stage) is another one.
    BaseChanged { old: String, new: String },
    /// The `parent` component: the previous step's result differs.
    ParentChanged,
    /// An `arg:NAME` component; `None` when the step did not use the ARG on that side.
    ArgChanged { name: String, old: Option<String>, new: Option<String> },
    /// One variable of the `env` component; `None` when it was not set on that side.
    EnvChanged { name: String, old: Option<String>, new: Option<String> },
    /// The `sources` component, explained by the two file lists.
    FilesChanged { changes: Vec<FileChange>, more: usize },
    /// The `bound` component (what a RUN's context bind mounts show), explained by the two file
    /// lists.
    BoundFilesChanged { changes: Vec<FileChange>, more: usize },
    /// A `url:SOURCE` or `git:SOURCE` component (`ADD`'s remote sources): the content digest
    /// (or the commit) differs; the database tells a URL's change by its validators when it
    /// knows them (`etag "a"`). A side that lacks it is "".
    SourceChanged { source: String, old: String, new: String },
    /// Any other component (`instruction`, `user`, `platform`, ...); a side that lacks it is "".
    Changed { component: String, old: String, new: String },
    /// The record's layer blob is gone from the store (removed by hand, lost in a crash): the
    /// record was dropped and the step runs again.
    LayerMissing { layer: Digest },
    /// No record here nor in an imported cache, whose record of the same step (`date`, from
    /// `source`) differs as `reason` says (a text without values).
    Imported { reason: String, date: String, source: String },
}

/// One file of a COPY/ADD source list that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// The file's content digest differs.
    Modified { path: String, old: Digest, new: Digest },
    /// The file is selected now and was not before.
    Added { path: String },
    /// The file was selected before and is not now.
    Removed { path: String },
}

impl fmt::Display for FileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileChange::Modified { path, old, new } => {
                write!(f, "{path} changed (sha256:{}… → {}…)", &old.hex()[..4], &new.hex()[..4])
            }
            FileChange::Added { path } => write!(f, "{path} added"),
            FileChange::Removed { path } => write!(f, "{path} removed"),
        }
    }
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NoCache => f.write_str("--no-cache"),
            MissReason::NoCacheFilter { stage } => write!(f, "--no-cache-filter {stage}"),
            MissReason::NoRecord => f.write_str("no cache record"),
            MissReason::LayerMissing { layer } => write!(f, "the recorded layer {layer} is missing from the store"),
            MissReason::KeyVersionChanged { old, new } => write!(f, "cache key format changed (v{old} → v{new})"),
            MissReason::BaseChanged { old, new } => write!(f, "base image changed ({} → {})", base(old), base(new)),
            MissReason::ParentChanged => f.write_str("previous step changed"),
            MissReason::ArgChanged { name, old, new } => write!(f, "ARG {name} {}", var_change(old, new)),
            MissReason::EnvChanged { name, old, new } => write!(f, "ENV {name} {}", var_change(old, new)),
            MissReason::FilesChanged { changes, more } => files_changed(f, "", changes, *more),
            MissReason::BoundFilesChanged { changes, more } => files_changed(f, "bound file ", changes, *more),
            MissReason::SourceChanged { source, old, new } => {
                write!(f, "{source} changed ({} → {})", version(old), version(new))
            }
            MissReason::Changed { component, old, new } => {
                let (old, new) = match (old.parse::<Digest>(), new.parse::<Digest>()) {
                    (Ok(_), _) | (_, Ok(_)) => (base(old), base(new)),
                    _ => shorten_pair(old, new),
                };
                write!(f, "{component} changed ({old} → {new})")
            }
            MissReason::Imported { reason, date, source } => {
                write!(f, "no record: {reason} since the record of {date} from {source}")
            }
        }
    }
}

impl MissReason {
    /// The reason without any value a variable, the instruction or another component had, as
    /// build records keep it (`ARG VERSION changed`, `instruction changed`): those values may be
    /// build-arg values, of this build or of an earlier one. File paths, stage names and digests
    /// stay.
    pub fn without_values(&self) -> String {
        let presence = |old: &Option<String>, new: &Option<String>| match (old, new) {
            (None, Some(_)) => "set",
            (Some(_), None) => "unset",
            _ => "changed",
        };
        match self {
            MissReason::ArgChanged { name, old, new } => format!("ARG {name} {}", presence(old, new)),
            MissReason::EnvChanged { name, old, new } => format!("ENV {name} {}", presence(old, new)),
            MissReason::Changed { component, .. } => format!("{component} changed"),
            // The URL may hold a build-arg's value (`ADD $URL /`).
            MissReason::SourceChanged { .. } => "remote source changed".to_string(),
            other => other.to_string(),
        }
    }
}

fn files_changed(f: &mut fmt::Formatter<'_>, prefix: &str, changes: &[FileChange], more: usize) -> fmt::Result {
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{prefix}{change}")?;
    }
    match (changes.is_empty(), more) {
        (_, 0) => Ok(()),
        (true, n) => write!(f, "{n} {}files changed", prefix.trim_end_matches("file ")),
        (false, n) => write!(f, ", +{n} more"),
    }
}

/// A base (or any digest value) for display: a digest as `sha256:` and 12 hex characters,
/// anything else shortened.
fn base(value: &str) -> String {
    match value.parse::<Digest>() {
        Ok(d) => format!("sha256:{}", d.short()),
        Err(_) => shorten(value, 0),
    }
}

/// A remote source's version for display: a digest or a commit id shortened, validators as they are.
fn version(value: &str) -> String {
    if value.len() == 40 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return format!("commit {}", &value[..12]);
    }
    base(value)
}

fn var_change(old: &Option<String>, new: &Option<String>) -> String {
    match (old, new) {
        (Some(o), Some(n)) => {
            let (o, n) = shorten_pair(o, n);
            format!("changed ({o} → {n})")
        }
        (None, Some(n)) => format!("set ({})", shorten(n, 0)),
        (Some(o), None) => format!("unset (was {})", shorten(o, 0)),
        (None, None) => "changed".to_string(),
    }
}

/// `value` from character `from` on, at most [`MAX_VALUE_CHARS`] characters, with `…` where cut;
/// "" shows as `none`.
fn shorten(value: &str, from: usize) -> String {
    if value.is_empty() {
        return "none".to_string();
    }
    let total = value.chars().count();
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    out.extend(value.chars().skip(from).take(MAX_VALUE_CHARS));
    if total - from > MAX_VALUE_CHARS {
        out.push('…');
    }
    out
}

/// Characters of the common prefix kept before the first difference of two long values.
const CONTEXT_CHARS: usize = 20;

/// Both values shortened around their first difference, so long values stay readable: a long
/// common prefix is cut at a word boundary, keeping up to [`CONTEXT_CHARS`] of context.
fn shorten_pair(old: &str, new: &str) -> (String, String) {
    let common: Vec<char> = old.chars().zip(new.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    let long = old.chars().count().max(new.chars().count()) > MAX_VALUE_CHARS;
    let from = if long && common.len() > CONTEXT_CHARS {
        let start = common.len() - CONTEXT_CHARS;
        // Start after a space in the context, when there is one, rather than mid-word.
        if common[start - 1] == ' ' {
            start
        } else {
            common[start..].iter().position(|c| *c == ' ').map_or(start, |i| start + i + 1)
        }
    } else {
        0
    };
    (shorten(old, from), shorten(new, from))
}

/// What a slot was last built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Remembered {
    pub key_version: u32,
    pub inputs: KeyInputs,
}

/// The reason `new` (and `files`, sorted by path) misses, compared with `old`: the first component
/// of `new` whose value differs from (or is absent in) `old` decides; then a component only `old`
/// has; [`MissReason::NoRecord`] when nothing differs. `old_files` (the remembered sorted list) is
/// called only when the `sources` component decides.
pub(super) fn explain(
    old: Option<&Remembered>,
    new: &KeyInputs,
    files: Option<&[(String, Digest)]>,
    old_files: impl FnOnce() -> Option<Vec<(String, Digest)>>,
) -> MissReason {
    let Some(old) = old else { return MissReason::NoRecord };
    if old.key_version != KEY_VERSION {
        return MissReason::KeyVersionChanged { old: old.key_version, new: KEY_VERSION };
    }
    // Components are matched by name and occurrence, so a name used twice pairs up in order.
    let nth_of = |list: &[Component], i: usize| list[..i].iter().filter(|c| c.name == list[i].name).count();
    for (i, c) in new.components.iter().enumerate() {
        let before = occurrence(&old.inputs.components, &c.name, nth_of(&new.components, i));
        if before != Some(c.value.as_str()) {
            return reason(&c.name, before, Some(&c.value), files, old_files);
        }
    }
    for (i, c) in old.inputs.components.iter().enumerate() {
        if occurrence(&new.components, &c.name, nth_of(&old.inputs.components, i)).is_none() {
            return reason(&c.name, Some(&c.value), None, files, old_files);
        }
    }
    MissReason::NoRecord
}

/// The value of the `nth` component named `name` in `list`.
fn occurrence<'a>(list: &'a [Component], name: &str, nth: usize) -> Option<&'a str> {
    list.iter().filter(|c| c.name == name).nth(nth).map(|c| c.value.as_str())
}

fn reason(
    name: &str,
    old: Option<&str>,
    new: Option<&str>,
    new_files: Option<&[(String, Digest)]>,
    old_files: impl FnOnce() -> Option<Vec<(String, Digest)>>,
) -> MissReason {
    let owned = |v: Option<&str>| v.unwrap_or_default().to_string();
    match name {
        "parent" => MissReason::ParentChanged,
        // The builder varies `no-cache` only to force a miss.
        "no-cache" => MissReason::NoCache,
        "base" => MissReason::BaseChanged { old: owned(old), new: owned(new) },
        "env" => env_change(old.unwrap_or_default(), new.unwrap_or_default()).unwrap_or_else(|| MissReason::Changed {
            component: name.into(),
            old: owned(old),
            new: owned(new),
        }),
        "sources" | "bound" => match (new_files, new_files.and_then(|_| old_files())) {
            (Some(b), Some(a)) => match diff_files(&a, b) {
                MissReason::FilesChanged { changes, more } if changes.is_empty() && more == 0 => {
                    MissReason::Changed { component: name.into(), old: owned(old), new: owned(new) }
                }
                MissReason::FilesChanged { changes, more } if name == "bound" => {
                    MissReason::BoundFilesChanged { changes, more }
                }
                files => files,
            },
            _ => MissReason::Changed { component: name.into(), old: owned(old), new: owned(new) },
        },
        _ if name.starts_with("url:") || name.starts_with("git:") => {
            MissReason::SourceChanged { source: name[4..].to_string(), old: owned(old), new: owned(new) }
        }
        _ => match name.strip_prefix("arg:") {
            Some(arg) => MissReason::ArgChanged {
                name: arg.to_string(),
                old: old.map(str::to_string),
                new: new.map(str::to_string),
            },
            None => MissReason::Changed { component: name.into(), old: owned(old), new: owned(new) },
        },
    }
}

/// The `env` component holds `NAME=VALUE` entries separated by newlines or NULs; the first
/// variable (in `new`'s order, then `old`'s) whose value differs. `None` when the entries are
/// not of that form or do not differ (only their order changed).
fn env_change(old: &str, new: &str) -> Option<MissReason> {
    fn vars(s: &str) -> Option<Vec<(&str, &str)>> {
        s.split(['\n', '\0']).filter(|l| !l.is_empty()).map(|l| l.split_once('=')).collect()
    }
    let (old, new) = (vars(old)?, vars(new)?);
    let find = |list: &[(&str, &str)], name: &str| list.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
    for (name, value) in &new {
        let before = find(&old, name);
        if before.as_deref() != Some(*value) {
            return Some(MissReason::EnvChanged { name: name.to_string(), old: before, new: Some(value.to_string()) });
        }
    }
    let (name, value) = old.iter().find(|(n, _)| find(&new, n).is_none())?;
    Some(MissReason::EnvChanged { name: name.to_string(), old: Some(value.to_string()), new: None })
}

/// Walks two path-sorted file lists once: the first [`MAX_FILES_SHOWN`] differences in path order,
/// and how many more there are.
pub fn diff_files(old: &[(String, Digest)], new: &[(String, Digest)]) -> MissReason {
    let (mut i, mut j) = (0, 0);
    let mut changes = Vec::new();
    let mut more = 0;
    let mut push = |change: FileChange| {
        if changes.len() < MAX_FILES_SHOWN {
            changes.push(change);
        } else {
            more += 1;
        }
    };
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                push(FileChange::Removed { path: old[i].0.clone() });
                i += 1;
            }
            Ordering::Greater => {
                push(FileChange::Added { path: new[j].0.clone() });
                j += 1;
            }
            Ordering::Equal => {
                if old[i].1 != new[j].1 {
                    push(FileChange::Modified { path: new[j].0.clone(), old: old[i].1, new: new[j].1 });
                }
                i += 1;
                j += 1;
            }
        }
    }
    MissReason::FilesChanged { changes, more }
}
