//! History entries: `created_by` as Docker (BuildKit) writes it, so `docker history`-style tools
//! show what users expect. Two deliberate differences: no ` # buildkit` marker, and build-arg
//! values are never written into history (BuildKit writes `RUN |1 TOKEN=… cmd`, which leaks
//! whatever was passed as `--build-arg`; catalogue I1).

use crate::dockerfile::go_quote;
use crate::oci::Healthcheck;

/// The `comment` of every entry a Dockerfile step writes.
pub(crate) const COMMENT: &str = "slipway.dockerfile.v0";

/// One history entry before it gets its timestamp.
pub(crate) struct HistoryEntry {
    pub created_by: String,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

/// A metadata-only entry with `created_by` as given.
pub(crate) fn metadata(created_by: String) -> HistoryEntry {
    HistoryEntry { created_by, comment: Some(COMMENT.to_string()), empty_layer: true }
}

/// The entry of a layer step; `empty_layer` when the step changed no file.
pub(crate) fn layer(created_by: String, empty: bool) -> HistoryEntry {
    HistoryEntry { created_by, comment: Some(COMMENT.to_string()), empty_layer: empty }
}

/// `ENV A=1 B=2`.
pub(crate) fn env(set: &[(String, String)]) -> HistoryEntry {
    let pairs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    metadata(format!("ENV {}", pairs.join(" ")))
}

/// `LABEL a=b c=d`.
pub(crate) fn label(set: &[(String, String)]) -> HistoryEntry {
    let pairs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    metadata(format!("LABEL {}", pairs.join(" ")))
}

/// `EXPOSE map[443/tcp:{} 80/tcp:{}]` (Go's map formatting, keys sorted).
pub(crate) fn expose(ports: &[String]) -> HistoryEntry {
    let mut sorted: Vec<&String> = ports.iter().collect();
    sorted.sort();
    sorted.dedup();
    let items: Vec<String> = sorted.iter().map(|p| format!("{p}:{{}}")).collect();
    metadata(format!("EXPOSE map[{}]", items.join(" ")))
}

/// `HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "30s" "3s" "0s" "0s" '\x03'}` (Go's `%q` of the struct).
pub(crate) fn healthcheck(h: &Healthcheck) -> HistoryEntry {
    let test: Vec<String> = h.test.clone().unwrap_or_default().iter().map(|t| go_quote(t)).collect();
    let d = |n: Option<i64>| go_quote(&go_duration(n.unwrap_or(0)));
    let retries = h.retries.unwrap_or(0);
    let retries = match u8::try_from(retries) {
        Ok(b) if (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\' => format!("'{}'", b as char),
        Ok(b) => format!("'\\x{b:02x}'"),
        Err(_) => retries.to_string(),
    };
    metadata(format!(
        "HEALTHCHECK &{{[{}] {} {} {} {} {retries}}}",
        test.join(" "),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval)
    ))
}

/// `["a" "b"]`: Go's `%q` of a string slice (CMD, ENTRYPOINT).
pub(crate) fn go_list(argv: &[String]) -> String {
    let items: Vec<String> = argv.iter().map(|a| go_quote(a)).collect();
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()` for whole nanoseconds: `0s`, `1.5s`, `5m0s`, `1h0m0s`, `300ms`.
pub(crate) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if n < 1_000_000_000 {
        let (unit, div) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(n, div));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let s = fraction(s * 1_000_000_000 + sub, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// `n / div` with the fraction's trailing zeros dropped.
fn fraction(n: u64, div: u64) -> String {
    let whole = n / div;
    let rest = n % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{rest:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
    }

    #[test]
    fn created_by_forms() {
        assert_eq!(expose(&["80/tcp".into(), "443/tcp".into()]).created_by, "EXPOSE map[443/tcp:{} 80/tcp:{}]");
        assert_eq!(env(&[("A".into(), "1".into())]).created_by, "ENV A=1");
        let h = Healthcheck {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            interval: Some(30_000_000_000),
            retries: Some(3),
            ..Default::default()
        };
        assert_eq!(healthcheck(&h).created_by, r#"HEALTHCHECK &{["CMD-SHELL" "true"] "30s" "0s" "0s" "0s" '\x03'}"#);
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), "echo \"hi\"".to_string()];
        assert_eq!(go_list(&argv), r#"["/bin/sh" "-c" "echo \"hi\""]"#);
    }
}
