//! `COPY --chmod` / `ADD --chmod`: an octal mode, or chmod(1)'s symbolic clauses applied to
//! each copied entry's own mode.
//!
//! The rules are BuildKit's. Its frontend (`dockerfile2llb/convert_copy.go`) takes a value that
//! parses as octal up to `07777` as an absolute mode, rejects any other value that starts with a
//! digit, and hands the rest to `tonistiigi/dchapes-mode` — a port of BSD's setmode(3), parsed
//! with umask 0 — which `fsutil/copy` applies to every entry it copies. This module is a port of
//! that parser and of its `Set.Apply`:
//!
//! - clauses are comma-separated; each is `[ugoa]*` then one or more `[-+=][rwxXstugo]*`
//!   actions (`u=rw,g=r,o=r`, `go-w`, `a+X`, `u+r-w`, `go=u-w`); no `who` means all classes
//!   (umask 0);
//! - `X` sets execute bits when the entry is a directory or its mode *before the whole value*
//!   had some execute bit (BSD looks at the original mode, so `=rw,+X` keeps an executable
//!   file executable, where GNU chmod would not);
//! - `s` is ignored for `o` alone, `t` is ignored for `o` alone (and, as in BSD, a `t` narrows
//!   the rest of that action to the sticky bit);
//! - `u`, `g`, `o` as permissions copy that class's current bits (`g=u`).
//!
//! Directories created on the way to the destination take an octal mode's `0o777` part, and
//! 0755 with a symbolic mode (BuildKit passes no mode to `MkdirAll` then).

use std::fmt;
use std::str::FromStr;

const SET_UID: u32 = 0o4000;
const SET_GID: u32 = 0o2000;
const STICKY: u32 = 0o1000;
const USER: u32 = 0o700;
const GROUP: u32 = 0o070;
const OTHER: u32 = 0o007;
/// What `a` names: every bit but sticky (BSD's `STANDARD_BITS`).
const STANDARD: u32 = SET_UID | SET_GID | USER | GROUP | OTHER;
const READ: u32 = 0o444;
const WRITE: u32 = 0o222;
const EXEC: u32 = 0o111;

/// A validated `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// `0755`: every copied entry takes exactly these bits (at most `0o7777`).
    Octal(u32),
    /// `u=rw,go-w`: applied to each copied entry's own mode.
    Symbolic(Symbolic),
}

/// A symbolic mode: the text as given (for history and cache keys) and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbolic {
    text: String,
    cmds: Vec<Cmd>,
}

/// One step of a symbolic mode, applied in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// `-`, and the first half of `=`: clear these bits.
    Clear(u32),
    /// `+`, and the second half of `=`: set these bits.
    Set(u32),
    /// `+X`: set these bits if the entry is a directory or its original mode has an execute bit.
    SetIfExec(u32),
    /// `g=u`, `o+g`, `go-u`: the `from` class's current bits into the `to` classes.
    Copy { from: Class, to: Classes, clear: bool, set: bool },
}

/// A permission class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    User,
    Group,
    Other,
}

impl Class {
    fn shift(self) -> u32 {
        match self {
            Class::User => 6,
            Class::Group => 3,
            Class::Other => 0,
        }
    }
}

/// Target classes of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Classes {
    user: bool,
    group: bool,
    other: bool,
}

impl Classes {
    fn shifts(self) -> impl Iterator<Item = u32> {
        [(self.user, 6), (self.group, 3), (self.other, 0)].into_iter().filter(|(on, _)| *on).map(|(_, s)| s)
    }
}

/// Why a `--chmod` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// A value that starts with a digit but is not an octal mode up to `07777` (BuildKit's
    /// "it should be octal string and between 0 and 07777").
    #[error("invalid chmod parameter {value:?}: it should be an octal string between 0 and 07777")]
    Octal { value: String },
    /// Not chmod(1)'s symbolic syntax.
    #[error("invalid chmod parameter {value:?}: not a symbolic mode such as u=rw,go-w")]
    Symbolic { value: String },
}

