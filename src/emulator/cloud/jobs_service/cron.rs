//! The cron expressions of `schedulingConfig.maintenanceWindows[].startTime`, in the AWS
//! form `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, all in UTC.
//!
//! Owns: parsing a useful subset and finding the next matching minute. The subset: each
//! field takes `*`, a number, a range `a-b`, a list `a,b,c`, and steps `*/n` or `a/n` or
//! `a-b/n`; Day-of-month or Day-of-week may be `?`; months may be `JAN`–`DEC`, weekdays
//! `SUN`–`SAT` or `1`–`7` with 1 for Sunday, as AWS counts them. As in AWS, one of the two
//! day fields must be `?`. Not supported (refused with a clear message): `L`, `W` and `#`. Written by hand because the cron crates speak the Unix five-field dialect, not this
//! one (no `?`, no year, Sunday as 0). Must not know: jobs or what the windows gate.

use std::fmt;
use time::{Date, OffsetDateTime};

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;
/// How far ahead a next match is looked for (a window that never opens within it is none).
const HORIZON_DAYS: u64 = 5 * 366;

/// A parsed expression. Call contract: [`Cron::parse`] checks everything; matching never
/// fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bit 1 = Sunday … bit 7 = Saturday.
    days_of_week: u64,
    /// Year ranges (`None`: every year).
    years: Option<Vec<(i32, i32, i32)>>,
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(pub String);

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn err(message: impl Into<String>) -> CronError {
    CronError(message.into())
}

/// One field's values as (start, end, step) ranges.
fn ranges(
    field: &str,
    name: &str,
    lo: i32,
    hi: i32,
    names: &[&str],
    name_base: i32,
) -> Result<Vec<(i32, i32, i32)>, CronError> {
    let value = |s: &str| -> Result<i32, CronError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as i32 + name_base);
        }
        let v: i32 = s
            .parse()
            .map_err(|_| err(format!("{name}: {s:?} is not a value")))?;
        if !(lo..=hi).contains(&v) {
            return Err(err(format!("{name}: {v} is outside {lo}-{hi}")));
        }
        Ok(v)
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        if part.contains(['L', 'W', '#']) && !names.iter().any(|n| n.eq_ignore_ascii_case(part)) {
            return Err(err(format!(
                "{name}: {part:?} uses L, W or #, which are not supported"
            )));
        }
        let (span, step) = match part.split_once('/') {
            Some((span, step)) => {
                let step: i32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| err(format!("{name}: bad step in {part:?}")))?;
                (span, step)
            }
            None => (part, 1),
        };
        let (start, end) = match span {
            "*" => (lo, hi),
            s => match s.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(s)?, hi),
                None => {
                    let v = value(s)?;
                    (v, v)
                }
            },
        };
        if start > end {
            return Err(err(format!("{name}: range {part:?} runs backwards")));
        }
        out.push((start, end, step));
    }
    Ok(out)
}

fn bits(ranges: &[(i32, i32, i32)]) -> u64 {
    let mut b = 0u64;
    for &(start, end, step) in ranges {
        let mut v = start;
        while v <= end {
            b |= 1 << v;
            v += step;
        }
    }
    b
}

