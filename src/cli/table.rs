//! How tables and times are shown: aligned columns (`images`, `builds ls`), ages as
//! `docker images` writes them, durations as the build summary writes them.

/// Prints `headers` and `rows` in columns three spaces apart; the last column is not padded.
pub fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `3 minutes ago`, as `docker images` shows times.
pub fn ago(secs: i64) -> String {
    let secs = secs.max(0);
    let (n, unit) = match secs {
        s if s < 60 => return "Less than a minute ago".to_string(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 14 => (s / 86_400, "day"),
        s if s < 86_400 * 60 => (s / (86_400 * 7), "week"),
        s if s < 86_400 * 730 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") }
}

/// A duration in milliseconds for people: `0.4s`, `12.0s`, `2m03s`, `1h02m`.
pub fn duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        s if s < 60 => format!("{:.1}s", ms as f64 / 1000.0),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(ago(5), "Less than a minute ago");
        assert_eq!(ago(3600), "1 hour ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(0), "0.0s");
        assert_eq!(duration_ms(420), "0.4s");
        assert_eq!(duration_ms(59_949), "59.9s");
        assert_eq!(duration_ms(123_000), "2m03s");
        assert_eq!(duration_ms(3_720_000), "1h02m");
    }
}
