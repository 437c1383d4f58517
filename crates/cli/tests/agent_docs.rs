//! docs/DATA.md documents exactly the properties the code can send.

use std::collections::BTreeSet;

#[test]
fn data_md_lists_every_property_and_no_other() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/DATA.md");
    let text = std::fs::read_to_string(path).expect("docs/DATA.md exists");
    let section = |title: &str| -> BTreeSet<String> {
        let start = text
            .find(title)
            .unwrap_or_else(|| panic!("DATA.md has no {title:?} section"));
        let rest = &text[start + title.len()..];
        let body = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        body.lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
            .collect()
    };
    let mut documented = section("## Properties set by the client");
    documented.extend(section("## System facts"));
    let code: BTreeSet<String> = anonstats_client::facts::property_names()
        .into_iter()
        .map(String::from)
        .collect();
    let missing: Vec<_> = code.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/DATA.md and the code differ: undocumented {missing:?}, documented but never sent {extra:?}"
    );
}
