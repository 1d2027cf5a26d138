//! Log lines on stderr: coloured only on a terminal, never with `NO_COLOR` set, so a redirected
//! stderr (a file, a pipe, CI logs) holds no escape sequences.

use std::fs::File;
use std::process::{Command, Output, Stdio};

use crate::support::{TestContext, describe};

/// A context whose build cache is not a SQLite database, so a build logs a warning (and carries
/// on with an empty cache); the build itself only copies a file from the context.
fn with_corrupt_cache() -> TestContext {
    let ctx = TestContext::new();
    std::fs::create_dir_all(ctx.root().join("cache")).unwrap();
    std::fs::write(ctx.root().join("cache/cache.db"), vec![0x5a; 8192]).unwrap();
    std::fs::create_dir(ctx.path().join("ctx")).unwrap();
    std::fs::write(ctx.path().join("ctx/Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
    std::fs::write(ctx.path().join("ctx/a"), "a\n").unwrap();
    ctx
}

fn assert_warned(out: &Output, stderr: &str) {
    assert!(out.status.success(), "{}", describe(out));
    assert!(stderr.contains("WARN") && stderr.contains("cache database is corrupt"), "{stderr:?}");
}

#[test]
fn a_warning_written_to_a_file_or_a_pipe_has_no_colour() {
    let ctx = with_corrupt_cache();
    let log = ctx.path().join("stderr.log");
    let mut cmd = ctx.cmd();
    cmd.env_remove("NO_COLOR").args(["build", "-t", "a:1"]).arg(ctx.path().join("ctx"));
    let out = cmd.stderr(File::create(&log).unwrap()).output().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_warned(&out, &stderr);
    assert!(!stderr.contains("\x1b["), "escape sequences in a file: {stderr:?}");

    let ctx = with_corrupt_cache();
    let out =
        ctx.cmd().env_remove("NO_COLOR").args(["build", "-t", "a:1"]).arg(ctx.path().join("ctx")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_warned(&out, &stderr);
    assert!(!stderr.contains("\x1b["), "escape sequences in a pipe: {stderr:?}");
}

#[test]
fn on_a_terminal_a_warning_is_coloured_unless_no_color_is_set() {
    // `script` runs the build on a pseudo-terminal and copies what it wrote to our pipe.
    let on_a_terminal = |no_color: Option<&str>| {
        let ctx = with_corrupt_cache();
        let build = ctx.cmd();
        let line: Vec<String> = std::iter::once(build.get_program())
            .chain(build.get_args())
            .chain(["--progress", "plain", "build", "-t", "a:1"].map(std::ffi::OsStr::new))
            .chain([ctx.path().join("ctx").as_os_str()])
            .map(|a| format!("'{}'", a.to_str().unwrap()))
            .collect();
        let mut script = Command::new("script");
        script.args(["-qec", &line.join(" "), "/dev/null"]).stdin(Stdio::null());
        script.env("SLIPWAY_LOG", "warn").env_remove("SLIPWAY_ROOT").env_remove("CI");
        match no_color {
            Some(value) => script.env("NO_COLOR", value),
            None => script.env_remove("NO_COLOR"),
        };
        let out = script.output().expect("script (util-linux) runs a command on a pty");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_warned(&out, &text);
        text
    };
    let coloured = on_a_terminal(None);
    assert!(coloured.contains("\x1b["), "a terminal gets colour: {coloured:?}");
    let empty = on_a_terminal(Some(""));
    assert!(empty.contains("\x1b["), "an empty NO_COLOR does not count: {empty:?}");
    let plain = on_a_terminal(Some("1"));
    assert!(!plain.contains("\x1b["), "NO_COLOR=1 on a terminal: {plain:?}");
}
