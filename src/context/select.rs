//! Resolving `COPY`/`ADD` source patterns against a source root.
//!
//! A pattern is cleaned like Go's `filepath.Clean` and taken relative to the root (a leading
//! `/` is the root too). A pattern whose `..` climbs above the root is refused ("outside the
//! build context", catalogue A2) — BuildKit would clamp it, Docker's classic builder refused it;
//! refusing tells the user their Dockerfile does not do what they think. Each component with a
//! wildcard is matched against the directory listing (Go `filepath.Match`, hidden files
//! included); every candidate is then resolved by the kernel inside the root, following
//! symlinks but clamping them at the root (B1: `a -> /etc` + `a/passwd` looks for
//! `<root>/etc/passwd`). Ignore rules and `--exclude` patterns apply to the *resolved* path, so
//! a symlink cannot reach what `.dockerignore` hides.
//!
//! Missing sources, as BuildKit: a pattern without wildcards that selects nothing is an error
//! naming it; a wildcard that matches nothing is fine as long as another source of the same
//! instruction selects something — when all select nothing, the first pattern is named. A
//! wildcard whose matches `--exclude` hid all is no error (BuildKit): when nothing else is
//! selected the selection is empty, and `copy` creates the destination directory.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::FileType;
use rustix::io::Errno;

use super::ignore::{IgnoreFile, clean_path};
use super::{ContextError, SourceRoot, compile_excludes, glob};
use crate::dirfd;

/// What a list of COPY source patterns selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub items: Vec<Selected>,
}

/// One selected source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The pattern (after variable expansion) that selected it.
    pub pattern: String,
    /// Path relative to the source root, '/'-separated, normalised; "" = the root itself.
    /// Symlinks on the way are resolved (inside the root): this is where the data comes from.
    pub path: String,
    /// A directory (its *contents* are copied) or not.
    pub is_dir: bool,
    /// The name the pattern gave it (its last component before symlinks were resolved; "" for
    /// the root): a file source lands at `dest/<name>` when the destination is a directory.
    pub name: String,
    /// `COPY --parents`: where it lands below the destination — the path the pattern named
    /// (before symlinks were resolved), from the pattern's first `/./` pivot on, or whole.
    pub keep: String,
}

/// Resolves COPY/ADD source patterns. Patterns are relative to the source root (a leading `/` is the
/// root too; `..` can never leave it); globs as Go's filepath.Match per component; symlinks in the
/// pattern path are followed inside the root only (B1); see the module doc for missing sources.
/// `excludes` = `COPY --exclude` patterns (same syntax as .dockerignore lines), matched against the
/// selected path relative to the root. Paths excluded by .dockerignore are invisible here.
pub fn select(src: &SourceRoot, patterns: &[String], excludes: &[String]) -> Result<Selection, ContextError> {
    select_sources(src, patterns, excludes, false)
}

/// [`select`] for `COPY --parents`: the same, but wildcards that match nothing are no error even
/// when nothing else is selected (BuildKit: the destination is created, empty).
pub fn select_parents(src: &SourceRoot, patterns: &[String], excludes: &[String]) -> Result<Selection, ContextError> {
    select_sources(src, patterns, excludes, true)
}

fn select_sources(
    src: &SourceRoot,
    patterns: &[String],
    excludes: &[String],
    parents: bool,
) -> Result<Selection, ContextError> {
    let excludes = compile_excludes(excludes)?;
    let (root, root_real) = src.open()?;
    let mut items = Vec::new();
    let mut missing_wildcard = None;
    let mut all_excluded = false;
    for pattern in patterns {
        let found = select_one(src, root.as_fd(), &root_real, pattern, excludes.as_ref(), parents)?;
        all_excluded |= found.excluded;
        if found.items.is_empty() && missing_wildcard.is_none() {
            missing_wildcard = Some(pattern.clone());
        }
        items.extend(found.items);
    }
    let only_wildcards = patterns.iter().all(|p| clean_path(p).split('/').any(glob::has_magic));
    if items.is_empty() && !all_excluded && !(parents && only_wildcards) {
        let pattern = missing_wildcard.or_else(|| patterns.first().cloned()).unwrap_or_default();
        return Err(ContextError::NotFound { pattern });
    }
    Ok(Selection { items })
}

/// What one pattern selected.
struct Found {
    items: Vec<Selected>,
    /// A wildcard matched something, and `--exclude` hid all of it.
    excluded: bool,
}

