//! How values read to people: UTC times, short durations, sizes, Rust type names. Shared by
//! the command line, the web page, progress lines and the SVG of a DAG.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2025-03-04 05:06:07` (UTC, to the second).
pub fn timestamp(t: SystemTime) -> String {
    let (date, (h, m, s), _) = civil(t);
    format!("{date} {h:02}:{m:02}:{s:02}")
}

/// `2025-03-04T05:06:07.123Z`: RFC 3339, for machine output.
pub fn rfc3339(t: SystemTime) -> String {
    let (date, (h, m, s), millis) = civil(t);
    format!("{date}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// The UTC date, time of day and milliseconds of `t` (times before 1970 count as 1970).
fn civil(t: SystemTime) -> (String, (u64, u64, u64), u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        (rest / 3600, rest / 60 % 60, rest % 60),
        since.subsec_millis(),
    )
}

/// `text` on one line: line breaks and tabs become spaces, other control characters vanish.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(' '),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `850ms`, `3.2s`, `2m05s`, `1h07m`: short, for boxes and progress lines.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let s = (ms + 500) / 1000;
    if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`...
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A Rust type name without module paths: `alloc::vec::Vec<my::Stats>` -> `Vec<Stats>`.
pub fn short_type(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut segment_start = 0;
    for (i, c) in name.char_indices() {
        if !(c.is_alphanumeric() || c == '_' || c == ':') {
            out.push_str(last_segment(&name[segment_start..i]));
            out.push(c);
            segment_start = i + c.len_utf8();
        }
    }
    out.push_str(last_segment(&name[segment_start..]));
    out
}

/// `b` of `a::b`.
fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_709_528_767_250);
        assert_eq!(timestamp(t), "2024-03-04 05:06:07");
        assert_eq!(rfc3339(t), "2024-03-04T05:06:07.250Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29 00:00:00");
    }

    #[test]
    fn shortens_types_and_sizes() {
        assert_eq!(short_type("alloc::vec::Vec<cli::Stats>"), "Vec<Stats>");
        assert_eq!(short_type("(f64, alloc::string::String)"), "(f64, String)");
        assert_eq!(size(10), "10 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 20), "5.0 MiB");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(3_240)), "3.2s");
        assert_eq!(human_duration(Duration::from_millis(59_960)), "1m00s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(human_duration(Duration::from_secs(3_600 + 7 * 60)), "1h07m");
    }
}
