//! `build`'s cache: what re-runs and why, asserted on rawjson (`task_cache` events carry the
//! reason of every miss).

use crate::support::build::{BuildEnv, StepEvents, ran, steps};
use crate::support::describe;

const APP: &str = "ARG UNUSED=1\n\
FROM bb\n\
COPY conf/ /conf/\n\
RUN cat /conf/a.txt > /combined\n\
COPY src/ /src/\n\
RUN ls /src > /listing\n";

fn app() -> BuildEnv {
    let env = BuildEnv::new();
    env.dockerfile(APP);
    env.write("conf/a.txt", "a\n");
    env.write("src/main.rs", "fn main() {}\n");
    env.write("src/lib.rs", "pub fn f() {}\n");
    env
}

fn reasons(steps: &[StepEvents]) -> Vec<(String, String)> {
    steps.iter().map(|s| (s.name.clone(), s.reason.clone().unwrap_or_else(|| "HIT".to_string()))).collect()
}

#[test]
fn first_build_misses_with_no_record_and_a_no_op_rebuild_runs_nothing() {
    let env = app();
    let ev = env.build_events(&["-t", "app:1"]);
    assert_eq!(ran(&ev), 4);
    assert!(steps(&ev).iter().all(|s| s.reason.as_deref() == Some("no cache record")), "{:?}", reasons(&steps(&ev)));
    let id = |env: &BuildEnv| env.config("app:1").to_string();
    let first = id(&env);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ev = env.build_events(&["-t", "app:1"]);
    assert_eq!(ran(&ev), 0, "{:?}", reasons(&steps(&ev)));
    assert_eq!(steps(&ev).len(), 4);
    assert_eq!(id(&env), first, "a fully cached rebuild writes the same config (same image id)");
}

#[test]
fn touching_a_file_or_changing_an_unused_arg_runs_nothing() {
    let env = app();
    let first = env.build_events(&["-t", "app:1"]);
    assert_eq!(ran(&first), 4);
    // Same content, new mtime.
    let later = filetime_now_plus(env.ctx().join("src/main.rs"));
    assert!(later);
    let ev = env.build_events(&["-t", "app:1", "--build-arg", "UNUSED=2", "--build-arg", "NOT_DECLARED=3"]);
    assert_eq!(ran(&ev), 0, "{:?}", reasons(&steps(&ev)));
}

