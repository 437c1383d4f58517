//! How long a durable commit takes on this disk at the least: appends 4 KiB to a file
//! in the given directory and calls fdatasync, 200 times; prints p50 and p99.

use std::io::Write;
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".to_string());
    let path = std::path::Path::new(&dir).join("fsyncprobe.tmp");
    let mut file = std::fs::File::create(&path)?;
    let page = [0x5au8; 4096];
    let mut us = Vec::with_capacity(200);
    for _ in 0..200 {
        file.write_all(&page)?;
        let t = Instant::now();
        file.sync_data()?;
        us.push(t.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    us.sort_unstable();
    println!(
        "fsync_p50_ms={:.2} fsync_p99_ms={:.2}",
        us[us.len() / 2] as f64 / 1000.0,
        us[us.len() * 99 / 100] as f64 / 1000.0
    );
    Ok(())
}
