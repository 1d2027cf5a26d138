//! Crash-test hooks: `SLIPWAY_FAILPOINT=<site>:<action>[,<site>:<action>...]`.
//!
//! Compiled in only with the `failpoints` cargo feature; without it [`hit`] is an empty inline
//! function. Actions: `kill9` (the process sends itself SIGKILL: no destructors, no flush, as a
//! real kill -9 leaves things), `panic`, `exit` (exit status 86), `sleep(MS)` (lets a test act
//! while the process waits there), and `enospc` / `eio` / `error` (the site returns that IO error,
//! where the site supports it).

/// What a failpoint asks the caller to do after it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Carry on.
    Continue,
    /// Return an injected error with this errno (only `hit` with the `failpoints` feature makes it).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    Error(i32),
}

/// Evaluates failpoint `site`.
#[cfg(feature = "failpoints")]
pub fn hit(site: &str) -> Outcome {
    let Ok(spec) = std::env::var("SLIPWAY_FAILPOINT") else {
        return Outcome::Continue;
    };
    for item in spec.split(',') {
        let Some((name, action)) = item.split_once(':') else {
            continue;
        };
        if name != site {
            continue;
        }
        match action {
            "kill9" => {
                // The signal is delivered before kill returns when a process signals itself.
                let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
                std::process::abort();
            }
            "panic" => panic!("failpoint {site} hit"),
            "exit" => std::process::exit(86),
            "enospc" => return Outcome::Error(libc::ENOSPC),
            "eio" | "error" => return Outcome::Error(libc::EIO),
            other => {
                if let Some(ms) = other.strip_prefix("sleep(").and_then(|s| s.strip_suffix(')')) {
                    let ms: u64 = ms.parse().unwrap_or(1000);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
            }
        }
    }
    Outcome::Continue
}

/// Evaluates failpoint `site` (compiled out: always [`Outcome::Continue`]).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_site: &str) -> Outcome {
    Outcome::Continue
}

/// Turns an [`Outcome::Error`] at `site` into an IO error.
pub fn io(site: &str) -> std::io::Result<()> {
    match hit(site) {
        Outcome::Continue => Ok(()),
        Outcome::Error(errno) => Err(std::io::Error::from_raw_os_error(errno)),
    }
}
