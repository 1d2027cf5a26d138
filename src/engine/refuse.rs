//! Refusals before any IO. What the builder cannot do (or never allows) is found here, in one
//! pure pass over the graph, before an image is resolved or pulled and before a step runs: a
//! refusal never costs the user a download or a partial build. The plan runs the pass again
//! after a base image's `ONBUILD` triggers are inserted (they are only known once it is read).
//!
//! Some refusals depend on values only a running stage knows: an `ADD` source that becomes a
//! URL through a variable (`ADD $URL /x`) is checked again when its step expands it
//! (`add_remote::classify`).

use super::{BuildError, BuildOptions, Refusal};
use crate::dockerfile::{
    AddInstruction, Instruction, MountType, NetworkMode, RunInstruction, SecurityMode, Source, Span,
};
use crate::exec::{Emulation, Network};
use crate::graph::{Base, BuildGraph, ImageRef};
use crate::oci::{Platform, Reference};

/// Building as an unprivileged user outside a user namespace is refused: COPY could not set
/// owners, and a RUN's files would be recorded with the caller's uid. (The CLI runs an
/// unprivileged build as root of a user namespace of its own: `exec::userns`.)
pub(crate) fn unprivileged() -> Result<(), BuildError> {
    let uid = rustix::process::geteuid();
    match uid.is_root() {
        true => Ok(()),
        false => Err(BuildError::Unprivileged { uid: uid.as_raw() }),
    }
}

/// The first image word that is no reference, or step the builder refuses, of the stages the
/// target needs, in file order. `emulation`: which platforms' programs run here (probed once
/// per build).
pub(crate) fn check(graph: &BuildGraph, options: &BuildOptions, emulation: &Emulation) -> Result<(), BuildError> {
    for id in graph.needed() {
        let Some(stage) = graph.stage(id) else { continue };
        if let Base::Image(image) = &stage.base {
            if !options.named_contexts.contains_key(&image.word.to_lowercase()) {
                reference(image, stage.span)?;
            }
        }
        for input in stage.images.iter().filter(|i| !options.named_contexts.contains_key(&i.image.word.to_lowercase()))
        {
            reference(&input.image, input.span)?;
        }
        let platform = stage.platform_or(&options.platform);
        for step in &stage.instructions {
            if let Some(refusal) = refusal(&step.instruction, options, platform, emulation) {
                return Err(BuildError::Refused { span: step.span, refusal });
            }
        }
    }
    Ok(())
}

/// The reference an image word parsed to, or the error at its line.
pub(crate) fn reference(image: &ImageRef, span: Span) -> Result<&Reference, BuildError> {
    match &image.reference {
        Ok(reference) => Ok(reference),
        Err(source) => Err(BuildError::Reference { span, word: image.word.clone(), source: source.clone() }),
    }
}

fn refusal(
    instruction: &Instruction,
    options: &BuildOptions,
    platform: &Platform,
    emulation: &Emulation,
) -> Option<Refusal> {
    match instruction {
        Instruction::Run(run) => run_refusal(run, options, platform, emulation),
        Instruction::Add(add) => add_refusal(add),
        Instruction::Copy(copy) => copy.sources.iter().find_map(|source| match source {
            // BuildKit's rule: only ADD fetches URLs.
            Source::Path(word) if word.starts_with("http://") || word.starts_with("https://") => {
                Some(Refusal::CopyUrl { url: crate::remote::redact(word) })
            }
            _ => None,
        }),
        _ => None,
    }
}

/// `platform`: the stage's (its `FROM --platform`, else the build's); a RUN for it is refused
/// when this machine neither runs its programs nor emulates them.
fn run_refusal(
    run: &RunInstruction,
    options: &BuildOptions,
    platform: &Platform,
    emulation: &Emulation,
) -> Option<Refusal> {
    for mount in run.mounts.iter().filter_map(|m| m.parsed.as_ref()) {
        match mount.kind {
            MountType::Ssh if mount.required => {
                let id = mount.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "default".to_string());
                if !options.ssh.contains_key(&id) {
                    return Some(Refusal::SshMissing { id });
                }
            }
            MountType::Secret if mount.required => {
                let id = mount.source.clone().or_else(|| mount.id.clone()).unwrap_or_else(|| secret_base(mount));
                if !options.secrets.contains_key(&id) {
                    return Some(Refusal::SecretMissing { id });
                }
            }
            _ => {}
        }
    }
    if !run.devices.is_empty() {
        return Some(Refusal::RunDevice);
    }
    if run.security == Some(SecurityMode::Insecure) && !options.allow_security_insecure {
        return Some(Refusal::SecurityInsecure);
    }
    if let Err(error) = emulation.check(platform) {
        return Some(Refusal::ForeignPlatform { error: Box::new(error) });
    }
    let host_network = match run.network {
        Some(mode) => mode == NetworkMode::Host,
        None => options.network == Network::Host,
    };
    if host_network && !options.allow_network_host {
        return Some(Refusal::HostNetwork);
    }
    None
}

