//! Which platforms' programs a RUN step can execute on this machine: natively, or through a
//! user-mode emulator (qemu-user) that the kernel starts for a foreign ELF binary because an
//! entry of `binfmt_misc` matches its header.
//!
//! Only an entry with the `F` (fix-binary) flag works for a build: the kernel opened its
//! interpreter when the entry was registered, so the sandbox's root filesystem needs no copy of
//! it. An entry without `F` names a host path the kernel looks up inside the sandbox, where it
//! does not exist.
//!
//! [`Emulation::probe`] reads `/proc/sys/fs/binfmt_misc` (and which emulators and Debian
//! registration files the host has, for the fix it suggests); [`Emulation::from_binfmt`] is the
//! same decision made from text, with no IO. **Invariant:** slipway never writes
//! `binfmt_misc`: a missing emulator is reported with the command that would register it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::oci::Platform;

/// Where the kernel shows `binfmt_misc`.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// One architecture slipway knows how to emulate: its OCI name, qemu's name for it, and the
/// ELF header its programs have.
struct Arch {
    /// The OCI architecture (`Platform::architecture`).
    oci: &'static str,
    /// qemu's name: `qemu-<name>-static`, Debian's `/usr/share/binfmts/qemu-<name>`.
    qemu: &'static str,
    /// `ELFCLASS64` (else `ELFCLASS32`).
    class64: bool,
    /// `ELFDATA2MSB` (else `ELFDATA2LSB`).
    big_endian: bool,
    /// `e_machine`.
    machine: u16,
}

/// The architectures Debian's qemu-user-static emulates that images are published for.
const ARCHES: &[Arch] = &[
    Arch { oci: "amd64", qemu: "x86_64", class64: true, big_endian: false, machine: 62 },
    Arch { oci: "386", qemu: "i386", class64: false, big_endian: false, machine: 3 },
    Arch { oci: "arm64", qemu: "aarch64", class64: true, big_endian: false, machine: 183 },
    Arch { oci: "arm", qemu: "arm", class64: false, big_endian: false, machine: 40 },
    Arch { oci: "ppc64le", qemu: "ppc64le", class64: true, big_endian: false, machine: 21 },
    Arch { oci: "s390x", qemu: "s390x", class64: true, big_endian: true, machine: 22 },
    Arch { oci: "riscv64", qemu: "riscv64", class64: true, big_endian: false, machine: 243 },
    Arch { oci: "mips64le", qemu: "mips64el", class64: true, big_endian: false, machine: 8 },
    Arch { oci: "loong64", qemu: "loongarch64", class64: true, big_endian: false, machine: 258 },
];

/// The platforms `slipway info` reports on (arm once per variant images use).
const KNOWN: &[&str] = &[
    "linux/amd64",
    "linux/386",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64le",
    "linux/loong64",
];

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

impl Arch {
    fn of(platform: &Platform) -> Option<&'static Arch> {
        let platform = Platform::new(&platform.os, &platform.architecture, platform.variant.as_deref());
        ARCHES.iter().find(|a| platform.os == "linux" && a.oci == platform.architecture)
    }

    /// The first 20 bytes of an ELF file of this architecture with type `e_type`: `e_ident`,
    /// `e_type`, `e_machine`.
    fn header(&self, e_type: u16) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if self.class64 { 2 } else { 1 };
        h[5] = if self.big_endian { 2 } else { 1 };
        h[6] = 1; // EV_CURRENT
        let (t, m) = match self.big_endian {
            true => (e_type.to_be_bytes(), self.machine.to_be_bytes()),
            false => (e_type.to_le_bytes(), self.machine.to_le_bytes()),
        };
        h[16..18].copy_from_slice(&t);
        h[18..20].copy_from_slice(&m);
        h
    }

    /// A registration's magic and mask for this architecture, as Debian writes them: any OS
    /// ABI, executables and shared objects (position-independent executables) alike.
    fn magic_and_mask(&self) -> ([u8; 20], [u8; 20]) {
        let mut mask = [0xffu8; 20];
        mask[7] = 0x00; // EI_OSABI
        mask[if self.big_endian { 17 } else { 16 }] = 0xfe; // e_type: ET_EXEC or ET_DYN
        (self.header(ET_EXEC), mask)
    }
}

