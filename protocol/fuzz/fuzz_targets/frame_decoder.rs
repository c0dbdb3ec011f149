//! Feeds arbitrary bytes to every decoder a peer's bytes reach: the frame decoder, the
//! request and response headers, the request bodies and record batch validation.
//! Any panic is a bug; so is a request that decodes but does not survive re-encoding,
//! and a batch that validates but whose records fail to iterate.
//!
//! Run from `protocol/`: `cargo install cargo-fuzz && cargo +nightly fuzz run frame_decoder`.

#![no_main]

use bytes::{Bytes, BytesMut};
use fjord_protocol::RecordBatch;
use fjord_protocol::batch::RecordBatches;
use fjord_protocol::frame::{self, Decoded};
use fjord_protocol::messages::{
    ApiVersionsResponse, ConsumerGroupHeartbeatResponse, CreateTopicsResponse,
    DeleteTopicsResponse, DescribeGroupsResponse, FetchResponse, FindCoordinatorResponse,
    ListGroupsResponse, ListOffsetsResponse, Message, MetadataResponse, OffsetCommitResponse,
    OffsetFetchResponse, ProduceResponse, Request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);

    // The frame layer, then the request path on the whole input and on the frame that
    // `decode_frame` found, if any.
    if let Ok(Decoded::Complete { consumed, .. }) = frame::decode_frame(data) {
        request_path(input.slice(..consumed));
        response_path(input.slice(..consumed));
    }
    request_path(input.clone());
    response_path(input.clone());

    // Record batches: one exactly, and a sequence back to back.
    if let Ok(batch) = RecordBatch::new(input.clone()) {
        inspect_batch(&batch);
    }
    for batch in RecordBatches::new(input).take(64).flatten() {
        inspect_batch(&batch);
    }
});

fn request_path(frame_bytes: Bytes) {
    let Ok((header, body)) = frame::split_request(frame_bytes) else {
        return;
    };
    if let Ok(request) = Request::decode(&header, body) {
        let mut again = BytesMut::new();
        request.encode(&mut again);
        assert_eq!(Request::decode(&header, again.freeze()), Ok(request));
    }
}

fn response_path(frame_bytes: Bytes) {
    let Ok((_, body)) = frame::split_response(frame_bytes) else {
        return;
    };
    // The body layout depends on the request; try them all.
    ignore(ApiVersionsResponse::decode_body(body.clone()));
    ignore(MetadataResponse::decode_body(body.clone()));
    ignore(CreateTopicsResponse::decode_body(body.clone()));
    ignore(DeleteTopicsResponse::decode_body(body.clone()));
    ignore(ProduceResponse::decode_body(body.clone()));
    ignore(FetchResponse::decode_body(body.clone()));
    ignore(ListOffsetsResponse::decode_body(body.clone()));
    ignore(FindCoordinatorResponse::decode_body(body.clone()));
    ignore(ConsumerGroupHeartbeatResponse::decode_body(body.clone()));
    ignore(OffsetCommitResponse::decode_body(body.clone()));
    ignore(OffsetFetchResponse::decode_body(body.clone()));
    ignore(ListGroupsResponse::decode_body(body.clone()));
    ignore(DescribeGroupsResponse::decode_body(body));
}

fn inspect_batch(batch: &RecordBatch) {
    let valid = batch.validate().is_ok();
    ignore((batch.last_offset(), batch.next_offset()));
    let mut count = 0usize;
    let mut failed = false;
    for record in batch.records() {
        count += 1;
        failed |= record.is_err();
    }
    if valid {
        assert!(!failed, "a batch that validates failed to iterate");
        assert_eq!(count, batch.record_count() as usize);
    }
}

/// Consumes a decoder's result: the target only cares that it returned.
fn ignore<T>(_value: T) {}
