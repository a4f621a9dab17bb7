//! Committing a transaction whose outputs are all delivered, straight through librdkafka.
//!
//! rust-rdkafka's `commit_transaction` first runs a flush of its own: when librdkafka still counts
//! the last message whose delivery report the producer's thread has just served, that flush polls
//! *this* thread for up to 100 ms with nothing left to serve. Measured at 20,000 records/s, one
//! commit in eight took 100 ms longer, which was most of the p99 latency. The host has waited for
//! every delivery itself (`pipeline::finish`), and `rd_kafka_commit_transaction` flushes whatever is
//! left on its own, its reports served by the producer's thread (or, for a `BaseProducer`, by the
//! calling thread inside librdkafka's own flush, which returns as soon as nothing is left).

use std::ffi::CStr;

use rdkafka::bindings as rdsys;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{Producer, ProducerContext};
use rdkafka::util::Timeout;

use super::errors::TxnCallError;

/// Commits the open transaction; the same contract as rust-rdkafka's `commit_transaction` (a
/// retriable error means "call again"), without its pre-flush. Generic so the benchmark's minimal
/// exactly-once copier commits the same way as the host.
pub fn commit_delivered<C, P>(producer: &P, timeout: Timeout) -> Result<(), TxnCallError>
where
    C: ProducerContext,
    P: Producer<C>,
{
    let millis = match timeout {
        Timeout::Never => -1,
        Timeout::After(d) => i32::try_from(d.as_millis()).unwrap_or(i32::MAX),
    };
    let native = producer.client().native_ptr();
    // SAFETY: `native` is the live handle `producer` owns, borrowed for the call. A non-null result
    // is an error object this function owns: it is read, then destroyed, and never used after.
    unsafe {
        let error = rdsys::rd_kafka_commit_transaction(native, millis);
        if error.is_null() {
            return Ok(());
        }
        let text = match rdsys::rd_kafka_error_string(error) {
            text if text.is_null() => String::from("unknown error"),
            text => CStr::from_ptr(text).to_string_lossy().into_owned(),
        };
        let failure = TxnCallError::new(
            RDKafkaErrorCode::from(rdsys::rd_kafka_error_code(error)),
            rdsys::rd_kafka_error_is_fatal(error) != 0,
            rdsys::rd_kafka_error_is_retriable(error) != 0,
            rdsys::rd_kafka_error_txn_requires_abort(error) != 0,
            text,
        );
        rdsys::rd_kafka_error_destroy(error);
        Err(failure)
    }
}
