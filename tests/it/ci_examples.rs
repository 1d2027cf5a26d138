//! The CI examples in `examples/ci/` cannot run here (no GitHub runner, GitLab runner or
//! cluster), so their slipway commands run here instead: each file's `slipway …` lines are
//! taken from it as written, the CI's variables set to a real registry on 127.0.0.1 (htpasswd
//! auth, so `slipway login` matters), and run by `sh` in the order of the file, on two runners
//! (two empty stores, two credential files, two checkouts of the same context). The first
//! exports the cache; the second must run no step, every hit coming from that cache, and push
//! an image that runs. The files are also checked for the shape of their YAML (no YAML parser
//! is a dependency) and for the header that points here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::build::{BuildEnv, events, ran, steps};
use crate::support::registry::{Registry, RegistryConfig};
use crate::support::{TestContext, describe, slipway_bin};

const USER: &str = "ci-user";
const PASSWORD: &str = "ci-pa55word";

/// One example file and what the test expects of it.
struct Example {
    /// Under `examples/ci/`.
    file: &'static str,
    /// The test that runs its commands (named in the file's header).
    test: &'static str,
    /// How many slipway command lines it holds.
    commands: usize,
    /// Its top-level YAML keys, in order.
    top_keys: &'static [&'static str],
    /// What the CI would set, as (variable, value); `{registry}` is the test registry's host.
    vars: &'static [(&'static str, &'static str)],
    /// Variables the CI itself defines (not declared in the file).
    predefined: &'static [&'static str],
    /// The image and cache references the build command must name, after substitution.
    image: &'static str,
    cache: &'static str,
}

const GITHUB: Example = Example {
    file: "github-actions.yml",
    test: "ci_examples::github_actions",
    commands: 3,
    top_keys: &["name", "on", "jobs"],
    vars: &[
        ("REGISTRY", "{registry}"),
        ("IMAGE", "octo-org/app"),
        ("TAG", "3f2a9c1d0b"),
        ("REGISTRY_USER", USER),
        ("REGISTRY_PASSWORD", PASSWORD),
    ],
    predefined: &[],
    image: "{registry}/octo-org/app:3f2a9c1d0b",
    cache: "{registry}/octo-org/app:buildcache",
};

const GITLAB: Example = Example {
    file: "gitlab-ci.yml",
    test: "ci_examples::gitlab_ci",
    commands: 3,
    top_keys: &["build-image"],
    vars: &[
        ("CI_REGISTRY", "{registry}"),
        ("CI_REGISTRY_IMAGE", "{registry}/group/project"),
        ("CI_COMMIT_SHORT_SHA", "a1b2c3d4"),
        ("CI_REGISTRY_USER", USER),
        ("CI_REGISTRY_PASSWORD", PASSWORD),
    ],
    predefined: &[
        "CI_REGISTRY",
        "CI_REGISTRY_IMAGE",
        "CI_COMMIT_SHORT_SHA",
        "CI_REGISTRY_USER",
        "CI_REGISTRY_PASSWORD",
    ],
    image: "{registry}/group/project:a1b2c3d4",
    cache: "{registry}/group/project:buildcache",
};

const KUBERNETES: Example = Example {
    file: "kubernetes-job.yaml",
    test: "ci_examples::kubernetes_job",
    commands: 3,
    top_keys: &["apiVersion", "kind", "metadata", "spec"],
    vars: &[
        ("REGISTRY", "{registry}"),
        ("IMAGE", "team/app"),
        ("TAG", "1.0.0"),
        ("REGISTRY_USER", USER),
        ("REGISTRY_PASSWORD", PASSWORD),
    ],
    predefined: &[],
    image: "{registry}/team/app:1.0.0",
    cache: "{registry}/team/app:buildcache",
};

const ALL: [&Example; 3] = [&GITHUB, &GITLAB, &KUBERNETES];

fn read(example: &Example) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci").join(example.file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Whether a shell line runs slipway: some command of it (split at `|`, `&&`, `;`) starts with
/// the word `slipway`.
fn runs_slipway(line: &str) -> bool {
    line.split(['|', ';', '&']).any(|part| part.split_whitespace().next() == Some("slipway"))
}