/// One entry of `binfmt_misc` (a file of `/proc/sys/fs/binfmt_misc` other than `register` and
/// `status`), as far as slipway reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    enabled: bool,
    interpreter: PathBuf,
    flags: String,
    offset: usize,
    /// Empty for an extension entry (it matches file names, never an ELF header).
    magic: Vec<u8>,
    /// All ones when the entry has no mask.
    mask: Vec<u8>,
}

impl Entry {
    /// Parses the kernel's text of an entry (`enabled`, `interpreter …`, `flags: …`,
    /// `offset …`, `magic …`, `mask …`); `None` for text that is no entry.
    fn parse(name: &str, text: &str) -> Option<Entry> {
        let mut lines = text.lines();
        let enabled = match lines.next()? {
            "enabled" => true,
            "disabled" => false,
            _ => return None,
        };
        let mut entry = Entry {
            name: name.to_string(),
            enabled,
            interpreter: PathBuf::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "interpreter" => entry.interpreter = PathBuf::from(value),
                "flags:" => entry.flags = value.trim().to_string(),
                "offset" => entry.offset = value.trim().parse().ok()?,
                "magic" => entry.magic = hex(value.trim())?,
                "mask" => entry.mask = hex(value.trim())?,
                _ => {}
            }
        }
        if entry.mask.is_empty() {
            entry.mask = vec![0xff; entry.magic.len()];
        }
        Some(entry)
    }

    /// Whether the kernel would start this entry's interpreter for an ELF file whose first
    /// bytes are `header` (the kernel's test: every masked byte equal to the magic's).
    fn matches_header(&self, header: &[u8]) -> bool {
        !self.magic.is_empty()
            && self.mask.len() == self.magic.len()
            && self
                .magic
                .iter()
                .zip(&self.mask)
                .enumerate()
                .all(|(i, (magic, mask))| header.get(self.offset + i).is_some_and(|byte| (byte ^ magic) & mask == 0))
    }

    /// Whether it runs `arch`'s executables and position-independent executables.
    fn matches(&self, arch: &Arch) -> bool {
        self.matches_header(&arch.header(ET_EXEC)) && self.matches_header(&arch.header(ET_DYN))
    }

    fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }
}

/// Parses the kernel's hex string of a magic or mask (`7f454c46…`).
fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// What `binfmt_misc` holds for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Binfmt {
    /// No `binfmt_misc` at [`BINFMT_MISC`].
    NotMounted,
    /// Mounted; `enabled`: its `status` file says `enabled` (else no entry is used).
    Mounted { enabled: bool, entries: Vec<Entry> },
}

/// What the host has installed that the fix depends on: which qemu emulators, which of Debian's
/// registration files ask for the `F` flag, and whether `update-binfmts` is there to use them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HostFiles {
    /// qemu names with `/usr/bin/qemu-<name>-static` or `/usr/libexec/qemu-binfmt/<name>-binfmt-P`.
    emulators: BTreeSet<String>,
    /// qemu names whose `/usr/share/binfmts/qemu-<name>` says `fix_binary yes`.
    debian_fix_binary: BTreeSet<String>,
    /// `/usr/sbin/update-binfmts` exists.
    update_binfmts: bool,
}

impl HostFiles {
    fn probe() -> HostFiles {
        let mut files =
            HostFiles { update_binfmts: Path::new("/usr/sbin/update-binfmts").exists(), ..HostFiles::default() };
        for arch in ARCHES {
            let q = arch.qemu;
            let static_bin = PathBuf::from(format!("/usr/bin/qemu-{q}-static"));
            let debian_p = PathBuf::from(format!("/usr/libexec/qemu-binfmt/{q}-binfmt-P"));
            if static_bin.exists() || debian_p.exists() {
                files.emulators.insert(q.to_string());
            }
            let registration = std::fs::read_to_string(format!("/usr/share/binfmts/qemu-{q}")).unwrap_or_default();
            if registration.lines().any(|l| l.split_whitespace().eq(["fix_binary", "yes"])) {
                files.debian_fix_binary.insert(q.to_string());
            }
        }
        files
    }
}

/// Which platforms' programs RUN can execute here, and for the others why not and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulation {
    host: Platform,
    binfmt: Binfmt,
    files: HostFiles,
}

/// How one platform's programs run here (`slipway info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSupport {
    pub platform: Platform,
    pub support: Support,
}