impl FromStr for Chmod {
    type Err = ChmodError;

    fn from_str(value: &str) -> Result<Chmod, ChmodError> {
        if value.starts_with(|c: char| c.is_ascii_digit()) {
            return match u32::from_str_radix(value, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(Chmod::Octal(mode)),
                _ => Err(ChmodError::Octal { value: value.to_owned() }),
            };
        }
        match parse_symbolic(value.as_bytes()) {
            Some(cmds) => Ok(Chmod::Symbolic(Symbolic { text: value.to_owned(), cmds })),
            None => Err(ChmodError::Symbolic { value: value.to_owned() }),
        }
    }
}

impl Chmod {
    /// The permission bits (`0o7777` part) of a copied entry whose own bits are `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(bits) => *bits,
            Chmod::Symbolic(symbolic) => symbolic.apply(mode & 0o7777, is_dir),
        }
    }

    /// The permission bits of a directory created on the way to the destination.
    pub fn created_dir_mode(&self) -> u32 {
        match self {
            Chmod::Octal(bits) => bits & 0o777,
            Chmod::Symbolic(_) => 0o755,
        }
    }
}

/// An octal mode without its leading zeros (`755`), a symbolic one as given: what history
/// shows and cache keys hash. The two never collide (a symbolic value never starts with a digit).
impl fmt::Display for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chmod::Octal(bits) => write!(f, "{bits:o}"),
            Chmod::Symbolic(symbolic) => f.write_str(&symbolic.text),
        }
    }
}

impl Symbolic {
    /// BSD's `getmode`: every step in order on the current bits; `X` looks at the original ones.
    fn apply(&self, original: u32, is_dir: bool) -> u32 {
        let mut mode = original;
        for cmd in &self.cmds {
            match *cmd {
                Cmd::Clear(bits) => mode &= !bits,
                Cmd::Set(bits) => mode |= bits,
                Cmd::SetIfExec(bits) => {
                    if is_dir || original & EXEC != 0 {
                        mode |= bits;
                    }
                }
                Cmd::Copy { from, to, clear, set } => {
                    let value = (mode >> from.shift()) & 0o7;
                    if clear {
                        let cleared = if set { 0o7 } else { value };
                        to.shifts().for_each(|s| mode &= !(cleared << s));
                    }
                    if set {
                        to.shifts().for_each(|s| mode |= value << s);
                    }
                }
            }
        }
        mode
    }
}

/// BSD's `setmode` with umask 0 (`dchapes-mode` `ParseWithUmask(s, 0)`); `None` on bad syntax.
fn parse_symbolic(s: &[u8]) -> Option<Vec<Cmd>> {
    let mut cmds = Vec::new();
    let mut i = 0;
    // Whether the last `=` already emitted its clearing step (BSD's `equalopdone`).
    let mut equal_done = false;
    loop {
        let mut who = 0;
        loop {
            who |= match *s.get(i)? {
                b'a' => STANDARD,
                b'u' => SET_UID | USER,
                b'g' => SET_GID | GROUP,
                b'o' => OTHER,
                _ => break,
            };
            i += 1;
        }
        loop {
            let op = s[i];
            i += 1;
            match op {
                b'+' | b'-' => {}
                b'=' => equal_done = false,
                _ => return None,
            }
            who &= !STICKY;
            i = parse_perms(s, i, op, &mut who, &mut equal_done, &mut cmds);
            match s.get(i) {
                None => return Some(cmds),
                Some(b',') => {
                    i += 1;
                    break;
                }
                // Another action of the same clause (`u+r-w`).
                Some(_) => {}
            }
        }
    }
}