/// Every slipway command line of a CI file, as the shell gets it: YAML sequence markers
/// removed, comment lines skipped, a line continued by a trailing `\` or by deeper-indented
/// lines (a YAML plain scalar over several lines) joined with spaces.
fn slipway_commands(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let content = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if content.starts_with('#') || !runs_slipway(content) {
            i += 1;
            continue;
        }
        let column = lines[i].len() - content.len();
        let mut command = content.trim_end().to_string();
        i += 1;
        while i < lines.len() {
            let next = lines[i].trim();
            let continued = command.ends_with('\\');
            let deeper =
                !next.is_empty() && indent(lines[i]) > column && !next.starts_with('#') && !next.starts_with("- ");
            if !continued && !deeper {
                break;
            }
            if continued {
                command.pop();
            }
            command = format!("{} {next}", command.trim_end());
            i += 1;
        }
        commands.push(command);
    }
    commands
}

/// The variables a command expands (`$NAME`, `${NAME}`), each with the byte range it takes.
fn variable_spans(command: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = command[from..].find('$').map(|i| from + i) {
        let braced = command[at + 1..].starts_with('{');
        let start = at + 1 + usize::from(braced);
        let len =
            command[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(command.len() - start);
        let end = start + len + usize::from(braced);
        spans.push((command[start..start + len].to_string(), at..end));
        from = end.max(at + 1);
    }
    spans
}

fn variables(command: &str) -> Vec<String> {
    variable_spans(command).into_iter().map(|(name, _)| name).collect()
}

/// `command` with its variables replaced by their values (what the shell does, quotes aside).
fn expand(command: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut last = 0;
    for (name, range) in variable_spans(command) {
        out.push_str(&command[last..range.start]);
        out.push_str(vars.get(&name).map_or("", String::as_str));
        last = range.end;
    }
    out + &command[last..]
}

#[test]
fn the_extraction_takes_whole_commands_and_nothing_else() {
    let text = "# slipway build in a comment\nsteps:\n  - run: |\n      slipway info\n      printf '%s\\n' \"$P\" | slipway login -u u --password-stdin r\n      slipway build \\\n        --push -t r/i:1 .\n      echo done\n  - name: runs slipway later\n    script:\n      - slipway build\n          --cache-from a\n          -t b .\n      - cargo install --path slipway\n";
    assert_eq!(
        slipway_commands(text),
        [
            "slipway info",
            "printf '%s\\n' \"$P\" | slipway login -u u --password-stdin r",
            "slipway build --push -t r/i:1 .",
            "slipway build --cache-from a -t b .",
        ]
    );
    assert_eq!(variables("a $A ${B_2}/$C:x"), ["A", "B_2", "C"]);
    let vars = BTreeMap::from([("R".to_string(), "h:1".to_string()), ("R_I".to_string(), "h:1/i".to_string())]);
    assert_eq!(expand("ref=$R_I:c,x ${R}/$R_I", &vars), "ref=h:1/i:c,x h:1/h:1/i");
}

/// What every example promises: a header saying it cannot run here and naming its test, the
/// expected number of slipway commands, every variable they use declared in the file (or set
/// by the CI), the cache and push flags of issue #17, and YAML of the expected shape.
#[test]
fn every_example_says_what_runs_it_and_has_the_expected_shape() {
    for example in ALL {
        let text = read(example);
        let header: String = text.lines().take_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
        assert!(header.contains("cannot be run in slipway's own CI"), "{}: {header}", example.file);
        assert!(header.contains(&format!("`{}`", example.test)), "{}: {header}", example.file);
        assert!(header.contains("tests/it/ci_examples.rs"), "{}: {header}", example.file);

        let commands = slipway_commands(&text);
        assert_eq!(commands.len(), example.commands, "{}: {commands:#?}", example.file);
        for command in &commands {
            for name in variables(command) {
                assert!(
                    example.vars.iter().any(|(n, _)| *n == name),
                    "{}: ${name} in {command:?} is not set by this test",
                    example.file
                );
                let declared = text.contains(&format!("{name}:")) || text.contains(&format!("name: {name}\n"));
                assert!(
                    declared || example.predefined.contains(&name.as_str()),
                    "{}: ${name} is not declared in the file",
                    example.file
                );
            }
        }
        let build = commands.iter().find(|c| c.starts_with("slipway build")).expect("a build command");
        for flag in ["--cache-from type=registry,ref=", "--cache-to type=registry,ref=", ",mode=max", "--push", " -t "]
        {
            assert!(build.contains(flag), "{}: {flag} missing from {build:?}", example.file);
        }
        assert!(commands.iter().any(|c| c.contains("slipway login") && c.contains("--password-stdin")));
        check_yaml_shape(example, &text);
    }
}

/// The commands `examples/ci/README.md` shows are the GitHub workflow's, as written there.
#[test]
fn the_readme_shows_the_commands_the_examples_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let shown: Vec<String> =
        slipway_commands(&readme).into_iter().map(|c| c.split(" # ").next().unwrap().trim_end().to_string()).collect();
    assert_eq!(shown, slipway_commands(&read(&GITHUB)), "{}", path.display());
}