/// Native, emulated, or not available (with why and the fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The kernel runs them itself.
    Native,
    /// `binfmt_misc` entry `entry` starts `interpreter` for them, with the `F` flag.
    Emulated { entry: String, interpreter: PathBuf },
    /// They cannot run here.
    Unavailable(EmulationError),
}

/// A platform whose programs cannot run on this machine: why, and what would let them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this {host} machine cannot run {platform} programs: {reason}; {fix}")]
pub struct EmulationError {
    pub platform: Box<Platform>,
    pub host: Box<Platform>,
    pub reason: Unusable,
    pub fix: Fix,
}

/// Why no emulator runs a platform's programs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    #[error("binfmt_misc is not mounted at {BINFMT_MISC}, so no emulator can be registered")]
    NotMounted,
    #[error("binfmt_misc is disabled ({BINFMT_MISC}/status)")]
    Disabled,
    #[error("no emulator for them is registered in binfmt_misc")]
    NoEntry,
    #[error("binfmt_misc entry {name} that runs them is disabled")]
    EntryDisabled { name: String },
    #[error(
        "binfmt_misc entry {name} lacks the F (fix-binary) flag, so the kernel looks for its interpreter {} inside the build's root filesystem, where it is not",
        interpreter.display()
    )]
    NoFixBinary { name: String, interpreter: PathBuf },
    #[error("slipway knows no emulator for them")]
    Unknown,
}

/// The commands, in order, that would make a platform runnable (empty when none is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    pub commands: Vec<String>,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.commands.is_empty() {
            true => write!(f, "build for another platform or drop RUN from this one"),
            false => write!(f, "to emulate them, run as root: {}", self.commands.join(" && ")),
        }
    }
}

impl Emulation {
    /// This machine: its platform, `binfmt_misc` as this process sees it, the emulators and
    /// registration files installed. Never fails: what cannot be read counts as absent.
    pub fn probe() -> Emulation {
        Emulation { host: Platform::host(), binfmt: read_binfmt(Path::new(BINFMT_MISC)), files: HostFiles::probe() }
    }

    /// The decision made from text alone, as if on a `host` machine: `entries` are the name and
    /// text of each file of a mounted `binfmt_misc` (its `status` enabled), `None` when it is
    /// not mounted. No emulator and no registration file is taken to be installed.
    pub fn from_binfmt(host: Platform, entries: Option<&[(&str, &str)]>) -> Emulation {
        let binfmt = match entries {
            None => Binfmt::NotMounted,
            Some(entries) => Binfmt::Mounted {
                enabled: true,
                entries: entries.iter().filter_map(|(name, text)| Entry::parse(name, text)).collect(),
            },
        };
        Emulation { host, binfmt, files: HostFiles::default() }
    }

    /// The platform of this machine.
    pub fn host(&self) -> &Platform {
        &self.host
    }

    /// Ok when `platform`'s programs run here, natively or through a usable emulator.
    pub fn check(&self, platform: &Platform) -> Result<(), EmulationError> {
        match self.support(platform) {
            Support::Unavailable(error) => Err(error),
            Support::Native | Support::Emulated { .. } => Ok(()),
        }
    }

    /// How `platform`'s programs run here.
    pub fn support(&self, platform: &Platform) -> Support {
        if self.native(platform) {
            return Support::Native;
        }
        let Some(arch) = Arch::of(platform) else {
            return Support::Unavailable(self.error(platform, Unusable::Unknown, Fix { commands: Vec::new() }));
        };
        let (enabled, entries) = match &self.binfmt {
            Binfmt::NotMounted => {
                let fix = self.fix(arch, &[MOUNT.to_string()], None);
                return Support::Unavailable(self.error(platform, Unusable::NotMounted, fix));
            }
            Binfmt::Mounted { enabled, entries } => (*enabled, entries),
        };
        let verdict = verdict(entries, arch);
        match (enabled, verdict) {
            (true, Ok(entry)) => {
                Support::Emulated { entry: entry.name.clone(), interpreter: entry.interpreter.clone() }
            }
            (false, verdict) => {
                let status = format!("echo 1 > {BINFMT_MISC}/status");
                let fix = match verdict {
                    Ok(_) => Fix { commands: vec![status] },
                    Err(reason) => self.fix(arch, &[status], Some(&reason)),
                };
                Support::Unavailable(self.error(platform, Unusable::Disabled, fix))
            }
            (true, Err(reason)) => {
                let fix = self.fix(arch, &[], Some(&reason));
                Support::Unavailable(self.error(platform, reason, fix))
            }
        }
    }

