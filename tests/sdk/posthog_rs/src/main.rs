//! Sends events to a collector with posthog-rs in capture V1 mode, one batch per body
//! compression and a batch with an event the collector refuses.
//!
//! Usage: posthog-rs-v1-sender URL TOKEN. Prints {"sent": [...], "results": {uuid:
//! [result, details]}, "errors": [...]} as JSON.

use posthog_rs::{CaptureCompression, ClientOptionsBuilder, Event};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, token) = (&args[1], &args[2]);
    let (mut sent, mut results, mut errors) = (Vec::new(), serde_json::Map::new(), Vec::new());
    let codecs = [
        ("none", None),
        ("gzip", Some(CaptureCompression::Gzip)),
        ("deflate", Some(CaptureCompression::Deflate)),
        ("br", Some(CaptureCompression::Br)),
        ("zstd", Some(CaptureCompression::Zstd)),
    ];
    for (tag, codec) in codecs {
        let mut options = ClientOptionsBuilder::default();
        options.api_key(token.clone()).host(url.clone());
        if let Some(c) = codec {
            options.capture_compression(c);
        }
        let client = posthog_rs::client(options.build().expect("options"));
        let mut batch = Vec::new();
        for i in 0..10 {
            let mut e = Event::new("sdk_event".to_string(), format!("machine-{}", i % 3));
            let uuid = uuid::Uuid::new_v4();
            e.set_uuid(uuid);
            e.insert_prop("tag", tag).unwrap();
            e.insert_prop("i", i).unwrap();
            batch.push(e);
            sent.push(json!({"uuid": uuid.to_string(), "tag": tag, "i": i}));
        }
        if tag == "deflate" {
            // A control character in the name: refused for good, the rest stored.
            let mut e = Event::new("bad\u{1}name", "machine-0");
            let uuid = uuid::Uuid::new_v4();
            e.set_uuid(uuid);
            batch.push(e);
            sent.push(json!({"uuid": uuid.to_string(), "tag": tag, "bad": true}));
        }
        match client.capture_batch_immediate(batch, false) {
            Ok(summary) => {
                for (uuid, r) in summary.event_results() {
                    let result = serde_json::to_value(&r.result).unwrap_or(Value::Null);
                    results.insert(uuid.to_string(), json!([result, r.details]));
                }
            }
            Err(e) => errors.push(format!("{tag}: {e}")),
        }
    }
    println!("{}", json!({"sent": sent, "results": results, "errors": errors}));
}