/// The permission letters after one operator, from `s[i]` on: pushes their steps and returns
/// where they end.
fn parse_perms(s: &[u8], mut i: usize, op: u8, who: &mut u32, equal_done: &mut bool, cmds: &mut Vec<Cmd>) -> usize {
    let (mut perm, mut perm_x) = (0, 0);
    loop {
        match s.get(i).copied().unwrap_or(0) {
            b'r' => perm |= READ,
            b'w' => perm |= WRITE,
            b'x' => perm |= EXEC,
            b'X' if op == b'-' => perm |= EXEC,
            b'X' => perm_x = EXEC,
            // Set-id bits mean nothing for "other" alone.
            b's' if *who == 0 || *who & !OTHER != 0 => perm |= SET_UID | SET_GID,
            b't' if *who == 0 || *who & !OTHER != 0 => {
                *who |= STICKY;
                perm |= STICKY;
            }
            b's' | b't' => {}
            c @ (b'u' | b'g' | b'o') => {
                if perm != 0 {
                    push(cmds, op, *who, perm);
                    perm = 0;
                }
                if op == b'=' {
                    *equal_done = true;
                }
                if perm_x != 0 {
                    push(cmds, b'X', *who, perm_x);
                    perm_x = 0;
                }
                cmds.push(copy_cmd(c, *who, op));
            }
            _ => {
                if perm != 0 || (op == b'=' && !*equal_done) {
                    if op == b'=' {
                        *equal_done = true;
                    }
                    push(cmds, op, *who, perm);
                }
                if perm_x != 0 {
                    push(cmds, b'X', *who, perm_x);
                }
                return i;
            }
        }
        i += 1;
    }
}

/// BSD's `addcmd` for `+`, `-`, `=` and `X`.
fn push(cmds: &mut Vec<Cmd>, op: u8, who: u32, perm: u32) {
    let bits = if who != 0 { who & perm } else { perm };
    match op {
        b'=' => {
            cmds.push(Cmd::Clear(if who != 0 { who } else { STANDARD }));
            cmds.push(Cmd::Set(bits));
        }
        b'+' => cmds.push(Cmd::Set(bits)),
        b'-' => cmds.push(Cmd::Clear(bits)),
        _ => cmds.push(Cmd::SetIfExec(bits)),
    }
}