fn select_one(
    src: &SourceRoot,
    root: BorrowedFd<'_>,
    root_real: &Path,
    pattern: &str,
    excludes: Option<&IgnoreFile>,
    parents: bool,
) -> Result<Found, ContextError> {
    let cleaned = clean_path(pattern);
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(ContextError::Outside { pattern: pattern.to_owned() });
    }
    let cleaned = clean_path(&format!("/{cleaned}"));
    let comps: Vec<&str> = cleaned.split('/').filter(|c| !c.is_empty()).collect();
    // `a/./b/c`: what `--parents` keeps starts after the first pivot (a leading `./` is none).
    let pivot =
        pattern.find("/./").map_or(0, |i| clean_path(&pattern[..i]).split('/').filter(|c| !c.is_empty()).count());
    let wild = comps.iter().any(|c| glob::has_magic(c));
    if let Some(bad) = comps.iter().find(|c| glob::has_magic(c) && !glob::is_valid(c)) {
        return Err(ContextError::NotFound { pattern: format!("{pattern} (invalid pattern component {bad:?})") });
    }
    let candidates = expand_wildcards(root, &comps, parents)?;
    let mut out = Vec::new();
    let mut excluded = false;
    for cand in candidates {
        // Literal components hold no `\` (it counts as a wildcard), so they need no unescaping.
        let lexical = cand.join("/");
        let handle = match dirfd::path_handle_in_root(root, lexical.as_bytes()) {
            Ok(h) => h,
            Err(Errno::NOENT | Errno::NOTDIR) if wild => continue,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(ContextError::NotFound { pattern: pattern.to_owned() }),
            Err(Errno::LOOP) => return Err(ContextError::SymlinkLoop { path: lexical }),
            Err(e) => return Err(ContextError::Read { path: lexical, source: e.into() }),
        };
        let read_err = |e: Errno| ContextError::Read { path: lexical.clone(), source: e.into() };
        let st = rustix::fs::fstat(&handle).map_err(read_err)?;
        let real = dirfd::real_rel(root_real, handle.as_fd()).map_err(read_err)?;
        let Some(real) = real else {
            return Err(ContextError::Outside { pattern: pattern.to_owned() });
        };
        if src.ignored(&real) {
            if wild {
                continue;
            }
            return Err(ContextError::NotFound { pattern: pattern.to_owned() });
        }
        if excludes.is_some_and(|ex| ex.matches(&String::from_utf8_lossy(&real)).is_some()) {
            if wild {
                excluded = true;
                continue;
            }
            return Err(ContextError::NotFound { pattern: pattern.to_owned() });
        }
        let Ok(path) = String::from_utf8(real.clone()) else {
            return Err(ContextError::NonUtf8 { path: dirfd::display(&real) });
        };
        let name = cand.last().cloned().unwrap_or_default();
        let keep = cand.get(pivot.min(cand.len())..).unwrap_or_default().join("/");
        out.push(Selected {
            pattern: pattern.to_owned(),
            path,
            is_dir: dirfd::file_type(&st) == FileType::Directory,
            name,
            keep,
        });
    }
    Ok(Found { excluded: excluded && out.is_empty(), items: out })
}

/// Expands the wildcards of `comps` component by component against the listings: every lexical
/// path (symlinks not resolved yet) the pattern names. With `--parents` (`globstar`) a `**`
/// component is any number of directories, none included, as BuildKit's pattern matcher reads
/// `COPY --parents **/package.json ./`; elsewhere it is `*` (Go's `filepath.Match`).
fn expand_wildcards(root: BorrowedFd<'_>, comps: &[&str], globstar: bool) -> Result<Vec<Vec<String>>, ContextError> {
    let mut candidates: Vec<Vec<String>> = vec![Vec::new()];
    for (i, comp) in comps.iter().enumerate() {
        if globstar && *comp == "**" {
            // Last: the directory itself holds everything below it.
            if i + 1 < comps.len() {
                let mut all = Vec::new();
                for cand in &candidates {
                    all.push(cand.clone());
                    descendant_dirs(root, cand, &mut all)?;
                }
                all.sort();
                all.dedup();
                candidates = all;
            }
            continue;
        }
        if !glob::has_magic(comp) {
            for cand in &mut candidates {
                cand.push((*comp).to_owned());
            }
            continue;
        }
        let mut next = Vec::new();
        for cand in &candidates {
            let lexical = cand.join("/");
            let dir = match dirfd::open_in_root(root, lexical.as_bytes(), dirfd::DIR_FLAGS) {
                Ok(dir) => dir,
                Err(Errno::NOENT | Errno::NOTDIR) => continue,
                Err(Errno::LOOP) => return Err(ContextError::SymlinkLoop { path: lexical }),
                Err(e) => return Err(ContextError::Read { path: lexical, source: e.into() }),
            };
            let names = dirfd::list_names(dir.as_fd())
                .map_err(|e| ContextError::Read { path: lexical.clone(), source: e.into() })?;
            for name in names {
                let shown = String::from_utf8_lossy(&name);
                if !glob::matches(comp, &shown) {
                    continue;
                }
                let Ok(name) = String::from_utf8(name.clone()) else {
                    return Err(ContextError::NonUtf8 {
                        path: dirfd::display(&dirfd::join(lexical.as_bytes(), &name)),
                    });
                };
                let mut path = cand.clone();
                path.push(name);
                next.push(path);
            }
        }
        candidates = next;
    }
    Ok(candidates)
}

/// Every directory below `dir` (a lexical path in the root), depth first, symlinks not followed.
fn descendant_dirs(root: BorrowedFd<'_>, dir: &[String], out: &mut Vec<Vec<String>>) -> Result<(), ContextError> {
    let lexical = dir.join("/");
    let fd = match dirfd::open_in_root(root, lexical.as_bytes(), dirfd::DIR_FLAGS) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
        Err(Errno::LOOP) => return Err(ContextError::SymlinkLoop { path: lexical }),
        Err(e) => return Err(ContextError::Read { path: lexical, source: e.into() }),
    };
    let read_err = |e: Errno| ContextError::Read { path: lexical.clone(), source: e.into() };
    for name in dirfd::list_names(fd.as_fd()).map_err(read_err)? {
        let st = rustix::fs::statat(&fd, name.as_slice(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(read_err)?;
        if dirfd::file_type(&st) != FileType::Directory {
            continue;
        }
        let Ok(name) = String::from_utf8(name.clone()) else {
            return Err(ContextError::NonUtf8 { path: dirfd::display(&dirfd::join(lexical.as_bytes(), &name)) });
        };
        let mut path = dir.to_vec();
        path.push(name);
        out.push(path.clone());
        descendant_dirs(root, &path, out)?;
    }
    Ok(())
}