impl Cron {
    /// Parses `cron(...)` (the `cron(` wrapper is required, as AWS requires it).
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let inner = text
            .trim()
            .strip_prefix("cron(")
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| err(format!("{text:?} is not of the form cron(...)")))?;
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [min, hour, dom, month, dow, year] = fields.as_slice() else {
            return Err(err(format!(
                "{text:?} needs six fields (minutes hours day-of-month month day-of-week year), has {}",
                fields.len()
            )));
        };
        let days_of_month = if *dom == "?" {
            bits(&[(1, 31, 1)])
        } else {
            bits(&ranges(dom, "day-of-month", 1, 31, &[], 0)?)
        };
        let days_of_week = if *dow == "?" {
            bits(&[(1, 7, 1)])
        } else {
            bits(&ranges(dow, "day-of-week", 1, 7, &WEEKDAYS, 1)?)
        };
        if *dom == "?" && *dow == "?" {
            return Err(err("day-of-month and day-of-week cannot both be ?"));
        }
        if *dom != "?" && *dow != "?" {
            return Err(err("one of day-of-month and day-of-week must be ?"));
        }
        Ok(Self {
            text: text.trim().to_owned(),
            minutes: bits(&ranges(min, "minutes", 0, 59, &[], 0)?),
            hours: bits(&ranges(hour, "hours", 0, 23, &[], 0)?),
            days_of_month,
            months: bits(&ranges(month, "month", 1, 12, &MONTHS, 1)?),
            days_of_week,
            years: (*year != "*")
                .then(|| ranges(year, "year", 1970, 2199, &[], 0))
                .transpose()?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, date: Date) -> bool {
        let year_ok = self.years.as_ref().is_none_or(|ys| {
            ys.iter().any(|&(a, b, step)| {
                let y = date.year();
                y >= a && y <= b && (y - a) % step == 0
            })
        });
        let dow = date.weekday().number_from_sunday();
        year_ok
            && self.months & (1 << u8::from(date.month())) != 0
            && self.days_of_month & (1 << date.day()) != 0
            && self.days_of_week & (1 << dow) != 0
    }

    /// The first matching minute at or after `at_ms` (epoch ms, UTC), if one comes within
    /// five years.
    pub fn next_at_or_after(&self, at_ms: u64) -> Option<u64> {
        let start = at_ms.div_ceil(MINUTE_MS) * MINUTE_MS;
        let mut day_start = start - start % DAY_MS;
        for _ in 0..HORIZON_DAYS {
            let secs = i64::try_from(day_start / 1000).ok()?;
            let date = OffsetDateTime::from_unix_timestamp(secs).ok()?.date();
            if self.day_matches(date) {
                for hour in 0..24u64 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60u64 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let t = day_start + (hour * 60 + minute) * MINUTE_MS;
                        if t >= start {
                            return Some(t);
                        }
                    }
                }
            }
            day_start += DAY_MS;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T00:00Z, a Tuesday.
    const DEC_1: u64 = 1_796_083_200_000;
    const HOUR: u64 = 3_600_000;

    #[test]
    fn daily_weekly_and_stepped_expressions() {
        let daily = Cron::parse("cron(30 2 * * ? *)").unwrap();
        assert_eq!(
            daily.next_at_or_after(DEC_1),
            Some(DEC_1 + 2 * HOUR + 30 * MINUTE_MS)
        );
        assert_eq!(
            daily.next_at_or_after(DEC_1 + 3 * HOUR),
            Some(DEC_1 + DAY_MS + 2 * HOUR + 30 * MINUTE_MS)
        );
        let sunday = Cron::parse("cron(0 0 ? * SUN *)").unwrap();
        assert_eq!(sunday.next_at_or_after(DEC_1), Some(DEC_1 + 5 * DAY_MS));
        let also_sunday = Cron::parse("cron(0 0 ? * 1 *)").unwrap();
        assert_eq!(
            also_sunday.next_at_or_after(DEC_1),
            Some(DEC_1 + 5 * DAY_MS)
        );
        let every_15 = Cron::parse("cron(*/15 * * * ? *)").unwrap();
        assert_eq!(
            every_15.next_at_or_after(DEC_1 + MINUTE_MS),
            Some(DEC_1 + 15 * MINUTE_MS)
        );
        let first_of_march = Cron::parse("cron(0 12 1 MAR ? 2027)").unwrap();
        assert_eq!(
            first_of_march.next_at_or_after(DEC_1),
            Some(DEC_1 + (31 + 31 + 28) * DAY_MS + 12 * HOUR)
        );
        let gone = Cron::parse("cron(0 12 1 MAR ? 2020)").unwrap();
        assert_eq!(gone.next_at_or_after(DEC_1), None);
    }

    #[test]
    fn unsupported_or_malformed_expressions_are_refused_clearly() {
        for (text, says) in [
            ("0 0 * * ? *", "cron(...)"),
            ("cron(0 0 * *)", "six fields"),
            ("cron(61 0 * * ? *)", "outside 0-59"),
            ("cron(0 0 L * ? *)", "not supported"),
            ("cron(0 0 ? * 6#3 *)", "not supported"),
            ("cron(0 0 ? * ? *)", "both be ?"),
            ("cron(0 0 1 * MON *)", "must be ?"),
            ("cron(5-1 0 * * ? *)", "backwards"),
            ("cron(x 0 * * ? *)", "not a value"),
        ] {
            let e = Cron::parse(text).unwrap_err();
            assert!(e.0.contains(says), "{text}: {e}");
        }
    }
}