/// Sets a file's mtime one minute ahead; returns whether it changed.
fn filetime_now_plus(path: std::path::PathBuf) -> bool {
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let out = std::process::Command::new("touch").args(["-d", "+1 minute"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    std::fs::metadata(&path).unwrap().modified().unwrap() != before
}

#[test]
fn changing_a_file_reruns_from_the_first_copy_that_selects_it_and_says_which() {
    let env = app();
    env.build_events(&["-t", "app:1"]);
    env.write("src/main.rs", "fn main() { println!(\"changed\"); }\n");
    let ev = env.build_events(&["-t", "app:1"]);
    let r = reasons(&steps(&ev));
    assert_eq!(r[0].1, "HIT", "{r:?}");
    assert_eq!(r[1].1, "HIT", "{r:?}");
    assert!(r[2].0.contains("COPY src/ /src/"), "{r:?}");
    assert!(r[2].1.starts_with("src/main.rs changed (sha256:"), "{r:?}");
    assert!(r[3].1.contains("previous step changed"), "{r:?}");
    assert_eq!(ran(&ev), 2);

    env.write("src/new.rs", "\n");
    let ev = env.build_events(&["-t", "app:1"]);
    let r = reasons(&steps(&ev));
    assert!(r[2].1.contains("src/new.rs added"), "{r:?}");
}

#[test]
fn an_arg_change_is_named_and_identical_output_lets_later_steps_hit() {
    let env = BuildEnv::new();
    // A RUN sees every ARG in scope, so the step after the re-run one is a COPY.
    env.dockerfile("FROM bb\nARG V=1\nRUN echo $V > /dev/null; echo same > /same\nCOPY after /after\n");
    env.write("after", "after\n");
    let epoch = ["--source-date-epoch", "1700000000"];
    env.build_events(&[&epoch[..], &["-t", "img:1"]].concat());
    let ev = env.build_events(&[&epoch[..], &["-t", "img:1", "--build-arg", "V=2"]].concat());
    let r = reasons(&steps(&ev));
    assert_eq!(r[0].1, "ARG V changed (1 → 2)", "{r:?}");
    assert_eq!(r[1].1, "HIT", "the re-run made the same layer, so the next step hits: {r:?}");
}

#[test]
fn no_cache_and_no_cache_filter_say_so() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb AS one\nRUN echo 1 > /1\nFROM one AS two\nRUN echo 2 > /2\n");
    env.build_events(&["-t", "img:1"]);
    let ev = env.build_events(&["-t", "img:1", "--no-cache"]);
    assert!(steps(&ev).iter().all(|s| s.reason.as_deref() == Some("--no-cache")), "{:?}", reasons(&steps(&ev)));
    let ev = env.build_events(&["-t", "img:1", "--no-cache-filter", "two"]);
    let r = reasons(&steps(&ev));
    assert_eq!(r[0].1, "HIT", "{r:?}");
    assert!(r[1].1.contains("--no-cache"), "{r:?}");
}

#[test]
fn a_new_base_image_is_named_as_the_reason() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo x > /x\n");
    env.build_events(&["-t", "img:1"]);
    // A different busybox base under the same name.
    let rootfs = env.tc.path().join("rootfs");
    std::fs::write(rootfs.join("etc/extra"), "new\n").unwrap();
    env.tc.ok(&["import", rootfs.to_str().unwrap(), "bb"]);
    let ev = env.build_events(&["-t", "img:1"]);
    let r = reasons(&steps(&ev));
    assert!(r[0].1.starts_with("base image changed"), "{r:?}");
}

#[test]
fn cached_layers_survive_prune_and_a_pruned_blob_is_rebuilt() {
    let env = app();
    env.build_events(&["-t", "app:1"]);
    env.tc.ok(&["rmi", "app:1"]);
    env.tc.ok(&["prune"]);
    let ev = env.build_events(&["-t", "app:1"]);
    assert_eq!(ran(&ev), 0, "cache roots keep the layers: {:?}", reasons(&steps(&ev)));
    env.tc.ok(&["rmi", "app:1"]);
    env.tc.ok(&["prune", "--all"]);
    let ev = env.build_events(&["-t", "app:1"]);
    assert_eq!(ran(&ev), 4, "prune --all drops the build cache: {:?}", reasons(&steps(&ev)));
}

#[test]
fn prune_removes_layer_snapshots_no_image_uses() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo 1 > /1\nRUN echo 2 > /2\n");
    env.build_ok(&["-t", "img:1"]);
    let layer_snapshots = || {
        slipway::snapshot::open(&env.tc.root(), None)
            .unwrap()
            .list()
            .unwrap()
            .into_iter()
            .filter(|i| i.key.starts_with("layer:"))
            .count()
    };
    assert_eq!(layer_snapshots(), 3, "the base and two RUN layers");
    // Young snapshots are kept by default (a running build may be about to use them).
    env.tc.ok(&["rmi", "img:1"]);
    let out = env.tc.ok(&["prune"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("total: 0 layer snapshots deleted"), "{}", describe(&out));
    let mut cmd = env.tc.cmd();
    cmd.args(["prune"]).env("SLIPWAY_PRUNE_SNAPSHOT_MIN_AGE", "0");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("total: 2 layer snapshots deleted, 1 kept"), "{stdout}");
    assert_eq!(layer_snapshots(), 1, "bb is still tagged");
    // The cache still has the layers: the rebuild runs nothing and extracts them again when asked.
    let ev = env.build_events(&["-t", "img:1"]);
    assert_eq!(ran(&ev), 0);
    assert_eq!(env.run_stdout("img:1", &["cat", "/1", "/2"]), "1\n2\n");
    crate::build_stages::assert_clean(&env);
}
