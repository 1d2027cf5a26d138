//! Which variables a Dockerfile line sees: the ARG/ENV scoping model, as BuildKit applies it,
//! plus the table of which instructions expand variables at all.
//!
//! # Scopes
//!
//! - **Global scope** ([`ArgScope::global`]): the ARGs before the first `FROM`. It starts with
//!   the predefined ARGs ([`PLATFORM_ARGS`]: platforms and `TARGETSTAGE`). Each `ARG NAME[=default]` takes the
//!   `--build-arg` value if one was given, else its default (expanded in the global scope as
//!   it stands), else a platform value of that name. Only the image and `--platform` of `FROM`
//!   lines expand here; a `--build-arg` that no global ARG declares is not visible.
//! - **Stage scope** ([`ArgScope::stage`]): starts with the base image's `ENV` and no ARGs.
//!   An ARG becomes visible only once the stage declares it. Its value is the `--build-arg`
//!   value, else its default (expanded in the stage as it stands), else the global scope's
//!   value for that name (so a bare `ARG NAME` re-imports a global ARG, and a bare
//!   `ARG TARGETARCH` imports the platform value). An ARG left without any value is declared
//!   but unset. `FROM <stage>` starts from the parent stage's variables
//!   ([`ArgScope::stage_from`]).
//! - **ARG and ENV share one variable set, last write wins**: BuildKit adds an ARG's value to
//!   the build state's environment, so `ENV` after `ARG` overrides the ARG (Docker's documented
//!   "ENV overrides ARG"), and an `ARG` with a value declared after an `ENV` (including one
//!   inherited from the base image) overrides that ENV for later lines. Each variable keeps
//!   its [`Origin`] so the builder can tell the image's `Env` from build-time ARGs.
//!
//! # Proxy ARGs
//!
//! [`PROXY_ARGS`] may be passed as `--build-arg` without any `ARG` line: they reach `RUN`
//! through [`proxy_env`], in both spellings from either (BuildKit's rule), and must never enter
//! the image history or a cache key. Declaring one with `ARG` also makes it an ordinary ARG of
//! its stage (a variable of the Dockerfile's words, keyed like any ARG); `RUN` still gets the
//! proxy variables as well, as in BuildKit.
//!
//! # Unused build args
//!
//! A `--build-arg` no built stage (nor the global scope) declares is reported by
//! [`unconsumed_build_args`]; Docker warns about those. Proxy and platform names are exempt.
//!
//! PURE: plain strings in and out, independent of the parser's types; no IO.

use std::collections::{BTreeMap, BTreeSet};

use super::expand::{ExpandError, Expander, Lookup};

/// The ARGs BuildKit predefines: from the target and build platforms, and the target stage.
pub const PLATFORM_ARGS: [&str; 11] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    TARGET_STAGE_ARG,
];

/// The predefined ARG naming the stage being built: the `--target`, else the last stage's name,
/// else `default` (Dockerfile syntax 1.11).
pub const TARGET_STAGE_ARG: &str = "TARGETSTAGE";

/// The build-arg that sets the hostname of RUN steps (a BuildKit frontend option, not an ARG).
pub const SANDBOX_HOSTNAME_ARG: &str = "BUILDKIT_SANDBOX_HOSTNAME";

/// The ARGs usable without declaration, kept out of history and cache keys.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `name` is one of the predefined platform ARGs.
pub fn is_platform_arg(name: &str) -> bool {
    PLATFORM_ARGS.contains(&name)
}

