//! Record headers with byte names.
//!
//! Kafka header names are bytes on the wire, but rust-rdkafka reads them as `&str` and panics on any
//! other name (`Headers::try_get` unwraps `CStr::to_str`), and writes only `&str` names. One source
//! record with a non-UTF-8 header name would then crash the host on every restart. This module reads
//! and writes header names as bytes through librdkafka's C API; nothing else in the host may use
//! rust-rdkafka's `Headers` accessors on consumed messages.
//!
//! librdkafka's accessor returns names NUL-terminated, without their length: a name with a NUL byte
//! in it reads as the bytes before that NUL.

use std::ffi::{c_char, c_void, CStr};
use std::marker::PhantomData;
use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, OwnedHeaders};
use rdkafka::types::RDKafkaRespErr;

/// One header of a consumed message, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader<'m> {
    pub key: &'m [u8],
    pub value: Option<&'m [u8]>,
}

/// The headers of one consumed message, in order; see [`headers`].
pub struct RawHeaders<'m> {
    list: *const rd::rd_kafka_headers_t,
    next: usize,
    count: usize,
    _message: PhantomData<&'m ()>,
}

/// The headers of `message` with their names as bytes, whatever they hold.
pub fn headers<'m>(message: &'m BorrowedMessage<'_>) -> RawHeaders<'m> {
    let mut list: *mut rd::rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: `message.ptr()` is the live librdkafka message owned by `message`. librdkafka parses
    // its headers once, keeps them in the message and hands out a pointer to them (or an error
    // when there are none), exactly as rust-rdkafka's `Message::headers` does.
    let err = unsafe { rd::rd_kafka_message_headers(message.ptr(), &mut list) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        list = ptr::null_mut();
    }
    RawHeaders::of(list)
}

/// The headers of `headers` with their names as bytes (those [`insert`] wrote, for instance).
pub fn owned(headers: &OwnedHeaders) -> RawHeaders<'_> {
    RawHeaders::of(native_list(headers))
}

/// The native list of `headers`. rust-rdkafka's borrowed header view is a zero-sized type placed at
/// the address of the native list (`OwnedHeaders::as_borrowed` casts the list pointer to it, and its
/// private `as_native_ptr` casts back), so its address is the list; the unit tests check it.
fn native_list(headers: &OwnedHeaders) -> *mut rd::rd_kafka_headers_t {
    ptr::from_ref::<BorrowedHeaders>(headers.as_borrowed())
        .cast_mut()
        .cast::<rd::rd_kafka_headers_t>()
}

impl RawHeaders<'_> {
    /// Iterates over `list`, a live native header list (or null for none) that outlives `'m`.
    fn of(list: *const rd::rd_kafka_headers_t) -> Self {
        let count = if list.is_null() {
            0
        } else {
            // SAFETY: `list` is a live, non-null native header list.
            unsafe { rd::rd_kafka_header_cnt(list) }
        };
        RawHeaders {
            list,
            next: 0,
            count,
            _message: PhantomData,
        }
    }
}

impl<'m> Iterator for RawHeaders<'m> {
    type Item = RawHeader<'m>;

    fn next(&mut self) -> Option<RawHeader<'m>> {
        while self.next < self.count {
            let index = self.next;
            self.next += 1;
            let mut name: *const c_char = ptr::null();
            let mut value: *const c_void = ptr::null();
            let mut size = 0usize;
            // SAFETY: `list` is a live header list that outlives 'm and `index` is below its count; librdkafka writes a NUL-terminated name, the value (null for none) and
            // the value's size, all owned by the list, which lives as long as the message.
            let err = unsafe {
                rd::rd_kafka_header_get_all(self.list, index, &mut name, &mut value, &mut size)
            };
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                continue;
            }
            // SAFETY: as above; `name` is NUL-terminated and `value` points to `size` bytes.
            let (key, value) = unsafe {
                (
                    CStr::from_ptr(name).to_bytes(),
                    (!value.is_null())
                        .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size)),
                )
            };
            return Some(RawHeader { key, value });
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.count - self.next))
    }
}

/// Appends a header whose name is any bytes (rust-rdkafka's `OwnedHeaders::insert` takes `&str`
/// names only).
pub fn insert(headers: OwnedHeaders, key: &[u8], value: Option<&[u8]>) -> OwnedHeaders {
    let list = native_list(&headers);
    let (value_ptr, value_len) = match value {
        Some(v) => (v.as_ptr().cast::<c_void>(), v.len() as isize),
        None => (ptr::null(), 0),
    };
    // SAFETY: `list` is the writable native list owned by `headers`, which we own here; librdkafka
    // copies `key.len()` name bytes and `value_len` value bytes, so neither borrow is kept.
    let err = unsafe {
        rd::rd_kafka_header_add(
            list,
            key.as_ptr().cast::<c_char>(),
            key.len() as isize,
            value_ptr,
            value_len,
        )
    };
    // librdkafka refuses only read-only lists; an `OwnedHeaders` never is one.
    debug_assert_eq!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
    headers
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, Headers};

    use super::*;

    #[test]
    fn insert_writes_byte_names_into_the_owned_list() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "plain",
            value: Some("1"),
        });
        let headers = insert(headers, b"bad\xffname", Some(b"2"));
        let headers = insert(headers, b"none", None);
        // rust-rdkafka's own count sees our inserts: `native_list` is its list.
        assert_eq!(headers.count(), 3);
        assert_eq!(headers.get(0).key, "plain");
        let expected = [
            RawHeader {
                key: b"plain",
                value: Some(b"1"),
            },
            RawHeader {
                key: b"bad\xffname",
                value: Some(b"2"),
            },
            RawHeader {
                key: b"none",
                value: None,
            },
        ];
        assert_eq!(owned(&headers).collect::<Vec<_>>(), expected);
        // A copy keeps the byte names (librdkafka copies names with their length).
        assert_eq!(owned(&headers.clone()).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_name_with_a_nul_byte_is_written_whole_and_read_up_to_the_nul() {
        // librdkafka writes the name with its length (no panic, nothing lost on the wire); its
        // accessor hands names back NUL-terminated.
        let headers = insert(OwnedHeaders::new(), b"a\0b", Some(b"v"));
        assert_eq!(headers.count(), 1);
        let read: Vec<RawHeader<'_>> = owned(&headers).collect();
        assert_eq!(
            read,
            [RawHeader {
                key: b"a",
                value: Some(b"v")
            }]
        );
    }
}
