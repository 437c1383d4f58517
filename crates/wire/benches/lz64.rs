//! What decoding an lz64 payload costs the collector: text that lz-string cannot shrink
//! (random letters, random Cyrillic), one letter repeated, and a batch of JSON events,
//! each about 64 KB once decoded. Prints microseconds a payload and nanoseconds a decoded
//! byte; docs/BENCHMARKS.md ("lz64 decoding") holds the figures.
//!
//! cargo bench -p anonstats-wire --bench lz64

use anonstats_wire::decompress_lz64;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn main() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let size = 64 * 1024;
    let letters: String = (0..size)
        .map(|_| (b'a' + (next() % 26) as u8) as char)
        .collect();
    let cyrillic: String = (0..size / 2)
        .map(|_| char::from_u32(0x410 + (next() % 64) as u32).unwrap())
        .collect();
    let event = r#"{"event":"$pageview","properties":{"distinct_id":"d-1","$current_url":"https://example.org/a","n":1}},"#;
    let json = format!(
        "[{}]",
        event.repeat(size / event.len()).trim_end_matches(',')
    );
    let cases = [
        ("random letters", letters),
        ("random Cyrillic", cyrillic),
        ("one letter", "a".repeat(size)),
        ("JSON events", json),
    ];
    println!(
        "{:<16} {:>9} {:>9} {:>10} {:>8}",
        "text", "bytes", "packed", "µs", "ns/byte"
    );
    for (name, text) in cases {
        let packed = lz_str::compress_to_base64(&*text);
        assert_eq!(decompress_lz64(&packed, text.len()).unwrap(), text);
        let start = Instant::now();
        let mut n = 0u32;
        while n < 3 || start.elapsed() < Duration::from_millis(300) {
            black_box(decompress_lz64(&packed, text.len()).unwrap());
            n += 1;
        }
        let t = start.elapsed() / n;
        println!(
            "{name:<16} {:>9} {:>9} {:>10.1} {:>8.1}",
            text.len(),
            packed.len(),
            t.as_secs_f64() * 1e6,
            t.as_nanos() as f64 / text.len() as f64
        );
    }
}
