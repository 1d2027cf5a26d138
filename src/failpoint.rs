//! Crash-test hooks: `SLIPWAY_FAILPOINT=<site>:<action>[,<site>:<action>...]`.
//!
//! Compiled in only with the `failpoints` cargo feature; without it [`hit`] is an empty inline
//! function. Actions: `panic`, `abort` (as a kill -9 would leave things: no destructors, no
//! flush), `exit` (exit status 86), `sleep(MS)` (lets a test kill the process at that point),
//! `error` (the site returns an injected IO error, where the site supports it).

/// What a failpoint asks the caller to do after it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Carry on.
    Continue,
    /// Return an injected error.
    Error,
}

/// Evaluates failpoint `site`.
#[cfg(feature = "failpoints")]
pub fn hit(site: &str) -> Outcome {
    let Ok(spec) = std::env::var("SLIPWAY_FAILPOINT") else {
        return Outcome::Continue;
    };
    for item in spec.split(',') {
        let Some((name, action)) = item.split_once(':') else { continue };
        if name != site {
            continue;
        }
        match action {
            "panic" => panic!("failpoint {site} hit"),
            "abort" => std::process::abort(),
            "exit" => std::process::exit(86),
            "error" => return Outcome::Error,
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
        Outcome::Error => Err(std::io::Error::other(format!("failpoint {site}: injected error"))),
    }
}
