//! Build records: every `slipway build` (succeeded, failed, cancelled, killed) leaves one in the
//! store beside its step logs; `slipway builds ls|show|logs|rm` read and remove them. Outputs are
//! compared with ids, times, durations, sizes, digests and the test's directory filtered.

use std::process::Output;

use serde_json::Value;

use crate::build_mounts::assert_nowhere;
use crate::build_stages::assert_clean;
use crate::support::build::BuildEnv;
use crate::support::describe;

/// `slipway builds ARGS`, which must succeed → stdout.
#[track_caller]
fn builds(env: &BuildEnv, args: &[&str]) -> String {
    let mut all = vec!["builds"];
    all.extend_from_slice(args);
    String::from_utf8(env.tc.ok(&all).stdout).unwrap()
}

/// `slipway builds ARGS --format json` → the JSON.
#[track_caller]
fn builds_json(env: &BuildEnv, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json"]);
    serde_json::from_str(&builds(env, &all)).unwrap()
}

/// The ids `builds ls` lists, newest first.
fn ids(env: &BuildEnv) -> Vec<String> {
    let listed = builds_json(env, &["ls"]);
    listed.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// The build directories under `<root>/logs`.
fn build_dirs(env: &BuildEnv) -> usize {
    let logs = std::fs::read_dir(env.tc.root().join("logs")).unwrap();
    logs.filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir()).count()
}