/// BSD's `addcmd` for a class letter used as permissions.
fn copy_cmd(class: u8, who: u32, op: u8) -> Cmd {
    let from = match class {
        b'u' => Class::User,
        b'g' => Class::Group,
        _ => Class::Other,
    };
    let to = match who {
        0 => Classes { user: true, group: true, other: true },
        _ => Classes { user: who & 0o400 != 0, group: who & 0o040 != 0, other: who & 0o004 != 0 },
    };
    Cmd::Copy { from, to, clear: op != b'+', set: op != b'-' }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(value: &str, mode: u32, is_dir: bool) -> u32 {
        value.parse::<Chmod>().unwrap_or_else(|e| panic!("{value}: {e}")).apply(mode, is_dir)
    }

    /// BuildKit's testChmodNonOctal: a 0666 file and a 0124 directory.
    #[test]
    fn buildkit_cases() {
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("u=rw,g=r,o=r", 0o666, false), 0o644);
        assert_eq!(apply("a+X", 0o666, false), 0o666);
        assert_eq!(apply("go-w", 0o124, true), 0o104);
        assert_eq!(apply("u+rw,g+r,o-x,o+w", 0o124, true), 0o766);
        assert_eq!(apply("a+X", 0o124, true), 0o135);
    }

    /// The examples of chmod(1) and dchapes-mode's documentation, with umask 0.
    #[test]
    fn documented_examples() {
        let table: &[(&str, u32, bool, u32)] = &[
            ("644", 0o777, false, 0o644),
            ("go-w", 0o777, false, 0o755),
            ("u=rwx,go=rx", 0, false, 0o755),
            ("u=rwx,go=u-w", 0, false, 0o755),
            ("go=", 0o777, false, 0o700),
            ("go=u-w", 0o750, false, 0o755),
            ("+X", 0o644, true, 0o755),
            ("+X", 0o644, false, 0o644),
            ("+X", 0o744, false, 0o755),
            ("a+x", 0o600, false, 0o711),
            ("+x", 0o600, false, 0o711),
            ("u+r-w", 0o200, false, 0o400),
            ("g=u", 0o640, false, 0o660),
            ("o+g", 0o650, false, 0o655),
            ("=", 0o7777, false, 0o1000),
            ("a=", 0o7777, false, 0o1000),
            ("u=", 0o4755, false, 0o055),
        ];
        for (value, mode, is_dir, want) in table {
            assert_eq!(apply(value, *mode, *is_dir), *want, "{value} on {mode:o} (dir: {is_dir})");
        }
    }

    /// BSD's `X` looks at the mode before the value: `=rw,+X` keeps an executable file
    /// executable (GNU chmod, looking at the current mode, would not).
    #[test]
    fn x_looks_at_the_original_mode() {
        assert_eq!(apply("=rw,+X", 0o755, false), 0o777);
        assert_eq!(apply("a-x,a+X", 0o755, false), 0o755);
        assert_eq!(apply("a-x,a+X", 0o644, false), 0o644);
        assert_eq!(apply("a+X,a-x", 0o755, true), 0o644);
        assert_eq!(apply("-X", 0o755, false), 0o644, "-X clears like -x");
    }

    #[test]
    fn special_bits() {
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("g+s", 0o755, true), 0o2755);
        assert_eq!(apply("+s", 0o755, false), 0o6755);
        assert_eq!(apply("o+s", 0o755, false), 0o755, "set-id bits mean nothing for other alone");
        assert_eq!(apply("+t", 0o755, true), 0o1755);
        assert_eq!(apply("o+t", 0o755, true), 0o755, "sticky means nothing for other alone");
        assert_eq!(apply("a+t", 0o755, true), 0o1755);
        assert_eq!(apply("u=rw", 0o4755, false), 0o655, "= clears the class's set-id bit");
        assert_eq!(apply("u-s", 0o4755, false), 0o755);
    }

    #[test]
    fn octal_is_absolute() {
        assert_eq!(apply("0", 0o777, false), 0);
        assert_eq!(apply("755", 0o600, false), 0o755);
        assert_eq!(apply("04755", 0o600, false), 0o4755);
        assert_eq!(apply("7777", 0, true), 0o7777);
    }

    #[test]
    fn invalid_values() {
        for value in ["64a", "10000", "8", "0x1f", "99999999999", "0755 "] {
            assert_eq!(value.parse::<Chmod>(), Err(ChmodError::Octal { value: value.into() }), "{value}");
        }
        for value in ["", "u", "ugo", "+755", "-1", "u+q", "z+x", "u+x,", ",u+x", "u+x,,g+w", "u+rw g", "rwx", "u:x"] {
            assert_eq!(value.parse::<Chmod>(), Err(ChmodError::Symbolic { value: value.into() }), "{value:?}");
        }
    }

    #[test]
    fn directories_created_on_the_way() {
        assert_eq!("4775".parse::<Chmod>().unwrap().created_dir_mode(), 0o775);
        assert_eq!("go-w".parse::<Chmod>().unwrap().created_dir_mode(), 0o755);
        assert_eq!("a=rwx".parse::<Chmod>().unwrap().created_dir_mode(), 0o755);
    }

    #[test]
    fn shown_as_history_and_keys_see_it() {
        assert_eq!("0755".parse::<Chmod>().unwrap().to_string(), "755");
        assert_eq!("u=rw,go-w".parse::<Chmod>().unwrap().to_string(), "u=rw,go-w");
        assert_ne!("go-w".parse::<Chmod>().unwrap(), "g-w,o-w".parse::<Chmod>().unwrap());
    }
}
