//! Calendar time as the clearing rules read it: Asia/Shanghai, which has
//! kept UTC+8 without daylight saving since 1991. Times come in as
//! milliseconds since the epoch ([`crate::clock`]); nothing here reads a clock.

use chrono::{FixedOffset, TimeZone};

use crate::clearing::Month;

/// Asia/Shanghai.
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC offset"))
}

/// `YYYY-MM` of a time in Asia/Shanghai (empty outside the calendar).
pub fn month_of(ms: i64) -> String {
    shanghai().timestamp_millis_opt(ms).single().map(|t| t.format("%Y-%m").to_string()).unwrap_or_default()
}

/// The month of a time in Asia/Shanghai.
pub fn month_at(ms: i64) -> Option<Month> {
    Month::parse(&month_of(ms))
}

/// The calendar day of a time in Asia/Shanghai.
pub fn shanghai_day(ms: i64) -> Option<chrono::NaiveDate> {
    shanghai().timestamp_millis_opt(ms).single().map(|t| t.date_naive())
}

/// `YYYY-MM-DD` of a time in Asia/Shanghai.
pub fn shanghai_date(ms: i64) -> String {
    shanghai_day(ms).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM` of a time in Asia/Shanghai.
pub fn shanghai_minute(ms: i64) -> String {
    shanghai().timestamp_millis_opt(ms).single().map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

/// The first instant after `month` in Asia/Shanghai, in ms since the epoch.
pub fn month_end_ms(month: Month) -> i64 {
    let next = month.next();
    shanghai()
        .with_ymd_and_hms(next.year(), next.number(), 1, 0, 0, 0)
        .single()
        .map(|t| t.timestamp_millis())
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_ends_at_midnight_in_shanghai() {
        let march = Month::parse("2026-03").expect("month");
        // 2026-04-01 00:00 +08:00 = 2026-03-31 16:00 UTC.
        assert_eq!(month_end_ms(march), 1_774_972_800_000);
        assert_eq!(month_at(month_end_ms(march) - 1), Some(march));
        assert_eq!(month_at(month_end_ms(march)), Some(march.next()));
        assert_eq!(shanghai_minute(month_end_ms(march)), "2026-04-01 00:00");
    }
}
