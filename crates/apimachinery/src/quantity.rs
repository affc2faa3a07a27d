//! `resource.Quantity`: parsing to exact milli-units and formatting back.

/// Why a quantity string is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct QuantityError(pub String);

/// Parses a quantity into thousandths of its unit (`100m` → 100, `1` → 1000,
/// `1Ki` → 1_024_000), rounding fractions of a milli-unit up as upstream does.
pub fn parse_milli(s: &str) -> Result<i128, QuantityError> {
    let err = || QuantityError(s.to_string());
    let s = s.trim();
    if s.is_empty() {
        return Err(err());
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (neg, num) = match num.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err());
    }
    if !int_part.chars().chain(frac_part.chars()).all(|c| c.is_ascii_digit()) {
        return Err(err());
    }
    // value = digits / 10^frac_len * multiplier * 1000 (milli)
    let digits: i128 = format!("{int_part}{frac_part}").trim_start_matches('0').parse().unwrap_or(0);
    let frac_len = frac_part.len() as u32;
    let (num_mul, den_mul): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "u" => (1, 1000),
        "n" => (1, 1_000_000),
        "k" => (1000 * 1000, 1),
        "M" => (1000 * 1_000_000, 1),
        "G" => (1000 * 1_000_000_000, 1),
        "T" => (1000 * 1_000_000_000_000, 1),
        "P" => (1000 * 1_000_000_000_000_000, 1),
        "E" => (1000 * 1_000_000_000_000_000_000, 1),
        "Ki" => (1000 << 10, 1),
        "Mi" => (1000 << 20, 1),
        "Gi" => (1000 << 30, 1),
        "Ti" => (1000 << 40, 1),
        "Pi" => (1000 << 50, 1),
        "Ei" => (1000 << 60, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| err())?;
            if exp >= 0 {
                (1000 * 10i128.checked_pow(exp as u32).ok_or_else(err)?, 1)
            } else {
                (1000, 10i128.checked_pow((-exp) as u32).ok_or_else(err)?)
            }
        }
        _ => return Err(err()),
    };
    let den = 10i128.checked_pow(frac_len).ok_or_else(err)? * den_mul;
    let numer = digits.checked_mul(num_mul).ok_or_else(err)?;
    // Round up, as upstream does for values finer than a milli-unit.
    let v = (numer + den - 1) / den;
    Ok(if neg { -v } else { v })
}

/// Formats milli-units back to a canonical-enough quantity (`1500` → `1500m`, `2000` → `2`).
pub fn format_milli(m: i128) -> String {
    if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_cpu_and_memory_quantities_parse_exactly() {
        assert_eq!(parse_milli("100m").unwrap(), 100);
        assert_eq!(parse_milli("1").unwrap(), 1000);
        assert_eq!(parse_milli("0.5").unwrap(), 500);
        assert_eq!(parse_milli("1.5").unwrap(), 1500);
        assert_eq!(parse_milli("128Mi").unwrap(), 128 * 1024 * 1024 * 1000);
        assert_eq!(parse_milli("1G").unwrap(), 1_000_000_000_000);
        assert_eq!(parse_milli("1e3").unwrap(), 1_000_000);
        assert_eq!(parse_milli("1n").unwrap(), 1);
        assert!(parse_milli("abc").is_err());
        assert!(parse_milli("1Qi").is_err());
    }

    #[test]
    fn formatting_prefers_whole_units() {
        assert_eq!(format_milli(2000), "2");
        assert_eq!(format_milli(1500), "1500m");
    }
}
