//! The command's log: one line per record on stderr, as text or as JSON (`--log-format`).
//!
//! Operator lines (leadership changes, a node's start, a node without a leader) use targets
//! under [`OPS_TARGET`] and are shown at `info` by default. The library crate is also called
//! `fencekit`, so its modules (`fencekit::node`, `fencekit::transport::tcp`) stay at `warn`:
//! the kernel's debug and info chatter appears only with `RUST_LOG`, which replaces the
//! default filter entirely.
//!
//! JSON lines are objects with `ts` (RFC 3339, UTC, milliseconds), `level`, `target` and
//! `msg`, plus one field per `key=value` pair in the message (see [`fields`]), so that
//! `became leader term=7` carries `"term":7` without the reader parsing the text.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use serde_json::{Map, Value};

/// The prefix of every target the command logs for operators.
pub(crate) const OPS_TARGET: &str = "fencekit::cli";

/// How log records are written to stderr.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// `[LEVEL target] message`, for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the logger. Call once, before any thread logs.
pub(crate) fn init(format: LogFormat) {
    let default_filter = format!("warn,{OPS_TARGET}=info");
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = json_line(
                SystemTime::now(),
                record.level(),
                record.target(),
                &record.args().to_string(),
            );
            writeln!(buf, "{line}")
        });
    }
    // A second init (a test harness, say) keeps the first logger: not an error worth failing.
    let _ = builder.try_init();
}

/// One record as a JSON object on one line.
fn json_line(at: SystemTime, level: log::Level, target: &str, msg: &str) -> String {
    let mut object = Map::new();
    object.insert("ts".into(), rfc3339_millis(at).into());
    object.insert("level".into(), level.as_str().to_lowercase().into());
    object.insert("target".into(), target.into());
    object.insert("msg".into(), msg.into());
    for (key, value) in fields(msg) {
        // A field never replaces one of the four the format promises.
        object.entry(key).or_insert(value);
    }
    Value::Object(object).to_string()
}

/// The `key=value` pairs of a message, in order: a key is lowercase ASCII letters, digits and
/// `_` starting with a letter, right after a space or the start; a value runs to the next space,
/// or is a quoted string with `\"` and `\\` escapes (as `{:?}` writes it). Integers and
/// `true`/`false` become JSON numbers and booleans; everything else stays a string.
pub(crate) fn fields(msg: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut rest = msg;
    while !rest.is_empty() {
        let token_end = rest.find(' ').unwrap_or(rest.len());
        let token = &rest[..token_end];
        let parsed = token.split_once('=').and_then(|(key, value)| {
            let mut chars = key.chars();
            let key_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                return None;
            }
            let after_eq = &rest[key.len() + 1..];
            if value.starts_with('"') {
                let (text, len) = quoted(after_eq)?;
                Some((key, Value::String(text), key.len() + 1 + len))
            } else {
                Some((key, scalar(value), token_end))
            }
        });
        let consumed = match parsed {
            Some((key, value, consumed)) => {
                out.push((key.to_owned(), value));
                consumed
            }
            None => token_end,
        };
        rest = rest[consumed..].trim_start_matches(' ');
    }
    out
}

/// A quoted string at the start of `s`: its text and the bytes it took, quotes included.
fn quoted(s: &str) -> Option<(String, usize)> {
    let mut text = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((text, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                other => text.push(other),
            },
            c => text.push(c),
        }
    }
    None
}

fn scalar(value: &str) -> Value {
    if let Ok(n) = value.parse::<u64>() {
        return n.into();
    }
    if let Ok(n) = value.parse::<i64>() {
        return n.into();
    }
    match value {
        "true" => true.into(),
        "false" => false.into(),
        other => other.into(),
    }
}

/// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Times before 1970 (a broken clock) print as the epoch.
fn rfc3339_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, in_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// for non-negative days only).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            // 2000-02-29, a leap day in a year divisible by 400.
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
        ];
        for (ms, want) in cases {
            let at = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(rfc3339_millis(at), want, "{ms} ms");
        }
    }

    #[test]
    fn key_values_become_typed_fields() {
        let got = fields(r#"lost leadership term=7 reason=failed cause="disk \"full\" now" x=-3"#);
        let want: Vec<(String, Value)> = vec![
            ("term".into(), 7.into()),
            ("reason".into(), "failed".into()),
            ("cause".into(), "disk \"full\" now".into()),
            ("x".into(), (-3).into()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn text_that_only_looks_like_a_pair_is_not_a_field() {
        // An upper-case key, a key inside a word, an unterminated quote.
        assert!(fields("Term=3 a-b=4").is_empty());
        assert_eq!(fields(r#"cause="open"#), vec![]);
        assert_eq!(fields("==x"), vec![]);
    }

    #[test]
    fn a_json_line_is_one_object_whose_promised_fields_win() {
        let line = json_line(
            UNIX_EPOCH,
            log::Level::Warn,
            "fencekit::cli::leadership",
            "lost leadership term=2 msg=spoof level=spoof",
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["target"], "fencekit::cli::leadership");
        assert_eq!(v["msg"], "lost leadership term=2 msg=spoof level=spoof");
        assert_eq!(v["term"], 2);
    }
}
