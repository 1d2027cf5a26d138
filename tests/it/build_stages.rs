//! `build`: stages — independent stages run at once (their rawjson intervals overlap), stages the
//! target does not need never run, a failing step cancels the rest and leaves nothing behind,
//! signals stop the build with 130/143, and `SOURCE_DATE_EPOCH` makes builds reproducible.

use std::process::Stdio;
use std::time::{Duration, Instant};

use slipway::snapshot::{self, Kind};

use crate::support::build::{BuildEnv, StepEvents, events, steps};
use crate::support::describe;

/// No mount under the test directory, no active snapshot or view, `fsck --strict` happy.
#[track_caller]
pub fn assert_clean(env: &BuildEnv) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = env.tc.path().to_string_lossy().into_owned();
    assert!(!mountinfo.contains(&dir), "a mount was left behind:\n{mountinfo}");
    let left: Vec<_> = snapshot::open(&env.tc.root(), None)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .filter(|i| i.kind != Kind::Committed)
        .collect();
    assert!(left.is_empty(), "snapshots left behind: {left:?}");
    env.tc.ok(&["fsck", "--strict"]);
}

const FOUR_STAGES: &str = "FROM bb AS a\nRUN sleep 1; echo a > /a\n\
FROM bb AS b\nRUN sleep 1; echo b > /b\n\
FROM bb AS c\nRUN sleep 1; echo c > /c\n\
FROM bb AS unused\nRUN echo unused > /unused\n\
FROM bb AS final\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCOPY --from=c /c /c\n";

fn overlaps(x: &StepEvents, y: &StepEvents) -> bool {
    x.started < y.ended.unwrap() && y.started < x.ended.unwrap()
}

#[test]
fn independent_stages_overlap_and_unneeded_stages_never_run() {
    let env = BuildEnv::new();
    env.dockerfile(FOUR_STAGES);
    let ev = env.build_events(&["-t", "img:1", "--jobs", "3"]);
    let s = steps(&ev);
    let run = |prefix: &str| {
        s.iter().find(|x| x.name.starts_with(prefix)).cloned().unwrap_or_else(|| panic!("{prefix}: {s:?}"))
    };
    let (a, b, c) = (run("[a 2/2] RUN"), run("[b 2/2] RUN"), run("[c 2/2] RUN"));
    assert!(overlaps(&a, &b) && overlaps(&b, &c) && overlaps(&a, &c), "stages ran one after another: {s:?}");
    assert!(!s.iter().any(|x| x.name.starts_with("[unused")), "{s:?}");
    assert_eq!(env.run_stdout("img:1", &["cat", "/a", "/b", "/c"]), "a\nb\nc\n");

    // With one job the same steps never overlap.
    let ev = env.build_events(&["-t", "img:2", "--jobs", "1", "--no-cache"]);
    let s = steps(&ev);
    let runs: Vec<&StepEvents> = s.iter().filter(|x| x.name.contains("RUN sleep")).collect();
    assert_eq!(runs.len(), 3);
    for (i, x) in runs.iter().enumerate() {
        for y in &runs[i + 1..] {
            assert!(!overlaps(x, y), "--jobs 1 overlapped: {runs:?}");
        }
    }
}

