//! The privacy filter: whatever properties arrive, none on the denylist or under a denied
//! prefix is kept, the page-location properties hold only a known mask or `masked`, an
//! allowlist keeps only its names, every free-text property is left as the scrubber's own
//! output (scrubbing it again changes nothing), and filtering twice is filtering once.
#![no_main]

use anonstats_scrub::{Context, PROPERTIES};
use anonstats_server::privacy::{
    DENY_PREFIXES, DENYLIST, Edits, KNOWN_MASKS, MASKED, MASKED_PROPERTIES, Policy, apply,
};
use anonstats_wire::Properties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(sent) = Properties::parse(text) else {
        return;
    };
    // Half the time an allowlist of every other name sent (and one never sent).
    let policy = Policy {
        allowlist: (mode & 1 == 1).then(|| {
            sent.iter()
                .step_by(2)
                .map(|(k, _)| k.to_string())
                .chain(["fatal_message".to_string()])
                .collect()
        }),
    };
    let mut props = sent.clone();
    apply(&mut props, &policy, &mut Edits::default());
    anonstats_fuzz::check_properties(&props);

    let action = props
        .get("action")
        .and_then(|v| v.as_str())
        .map(|s| s.into_owned());
    for (key, value) in props.iter() {
        assert!(!DENYLIST.contains(&key), "{key} kept");
        assert!(
            !DENY_PREFIXES.iter().any(|p| key.starts_with(p)),
            "{key} kept"
        );
        assert!(sent.contains_key(key), "{key} was added");
        if let Some(allow) = &policy.allowlist {
            assert!(allow.contains(key), "{key} is not on the allowlist");
        }
        if MASKED_PROPERTIES.contains(&key) {
            let v = value.as_str().unwrap_or_default();
            assert!(v == MASKED || KNOWN_MASKS.contains(&&*v), "{key} = {v}");
        }
        if PROPERTIES.contains(&key) {
            let v = value
                .as_str()
                .unwrap_or_else(|| panic!("{key} is kept as {}", value.json()));
            let again = anonstats_scrub::property(key, &v, action.as_deref(), &Context::none());
            assert_eq!(again.as_deref(), Some(&*v), "{key} is not scrubbed");
        }
    }

    let mut twice = props.clone();
    let mut edits = Edits::default();
    apply(&mut twice, &policy, &mut edits);
    assert!(
        twice == props,
        "a second pass changed {}",
        props.into_json()
    );
    assert!(
        edits.scrubbed.is_empty(),
        "a second pass scrubbed {:?}",
        edits.scrubbed
    );
});
