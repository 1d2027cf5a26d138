//! `build`: RUN (shell and exec form, heredocs, the environment a step sees, networks, failures),
//! each result checked by running the built image or unpacking it with umoci.

use crate::support::build::{BuildEnv, events, steps};
use crate::support::describe;

#[test]
fn shell_and_exec_form_make_layers_seen_by_run_and_umoci() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo shell > /shell.txt\nRUN [\"/bin/sh\", \"-c\", \"echo exec > /exec.txt\"]\n");
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/shell.txt", "/exec.txt"]), "shell\nexec\n");
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert_eq!(std::fs::read_to_string(rootfs.join("shell.txt")).unwrap(), "shell\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("exec.txt")).unwrap(), "exec\n");
    let config = env.config("img:1");
    let history = config["history"].as_array().unwrap();
    let last: Vec<&str> = history.iter().rev().take(2).map(|h| h["created_by"].as_str().unwrap()).collect();
    assert_eq!(last, ["RUN /bin/sh -c echo exec > /exec.txt", "RUN /bin/sh -c echo shell > /shell.txt"]);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3, "base + two RUN layers");
}

#[test]
fn heredocs_run_as_scripts_and_as_shell_input() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb\n\
         RUN <<EOF\n\
         echo one > /one\n\
         echo two >> /one\n\
         EOF\n\
         RUN cat <<EOT > /two\n\
         from cat\n\
         EOT\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo shebang > /three\n\
         EOF\n",
    );
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/one", "/two", "/three"]), "one\ntwo\nfrom cat\nshebang\n");
    // The shebang script does not stay in the image.
    let out = env.tc.run(&["run", "img:1", "sh", "-c", "ls -a / | grep -c slipway-heredoc"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{}", describe(&out));
}

#[test]
fn run_sees_env_args_user_and_workdir() {
    let env = BuildEnv::new();
    env.dockerfile(
        "FROM bb\n\
         ARG VERSION=1.0\n\
         ENV GREETING=hello\n\
         WORKDIR /work/dir\n\
         RUN echo \"$GREETING $VERSION $(pwd)\" > /out\n\
         USER user\n\
         RUN id -u > /tmp/uid\n",
    );
    env.build_ok(&["-t", "img:1", "--build-arg", "VERSION=2.5"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/out", "/tmp/uid"]), "hello 2.5 /work/dir\n1000\n");
    // Build args never reach the image config or history.
    let config = env.config("img:1").to_string();
    assert!(!config.contains("2.5"), "{config}");
}

#[test]
fn a_step_that_changes_nothing_adds_no_layer() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN true\n");
    env.build_ok(&["-t", "img:1"]);
    let config = env.config("img:1");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    let last = config["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["created_by"], "RUN /bin/sh -c true");
    assert_eq!(last["empty_layer"], true);
}

#[test]
fn failing_run_names_the_line_exit_code_and_output_and_tags_nothing() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo fine\nRUN echo about to fail; echo details >&2; exit 3\nRUN echo never\n");
    let out = env.build(&["--progress", "plain", "-t", "img:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3:1: error: "), "{stderr}");
    assert!(stderr.contains("exit code 3") || stderr.contains("exit status 3"), "{stderr}");
    // The process as it ran, shell and all (BuildKit: `process "/bin/sh -c …" did not complete`).
    assert!(
        stderr.contains(
            r#"process "/bin/sh -c echo about to fail; echo details >&2; exit 3" did not complete successfully"#
        ),
        "{stderr}"
    );
    assert!(stderr.contains("3 | RUN echo about to fail"), "{stderr}");
    // stdout and stderr are two pipes: their lines may interleave either way.
    let tail = stderr.split("last output:\n").nth(1).unwrap_or_default();
    assert!(tail.contains("  about to fail\n") && tail.contains("  details\n"), "{stderr}");
    assert!(!stderr.contains("never"), "{stderr}");
    let images = env.tc.ok(&["images", "--format", "json"]);
    assert!(!String::from_utf8_lossy(&images.stdout).contains("img"), "nothing tagged");
    crate::build_stages::assert_clean(&env);
}

#[test]
fn output_lines_are_all_kept_in_order_and_in_the_log_file() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done\n");
    let out = env.build_ok(&["--progress", "rawjson"]);
    let ev = events(&out);
    let lines: Vec<String> =
        ev.iter().filter(|e| e["type"] == "task_log").map(|e| e["line"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = (0..500).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, expected);
    let logs = env.tc.root().join("logs");
    let build_dir =
        std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).expect("the build's logs");
    let file = std::fs::read_dir(&build_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("the step's log file");
    assert_eq!(std::fs::read_to_string(file).unwrap(), expected.join("\n") + "\n");
}

#[test]
fn host_network_needs_the_entitlement() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN --network=host true\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:2:1") && stderr.contains("--allow network.host"), "{stderr}");
    env.build_ok(&["--allow", "network.host"]);
    let out = env.build(&["--network", "host"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// `RUN --security=insecure` needs `--allow security.insecure` (BuildKit's entitlement): without
/// it the build stops at the line before any step runs; with it that step runs privileged (the
/// builder's own capabilities, `/proc/sys` writable, mounts work) and the next one does not.
/// History is BuildKit's: the command without the flag.
#[test]
fn security_insecure_needs_the_entitlement_and_runs_privileged() {
    let env = BuildEnv::served();
    env.dockerfile(
        "FROM bb\n\
         RUN echo before > /before\n\
         RUN --security=insecure mkdir /m && mount -t tmpfs none /m && echo inside > /m/f && cat /m/f > /mounted \
           && grep CapEff /proc/self/status > /caps && (echo privileged > /proc/sys/kernel/hostname) && hostname > /host\n\
         RUN grep CapEff /proc/self/status > /caps-after; (echo x > /proc/sys/kernel/hostname) 2>/dev/null || echo ro > /ro\n",
    );
    let out = env.build(&["--progress", "rawjson", "-t", "img:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refusal =
        "Dockerfile:3:1: error: RUN --security=insecure is not allowed: pass --allow security.insecure to the build";
    assert!(stderr.contains(refusal), "{stderr}");
    assert!(steps(&events(&out)).is_empty(), "no step ran: {stderr}");

    env.build_ok(&["-t", "img:1", "--allow", "security.insecure"]);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let own = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert_eq!(
        env.run_stdout("img:1", &["cat", "/mounted", "/caps", "/host", "/caps-after", "/ro"]),
        format!("inside\n{own}\nprivileged\nCapEff:\t00000000a80425fb\nro\n")
    );
    let rootfs = env.umoci_unpack("img:1", env.tc.path());
    assert!(rootfs.join("m").is_dir() && !rootfs.join("m/f").exists(), "the step's tmpfs is not in its layer");
    let config = env.config("img:1");
    let history: Vec<&str> =
        config["history"].as_array().unwrap().iter().filter_map(|h| h["created_by"].as_str()).collect();
    assert!(history.iter().any(|h| h.starts_with("RUN /bin/sh -c mkdir /m && mount")), "{history:?}");
    assert!(!history.iter().any(|h| h.contains("--security")), "{history:?}");
}

/// The security mode is part of a step's cache key only when insecure: an explicit
/// `--security=sandbox` hits the plain step's record, `--security=insecure` misses it, saying
/// why.
#[test]
fn only_insecure_mode_changes_the_cache_key() {
    let env = BuildEnv::served();
    let build = |flag: &str| {
        env.dockerfile(&format!("FROM bb\nRUN {flag}echo hi > /f\n"));
        let out = env.build_ok(&["--progress", "rawjson", "--allow", "security.insecure"]);
        let steps = steps(&events(&out));
        assert_eq!(steps.len(), 1, "{steps:?}");
        (steps[0].cache.clone().unwrap(), steps[0].reason.clone().unwrap_or_default())
    };
    assert_eq!(build("").0, "miss");
    assert_eq!(build("--security=sandbox ").0, "hit");
    assert_eq!(build("--security=insecure "), ("miss".to_string(), "security changed (none → insecure)".to_string()));
    assert_eq!(build("--security=insecure ").0, "hit");
    assert_eq!(build("").0, "hit", "the plain step's record is still there");
}

#[test]
fn network_none_has_only_loopback() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN --network=none ls /sys/class/net > /ifaces\n");
    env.build_ok(&["-t", "img:1"]);
    assert_eq!(env.run_stdout("img:1", &["cat", "/ifaces"]), "lo\n");
}

#[test]
fn unsupported_run_flags_fail_at_their_line() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN echo first\nRUN --device=/dev/fuse true\n");
    let out = env.build(&["--progress", "rawjson"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3:1: error: RUN --device is not supported"), "{stderr}");
    assert!(steps(&events(&out)).is_empty(), "refused before any step: {stderr}");
}

#[test]
fn default_network_is_private_and_cannot_reach_the_hosts_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM bb\nRUN ls /sys/class/net | sort > /ifaces; (nc -w 2 127.0.0.1 {port} </dev/null && echo reached || echo unreachable) > /host\n"
    ));
    env.build_ok(&["-t", "img:1"]);
    let ifaces = env.run_stdout("img:1", &["cat", "/ifaces"]);
    assert!(ifaces.lines().count() == 2 && ifaces.contains("lo"), "lo and slirp's tap: {ifaces}");
    assert_eq!(env.run_stdout("img:1", &["cat", "/host"]), "unreachable\n");
    drop(listener);
}

#[test]
fn run_steps_work_under_an_oci_runtime() {
    for runtime in ["runc", "crun"] {
        let env = BuildEnv::new();
        env.dockerfile("FROM bb\nUSER user\nRUN id -u > /tmp/uid && echo via-runtime > /tmp/marker\n");
        let mut cmd = env.build_cmd(&["-t", "img:1", "--network", "none"]);
        cmd.env("SLIPWAY_RUNTIME", runtime);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{runtime}: {}", describe(&out));
        assert_eq!(env.run_stdout("img:1", &["cat", "/tmp/uid", "/tmp/marker"]), "1000\nvia-runtime\n", "{runtime}");
        crate::build_stages::assert_clean(&env);
    }
}

/// The ten predefined proxy arguments reach RUN without an `ARG` line, each setting both
/// spellings of its variable (given both, the lower-case one wins for both, as BuildKit's sorted
/// build-args do); they never reach the image (config, history) nor the cache key (a changed
/// proxy is still a hit), as in BuildKit.
#[test]
fn proxy_build_args_reach_run_without_arg_and_never_the_image() {
    let env = BuildEnv::new();
    env.dockerfile("FROM bb\nRUN env | grep -i _proxy= | sort > /proxies\n");
    let names = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy"];
    let names = names.iter().chain(&["NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"]);
    let mut args = vec!["-t".to_string(), "p:1".to_string(), "--progress".to_string(), "rawjson".to_string()];
    let mut expected = Vec::new();
    for (i, name) in names.enumerate() {
        args.extend(["--build-arg".to_string(), format!("{name}=http://proxy-{i}.invalid")]);
        // Upper case at even indexes, lower case at odd ones: the lower-case value wins.
        expected.push(format!("{name}=http://proxy-{}.invalid", i | 1));
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.build_ok(&arg_refs);
    expected.sort();
    assert_eq!(env.run_stdout("p:1", &["cat", "/proxies"]), format!("{}\n", expected.join("\n")));
    let config = env.config("p:1").to_string();
    assert!(!config.contains("proxy-"), "no proxy value in the config or history: {config}");
    let changed: Vec<String> = args.iter().map(|a| a.replace("proxy-", "other-proxy-")).collect();
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    let out = env.build_ok(&changed);
    assert_eq!(crate::support::build::ran(&events(&out)), 0, "a changed proxy is no cache miss");
}