#[test]
fn target_builds_only_what_it_needs() {
    let env = BuildEnv::new();
    env.dockerfile(FOUR_STAGES);
    let ev = env.build_events(&["-t", "b:1", "--target", "b"]);
    let names: Vec<String> = steps(&ev).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["[b 2/2] RUN sleep 1; echo b > /b"]);
    assert_eq!(env.run_stdout("b:1", &["cat", "/b"]), "b\n");
    let out = env.build(&["--target", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"), "{}", describe(&out));
}

#[test]
fn a_failing_stage_cancels_the_others_and_tags_nothing() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb AS slow\nRUN sleep 30\n\
         FROM bb AS bad\nRUN sleep 0.3; exit 7\n\
         FROM bb\nCOPY --from=slow /etc/passwd /x\nCOPY --from=bad /etc/passwd /y\n",
    );
    let started = Instant::now();
    let out = env.build(&["-t", "img:1", "--progress", "rawjson"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(20), "the slow stage was not cancelled");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:4:1") && stderr.contains("exit code 7"), "{stderr}");
    let s = steps(&events(&out));
    assert!(s.iter().all(|x| x.ended.is_some()), "every step ended: {s:?}");
    let images = env.tc.ok(&["images", "-q"]);
    assert_eq!(String::from_utf8_lossy(&images.stdout).lines().count(), 1, "only bb");
    assert_clean(&env);
}

#[test]
fn sigint_and_sigterm_stop_the_build_cleanly() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let env = BuildEnv::new();
        env.dockerfile("FROM bb\nRUN echo started; sleep 60\n");
        // Wait for the step to start (its first output line), then signal slipway.
        let mut child =
            crate::support::build::spawn_until(env.build_cmd(&["-t", "img:1", "--progress", "plain"]), "started");
        // SAFETY: kill(2) on the child we spawned and have not yet waited for.
        unsafe { libc::kill(child.id() as i32, signal) };
        let started = Instant::now();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code));
        assert!(started.elapsed() < Duration::from_secs(10));
        let images = env.tc.ok(&["images", "-q"]);
        assert_eq!(String::from_utf8_lossy(&images.stdout).lines().count(), 1, "nothing tagged");
        assert_clean(&env);
    }
}

#[test]
fn source_date_epoch_makes_two_roots_agree() {
    let dockerfile =
        "FROM bb\nARG V=1\nRUN echo $V > /v && mkdir -p /d && echo x > /d/f\nENV E=1\nCMD [\"cat\", \"/v\"]\n";
    let mut ids = Vec::new();
    for _ in 0..2 {
        // The base is imported with the same epoch too, so both stores start equal.
        let env = BuildEnv::with_epoch("1600000000");
        env.dockerfile(dockerfile);
        let iid = env.tc.path().join("iid");
        let meta = env.tc.path().join("meta.json");
        env.build_ok(&[
            "-t",
            "img:1",
            "--source-date-epoch",
            "1700000000",
            "--iidfile",
            iid.to_str().unwrap(),
            "--metadata-file",
            meta.to_str().unwrap(),
        ]);
        let config = env.config("img:1");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        let inspect: serde_json::Value = serde_json::from_slice(&env.tc.ok(&["inspect", "img:1"]).stdout).unwrap();
        let id = std::fs::read_to_string(&iid).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
        assert_eq!(inspect[0]["Id"].as_str().unwrap(), id, "--iidfile agrees with inspect");
        assert_eq!(meta["containerimage.config.digest"], id.as_str());
        assert_eq!(meta["containerimage.digest"], inspect[0]["Descriptor"]["digest"]);
        ids.push((id, meta["containerimage.digest"].clone(), config["rootfs"].clone()));
    }
    assert_eq!(ids[0].2, ids[1].2, "layers are byte-identical");
    assert_eq!(ids[0].0, ids[1].0, "same image id");
    assert_eq!(ids[0].1, ids[1].1, "same manifest digest");
}

#[test]
fn four_builds_of_one_dockerfile_into_one_store_at_once_agree() {
    let env = BuildEnv::with_epoch("1600000000");
    env.dockerfile("FROM bb\nRUN echo one > /one\nRUN echo two > /two\nCMD [\"cat\", \"/one\", \"/two\"]\n");
    let children: Vec<_> = (0..4)
        .map(|i| {
            env.build_cmd(&["-q", "-t", &format!("img:{i}"), "--source-date-epoch", "1700000000"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", describe(&out));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(env.run_stdout("img:3", &[]), "one\ntwo\n");
    assert_clean(&env);
}
