//! Input records: borrowed, zero-copy views of fetched Kafka messages.

use abi_stable::{
    std_types::{ROption, RSlice, RStr},
    StableAbi,
};

/// One input record. Every byte is borrowed from the host's fetch buffers and valid only for the call;
/// the borrow checker stops a plugin from keeping it.
///
/// In a chain of transforms, `topic`, `partition` and `offset` always name the source record the data
/// came from, so every output stays attributable to a source offset.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Record<'a> {
    topic: RStr<'a>,
    partition: i32,
    offset: i64,
    timestamp: ROption<i64>,
    key: ROption<RSlice<'a, u8>>,
    value: ROption<RSlice<'a, u8>>,
    headers: RSlice<'a, Header<'a>>,
}

/// One record header, borrowed.
///
/// Kafka header names are bytes; a name that is not UTF-8 arrives as its lossy UTF-8 form (each
/// invalid sequence replaced by U+FFFD). An output header with exactly that name, from an output of
/// the same source record, is written with the original bytes again, so passing a header on
/// unchanged keeps it byte for byte.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Header<'a> {
    key: RStr<'a>,
    value: ROption<RSlice<'a, u8>>,
}

impl<'a> Record<'a> {
    /// Builds a view; used by the host and by plugin unit tests.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: &'a str,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        headers: &'a [Header<'a>],
    ) -> Self {
        Record {
            topic: topic.into(),
            partition,
            offset,
            timestamp: timestamp.into(),
            key: key.map(RSlice::from_slice).into(),
            value: value.map(RSlice::from_slice).into(),
            headers: RSlice::from_slice(headers),
        }
    }

    /// The source topic.
    pub fn topic(&self) -> &'a str {
        self.topic.as_str()
    }

    /// The source partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The source offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Milliseconds since the Unix epoch, when the record has a timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp.into_option()
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.key.map(|k| k.as_slice()).into_option()
    }

    pub fn value(&self) -> Option<&'a [u8]> {
        self.value.map(|v| v.as_slice()).into_option()
    }

    pub fn headers(&self) -> &'a [Header<'a>] {
        self.headers.as_slice()
    }

    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&'a [u8]> {
        self.headers()
            .iter()
            .find(|h| h.key() == key)
            .and_then(|h| h.value())
    }
}

impl<'a> Header<'a> {
    pub fn new(key: &'a str, value: Option<&'a [u8]>) -> Self {
        Header {
            key: key.into(),
            value: value.map(RSlice::from_slice).into(),
        }
    }

    pub fn key(&self) -> &'a str {
        self.key.as_str()
    }

    pub fn value(&self) -> Option<&'a [u8]> {
        self.value.map(|v| v.as_slice()).into_option()
    }
}