/// A plain structural check of the YAML these files use: spaces only, even indentation, every
/// line outside a block scalar (`|`, `>`) a comment, a `key:` / `key: value` mapping line, a
/// `- ` sequence item or the continuation of a plain scalar; the top-level keys as expected.
fn check_yaml_shape(example: &Example, text: &str) {
    let mut top_keys = Vec::new();
    // The indentation a block scalar's lines must exceed, while inside one.
    let mut block: Option<usize> = None;
    // The indentation of the last mapping or sequence line (a deeper line continues its scalar).
    let mut last = 0;
    for (n, line) in text.lines().enumerate() {
        let at = format!("{}:{}: {line:?}", example.file, n + 1);
        assert!(!line.contains('\t'), "{at}: a tab");
        assert_eq!(line, line.trim_end(), "{at}: trailing white space");
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        let depth = indent(line);
        if let Some(parent) = block {
            if depth > parent {
                continue;
            }
            block = None;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        assert_eq!(depth % 2, 0, "{at}: odd indentation");
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let is_mapping =
            item.split_once(": ").map_or(item.ends_with(':'), |(key, _)| !key.contains(' ')) && !item.starts_with('"');
        let is_item = trimmed.starts_with("- ");
        if !is_mapping && !is_item {
            assert!(depth > last, "{at}: neither a mapping, an item nor a continued scalar");
            continue;
        }
        if depth == 0 {
            top_keys.push(item.split(':').next().unwrap().to_string());
        }
        if item.ends_with('|') || item.ends_with('>') {
            block = Some(depth);
        }
        last = depth;
    }
    assert_eq!(top_keys, example.top_keys, "{}: top-level keys", example.file);
}

/// A runner: its own store, credentials file and checkout of the context.
struct Runner {
    dir: TestContext,
}

impl Runner {
    fn new(base: &str) -> Runner {
        let dir = TestContext::new();
        let ctx = dir.path().join("checkout");
        std::fs::create_dir_all(ctx.join("src")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM {base} AS deps\n\
                 RUN echo deps > /deps\n\
                 FROM {base}\n\
                 COPY --from=deps /deps /deps\n\
                 COPY src/app.txt /app.txt\n\
                 RUN cat /deps /app.txt > /out\n\
                 CMD [\"cat\", \"/out\"]\n"
            ),
        )
        .unwrap();
        std::fs::write(ctx.join("src/app.txt"), "app\n").unwrap();
        Runner { dir }
    }

    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    /// Runs one command line with `sh -eu` in the checkout, as the CI would, slipway found on
    /// PATH; a build's progress is rawjson so that the test can read its cache decisions.
    fn run(&self, command: &str, vars: &BTreeMap<String, String>) -> Output {
        let command = if command.starts_with("slipway build ") {
            command.replacen("slipway build ", "slipway --progress rawjson build ", 1)
        } else {
            command.to_string()
        };
        let bin_dir = slipway_bin().parent().unwrap().to_path_buf();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("sh");
        cmd.args(["-euc", &command]).current_dir(self.dir.path().join("checkout"));
        cmd.env("PATH", path).env("SLIPWAY_ROOT", self.dir.root()).env("DOCKER_CONFIG", self.docker_config());
        cmd.env("SLIPWAY_LOG", "warn").env("CI", "true");
        for name in ["REGISTRY_AUTH_FILE", "SOURCE_DATE_EPOCH", "GITHUB_ACTIONS", "GITLAB_CI", "SLIPWAY_SNAPSHOTTER"] {
            cmd.env_remove(name);
        }
        cmd.envs(vars);
        let out = cmd.output().expect("spawn sh");
        assert!(out.status.success(), "{command}\n{}", describe(&out));
        out
    }

    /// Runs the example's commands in order; returns the build's rawjson events and stderr.
    fn pipeline(&self, commands: &[String], vars: &BTreeMap<String, String>) -> (Vec<Value>, String) {
        let mut build = None;
        for command in commands {
            let out = self.run(command, vars);
            if command.starts_with("slipway build ") {
                build = Some((events(&out), String::from_utf8_lossy(&out.stderr).into_owned()));
            }
        }
        build.expect("the pipeline builds")
    }
}

/// The example's commands on two runners against a registry with htpasswd auth.
fn run_example(example: &Example) {
    let registry =
        Registry::start_with(RegistryConfig { htpasswd: Some((USER.into(), PASSWORD.into())), ..Default::default() });
    let host = registry.host();
    let fill = |s: &str| s.replace("{registry}", &host);

    // The base image the context's Dockerfile starts from, in the same registry.
    let base = format!("{host}/base/busybox:1");
    let seed = BuildEnv::new();
    let authfile = seed.tc.path().join("auth.json");
    let mut login = seed.tc.cmd();
    login.args(["login", "--authfile", authfile.to_str().unwrap(), "-u", USER, "--password-stdin", &host]);
    let out = login_with(login, PASSWORD);
    assert!(out.status.success(), "{}", describe(&out));
    seed.tc.ok(&["push", "--authfile", authfile.to_str().unwrap(), "bb", &base]);

    let commands = slipway_commands(&read(example));
    assert_eq!(commands.len(), example.commands, "{commands:#?}");
    let vars: BTreeMap<String, String> = example.vars.iter().map(|(k, v)| (k.to_string(), fill(v))).collect();
    let (image, cache) = (fill(example.image), fill(example.cache));
    let build = commands.iter().find(|c| c.starts_with("slipway build ")).unwrap();
    let expanded = expand(build, &vars);
    assert!(expanded.contains(&format!("ref={cache}")) && expanded.contains(&format!("-t {image} ")), "{expanded}");

    // Runner A: a first pipeline, no cache yet (a warning), every step runs and is exported.
    let a = Runner::new(&base);
    let (ev, stderr) = a.pipeline(&commands, &vars);
    assert!(stderr.contains("warning: importing the cache from"), "{stderr}");
    assert!(stderr.contains("exported the cache (4 records, "), "{stderr}");
    assert_eq!(ran(&ev), 4, "{:#?}", steps(&ev));

    // Runner B: an empty store, its own checkout and login; nothing runs, every hit is the
    // registry cache's.
    let b = Runner::new(&base);
    let (ev, stderr) = b.pipeline(&commands, &vars);
    let all = steps(&ev);
    assert_eq!(all.len(), 4, "{all:#?}\n{stderr}");
    assert_eq!(ran(&ev), 0, "runner B ran steps: {all:#?}");
    let hits: Vec<&Value> = ev.iter().filter(|e| e["type"] == "task_cache").collect();
    assert!(hits.iter().all(|e| e["hit"] == true && e["from"] == cache.as_str()), "{hits:#?}");

    // What runner B pushed runs, pulled into a third store with runner B's credentials.
    let check = TestContext::new();
    let mut pull = check.cmd();
    pull.args(["pull", &image]).env("DOCKER_CONFIG", b.docker_config());
    let out = pull.output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let out = check.ok(&["run", &image]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deps\napp\n");
}

fn login_with(mut cmd: Command, password: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn github_actions() {
    run_example(&GITHUB);
}

#[test]
fn gitlab_ci() {
    run_example(&GITLAB);
}

#[test]
fn kubernetes_job() {
    run_example(&KUBERNETES);
}
