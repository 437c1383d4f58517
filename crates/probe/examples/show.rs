//! Prints the properties the probe finds for a root directory (default `/`).

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "/".to_string());
    let facts = anonstats_probe::probe(std::path::Path::new(&root));
    for (name, value) in facts.properties() {
        println!("{name} = {value}");
    }
}
