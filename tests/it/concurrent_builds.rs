//! Many builds, one store: processes sharing a `--root` build a step they share once (a flock
//! per cache key), give the digests sequential builds give, leave the store clean, and a killed
//! holder lets the others go on.

use std::process::Stdio;
use std::time::Duration;

use crate::support::build::{BuildEnv, events, spawn_until, steps};
use crate::support::describe;

const EPOCH: &str = "1700000000";

/// Dockerfile `n` of four: a shared slow first step, then steps of its own.
fn dockerfile(n: usize) -> String {
    format!("FROM bb\nRUN sleep 1 && echo shared > /shared\nCOPY common.txt /common.txt\nRUN echo own-{n} > /own\n")
}

#[test]
fn four_concurrent_builds_share_a_step_and_match_sequential_builds() {
    let env = BuildEnv::with_epoch(EPOCH);
    env.write("common.txt", "common\n");
    for n in 0..4 {
        env.write(&format!("Dockerfile.{n}"), &dockerfile(n));
    }
    let children: Vec<_> = (0..4)
        .map(|n| {
            let file = env.ctx().join(format!("Dockerfile.{n}"));
            let tag = format!("img:{n}");
            env.build_cmd(&[
                "--progress",
                "rawjson",
                "--source-date-epoch",
                EPOCH,
                "-f",
                file.to_str().unwrap(),
                "-t",
                &tag,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let mut shared_runs = 0;
    for out in &outputs {
        assert!(out.status.success(), "{}", describe(out));
        let shared = steps(&events(out)).into_iter().find(|s| s.name.contains("sleep 1")).expect("the shared step");
        shared_runs += usize::from(shared.cache.as_deref() == Some("miss"));
    }
    assert_eq!(shared_runs, 1, "the shared step ran once");
    env.tc.ok(&["fsck", "--strict"]);

    // The same builds one after the other in another store: the same images.
    let sequential = BuildEnv::with_epoch(EPOCH);
    sequential.write("common.txt", "common\n");
    for n in 0..4 {
        let file = sequential.ctx().join(format!("Dockerfile.{n}"));
        std::fs::write(&file, dockerfile(n)).unwrap();
        let tag = format!("img:{n}");
        sequential.build_ok(&["--source-date-epoch", EPOCH, "-f", file.to_str().unwrap(), "-t", &tag]);
    }
    for n in 0..4 {
        let tag = format!("img:{n}");
        assert_eq!(env.config(&tag), sequential.config(&tag), "image {n}");
        let id = |e: &BuildEnv| {
            let v: serde_json::Value = serde_json::from_slice(&e.tc.ok(&["inspect", &tag]).stdout).unwrap();
            v[0]["Id"].clone()
        };
        assert_eq!(id(&env), id(&sequential), "image {n}");
    }
}

#[test]
fn a_killed_holder_lets_the_waiting_build_go_on() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo go-holder && sleep 5 && echo done > /f\n");
    let mut holder = spawn_until(env.build_cmd(&["--progress", "plain", "-t", "a:1"]), "go-holder");
    let waiter = env
        .build_cmd(&["--progress", "plain", "-t", "b:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // SIGKILL: no cleanup runs, only the kernel lets go of the flock.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("waiting for another build of the same step"), "{err}");
    assert_eq!(env.run_stdout("b:1", &["cat", "/f"]), "done\n");
}

/// Catalogue F1: four processes build the same Dockerfile into one store at once, with
/// `--no-cache` so every one runs and commits every step (`SLIPWAY_TEST_F1_ROUNDS` rounds,
/// default 3; the catalogue's 20 in `scripts/`): all succeed with one image, no error leaks, the
/// store stays clean.
#[test]
fn f1_four_processes_build_the_same_dockerfile_at_once() {
    let rounds: usize = std::env::var("SLIPWAY_TEST_F1_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let env = BuildEnv::with_epoch(EPOCH);
    env.write("a.txt", "a\n");
    env.dockerfile("FROM bb\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /one /a.txt > /both\n");
    for round in 0..rounds {
        let children: Vec<_> = (0..4)
            .map(|_| {
                env.build_cmd(&["-q", "--no-cache", "--source-date-epoch", EPOCH, "-t", "same:1"])
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
                assert!(out.status.success(), "round {round}: {}", describe(&out));
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!err.contains("already exists"), "round {round}: {err}");
                String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string()
            })
            .collect();
        assert!(ids[0].starts_with("sha256:"), "round {round}: {ids:?}");
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "round {round}: {ids:?}");
        env.tc.ok(&["fsck", "--strict"]);
    }
    assert_eq!(env.run_stdout("same:1", &["cat", "/both"]), "one\na\n");
}
