//! Standard five-field cron schedules (minute hour day-of-month month
//! day-of-week) with ranges, steps, lists, names and the `@hourly`-style
//! descriptors, as CronJob's `spec.schedule` accepts them.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid schedule {0:?}: {1}")]
pub struct ScheduleError(pub String, pub String);

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Both day fields restricted: a day matches if either does (cron's rule).
    day_or: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(spec: &str, min: u32, max: u32, names: &[&str], names_from: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + names_from);
        }
        s.parse::<u32>().map_err(|_| format!("{s:?} is not a number"))
    };
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("bad step in {part:?}"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("zero step in {part:?}"));
        }
        let (lo, hi) = match range {
            "*" | "?" => {
                star |= step == 1;
                (min, max)
            }
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{part:?} is out of range {min}-{max}"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, ScheduleError> {
        let expanded = match s.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let err = |m: String| ScheduleError(s.to_string(), m);
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(err(format!("expected 5 fields, found {}", f.len())));
        }
        let (minutes, _) = field(f[0], 0, 59, &[], 0).map_err(err)?;
        let (hours, _) = field(f[1], 0, 23, &[], 0).map_err(err)?;
        let (days, dom_star) = field(f[2], 1, 31, &[], 0).map_err(err)?;
        let (months, _) = field(f[3], 1, 12, &MONTHS, 1).map_err(err)?;
        let (mut weekdays, dow_star) = field(f[4], 0, 7, &DAYS, 0).map_err(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule { minutes, hours, days, months, weekdays, day_or: !dom_star && !dow_star })
    }

    fn day_matches(&self, t: &DateTime) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().to_sunday_zero_offset()) != 0;
        if self.day_or {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first matching minute strictly after `after`, in `tz`.
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let mut t = start.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(1.minute()).ok()?;
        // Bounded: any valid schedule matches within a few years.
        for _ in 0..200_000 {
            if self.months & (1 << t.month()) == 0 {
                t = t.first_of_month().checked_add(1.month()).ok()?.with().hour(0).minute(0).build().ok()?;
                continue;
            }
            if !self.day_matches(&t) {
                t = t.date().checked_add(1.day()).ok()?.to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            return tz.to_timestamp(t).ok();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_times_follow_the_fields() {
        let utc = TimeZone::UTC;
        let every_15 = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(every_15.next(ts("2025-01-01T10:07:30Z"), &utc), Some(ts("2025-01-01T10:15:00Z")));
        let weekdays_9 = Schedule::parse("0 9 * * MON-FRI").unwrap();
        // 2025-01-04 is a Saturday.
        assert_eq!(weekdays_9.next(ts("2025-01-03T09:00:00Z"), &utc), Some(ts("2025-01-06T09:00:00Z")));
        let yearly = Schedule::parse("@yearly").unwrap();
        assert_eq!(yearly.next(ts("2025-06-01T00:00:00Z"), &utc), Some(ts("2026-01-01T00:00:00Z")));
        let either = Schedule::parse("0 0 13 * 5").unwrap();
        // The 13th or any Friday: 2025-01-03 is a Friday.
        assert_eq!(either.next(ts("2025-01-01T00:00:00Z"), &utc), Some(ts("2025-01-03T00:00:00Z")));
    }

    #[test]
    fn malformed_schedules_are_rejected() {
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("*/0 * * * *").is_err());
        assert!(Schedule::parse("0 0 * FOO *").is_err());
    }
}