/// Whether `name` is a proxy ARG: usable undeclared, never in history or cache keys.
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// The predefined ARG values for a target and a build platform written `os/arch[/variant]`
/// (`linux/arm64/v8`; a missing variant gives an empty `*VARIANT`), and `TARGETSTAGE` as it is
/// without `--target` (`default`).
pub fn platform_args(target: &str, build: &str) -> BTreeMap<String, String> {
    let mut args = BTreeMap::from([(TARGET_STAGE_ARG.to_string(), "default".to_string())]);
    for (prefix, platform) in [("TARGET", target), ("BUILD", build)] {
        let mut parts = platform.splitn(3, '/');
        let os = parts.next().unwrap_or_default();
        let arch = parts.next().unwrap_or_default();
        let variant = parts.next().unwrap_or_default();
        args.insert(format!("{prefix}PLATFORM"), platform.to_owned());
        args.insert(format!("{prefix}OS"), os.to_owned());
        // An OS version exists only for Windows platforms, which slipway does not build.
        args.insert(format!("{prefix}OSVERSION"), String::new());
        args.insert(format!("{prefix}ARCH"), arch.to_owned());
        args.insert(format!("{prefix}VARIANT"), variant.to_owned());
    }
    args
}

/// Where a variable's current value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An `ENV` line, or the base image's environment.
    Env,
    /// An `ARG` line (its value may come from `--build-arg`, a default or the global scope).
    Arg,
}

/// A variable visible in a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    /// The name.
    pub name: String,
    /// The current value.
    pub value: String,
    /// Who set it last.
    pub origin: Origin,
}

/// The variables one part of a Dockerfile sees: the global scope or one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgScope {
    /// `--build-arg` values of the whole build.
    build_args: BTreeMap<String, String>,
    /// What a bare `ARG NAME` falls back to: the platform values (global scope) or the
    /// global scope's values (stage).
    fallback: BTreeMap<String, String>,
    /// ENV and valued ARGs, in first-set order (a later write replaces in place).
    vars: Vec<Var>,
    /// ARG lines of this scope, in order, with their resolved value (`None`: unset).
    declared: Vec<(String, Option<String>)>,
    /// Build-arg names an ARG of this scope consumed.
    consumed: BTreeSet<String>,
}

impl ArgScope {
    /// The global scope of a build: no ARG declared yet, the platform ARGs visible.
    pub fn global(build_args: BTreeMap<String, String>, platform: BTreeMap<String, String>) -> ArgScope {
        let vars =
            platform.iter().map(|(n, v)| Var { name: n.clone(), value: v.clone(), origin: Origin::Arg }).collect();
        ArgScope { build_args, fallback: platform, vars, declared: Vec::new(), consumed: BTreeSet::new() }
    }

    /// A stage over a base image whose environment is `base_env`, under the global scope
    /// `global` (the scope after all global ARG lines).
    pub fn stage(global: &ArgScope, base_env: impl IntoIterator<Item = (String, String)>) -> ArgScope {
        let fallback = global.vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
        let mut scope = ArgScope {
            build_args: global.build_args.clone(),
            fallback,
            vars: Vec::new(),
            declared: Vec::new(),
            consumed: BTreeSet::new(),
        };
        for (name, value) in base_env {
            scope.set(name, value, Origin::Env);
        }
        scope
    }

    /// A stage built `FROM` the stage `parent`: it starts with the parent's variables (its
    /// ENV and its ARG values) but has declared no ARG of its own yet.
    pub fn stage_from(global: &ArgScope, parent: &ArgScope) -> ArgScope {
        let mut scope = ArgScope::stage(global, []);
        scope.vars = parent.vars.clone();
        scope
    }

