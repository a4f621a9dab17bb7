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
    fn foreign_values_are_ignored() {
        assert_eq!(parse(b"hello"), None);
        assert_eq!(parse(&[b'z'; 64]), None);
    }
}
