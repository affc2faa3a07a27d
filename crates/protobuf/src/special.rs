//! The JSON spellings of meta/v1 Time, MicroTime and Duration.

use jiff::Timestamp;

/// meta/v1 Time: RFC 3339 in UTC with whole seconds, `2024-01-02T03:04:05Z`.
pub(crate) fn format_time(seconds: i64) -> Result<String, String> {
    let ts = Timestamp::new(seconds, 0).map_err(|e| format!("time out of range: {e}"))?;
    Ok(ts.to_string())
}

/// meta/v1 MicroTime: RFC 3339 in UTC with six fractional digits.
pub(crate) fn format_micro_time(seconds: i64, nanos: i32) -> Result<String, String> {
    let nanos = nanos - nanos % 1000;
    let ts = Timestamp::new(seconds, nanos).map_err(|e| format!("time out of range: {e}"))?;
    Ok(format!("{ts:.6}"))
}

/// Parses an RFC 3339 timestamp into (seconds, nanoseconds) since the Unix epoch.
pub(crate) fn parse_time(s: &str) -> Result<(i64, i32), String> {
    let ts: Timestamp = s.parse().map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
    Ok((ts.as_second(), ts.subsec_nanosecond()))
}

/// Go's `time.Duration.String`: `1h2m3.5s`, `1m30s`, `500ms`, `0s`.
pub(crate) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    // The fraction of `v` below 10^prec, as ".ddd" without trailing zeros, and the rest.
    let split = |v: u64, prec: u32| {
        let scale = 10u64.pow(prec);
        let fraction = v % scale;
        let digits = if fraction == 0 {
            String::new()
        } else {
            let padded = format!("{fraction:0width$}", width = prec as usize);
            format!(".{}", padded.trim_end_matches('0'))
        };
        (v / scale, digits)
    };
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (whole, fraction) = split(u, prec);
        return format!("{sign}{whole}{fraction}{unit}");
    }
    let (seconds, fraction) = split(u, 9);
    let (minutes, seconds) = (seconds / 60, seconds % 60);
    let (hours, minutes) = (minutes / 60, minutes % 60);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}{fraction}s"),
        (0, _) => format!("{sign}{minutes}m{seconds}{fraction}s"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}{fraction}s"),
    }
}

/// Go's `time.ParseDuration`: a signed sequence of decimal numbers with units
/// (ns, us, µs, ms, s, m, h), such as `1h30m`, `-1.5h` or `300ms`.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("{s:?} is not a duration");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len =
            after.char_indices().find(|&(_, c)| c == '.' || c.is_ascii_digit()).map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(format!("{s:?} has an unknown duration unit {unit:?}")),
        };
        // At most 19 integer digits fit an i64 of nanoseconds; more overflows below.
        let whole: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| invalid())? };
        let mut value = whole.checked_mul(unit).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(30)];
            let fraction: u128 = digits.parse().map_err(|_| invalid())?;
            value += fraction * unit / 10u128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > 1u128 << 63 {
            return Err(format!("{s:?} overflows a duration"));
        }
        rest = after;
    }
    if negative {
        Ok((total as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(total).map_err(|_| format!("{s:?} overflows a duration"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_use_whole_seconds_and_utc() {
        assert_eq!(format_time(1_704_164_645).unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(format_time(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2024-01-02T05:04:05.25+02:00").unwrap(), (1_704_164_645, 250_000_000));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn micro_times_always_have_six_fractional_digits() {
        assert_eq!(format_micro_time(1_704_164_645, 0).unwrap(), "2024-01-02T03:04:05.000000Z");
        assert_eq!(format_micro_time(1_704_164_645, 123_456_789).unwrap(), "2024-01-02T03:04:05.123456Z");
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_445_500_000_000, "1h30m45.5s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format_duration(nanos), text);
            assert_eq!(parse_duration(text), Ok(nanos), "{text}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("-1.5h"), Ok(-5_400_000_000_000));
        assert_eq!(parse_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_duration("1us"), Ok(1_000));
        assert_eq!(parse_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        for bad in ["", "1", "s", "1x", "1h-2m", ".s", "9223372036854775808ns"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
