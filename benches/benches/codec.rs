//! Record batch codec: building, validating, checksumming and iterating one batch of
//! 1000 records with 100-byte values, as a producer builds it and the broker checks it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fjord_bench::fixtures::record_batch;
use fjord_protocol::batch::{BatchBuilder, RecordInput};

const RECORD_COUNT: usize = 1000;
const VALUE_BYTES: usize = 100;

fn codec(c: &mut Criterion) {
    let batch = record_batch(RECORD_COUNT, VALUE_BYTES);
    let batch_bytes = batch.size_bytes() as u64;
    let value = vec![0x5a_u8; VALUE_BYTES];
    let mut group = c.benchmark_group("codec");

    group.throughput(Throughput::Bytes(batch_bytes));
    group.bench_function("build_1000x100B", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::with_capacity(RECORD_COUNT * (VALUE_BYTES + 8));
            for index in 0..RECORD_COUNT {
                builder.push(&RecordInput {
                    key: None,
                    value: Some(&value),
                    headers: &[],
                    timestamp_ms: 1_700_000_000_000 + index as i64,
                });
            }
            black_box(builder.finish())
        })
    });
    group.bench_function("validate_1000x100B", |b| {
        b.iter(|| black_box(&batch).validate().expect("valid batch"))
    });
    group.bench_function("crc32c_1000x100B", |b| {
        b.iter(|| black_box(&batch).compute_crc())
    });

    group.throughput(Throughput::Elements(RECORD_COUNT as u64));
    group.bench_function("iterate_1000x100B", |b| {
        b.iter(|| {
            for record in black_box(&batch).records() {
                black_box(record.expect("valid record"));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = codec
}
criterion_main!(benches);
