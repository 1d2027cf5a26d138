//! How sizes are shown: decimal units with up to four significant digits (`999B`, `3.15MB`,
//! `2.126MB`, `4GB`), as Docker shows them.

/// A byte count for people.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{bytes}B");
    }
    let decimals = 3usize.saturating_sub(v.log10().floor() as usize);
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1_000), "1kB");
        assert_eq!(size(3_150_000), "3.15MB");
        assert_eq!(size(1_234_567), "1.235MB");
        assert_eq!(size(123_456_789), "123.5MB");
        assert_eq!(size(4_000_000_000), "4GB");
    }
}
