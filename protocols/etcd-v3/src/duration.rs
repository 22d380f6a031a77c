//! Durations as etcd's tools write them on the command line (Go's `5s`, `500ms`, `1.5m`, `2h`;
//! a bare number is seconds), for the flags of Cairn's etcd-compatible commands.

use std::time::Duration;

/// Parses `500ms`, `5s`, `1.5m`, `2h` or `3` (seconds); zero is allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}