    /// Declares `ARG name[=default]`, `default` already expanded. Returns the value the ARG
    /// takes: the build-arg, else `default`, else the fallback (see the module doc); `None`
    /// leaves it declared but unset.
    pub fn declare(&mut self, name: &str, default: Option<String>) -> Option<&str> {
        let value = match self.build_args.get(name) {
            Some(v) => {
                self.consumed.insert(name.to_owned());
                Some(v.clone())
            }
            None => default.or_else(|| self.fallback.get(name).cloned()),
        };
        if let Some(v) = &value {
            self.set(name.to_owned(), v.clone(), Origin::Arg);
        }
        match self.declared.iter().position(|(n, _)| n == name) {
            Some(i) => self.declared[i].1 = value,
            None => self.declared.push((name.to_owned(), value)),
        }
        self.declared.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    /// Declares `ARG name[=raw_default]` with the default as written: it is expanded (with
    /// `escape`) against this scope only when it is used, i.e. when no build-arg overrides it,
    /// as BuildKit does. Returns the ARG's value.
    pub fn declare_raw(
        &mut self,
        name: &str,
        raw_default: Option<&str>,
        escape: char,
    ) -> Result<Option<String>, ExpandError> {
        let default = match raw_default {
            Some(raw) if !self.build_args.contains_key(name) => {
                Some(Expander::new(escape, self).expand_word(raw)?.value)
            }
            _ => None,
        };
        Ok(self.declare(name, default).map(str::to_owned))
    }

    /// Applies `ENV name=value`.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.set(name.to_owned(), value.to_owned(), Origin::Env);
    }

    fn set(&mut self, name: String, value: String, origin: Origin) {
        match self.vars.iter_mut().find(|v| v.name == name) {
            Some(var) => {
                var.value = value;
                var.origin = origin;
            }
            None => self.vars.push(Var { name, value, origin }),
        }
    }

    /// The value of `name` for the next line, `None` when unset.
    pub fn lookup(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|v| v.name == name).map(|v| v.value.as_str())
    }

    /// The visible variables, ENV and ARG, in the order they were first set. This is the
    /// environment BuildKit gives `RUN` (proxy variables aside).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The ARG lines of this scope, in order, with their value (`None`: declared, unset).
    pub fn declared(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.declared.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// The proxy variables of `RUN` from this build's build-args ([`proxy_env`]).
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        proxy_env(&self.build_args)
    }

    /// The build-arg names an ARG of this scope consumed.
    pub fn consumed(&self) -> &BTreeSet<String> {
        &self.consumed
    }
}

impl Lookup for ArgScope {
    fn lookup(&self, name: &str) -> Option<&str> {
        ArgScope::lookup(self, name)
    }
}

/// The proxy variables BuildKit gives every `RUN`, declared or not, never recorded in history
/// or cache keys: for each of `http`, `https`, `ftp`, `no` and `all`, the build-arg named
/// `<x>_proxy` in any ASCII case — the last in byte order when several are given, so
/// `http_proxy` wins over `HTTP_PROXY` — set in both spellings, upper case first, unless its
/// value is empty (`proxyEnvFromBuildArgs` in `dockerfile2llb/convert.go`, `proxyEnvList` in
/// `solver/llbsolver/ops/exec.go`).
pub fn proxy_env(build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in PROXY_ARGS.chunks(2) {
        let (upper, lower) = (pair[0], pair[1]);
        // A BTreeMap iterates in byte order, as BuildKit's sorted keys: the last match wins.
        let value = build_args.iter().filter(|(name, _)| name.eq_ignore_ascii_case(lower)).map(|(_, v)| v).next_back();
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.push((upper.to_owned(), value.clone()));
            out.push((lower.to_owned(), value.clone()));
        }
    }
    out
}

/// The build-args that no scope in `scopes` consumed (the global scope and every stage that
/// was built), minus the proxy and platform names. Docker warns about these.
pub fn unconsumed_build_args<'s>(
    build_args: &BTreeMap<String, String>,
    scopes: impl IntoIterator<Item = &'s ArgScope>,
) -> Vec<String> {
    let consumed: BTreeSet<&String> = scopes.into_iter().flat_map(|s| s.consumed.iter()).collect();
    build_args
        .keys()
        .filter(|k| !consumed.contains(k) && !is_proxy_arg(k) && !is_platform_arg(k) && *k != SANDBOX_HOSTNAME_ARG)
        .cloned()
        .collect()
}

/// How an instruction's arguments are expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsExpansion {
    /// Never: the text goes to a shell at run time, or is expanded later (`ONBUILD`).
    Never,
    /// Each argument is one word ([`Expander::expand_word`]).
    Word,
    /// Each argument is split into words ([`Expander::expand_words`]): `EXPOSE`.
    Words,
    /// Keys and values of `key=value` pairs are each one word: `ENV`, `LABEL`, `ARG`.
    KeyValue,
}

