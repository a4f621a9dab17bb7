//! The record values of the benchmark.
//!
//! A value is ASCII text: `<stamp:20 digits> <seq:16 hex> <kind> ` followed by `x` up to the record
//! size. ASCII because TransactionalMessageCopier copies values through a String (UTF-8) serde round
//! trip, which would mangle arbitrary bytes; every system copies values unchanged, so the reader
//! gets the stamp back and computes the end-to-end latency from it. Records have no key.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the header; record sizes must be at least this.
pub const HEADER_LEN: usize = 20 + 1 + 16 + 1 + 1 + 1;

/// What a record is for; only [`Kind::Measured`] records count towards latency percentiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Seeded input of the throughput runs.
    Seed,
    /// The record that shows a system is up before a latency run starts.
    Probe,
    /// Paced records of the latency warm-up.
    Warmup,
    /// Paced records whose latency is measured.
    Measured,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Seed => b'S',
            Kind::Probe => b'P',
            Kind::Warmup => b'W',
            Kind::Measured => b'M',
        }
    }

    fn from_letter(letter: u8) -> Option<Kind> {
        match letter {
            b'S' => Some(Kind::Seed),
            b'P' => Some(Kind::Probe),
            b'W' => Some(Kind::Warmup),
            b'M' => Some(Kind::Measured),
            _ => None,
        }
    }
}

/// Writes the value of record `seq` into `buf` (cleared first), `size` bytes long.
pub fn write(buf: &mut Vec<u8>, size: usize, seq: u64, stamp_ns: u64, kind: Kind) {
    use std::io::Write as _;
    buf.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{stamp_ns:020} {seq:016x} ");
    buf.push(kind.letter());
    buf.push(b' ');
    buf.resize(size.max(HEADER_LEN), b'x');
}

/// Writes a JSON object value of record `seq` into `buf` (cleared first), `size` bytes long when
/// `size` leaves room for the fields: `{"seq":N,"kind":"seed","pad":"xx…"}`. For the json-transform
/// chains, which need JSON objects.
pub fn write_json(buf: &mut Vec<u8>, size: usize, seq: u64) {
    use std::io::Write as _;
    buf.clear();
    let _ = write!(buf, r#"{{"seq":{seq},"kind":"seed","pad":""#);
    let pad = size.saturating_sub(buf.len() + 2);
    buf.resize(buf.len() + pad, b'x');
    buf.extend_from_slice(b"\"}");
}

/// The key of record `seq` of a keyed input with `keys` distinct keys: `k<seq mod keys>`.
pub fn key_index(seq: u64, keys: u64) -> u64 {
    seq % keys.max(1)
}

/// The key text of key number `index`.
pub fn key(index: u64) -> String {
    format!("k{index}")
}

/// How many of `records` keyed records (keys assigned by [`key_index`]) have key number `index`.
pub fn records_of_key(index: u64, records: u64, keys: u64) -> u64 {
    let keys = keys.max(1);
    records / keys + u64::from(index < records % keys)
}

/// The stamp and kind of a value written by [`write`]; `None` for anything else.
pub fn parse(value: &[u8]) -> Option<(u64, Kind)> {
    let header = value.get(..HEADER_LEN)?;
    let stamp = std::str::from_utf8(&header[..20]).ok()?.parse().ok()?;
    let kind = Kind::from_letter(header[38])?;
    Some((stamp, kind))
}

/// Nanoseconds since the UNIX epoch: the clock of stamps. Producer and reader are both in this
/// process, so they share it.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write(&mut buf, 100, 42, 1_700_000_000_123_456_789, Kind::Measured);
        assert_eq!(buf.len(), 100);
        assert!(buf.is_ascii());
        assert_eq!(
            parse(&buf),
            Some((1_700_000_000_123_456_789, Kind::Measured))
        );
    }

    #[test]
    fn small_sizes_keep_the_header() {
        let mut buf = Vec::new();
        write(&mut buf, 10, 1, 2, Kind::Seed);
        assert_eq!(buf.len(), HEADER_LEN);
        assert_eq!(parse(&buf), Some((2, Kind::Seed)));
    }

    #[test]
    fn json_values_are_objects_of_the_size() {
        let mut buf = Vec::new();
        write_json(&mut buf, 1024, 123_456);
        assert_eq!(buf.len(), 1024);
        let value: serde_json::Value = serde_json::from_slice(&buf).expect("JSON");
        assert_eq!(value["seq"], 123_456);
        assert_eq!(value["kind"], "seed");
        write_json(&mut buf, 10, 7);
        assert_eq!(buf, br#"{"seq":7,"kind":"seed","pad":""}"#);
    }

    #[test]
    fn keys_per_count() {
        assert_eq!(key(42), "k42");
        let (records, keys) = (25u64, 10u64);
        let counted: Vec<u64> = (0..keys)
            .map(|k| records_of_key(k, records, keys))
            .collect();
        assert_eq!(counted, [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]);
        let by_hand = (0..records).filter(|s| key_index(*s, keys) == 4).count() as u64;
        assert_eq!(by_hand, records_of_key(4, records, keys));
    }

    #[test]
    fn foreign_values_are_ignored() {
        assert_eq!(parse(b"hello"), None);
        assert_eq!(parse(&[b'z'; 64]), None);
    }
}
