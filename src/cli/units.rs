//! How sizes are shown: decimal units with up to four significant digits (`999B`, `3.15MB`,
//! `2.126MB`, `4GB`), as Docker shows them; and how they are read (`512m`, `1g`: binary
//! units, as Docker reads `--memory`; `10GB`, `512MiB`, `1.5g`, `0`: binary units, as
//! `docker buildx prune --keep-storage` reads them).

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

/// A byte count as Docker's `--memory` takes it: [`parse_storage`]'s syntax (go-units'
/// `RAMInBytes`, which Docker uses for both), more than zero.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    match parse_storage(text) {
        Ok(0) | Err(_) => Err(format!(
            "invalid size {text:?}: expected a number above 0 with an optional unit k, m, g (powers of 1024, e.g. 512m)"
        )),
        Ok(bytes) => Ok(bytes),
    }
}

/// A storage size as `docker buildx prune --keep-storage` takes it (go-units `RAMInBytes`): a
/// number (fractions allowed), an optional space and an optional unit `k`, `m`, `g`, `t`, `p`
/// (powers of 1024, any case) with an optional `i` and `b` after it (`10GB`, `512MiB`, `1.5g`,
/// `100 kb`); zero is a size.
pub fn parse_storage(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {text:?}: expected a number with an optional unit k, m, g, t, p (powers of 1024: 10GB, 512MiB, 1.5g)"
        )
    };
    let digits_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    if !number.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::{parse_memory, parse_storage, size};

    #[test]
    fn storage_units() {
        assert_eq!(parse_storage("10GB"), Ok(10 << 30));
        assert_eq!(parse_storage("512MiB"), Ok(512 << 20));
        assert_eq!(parse_storage("1.5g"), Ok(3 << 29));
        assert_eq!(parse_storage("100 kb"), Ok(100 << 10));
        assert_eq!(parse_storage("2Ki"), Ok(2048));
        assert_eq!(parse_storage("4096"), Ok(4096));
        assert_eq!(parse_storage("7b"), Ok(7));
        assert_eq!(parse_storage("0"), Ok(0));
        assert_eq!(parse_storage("1TB"), Ok(1 << 40));
        for bad in ["", "g", ".5g", "1x", "-1g", "1.2.3m", "1  m", "1gib2", "1bb", " 1g", "1e3"] {
            assert!(parse_storage(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("64mb"), Ok(64 << 20));
        assert_eq!(parse_memory("1.5k"), Ok(1536));
        assert_eq!(parse_memory("4096"), Ok(4096));
        assert_eq!(parse_memory("10b"), Ok(10));
        for bad in ["", "m", "1x", "-1m", "0", "1bb", "1.2.3m", "1  m"] {
            assert!(parse_memory(bad).is_err(), "{bad:?} accepted");
        }
    }

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
