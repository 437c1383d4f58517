//! What scrubbing one value costs the collector: the worst patterns found (each word
//! needing every rule, non-ASCII text, one long word, deep paths), at 4 KB and at 1 MB (the
//! largest event), and the catalogue's kind of crash text. Prints microseconds a value and
//! nanoseconds a byte; docs/BENCHMARKS.md ("Scrubbing") holds the figures.
//!
//! cargo bench -p anonstats-scrub --bench scrub

use anonstats_scrub::{Context, fatal_action_data, file, message};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Mean time of `f` over enough calls to take about 200 ms (at least 3).
fn time(f: impl Fn() -> String) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < Duration::from_millis(200) {
        black_box(f());
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    let ctx = Context::none();
    type Rule = fn(&str, &Context) -> String;
    let cases: &[(&str, Rule, &str)] = &[
        ("message", message, "a "),
        ("message", message, "1.2.3.4 "),
        ("message", message, "a@b.com "),
        ("message", message, "x/y "),
        ("message", message, "::1 "),
        ("message", message, "a:"),
        ("message", message, "é"),
        ("message", message, "é "),
        ("file", file, "a/"),
        ("file", file, "a\\"),
        ("file", file, "a b/"),
        ("fatal_action_data", fatal_action_data, "1@a:b/"),
        (
            "message",
            message,
            "cannot open /home/alice/app.toml from 10.0.0.7:8080 for bob@example.org; ",
        ),
    ];
    println!(
        "{:<18} {:<24} {:>12} {:>10} {:>12} {:>10}",
        "rule", "repeated", "4 KB µs", "ns/byte", "1 MB µs", "ns/byte"
    );
    for (name, rule, unit) in cases {
        let at = |size: usize| {
            let text = unit.repeat(size / unit.len());
            let t = time(|| rule(&text, &ctx));
            (
                t.as_secs_f64() * 1e6,
                t.as_nanos() as f64 / text.len() as f64,
            )
        };
        let (small, small_b) = at(4096);
        let (large, large_b) = at(1 << 20);
        let shown: String = unit.chars().take(24).collect();
        println!(
            "{name:<18} {:<24} {small:>12.1} {small_b:>10.1} {large:>12.1} {large_b:>10.2}",
            format!("{shown:?}")
        );
    }
}