    /// Every platform slipway knows (and this machine's), each with how it runs here.
    pub fn platforms(&self) -> Vec<PlatformSupport> {
        let mut platforms: Vec<Platform> = KNOWN.iter().map(|p| p.parse().expect("known platforms parse")).collect();
        if !platforms.iter().any(|p| p.matches(&self.host)) {
            platforms.insert(0, self.host.clone());
        }
        platforms.into_iter().map(|platform| PlatformSupport { support: self.support(&platform), platform }).collect()
    }

    /// The host's own platform, and what its kernel runs without help: 32-bit x86 on amd64.
    /// (32-bit arm on arm64 only where the CPU has AArch32, which many do not: not assumed.)
    fn native(&self, platform: &Platform) -> bool {
        let arch = Platform::new(&platform.os, &platform.architecture, None).architecture;
        platform.matches(&self.host) || (self.host.architecture == "amd64" && platform.os == "linux" && arch == "386")
    }

    fn error(&self, platform: &Platform, reason: Unusable, fix: Fix) -> EmulationError {
        EmulationError { platform: Box::new(platform.clone()), host: Box::new(self.host.clone()), reason, fix }
    }

    /// The commands that make `arch` runnable: its emulator installed when missing, `first`,
    /// then what `reason` (an entry's state) needs — an entry re-enabled, or an entry without
    /// `F` removed — and a registration with `F`.
    fn fix(&self, arch: &Arch, first: &[String], reason: Option<&Unusable>) -> Fix {
        let mut commands = Vec::new();
        if !self.files.emulators.contains(arch.qemu) {
            commands.push("apt-get install qemu-user-static".to_string());
        }
        commands.extend_from_slice(first);
        match reason {
            Some(Unusable::EntryDisabled { name }) => {
                commands.push(format!("echo 1 > {BINFMT_MISC}/{name}"));
                return Fix { commands };
            }
            Some(Unusable::NoFixBinary { name, .. }) => commands.push(format!("echo -1 > {BINFMT_MISC}/{name}")),
            _ => {}
        }
        commands.push(self.register(arch));
        Fix { commands }
    }

    /// The command that registers `arch`'s emulator with the `F` flag: Debian's
    /// `update-binfmts` when its registration file asks for `F`, else a line for `register`.
    fn register(&self, arch: &Arch) -> String {
        let q = arch.qemu;
        if self.files.update_binfmts && self.files.debian_fix_binary.contains(q) {
            return format!("update-binfmts --enable qemu-{q}");
        }
        let (magic, mask) = arch.magic_and_mask();
        let escaped = |bytes: &[u8]| bytes.iter().map(|b| format!("\\x{b:02x}")).collect::<String>();
        format!(
            "echo ':qemu-{q}:M::{}:{}:/usr/bin/qemu-{q}-static:F' > {BINFMT_MISC}/register",
            escaped(&magic),
            escaped(&mask)
        )
    }
}

const MOUNT: &str = "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc";

/// The entry the kernel would use for `arch`'s programs when it is usable, else why none is:
/// an enabled matching entry without `F` (the kernel would pick it), else a disabled one with
/// `F`, else one without.
fn verdict<'e>(entries: &'e [Entry], arch: &Arch) -> Result<&'e Entry, Unusable> {
    let matching: Vec<&Entry> = entries.iter().filter(|e| e.matches(arch)).collect();
    if let Some(entry) = matching.iter().find(|e| e.enabled && e.fix_binary()) {
        return Ok(entry);
    }
    let no_f =
        |entry: &Entry| Unusable::NoFixBinary { name: entry.name.clone(), interpreter: entry.interpreter.clone() };
    if let Some(entry) = matching.iter().find(|e| e.enabled) {
        return Err(no_f(entry));
    }
    if let Some(entry) = matching.iter().find(|e| e.fix_binary()) {
        return Err(Unusable::EntryDisabled { name: entry.name.clone() });
    }
    match matching.first() {
        Some(entry) => Err(no_f(entry)),
        None => Err(Unusable::NoEntry),
    }
}