/// What changes from run to run, replaced in snapshots; runs of spaces (column padding) made two.
const FILTERS: [(&str, &str); 8] = [
    (r"\d{10}-\d{9}-\d+", "[ID]"),
    (r"(Less than a minute|\d+ (second|minute|hour)s?) ago", "[AGO]"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
    (r"\b\d+\.\ds\b|\b\d+m\d\ds\b", "[DURATION]"),
    (r"sha256:[0-9a-f]{64}", "[DIGEST]"),
    (r"\b\d+(\.\d+)?[kMG]?B\b", "[SIZE]"),
    (r"linux/[a-z0-9]+(/v\d)?", "[PLATFORM]"),
    (r" {2,}", "  "),
];

/// `insta::assert_snapshot!` of `text` with the test's directory shown as `[TMP]` and
/// [`FILTERS`] applied.
macro_rules! assert_filtered {
    ($env:expr, $text:expr, @$snapshot:literal) => {{
        let text = $text.replace(&$env.tc.path().display().to_string(), "[TMP]");
        insta::with_settings!({ filters => FILTERS.to_vec() }, { insta::assert_snapshot!(text, @$snapshot) });
    }};
}

#[test]
fn builds_are_listed_shown_and_their_logs_read_whole() {
    let env = BuildEnv::new();
    env.write("a.txt", "a\n");
    env.dockerfile("FROM bb\nCOPY a.txt /a.txt\nRUN echo one; echo two; echo three > /three\n");
    env.build_ok(&["-t", "img:1"]);
    env.build_ok(&["-t", "img:1", "--build-arg", "UNUSED=x"]);
    let listed = ids(&env);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_filtered!(env, builds(&env, &["ls"]), @r"
    BUILD ID  STARTED  CONTEXT  DOCKERFILE  TARGET  RESULT  DURATION  STEPS
    [ID]  [AGO]  [TMP]/ctx  Dockerfile  -  succeeded  [DURATION]  0 run, 2 cached
    [ID]  [AGO]  [TMP]/ctx  Dockerfile  -  succeeded  [DURATION]  2 run, 0 cached
    ");
    // The first build, by a prefix of its id.
    let first = &listed[1];
    let prefix = &first[..first.len() - 2];
    assert_filtered!(env, builds(&env, &["show", prefix]), @r"
    build:  [ID]
    started:  [TIME] ([AGO])
    context:  [TMP]/ctx
    dockerfile: Dockerfile
    target:  (the last stage)
    platform:  [PLATFORM]
    tags:  img:1
    build args: none
    result:  succeeded after [DURATION]
    image:  [DIGEST]
    steps:  2 run, 0 cached

    #  STEP  CACHE  TIME  LAYER  RESULT
    1  [2/3] COPY a.txt /a.txt  miss: no cache record  [DURATION]  [SIZE]  done
    2  [3/3] RUN echo one; echo two; echo three > /three  miss: no cache record  [DURATION]  [SIZE]  done
    ");
    let shown = builds_json(&env, &["show", first]);
    assert_eq!(shown["v"], 1);
    assert_eq!(shown["steps"][1]["log"].as_str().map(|l| l.ends_with(".log")), Some(true));
    assert!(shown["steps"].as_array().unwrap().iter().all(|s| s["bytes"].as_u64().unwrap() > 0), "{shown}");
    let again = builds_json(&env, &["show", &listed[0]]);
    assert_eq!(again["build_args"], serde_json::json!(["UNUSED"]), "names, never values");
    assert_eq!(again["steps"][0]["bytes"], shown["steps"][0]["bytes"], "a cached step names its layer's bytes");
    assert_eq!(again["image"], shown["image"]);

    // Logs: one step as written, or every step that ran a process with its name first.
    assert_eq!(builds(&env, &["logs", first, "2"]), "one\ntwo\n");
    assert_eq!(builds(&env, &["logs", first]), "#2 [3/3] RUN echo one; echo two; echo three > /three\none\ntwo\n");
    let out = env.tc.run(&["builds", "logs", first, "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no log: only RUN steps run a process"),
        "{}",
        describe(&out)
    );
    let out = env.tc.run(&["builds", "logs", &listed[0], "2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken from the cache"), "{}", describe(&out));
    let out = env.tc.run(&["builds", "show", "17"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches 2 builds"), "{}", describe(&out));

    // prune keeps every record whole: records and logs are not its business.
    env.tc.ok(&["prune", "--all"]);
    assert_eq!(builds(&env, &["logs", first, "2"]), "one\ntwo\n");
    assert_eq!(ids(&env), listed);
    assert_clean(&env);

    assert_filtered!(env, builds(&env, &["rm", prefix]), @"removed [ID]");
    assert_eq!(ids(&env), [listed[0].clone()]);
    assert_filtered!(env, builds(&env, &["rm", "--all"]), @r"
    removed [ID]
    total: 1 build removed
    ");
    assert!(ids(&env).is_empty());
    assert_eq!(build_dirs(&env), 0, "logs removed with their records");
}

#[test]
fn a_failed_build_records_the_exit_status_and_last_lines() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo fine > /fine\nRUN echo about to fail; exit 3\n");
    let out = env.build(&["-t", "img:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_filtered!(env, builds(&env, &["show", &ids(&env)[0]]), @r#"
    build:  [ID]
    started:  [TIME] ([AGO])
    context:  [TMP]/ctx
    dockerfile: Dockerfile
    target:  (the last stage)
    platform:  [PLATFORM]
    tags:  img:1
    build args: none
    result:  failed after [DURATION]
    error:  Dockerfile:3:1: process "/bin/sh -c echo about to fail; exit 3" did not complete successfully: exit code 3
    steps:  1 run, 0 cached

    #  STEP  CACHE  TIME  LAYER  RESULT
    1  [2/3] RUN echo fine > /fine  miss: no cache record  [DURATION]  [SIZE]  done
    2  [3/3] RUN echo about to fail; exit 3  miss: no cache record  [DURATION]  -  failed: exit code 3

    step 2 failed: process "/bin/sh -c echo about to fail; exit 3" did not complete successfully: exit code 3
    last output:
      about to fail
    whole log: slipway builds logs [ID] 2
    "#);
    let record = builds_json(&env, &["show", &ids(&env)[0]]);
    assert_eq!((record["result"].as_str(), record["error"]["line"].as_u64()), (Some("failed"), Some(3)));
    let step = &record["steps"][1];
    assert_eq!((step["exit_code"].as_i64(), step["signal"].as_i64()), (Some(3), None));
    assert_eq!(step["last_lines"], serde_json::json!(["about to fail"]));
    assert_eq!(builds(&env, &["logs", &ids(&env)[0], "2"]), "about to fail\n");

    // A Dockerfile that does not parse fails before any step: a record all the same.
    env.dockerfile("FROM bb\nRUNN x\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let record = builds_json(&env, &["show", &ids(&env)[0]]);
    assert_eq!(record["result"], "failed");
    assert_eq!(record["error"]["line"], 2);
    assert!(record["error"]["message"].as_str().unwrap().starts_with("the Dockerfile does not parse: "), "{record}");
    assert_eq!(record["steps"], serde_json::json!([]));
    assert_clean(&env);
}

/// Starts `slipway build ARGS` on `env` and returns once its RUN printed `go-2` (which is not
/// in the step's name: `echo go-$((1+1))`).
fn start_build(env: &BuildEnv, args: &[&str]) -> std::process::Child {
    crate::support::build::spawn_until(env.build_cmd(args), "go-2")
}

/// While a build runs its record says so, and `builds rm` leaves it alone; SIGTERM cancels it
/// and the record says `cancelled` (the step too).
#[test]
fn a_cancelled_build_is_recorded_as_cancelled() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo go-$((1+1)); sleep 60\n");
    let mut child = start_build(&env, &["--progress", "plain"]);
    let running = builds_json(&env, &["show", &ids(&env)[0]]);
    assert_eq!(
        (running["result"].as_str(), running["steps"][0]["result"].as_str()),
        (Some("running"), Some("running"))
    );
    assert_eq!(builds(&env, &["logs", &ids(&env)[0], "1"]), "go-2\n", "a running step's log so far");
    let out = env.tc.run(&["builds", "rm", &ids(&env)[0]]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is still running"), "{}", describe(&out));
    let id = ids(&env)[0].clone();
    assert!(builds(&env, &["rm", "--all"]).contains(&format!("kept {id} (running)")));
    // SAFETY: kill(2) on the child we spawned and have not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let record = builds_json(&env, &["show", &ids(&env)[0]]);
    assert_eq!(record["result"], "cancelled");
    assert_eq!(record["steps"][0]["result"], "cancelled");
    assert!(record["duration_ms"].as_u64().is_some());
    assert_clean(&env);
}

/// A build killed with SIGKILL cannot write its last record: the one it left reads as
/// `interrupted`, the step that was running too. (The copy snapshotter, so no mount outlives
/// the kill; the sandbox dies with its parent.)
#[test]
fn a_killed_build_reads_as_interrupted() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nCOPY Dockerfile /d\nRUN echo go-$((1+1)); sleep 60\n");
    let mut child = start_build(&env, &["--progress", "plain", "--snapshotter", "copy"]);
    // SAFETY: kill(2) on the child we spawned and have not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let record = builds_json(&env, &["show", &ids(&env)[0]]);
    assert_eq!(record["result"], "interrupted");
    let results: Vec<&str> =
        record["steps"].as_array().unwrap().iter().map(|s| s["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["done", "interrupted"]);
    assert_eq!(record["duration_ms"], Value::Null);
    let row = builds(&env, &["ls"]).lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(row.ends_with("interrupted - 1 run, 0 cached"), "{row}");
    assert_eq!(builds(&env, &["logs", &ids(&env)[0], "2"]), "go-2\n");
}

/// The record is replaced by a rename: a build killed while writing it leaves the previous one
/// or none — here none, as the first write is the one killed — and `ls` reads on.
#[test]
fn a_build_killed_while_writing_its_record_leaves_none() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN true\n");
    env.build_ok(&[]);
    let out = env.build_cmd(&[]).env("SLIPWAY_FAILPOINT", "record.before_rename:kill9").output().unwrap();
    assert_eq!(crate::support::killed_by(&out.status), Some(libc::SIGKILL), "{}", describe(&out));
    assert_eq!(build_dirs(&env), 2, "the killed build's directory");
    assert_eq!(ids(&env).len(), 1, "only the finished build has a record");
    let out = builds(&env, &["rm", "--all"]);
    assert!(out.ends_with("total: 2 builds removed\n"), "logs without a record go too: {out}");
}

#[test]
fn only_the_newest_builds_are_kept_as_config_toml_says() {
    let env = BuildEnv::new();
    let config = env.tc.path().join("config.toml");
    std::fs::write(&config, "[builds]\nkeep = 2\n").unwrap();
    env.dockerfile("FROM bb\nRUN true\n");
    let mut made = Vec::new();
    for _ in 0..3 {
        let out = env.build_cmd(&[]).env("SLIPWAY_CONFIG", &config).output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        made.push(ids(&env)[0].clone());
    }
    assert_eq!(ids(&env), [made[2].clone(), made[1].clone()]);
    assert!(!env.tc.root().join("logs").join(&made[0]).exists(), "the oldest went with its logs");

    std::fs::write(&config, "[builds]\nkeep = 0\n").unwrap();
    let out = env.build_cmd(&[]).env("SLIPWAY_CONFIG", &config).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("builds.keep: not a whole number of at least 1"));
}

/// Build-arg values never reach a record (names do), whether the Dockerfile expands them into a
/// step name, an error or a cache reason; a secret reaches nothing in the store at all.
#[test]
fn records_hold_build_arg_names_never_their_values_nor_secrets() {
    const VALUE: &str = "v4lue-of-the-arg";
    const OLD_VALUE: &str = "0ld-v4lue-of-the-arg";
    const SECRET: &str = "s3cr3t-of-the-records-test";
    let env = BuildEnv::new();
    let secret = env.tc.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    env.write(&format!("in-{VALUE}"), "x\n");
    env.write(&format!("in-{OLD_VALUE}"), "x\n");
    env.dockerfile(
        "FROM bb\nARG TOKEN\nWORKDIR /w-$TOKEN\nCOPY in-$TOKEN /in\n\
         RUN --mount=type=secret,id=s test -s /run/secrets/s && echo \"$TOKEN\" | wc -c > /n\n",
    );
    let secret_arg = format!("id=s,src={}", secret.display());
    let mut outs: Vec<Output> = Vec::new();
    for value in [OLD_VALUE, VALUE] {
        let arg = format!("TOKEN={value}");
        outs.push(env.build_ok(&["--build-arg", &arg, "--secret", &secret_arg]));
    }
    // A failing COPY whose error names the expanded source.
    env.dockerfile("FROM bb\nARG TOKEN\nCOPY missing-$TOKEN /x\n");
    let arg = format!("TOKEN={VALUE}");
    let failed = env.build(&["--build-arg", &arg]);
    assert_eq!(failed.status.code(), Some(1), "{}", describe(&failed));
    assert!(String::from_utf8_lossy(&failed.stderr).contains(VALUE), "the build itself may say it");

    let latest = ids(&env);
    let second = builds_json(&env, &["show", &latest[1]]);
    let names: Vec<&str> = second["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names[..2], ["[3/5] WORKDIR /w-${TOKEN}", "[4/5] COPY in-${TOKEN} /in"]);
    assert_eq!(second["steps"][0]["reason"], "instruction changed");
    assert_eq!(second["build_args"], serde_json::json!(["TOKEN"]));
    let error = builds_json(&env, &["show", &latest[0]])["error"]["message"].as_str().unwrap().to_string();
    assert!(error.contains("missing-${TOKEN}"), "{error}");
    let mut shown = builds(&env, &["ls", "--format", "json"]);
    for id in &latest {
        shown.push_str(&builds(&env, &["show", id]));
        shown.push_str(&builds(&env, &["show", id, "--format", "json"]));
    }
    for record in walkdir::WalkDir::new(env.tc.root().join("logs")).into_iter().filter_map(Result::ok) {
        if record.file_name() == "record.json" {
            shown.push_str(&std::fs::read_to_string(record.path()).unwrap());
        }
    }
    for value in [VALUE, OLD_VALUE] {
        assert!(!shown.contains(value), "a record holds {value}:\n{shown}");
    }
    outs.push(failed);
    assert_nowhere(&env, &outs.iter().collect::<Vec<_>>(), SECRET.as_bytes());
}

#[test]
fn a_build_whose_output_fails_is_recorded_as_failed() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo hi > /f\n");
    let dest = env.tc.path().join("missing-dir/out.tar");
    let out = env.build(&["-o", &format!("type=oci,dest={}", dest.display())]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let shown = builds_json(&env, &["show", &ids(&env)[0]]);
    assert_eq!(shown["result"], "failed", "{shown:#}");
    let message = shown["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("exporting the image: ") && message.contains("missing-dir"), "{shown:#}");
    assert!(shown["image"].is_string(), "the image itself was built: {shown:#}");
}
