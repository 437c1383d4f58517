//! The scrubber: every rule is idempotent (a scrubbed value comes out of a second pass
//! unchanged, so the collector changes only what an agent did not scrub), output is one
//! line within its length cap, and an e-mail address, IPv4 and IPv6 address, MAC address
//! or uuid (kinds its catalogue masks) planted among arbitrary words never comes out.
#![no_main]

use anonstats_scrub::{
    Context, FILE_MAX, FUNCTION_MAX, MESSAGE_MAX, NAME_MAX, fatal_action_data, file, property,
    text as free_text,
};
use libfuzzer_sys::fuzz_target;

const SECRETS: &[&str] = &[
    "bob.smith@example.org",
    "10.123.45.67",
    "fe80::1ff:fe23:4567:890a",
    "00:1a:2b:3c:4d:5e",
    "123e4567-e89b-12d3-a456-426614174000",
];

fn once(f: impl Fn(&str) -> String, input: &str, max: usize) -> String {
    let out = f(input);
    assert_eq!(f(&out), out, "not idempotent on {input:?}");
    assert!(!out.contains(['\n', '\r']), "{out:?} is more than one line");
    assert!(out.chars().count() <= max, "{out:?} is longer than {max}");
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first two lines name the agent's user and home directory.
    let mut lines = text.splitn(3, '\n');
    let (user, home, rest) = (lines.next(), lines.next(), lines.next().unwrap_or(""));
    let contexts = [
        Context::none(),
        Context::new(user, home),
        Context::new(Some("alice"), Some("/home/alice")),
    ];
    // Each rule once (the properties share them: fatal_message, action_result and other
    // action_data are free text at MESSAGE_MAX, fatal_function at FUNCTION_MAX, the thread
    // and process names at NAME_MAX); calling a rule again on the same text tests nothing.
    let mut caps = vec![MESSAGE_MAX, FUNCTION_MAX, NAME_MAX];
    caps.sort_unstable();
    caps.dedup();
    for ctx in &contexts {
        for input in [&*text, rest] {
            for &max in &caps {
                once(|s| free_text(s, ctx, max), input, max);
            }
            once(|s| file(s, ctx), input, FILE_MAX);
            // A FATAL's LINE@FILE:FUNCTION/ERRNO holds a file and a function (docs/DATA.md).
            once(|s| fatal_action_data(s, ctx), input, MESSAGE_MAX + FILE_MAX);
            let incomplete = |s: &str| property("action_data", s, Some("INCOMPLETE_SHUTDOWN"), ctx);
            once(|s| incomplete(s).unwrap(), input, MESSAGE_MAX);
        }
    }

    // Secrets among the words of the first line (the other lines are dropped anyway).
    let line = rest.lines().next().unwrap_or("");
    let (before, after) = line.split_at(
        line.char_indices()
            .nth(line.len() / 2)
            .map_or(0, |(i, _)| i),
    );
    for ctx in [&contexts[0], &contexts[2]] {
        // Only the planted copy counts: a secret the input already holds glued to other
        // text is no longer a word of its own.
        for secret in SECRETS.iter().filter(|s| !line.contains(**s)) {
            for planted in [
                format!("{secret} {line}"),
                format!("{before} {secret} {after}"),
            ] {
                let out = free_text(&planted, ctx, MESSAGE_MAX);
                assert!(
                    !out.contains(secret),
                    "{secret} kept in {out:?} from {planted:?}"
                );
            }
        }
    }
});