/// A secret's id when only its target names it (Go's `path.Base`).
fn secret_base(mount: &crate::dockerfile::Mount) -> String {
    let target = mount.target.as_deref().unwrap_or("");
    target.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("/").to_string()
}

/// What an ADD cannot do that its words show already: remote and local sources together,
/// `--checksum` with several sources or none that is remote, `--keep-git-dir` without a git
/// source, `--unpack=true` of a URL. A word with a variable may become remote only when its step
/// expands it; the step checks again then (`add_remote::classify`).
fn add_refusal(add: &AddInstruction) -> Option<Refusal> {
    let words: Vec<&str> =
        add.sources.iter().filter_map(|s| if let Source::Path(w) = s { Some(w.as_str()) } else { None }).collect();
    let remote: Vec<&str> = words.iter().copied().filter(|w| crate::graph::is_remote_source(w)).collect();
    let unknown = words.iter().any(|w| w.contains('$'));
    if let Some(url) = remote.first()
        && remote.len() != add.sources.len()
    {
        return Some(Refusal::AddRemoteMixed { url: crate::remote::redact(url) });
    }
    if add.checksum.is_some() && (add.sources.len() != 1 || (remote.is_empty() && !unknown)) {
        return Some(Refusal::AddChecksum);
    }
    if add.keep_git_dir.is_some() && remote.is_empty() && !unknown {
        return Some(Refusal::AddKeepGitDir);
    }
    let url = |w: &&str| matches!(crate::remote::source::parse(w), Ok(Some(crate::remote::RemoteSource::Http(_))));
    if add.unpack == Some(true) && remote.iter().any(url) {
        return Some(Refusal::AddRemoteUnpack);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{lower, parse};
    use crate::graph::GraphOptions;

    fn refused(src: &str, options: &BuildOptions) -> Option<(u32, Refusal)> {
        refused_with(src, options, &Emulation::from_binfmt(Platform::host(), Some(&[])))
    }

    fn refused_with(src: &str, options: &BuildOptions, emulation: &Emulation) -> Option<(u32, Refusal)> {
        let ast = parse(src).expect("parses");
        let dockerfile = lower(&ast).expect("lowers");
        let graph_options = GraphOptions { platform: options.platform.clone(), ..GraphOptions::default() };
        let graph = crate::graph::build(&dockerfile, &graph_options).expect("graph");
        match check(&graph, options, emulation) {
            Ok(()) => None,
            Err(BuildError::Refused { span, refusal }) => Some((span.start_line, refusal)),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn each_refusal_at_its_line() {
        let o = BuildOptions::default();
        assert_eq!(refused("FROM a\nRUN true\nCOPY x /\n", &o), None);
        assert_eq!(
            refused("FROM a\nRUN true\nRUN --mount=type=ssh,required true\n", &o),
            Some((3, Refusal::SshMissing { id: "default".into() }))
        );
        assert_eq!(
            refused("FROM a\nRUN --mount=type=secret,id=tok,required true\n", &o),
            Some((2, Refusal::SecretMissing { id: "tok".into() }))
        );
        assert_eq!(
            refused("FROM a\nRUN --mount=type=secret,id=tok true\n", &o),
            None,
            "an optional secret may be missing"
        );
        assert_eq!(refused("FROM a\nRUN --mount=target=/src true\n", &o), None);
        assert_eq!(refused("FROM a\nRUN --device=/dev/fuse true\n", &o), Some((2, Refusal::RunDevice)));
        assert_eq!(refused("FROM a\nRUN --security=insecure true\n", &o), Some((2, Refusal::SecurityInsecure)));
        assert_eq!(refused("FROM a\nRUN --security=sandbox true\n", &o), None);
        assert_eq!(refused("FROM a\nRUN --network=host true\n", &o), Some((2, Refusal::HostNetwork)));
        assert_eq!(
            refused("FROM a\nCOPY https://example.com/x /\n", &o),
            Some((2, Refusal::CopyUrl { url: "https://example.com/x".into() }))
        );
        assert_eq!(refused("FROM a\nADD --checksum=sha256:00 x /\n", &o), Some((2, Refusal::AddChecksum)));
        assert_eq!(
            refused("FROM a\nADD --checksum=sha256:00 https://h/a https://h/b /d/\n", &o),
            Some((2, Refusal::AddChecksum))
        );
        assert_eq!(refused("FROM a\nADD --checksum=sha256:00 $URL /\n", &o), None, "known once expanded");
        assert_eq!(refused("FROM a\nADD --keep-git-dir x /\n", &o), Some((2, Refusal::AddKeepGitDir)));
        assert_eq!(refused("FROM a\nADD https://example.com/x /\n", &o), None);
        assert_eq!(refused("FROM a\nADD --keep-git-dir https://h/r.git#main /\n", &o), None);
        assert_eq!(
            refused("FROM a\nADD https://u:pw@example.com/x local /d/\n", &o),
            Some((2, Refusal::AddRemoteMixed { url: "https://u:***@example.com/x".into() }))
        );
        assert_eq!(
            refused("FROM a\nADD --unpack=true https://h/x.tar.gz /\n", &o),
            Some((2, Refusal::AddRemoteUnpack))
        );
        assert_eq!(refused("FROM a\nADD --unpack=true https://h/r.git /\n", &o), None);
    }

    #[test]
    fn options_decide_host_network_and_platform() {
        let allowed = BuildOptions { allow_network_host: true, ..BuildOptions::default() };
        assert_eq!(refused("FROM a\nRUN --network=host true\n", &allowed), None);
        assert_eq!(refused("FROM a\nRUN --security=insecure true\n", &allowed), Some((2, Refusal::SecurityInsecure)));
        let insecure = BuildOptions { allow_security_insecure: true, ..BuildOptions::default() };
        assert_eq!(refused("FROM a\nRUN --security=insecure true\n", &insecure), None);
        assert_eq!(
            refused("FROM a\nRUN --security=insecure --network=host true\n", &insecure),
            Some((2, Refusal::HostNetwork))
        );
        assert_eq!(
            refused("FROM a\nRUN --security=insecure --device=/dev/fuse true\n", &insecure),
            Some((2, Refusal::RunDevice))
        );
        let host_default = BuildOptions { network: Network::Host, ..BuildOptions::default() };
        assert_eq!(refused("FROM a\nRUN true\n", &host_default), Some((2, Refusal::HostNetwork)));
        let foreign = if Platform::host().architecture == "arm64" { "linux/amd64" } else { "linux/arm64" };
        let foreign = BuildOptions { platform: foreign.parse().expect("platform"), ..BuildOptions::default() };
        assert_eq!(refused("FROM a\nCOPY x /\n", &foreign), None, "steps that run nothing work for any platform");
        assert!(matches!(refused("FROM a\nRUN true\n", &foreign), Some((2, Refusal::ForeignPlatform { .. }))));
        let host = Platform::host().to_string();
        let stage = format!("FROM --platform={host} a\nRUN true\n");
        assert_eq!(refused(&stage, &foreign), None, "a stage on the host's platform runs");
        let other = foreign.platform.to_string();
        let stage = format!("FROM --platform={other} a\nRUN true\n");
        let o = BuildOptions::default();
        assert!(
            matches!(refused(&stage, &o), Some((2, Refusal::ForeignPlatform { .. }))),
            "the stage's platform counts"
        );
    }

    #[test]
    fn a_foreign_run_is_refused_unless_an_emulator_with_the_f_flag_runs_it() {
        let amd64: Platform = "linux/amd64".parse().expect("platform");
        let entry = |flags: &str| {
            format!(
                "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n\
                 magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
            )
        };
        let arm64 = BuildOptions { platform: "linux/arm64".parse().expect("platform"), ..BuildOptions::default() };
        let src = "FROM a\nCOPY x /\nRUN true\n";
        let usable = entry("PF");
        let emulated = Emulation::from_binfmt(amd64.clone(), Some(&[("qemu-aarch64", &usable)]));
        assert_eq!(refused_with(src, &arm64, &emulated), None);
        let unusable = entry("P");
        let no_f = Emulation::from_binfmt(amd64.clone(), Some(&[("qemu-aarch64", &unusable)]));
        let Some((3, Refusal::ForeignPlatform { error })) = refused_with(src, &arm64, &no_f) else { panic!("refused") };
        assert!(matches!(error.reason, crate::exec::emulation::Unusable::NoFixBinary { .. }), "{error}");
        let s390x = BuildOptions { platform: "linux/s390x".parse().expect("platform"), ..BuildOptions::default() };
        let Some((3, refusal)) = refused_with(src, &s390x, &emulated) else { panic!("refused") };
        assert!(refusal.to_string().contains("qemu-s390x"), "the fix names the emulator: {refusal}");
        let none = Emulation::from_binfmt(amd64, None);
        assert_eq!(refused_with("FROM --platform=linux/386 a\nRUN true\n", &arm64, &none), None, "amd64 runs 386");
    }

    #[test]
    fn an_image_word_that_is_no_reference_is_refused_at_its_line() {
        let o = BuildOptions::default();
        let err = |src: &str| {
            let ast = parse(src).expect("parses");
            let graph = crate::graph::build(&lower(&ast).expect("lowers"), &GraphOptions::default()).expect("graph");
            match check(&graph, &o, &Emulation::from_binfmt(Platform::host(), None)) {
                Err(BuildError::Reference { span, word, .. }) => (span.start_line, word),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(err("ARG V\nFROM docker:${V}-dind\n"), (2, "docker:-dind".to_string()));
        assert_eq!(err("FROM a\nCOPY --from=Bad /x /x\n"), (2, "Bad".to_string()));
    }

    #[test]
    fn stages_the_target_does_not_need_are_not_checked() {
        let o = BuildOptions::default();
        assert_eq!(refused("FROM a AS unused\nRUN --mount=type=ssh,required true\nFROM a\nRUN true\n", &o), None);
    }
}
