//! The clock and the calendar: Unix seconds now, dates in UTC, and ages as
//! people read them. The log, the access log, the S3 signature, the status
//! page, the scrub's report and the mirror's status all take theirs here.

use std::time::UNIX_EPOCH;

/// Seconds since 1970 by the system clock (0 before it), for the times the
/// metrics, the mirror's status and the scrub's state record.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An age or interval as the flags take it, in seconds: a number of days
/// (`30`), or a number with `s`, `m`, `h` or `d` (`90m`, `6h`, `2d`).
pub(crate) fn parse_age(text: &str) -> Option<u64> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "d"),
    };
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a (year, month, day); the inverse of
/// [`civil_from_days`].
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-30 15:16 UTC`: the server's clock, so that a board whose clock
/// was never set shows it.
pub(crate) fn utc(unix: u64) -> String {
    let (year, month, day) = civil_from_days((unix / 86_400) as i64);
    let rem = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `2026-11-30T15:16:17Z`: ISO 8601 in UTC, as S3 takes a date.
pub(crate) fn iso8601(unix: u64) -> String {
    let (year, month, day) = civil_from_days((unix / 86_400) as i64);
    let rem = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A moment as `--since` takes it, in Unix seconds: an age before `now`
/// (`90m`, `6h`, `2d`; a number alone is not taken), or
/// `YYYY-MM-DD[THH:MM[:SS]][Z]` in UTC (a space for the `T` too).
pub(crate) fn parse_moment(text: &str, now: u64) -> Option<u64> {
    if !text.bytes().all(|b| b.is_ascii_digit())
        && let Some(age) = parse_age(text)
    {
        return Some(now.saturating_sub(age));
    }
    let text = text.trim_end_matches('Z');
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00"));
    let date: Vec<&str> = date.split('-').collect();
    let time: Vec<&str> = time.split(':').collect();
    let number = |s: Option<&&str>, digits: usize| -> Option<u32> {
        let s = s?;
        match s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()) {
            true => s.parse().ok(),
            false => None,
        }
    };
    let (year, month, day) = (
        number(date.first(), 4)?,
        number(date.get(1), 2)?,
        number(date.get(2), 2)?,
    );
    let (hour, minute) = (number(time.first(), 2)?, number(time.get(1), 2)?);
    let second = match time.get(2) {
        Some(s) => number(Some(s), 2)?,
        None => 0,
    };
    if date.len() != 3
        || time.len() > 3
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year.into(), month, day);
    u64::try_from(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second)).ok()
}

/// `3 d 4 h`, `5 h 12 min`, `40 s`: the two largest units, a zero second
/// one left out.
pub(crate) fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// `just now`, or `5 h 12 min ago`.
pub(crate) fn ago(secs: u64) -> String {
    if secs < 60 {
        "just now".to_string()
    } else {
        format!("{} ago", duration(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_dates_both_ways() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(2013, 5, 24), 1_369_353_600 / 86_400);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn formats_times_and_ages() {
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(3 * 86_400 + 3600), "3 d 1 h");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(utc(86_400 * 365 + 3600 + 120), "1971-01-01 01:02 UTC");
        assert_eq!(ago(5), "just now");
    }
}