/// `binfmt_misc` at `dir`: not mounted when it has no `status` file; entries that cannot be
/// read or parsed are left out.
fn read_binfmt(dir: &Path) -> Binfmt {
    let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
        return Binfmt::NotMounted;
    };
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|item| {
            let name = item.file_name().to_string_lossy().into_owned();
            if name == "status" || name == "register" {
                return None;
            }
            Entry::parse(&name, &std::fs::read_to_string(item.path()).ok()?)
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Binfmt::Mounted { enabled: status.trim() == "enabled", entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's qemu-aarch64 as the kernel shows it once registered with `flags`.
    fn aarch64(flags: &str, state: &str) -> String {
        format!(
            "{state}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n\
             magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
        )
    }

    fn amd64() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn an_entry_with_the_fix_binary_flag_emulates_its_platform() {
        let text = aarch64("POCF", "enabled");
        let e = Emulation::from_binfmt(amd64(), Some(&[("qemu-aarch64", &text)]));
        assert_eq!(
            e.support(&p("linux/arm64/v8")),
            Support::Emulated {
                entry: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            }
        );
        assert_eq!(e.check(&p("linux/amd64")), Ok(()));
        assert_eq!(e.check(&p("linux/386")), Ok(()), "an amd64 kernel runs 32-bit x86");
        let err = e.check(&p("linux/s390x")).unwrap_err();
        assert_eq!(err.reason, Unusable::NoEntry);
    }

    #[test]
    fn any_name_and_mask_that_match_the_header_count() {
        // tonistiigi/binfmt's name and flags; a mask that ignores the OS ABI byte only.
        let text = "enabled\ninterpreter /usr/bin/qemu-arm64\nflags: POCF\noffset 0\n\
                    magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let e = Emulation::from_binfmt(amd64(), Some(&[("qemu-arm64-tonistiigi", text)]));
        assert!(e.check(&p("linux/arm64")).is_ok());
        // Matching ET_EXEC only would fail on position-independent executables.
        let exec_only = text.replace("fffeffffff", "ffffffffff");
        let e = Emulation::from_binfmt(amd64(), Some(&[("narrow", &exec_only)]));
        assert_eq!(e.check(&p("linux/arm64")).unwrap_err().reason, Unusable::NoEntry);
    }

    #[test]
    fn every_debian_registration_matches_its_platform_only() {
        // Debian's magic and mask strings (/usr/share/binfmts/qemu-*), as the kernel prints them.
        let debian = [
            ("linux/arm64", "7f454c460201010000000000000000000200b700", "ffffffffffffff00fffffffffffffffffeffffff"),
            ("linux/arm/v7", "7f454c4601010100000000000000000002002800", "ffffffffffffff00fffffffffffffffffeffffff"),
            ("linux/ppc64le", "7f454c4602010100000000000000000002001500", "fffffffffffffffcfffffffffffffffffeffff00"),
            ("linux/s390x", "7f454c4602020100000000000000000000020016", "fffffffffffffffcfffffffffffffffffffeffff"),
            ("linux/riscv64", "7f454c460201010000000000000000000200f300", "ffffffffffffff00fffffffffffffffffeffffff"),
            ("linux/mips64le", "7f454c4602010100000000000000000002000800", "ffffffffffffff00fefffffffffffffffeffffff"),
            ("linux/loong64", "7f454c4602010100000000000000000002000201", "fffffffffffffffc00fffffffffffffffeffffff"),
        ];
        for (platform, magic, mask) in debian {
            let text = format!("enabled\ninterpreter /x\nflags: F\noffset 0\nmagic {magic}\nmask {mask}\n");
            let e = Emulation::from_binfmt(amd64(), Some(&[("e", &text)]));
            for (other, ..) in debian {
                assert_eq!(e.check(&p(other)).is_ok(), other == platform, "{platform}'s entry and {other}");
            }
        }
    }

    #[test]
    fn each_unusable_state_says_why_and_the_fix() {
        let arm64 = p("linux/arm64");
        let not_mounted = Emulation::from_binfmt(amd64(), None);
        let err = not_mounted.check(&arm64).unwrap_err();
        assert_eq!(err.reason, Unusable::NotMounted);
        assert_eq!(err.fix.commands[..2], ["apt-get install qemu-user-static", MOUNT]);
        let no_f = aarch64("P", "enabled");
        let err = Emulation::from_binfmt(amd64(), Some(&[("qemu-aarch64", &no_f)])).check(&arm64).unwrap_err();
        assert!(matches!(&err.reason, Unusable::NoFixBinary { name, .. } if name == "qemu-aarch64"), "{err}");
        assert_eq!(err.fix.commands[1], "echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64");
        let off = aarch64("F", "disabled");
        let err = Emulation::from_binfmt(amd64(), Some(&[("qemu-aarch64", &off)])).check(&arm64).unwrap_err();
        assert_eq!(err.reason, Unusable::EntryDisabled { name: "qemu-aarch64".into() });
        assert_eq!(err.fix.commands[1..], ["echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64"]);
        let err = Emulation::from_binfmt(amd64(), Some(&[])).check(&p("windows/amd64")).unwrap_err();
        assert_eq!(err.reason, Unusable::Unknown);
        assert!(err.to_string().ends_with("build for another platform or drop RUN from this one"), "{err}");
    }

    #[test]
    fn the_registration_it_suggests_is_debians_with_the_f_flag() {
        let e = Emulation::from_binfmt(amd64(), Some(&[]));
        let err = e.check(&p("linux/arm64")).unwrap_err();
        let magic = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
        let mask = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
        let debian = format!("{magic}:{mask}");
        assert_eq!(
            err.fix.commands,
            [
                "apt-get install qemu-user-static".to_string(),
                format!(
                    "echo ':qemu-aarch64:M::{debian}:/usr/bin/qemu-aarch64-static:F' > /proc/sys/fs/binfmt_misc/register"
                )
            ]
        );
        let files = HostFiles {
            emulators: ["aarch64".to_string()].into(),
            debian_fix_binary: ["aarch64".to_string()].into(),
            update_binfmts: true,
        };
        let e = Emulation { files, ..e };
        let err = e.check(&p("linux/arm64")).unwrap_err();
        assert_eq!(err.fix.commands, ["update-binfmts --enable qemu-aarch64"]);
        assert_eq!(
            err.to_string(),
            "this linux/amd64 machine cannot run linux/arm64 programs: no emulator for them is registered in \
             binfmt_misc; to emulate them, run as root: update-binfmts --enable qemu-aarch64"
        );
    }

    #[test]
    fn the_suggested_registration_matches_what_it_registers_for() {
        for arch in ARCHES {
            let (magic, mask) = arch.magic_and_mask();
            let entry = Entry {
                name: arch.qemu.into(),
                enabled: true,
                interpreter: PathBuf::new(),
                flags: "F".into(),
                offset: 0,
                magic: magic.to_vec(),
                mask: mask.to_vec(),
            };
            for other in ARCHES {
                assert_eq!(entry.matches(other), arch.qemu == other.qemu, "{} and {}", arch.qemu, other.qemu);
            }
        }
    }

    #[test]
    fn text_that_is_no_magic_entry_matches_nothing() {
        assert_eq!(Entry::parse("status", "enabled\n").map(|e| e.magic.len()), Some(0));
        let ext = "enabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n";
        let e = Emulation::from_binfmt(amd64(), Some(&[("python3.11", ext), ("bad", "what\n")]));
        assert_eq!(e.check(&p("linux/arm64")).unwrap_err().reason, Unusable::NoEntry);
        assert_eq!(hex("7f45"), Some(vec![0x7f, 0x45]));
        assert_eq!(hex("7f4"), None);
        assert_eq!(hex("zz"), None);
    }

    #[test]
    fn platforms_lists_the_known_ones_with_the_host_first_among_them() {
        let text = aarch64("F", "enabled");
        let e = Emulation::from_binfmt(amd64(), Some(&[("qemu-aarch64", &text)]));
        let all = e.platforms();
        let shown: Vec<String> = all.iter().map(|s| s.platform.to_string()).collect();
        assert_eq!(shown, KNOWN);
        assert_eq!(all[0].support, Support::Native);
        assert_eq!(all[1].support, Support::Native);
        assert!(matches!(all[2].support, Support::Emulated { .. }));
        assert!(all[3..].iter().all(|s| matches!(s.support, Support::Unavailable(_))));
        let riscv = Emulation::from_binfmt(p("linux/riscv64"), Some(&[]));
        assert_eq!(riscv.platforms().len(), KNOWN.len(), "a known host is listed once");
    }
}