/// What BuildKit expands in one instruction: its arguments and which of its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpansionRule {
    /// How the arguments expand.
    pub args: ArgsExpansion,
    /// The flags whose values expand (names without `--`). Any other flag is taken as written.
    pub flags: &'static [&'static str],
}

/// BuildKit's rule for `keyword` (any case):
///
/// | instruction | arguments | flags |
/// | --- | --- | --- |
/// | `ADD` | sources and destination | `--chown`, `--chmod`, `--checksum` |
/// | `COPY` | sources and destination | `--chown`, `--chmod` (never `--from`: a variable there is an error) |
/// | `ENV`, `LABEL`, `ARG` | keys and values | |
/// | `EXPOSE` | each, split into words | |
/// | `FROM` | the image, in the global scope only | `--platform`, in the global scope |
/// | `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR` | each | |
/// | `RUN` | never (the shell expands it) | `--mount` option values |
/// | `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK`, `MAINTAINER`, `ONBUILD` | never | |
///
/// Heredoc bodies are the builder's call too: `COPY`/`ADD` bodies with an unquoted delimiter
/// expand with quotes kept ([`Expander::raw_quotes`]); `RUN` bodies never.
pub fn expansion_rule(keyword: &str) -> ExpansionRule {
    let (args, flags): (ArgsExpansion, &'static [&'static str]) = match keyword.to_ascii_uppercase().as_str() {
        "ADD" => (ArgsExpansion::Word, &["chown", "chmod", "checksum"]),
        "COPY" => (ArgsExpansion::Word, &["chown", "chmod"]),
        "ENV" | "LABEL" | "ARG" => (ArgsExpansion::KeyValue, &[]),
        "EXPOSE" => (ArgsExpansion::Words, &[]),
        "FROM" => (ArgsExpansion::Word, &["platform"]),
        "STOPSIGNAL" | "USER" | "VOLUME" | "WORKDIR" => (ArgsExpansion::Word, &[]),
        "RUN" => (ArgsExpansion::Never, &["mount"]),
        _ => (ArgsExpansion::Never, &[]),
    };
    ExpansionRule { args, flags }
}

