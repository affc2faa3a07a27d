//! Human-readable durations, as `kubectl get` shows them in AGE columns
//! (upstream `k8s.io/apimachinery/pkg/util/duration.HumanDuration`).

use std::time::Duration;

use jiff::SignedDuration;

/// Formats `d` with two to three significant figures: `"5s"`, `"3m2s"`
/// (seconds are kept below ten minutes), `"15m"`, `"3h"`, `"2d5h"`, `"10d"`,
/// `"3y45d"`, `"9y"`.
pub fn human_duration(d: Duration) -> String {
    human_signed_duration(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
}

/// Like [`human_duration`], for a difference that may be negative (clock
/// skew between the writer of a timestamp and us). Up to one second in the
/// future reads `"0s"`; further than that reads `"<invalid>"`.
pub fn human_signed_duration(d: SignedDuration) -> String {
    // Whole seconds, truncated toward zero.
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }

    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }

    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }

    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }

    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    const YEAR: u64 = 365 * DAY;

    #[test]
    fn human_duration_keeps_two_or_three_significant_figures() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (5 * SEC, "5s"),
            (59 * SEC, "59s"),
            (119 * SEC, "119s"),
            (2 * MIN, "2m"),
            (3 * MIN + 2 * SEC, "3m2s"),
            (9 * MIN + 59 * SEC, "9m59s"),
            (10 * MIN + 30 * SEC, "10m"),
            (15 * MIN, "15m"),
            (179 * MIN, "179m"),
            (3 * HOUR, "3h"),
            (3 * HOUR + 20 * MIN, "3h20m"),
            (7 * HOUR + 59 * MIN, "7h59m"),
            (8 * HOUR + 30 * MIN, "8h"),
            (47 * HOUR, "47h"),
            (2 * DAY, "2d"),
            (2 * DAY + 5 * HOUR, "2d5h"),
            (7 * DAY + 23 * HOUR, "7d23h"),
            (8 * DAY + 2 * HOUR, "8d"),
            (10 * DAY, "10d"),
            (2 * YEAR - DAY, "729d"),
            (2 * YEAR, "2y"),
            (3 * YEAR + 45 * DAY, "3y45d"),
            (7 * YEAR + 364 * DAY, "7y364d"),
            (8 * YEAR + 2 * HOUR, "8y"),
            (120 * YEAR, "120y"),
        ];
        for &(secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn sub_second_precision_is_truncated() {
        assert_eq!(human_duration(Duration::from_millis(1999)), "1s");
        assert_eq!(human_duration(Duration::from_millis(600_999)), "10m");
    }

    #[test]
    fn small_negative_skew_reads_as_now_and_larger_skew_is_invalid() {
        assert_eq!(human_signed_duration(SignedDuration::from_millis(-500)), "0s");
        assert_eq!(human_signed_duration(SignedDuration::from_millis(-1999)), "0s");
        assert_eq!(human_signed_duration(SignedDuration::from_secs(-2)), "<invalid>");
        assert_eq!(human_signed_duration(SignedDuration::from_secs(-3600)), "<invalid>");
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        assert!(human_duration(Duration::MAX).ends_with('y'));
    }
}
