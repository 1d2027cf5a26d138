//! `build` flags for RUN steps and bases: `--add-host`, `--shm-size`, `--ulimit` (both
//! executors) and `--pull`.

use crate::support::build::{BuildEnv, steps};
use crate::support::describe;
use crate::support::registry::Registry;

const PROBE: &str = "FROM bb\nRUN grep -E 'db|gw' /etc/hosts > /hosts && df -k /dev/shm | tail -1 > /shm && ulimit -n > /nofile && ulimit -Hn >> /nofile && ulimit -u > /nproc\n";

#[test]
fn run_steps_get_extra_hosts_shm_size_and_ulimits_under_both_executors() {
    for runtime in ["embedded", "runc", "crun"] {
        let env = BuildEnv::new();
        env.dockerfile(PROBE);
        let mut cmd = env.build_cmd(&[
            "-t",
            "img:1",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "gw=host-gateway",
            "--shm-size",
            "128m",
            "--ulimit",
            "nofile=1024:2048",
            "--ulimit",
            "nproc=77",
        ]);
        if runtime != "embedded" {
            cmd.env("SLIPWAY_RUNTIME", runtime);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{runtime}: {}", describe(&out));
        let cat = |p: &str| env.run_stdout("img:1", &["cat", p]);
        assert_eq!(cat("/hosts"), "10.1.2.3\tdb\n10.0.2.2\tgw\n", "{runtime}");
        let shm: Vec<String> = cat("/shm").split_whitespace().map(str::to_string).collect();
        assert_eq!(shm[1], (128 * 1024).to_string(), "{runtime}: {shm:?}");
        assert_eq!(cat("/nofile"), "1024\n2048\n", "{runtime}");
        assert_eq!(cat("/nproc"), "77\n", "{runtime}");
    }
}

#[test]
fn the_flags_are_part_of_the_key_and_bad_values_are_refused_before_any_work() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN cat /etc/hosts > /hosts\n");
    env.build_ok(&["-t", "img:1", "--add-host", "db:10.1.2.3"]);
    let same = env.build_events(&["-t", "img:1", "--add-host", "db:10.1.2.3"]);
    assert_eq!(steps(&same)[0].cache.as_deref(), Some("hit"));
    let other = env.build_events(&["-t", "img:1", "--add-host", "db:10.9.9.9"]);
    assert_eq!(steps(&other)[0].cache.as_deref(), Some("miss"));
    for bad in [
        &["--add-host", "db"][..],
        &["--add-host", "db:not-an-ip"],
        &["--ulimit", "bogus=1"],
        &["--ulimit", "nofile=10:5"],
        &["--shm-size", "0"],
    ] {
        let out = env.build(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", describe(&out));
    }
}

#[test]
fn pull_resolves_the_base_again_and_says_what_changed() {
    let env = BuildEnv::served();
    let registry = Registry::start();
    let base = format!("{}/pull/base:latest", registry.host());
    env.tc.ok(&["push", "bb", &base]);
    env.dockerfile(&format!("FROM {base}\nRUN cat /marker 2>/dev/null > /seen || true\n"));
    env.build_ok(&["-t", "img:1"]);
    // A new image under the same tag.
    let other = BuildEnv::served();
    other.dockerfile("FROM bb\nRUN echo new > /marker\n");
    other.build_ok(&["-t", "bb2"]);
    other.tc.ok(&["push", "bb2", &base]);

    let cached = env.build_events(&["-t", "img:2"]);
    assert_eq!(steps(&cached)[0].cache.as_deref(), Some("hit"), "without --pull the stored base is used");
    let out = env.build(&["--progress", "plain", "-t", "img:3", "--pull"]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{base} changed (sha256:")), "{err}");
    assert!(err.contains("base image changed"), "the step says why it ran: {err}");
    assert_eq!(env.run_stdout("img:3", &["cat", "/seen"]), "new\n");
    let again = env.build(&["--progress", "plain", "-t", "img:3", "--pull"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("{base} unchanged")), "{}", describe(&again));
}

#[test]
fn annotations_reach_the_manifest_a_registry_serves() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN true\n");
    env.build_ok(&[
        "-t",
        "img:1",
        "--annotation",
        "org.opencontainers.image.source=https://example.com/repo",
        "--annotation",
        "manifest:com.example.key=v=1",
        "--annotation",
        "manifest[linux/s390x]:only.s390x=1",
    ]);
    let registry = Registry::start();
    let remote = format!("{}/annotated/img:1", registry.host());
    env.tc.ok(&["push", "img:1", &remote]);
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{remote}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({ "org.opencontainers.image.source": "https://example.com/repo", "com.example.key": "v=1" })
    );
    for bad in ["index:a=b", "manifest-descriptor:a=b", "nokey", "bogus:a=b"] {
        let out = env.build(&["--annotation", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", describe(&out));
    }
}