/// Whether BuildKit expands variables anywhere in `keyword`'s arguments or flags.
pub fn expands(keyword: &str) -> bool {
    let rule = expansion_rule(keyword);
    rule.args != ArgsExpansion::Never || !rule.flags.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn global(build_args: &[(&str, &str)]) -> ArgScope {
        ArgScope::global(map(build_args), platform_args("linux/arm64/v8", "linux/amd64"))
    }

    #[test]
    fn platform_args_split_the_platform() {
        let args = platform_args("linux/arm/v7", "linux/amd64");
        assert_eq!(args["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(args["TARGETOS"], "linux");
        assert_eq!(args["TARGETARCH"], "arm");
        assert_eq!(args["TARGETVARIANT"], "v7");
        assert_eq!(args["BUILDARCH"], "amd64");
        assert_eq!(args["BUILDVARIANT"], "");
        assert_eq!(args.len(), PLATFORM_ARGS.len());
    }

    #[test]
    fn global_args_take_build_args_over_defaults() {
        let mut g = global(&[("VERSION", "2"), ("UNDECLARED", "x")]);
        assert_eq!(g.lookup("TARGETARCH"), Some("arm64"), "platform ARGs are global without declaration");
        assert_eq!(g.declare("VERSION", Some("1".into())), Some("2"));
        assert_eq!(g.declare("BASE", Some("alpine".into())), Some("alpine"));
        assert_eq!(g.declare("EMPTY", None), None);
        assert_eq!(g.declare("TARGETOS", None), Some("linux"));
        assert_eq!(g.lookup("UNDECLARED"), None, "a build-arg is visible only once declared");
        let image = Expander::new('\\', &g).expand_word("$BASE:${VERSION}${EMPTY:-x}").expect("valid word");
        assert_eq!(image.value, "alpine:2x");
    }

    #[test]
    fn defaults_expand_in_the_scope_as_it_stands() {
        let mut g = global(&[]);
        assert_eq!(g.declare_raw("A", Some("a"), '\\'), Ok(Some("a".into())));
        assert_eq!(g.declare_raw("B", Some("${A}-$TARGETARCH"), '\\'), Ok(Some("a-arm64".into())));
        // A build-arg wins, and the default is not even expanded (so it cannot fail).
        let mut g = global(&[("C", "given")]);
        assert_eq!(g.declare_raw("C", Some("${NOPE:?required}"), '\\'), Ok(Some("given".into())));
        let mut g = global(&[]);
        assert!(g.declare_raw("C", Some("${NOPE:?required}"), '\\').is_err());
    }

    #[test]
    fn stage_sees_an_arg_only_after_declaring_it() {
        let mut g = global(&[("FROM_CLI", "cli")]);
        g.declare("VERSION", Some("1".into()));
        g.declare("FROM_CLI", None);
        let mut s = ArgScope::stage(&g, [("PATH".to_owned(), "/bin".to_owned())]);
        assert_eq!(s.lookup("VERSION"), None);
        assert_eq!(s.lookup("TARGETARCH"), None, "platform ARGs need ARG inside a stage");
        assert_eq!(s.lookup("PATH"), Some("/bin"));
        assert_eq!(s.declare("VERSION", None), Some("1"), "a bare ARG takes the global value");
        assert_eq!(s.declare("TARGETARCH", None), Some("arm64"));
        assert_eq!(s.declare("FROM_CLI", Some("default".into())), Some("cli"), "build-args beat stage defaults");
        assert_eq!(s.declare("LOCAL", Some("l".into())), Some("l"));
        assert_eq!(s.declare("NOTHING", None), None);
        assert_eq!(s.lookup("NOTHING"), None);
        let declared: Vec<_> = s.declared().collect();
        assert_eq!(declared[0], ("VERSION", Some("1")));
        assert_eq!(declared[4], ("NOTHING", None));
    }

    #[test]
    fn stage_default_beats_the_global_value() {
        let mut g = global(&[]);
        g.declare("V", Some("global".into()));
        let mut s = ArgScope::stage(&g, []);
        assert_eq!(s.declare("V", Some("stage".into())), Some("stage"));
    }

    #[test]
    fn arg_and_env_last_write_wins() {
        let g = global(&[]);
        let mut s = ArgScope::stage(&g, [("MODE".to_owned(), "base".to_owned())]);
        assert_eq!(s.declare("MODE", Some("arg".into())), Some("arg"), "an ARG after an inherited ENV wins");
        assert_eq!(s.vars()[0].origin, Origin::Arg);
        s.set_env("MODE", "env");
        assert_eq!(s.lookup("MODE"), Some("env"), "ENV after ARG overrides it");
        assert_eq!(s.vars()[0], Var { name: "MODE".into(), value: "env".into(), origin: Origin::Env });
        s.declare("MODE", None);
        assert_eq!(s.lookup("MODE"), Some("env"), "an ARG without any value leaves the ENV alone");
    }

    #[test]
    fn child_stage_starts_from_the_parent_variables() {
        let g = global(&[]);
        let mut parent = ArgScope::stage(&g, []);
        parent.declare("A", Some("1".into()));
        parent.set_env("E", "2");
        let child = ArgScope::stage_from(&g, &parent);
        assert_eq!((child.lookup("A"), child.lookup("E")), (Some("1"), Some("2")));
        assert_eq!(child.declared().count(), 0);
    }

    /// BuildKit's testBuiltinArgs and `proxyEnvFromBuildArgs`: either spelling sets both; of
    /// several spellings the last in byte order wins (lower case over upper case); an empty
    /// value sets nothing; the order is http, https, ftp, no, all.
    #[test]
    fn proxy_env_sets_both_spellings_as_buildkit() {
        let env = |args: &[(&str, &str)]| proxy_env(&map(args));
        assert_eq!(
            env(&[("http_proxy", "hp"), ("NO_PROXY", "np"), ("FOO", "x")]),
            pairs(&[("HTTP_PROXY", "hp"), ("http_proxy", "hp"), ("NO_PROXY", "np"), ("no_proxy", "np")])
        );
        assert_eq!(env(&[("HTTP_PROXY", "upper"), ("http_proxy", "lower")])[0].1, "lower");
        assert_eq!(env(&[("HTTP_PROXY", "upper"), ("Http_Proxy", "mixed")])[0].1, "mixed");
        assert_eq!(env(&[("Http_Proxy", "mixed"), ("http_proxy", "lower")])[0].1, "lower");
        assert_eq!(env(&[("HTTP_PROXY", "x"), ("http_proxy", "")]), pairs(&[]), "the winner is empty");
        assert_eq!(env(&[("https_proxy", "")]), pairs(&[]));
        assert_eq!(
            env(&[
                ("all_proxy", "a"),
                ("ftp_proxy", "f"),
                ("HTTPS_PROXY", "s"),
                ("no_proxy", "n"),
                ("HTTP_PROXY", "h")
            ]),
            pairs(&[
                ("HTTP_PROXY", "h"),
                ("http_proxy", "h"),
                ("HTTPS_PROXY", "s"),
                ("https_proxy", "s"),
                ("FTP_PROXY", "f"),
                ("ftp_proxy", "f"),
                ("NO_PROXY", "n"),
                ("no_proxy", "n"),
                ("ALL_PROXY", "a"),
                ("all_proxy", "a"),
            ])
        );
        assert_eq!(env(&[("HTTP_PROXY_X", "no"), ("xhttp_proxy", "no")]), pairs(&[]), "whole names only");
    }

    #[test]
    fn proxy_args_need_no_declaration_and_stay_apart() {
        let build_args = [("HTTP_PROXY", "http://p:3128"), ("no_proxy", "localhost"), ("UNUSED", "1"), ("USED", "2")];
        let mut g = global(&build_args);
        let mut s = ArgScope::stage(&g, []);
        assert_eq!(s.lookup("HTTP_PROXY"), None, "not a variable of the Dockerfile words");
        let both = pairs(&[
            ("HTTP_PROXY", "http://p:3128"),
            ("http_proxy", "http://p:3128"),
            ("NO_PROXY", "localhost"),
            ("no_proxy", "localhost"),
        ]);
        assert_eq!(s.proxy_env(), both);
        s.declare("USED", None);
        s.declare("no_proxy", None);
        assert_eq!(s.lookup("no_proxy"), Some("localhost"), "a declared proxy ARG is also an ordinary ARG");
        assert_eq!(s.proxy_env(), both, "and RUN still gets both spellings");
        g.declare("TARGETOS", None);
        assert_eq!(unconsumed_build_args(&map(&build_args), [&g, &s]), vec!["UNUSED".to_owned()]);
    }

    #[test]
    fn expansion_table() {
        for keyword in
            ["ADD", "copy", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "ARG"]
        {
            assert!(expands(keyword), "{keyword} expands");
        }
        for keyword in ["CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK", "MAINTAINER", "ONBUILD", "bogus"] {
            assert!(!expands(keyword), "{keyword} never expands");
        }
        let run = expansion_rule("run");
        assert_eq!((run.args, run.flags), (ArgsExpansion::Never, &["mount"][..]));
        assert!(!expansion_rule("COPY").flags.contains(&"from"));
        assert_eq!(expansion_rule("EXPOSE").args, ArgsExpansion::Words);
        assert_eq!(expansion_rule("ENV").args, ArgsExpansion::KeyValue);
    }
}
