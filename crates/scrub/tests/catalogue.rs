//! A catalogue of crash texts that carry identifying data, and of texts that must come
//! through untouched.

use anonstats_scrub::{Context, READ_MAX, fatal_action_data, file, message, property};

fn alice() -> Context {
    Context::new(Some("alice"), Some("/home/alice"))
}

const UUID: &str = "0b7e1c2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b";

/// (message, what the agent sends: user `alice`, home `/home/alice`)
const MESSAGES: &[(&str, &str)] = &[
    // IPv4, with and without ports.
    ("connect to 10.0.0.7 failed", "connect to <ip> failed"),
    (
        "listen on 192.168.1.20:19999: address in use",
        "listen on <ip>:19999: address in use",
    ),
    ("route 10.0.0.0/8 via 172.16.0.1.", "route <ip>/8 via <ip>."),
    // IPv6: bracketed with a port, zone, loopback, mapped.
    ("peer [2001:db8::1]:443 reset", "peer [<ip>]:443 reset"),
    ("bind fe80::1%eth0 failed", "bind <ip> failed"),
    ("::1 refused the connection", "<ip> refused the connection"),
    ("from ::ffff:192.0.2.1 denied", "from <ip> denied"),
    // MAC addresses.
    (
        "link 00:1a:2b:3c:4d:5e down, 00-1A-2B-3C-4D-5F up",
        "link <mac> down, <mac> up",
    ),
    // E-mail addresses.
    (
        "mail bob.smith+ops@example.org bounced",
        "mail <email> bounced",
    ),
    ("owner <carol@corp.example.co.uk>", "owner <<email>>"),
    // Host names (FQDN), with a port and at a sentence's end.
    (
        "resolve db-7.prod.example.com: timeout",
        "resolve <host>: timeout",
    ),
    ("cannot reach api.internal:8443", "cannot reach <host>:8443"),
    (
        "host build01.lab.acme.de. unreachable",
        "host <host>. unreachable",
    ),
    // URLs, with credentials: the scheme only.
    (
        "GET https://bob:hunter2@api.example.com/v1/x?token=abc failed",
        "GET <url:https> failed",
    ),
    (
        "ldap://ldap.corp.example.com/ou=people down",
        "<url:ldap> down",
    ),
    ("fetch(http://10.0.0.1:8080/metrics)", "fetch(<url:http>)"),
    // Paths under the home directory, another user's, Windows, embedded.
    (
        "open /home/alice/projects/secret/config.toml: No such file",
        "open <path:config.toml>: No such file",
    ),
    ("open /home/bob/.ssh/id_rsa failed", "open <path> failed"),
    (
        r"cannot read C:\Users\bob\AppData\Roaming\app\settings.json",
        "cannot read <path:settings.json>",
    ),
    (
        "key=/home/carol/keys/x.pem rejected",
        "key=<path:x.pem> rejected",
    ),
    ("disk /var is full", "disk <path> is full"),
    (
        r"share \\fileserver\team\notes.txt gone",
        "share <path:notes.txt> gone",
    ),
    ("C:/Users/bob/app.log locked", "<path:app.log> locked"),
    (
        "config:/etc/acme/prod.yaml broken",
        "config:<path:prod.yaml> broken",
    ),
    ("cd ~/work/customer-acme failed", "cd <path> failed"),
    // UUIDs, long numbers, hex strings and pointers.
    (
        "run 0b7e1c2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b aborted",
        "run <uuid> aborted",
    ),
    ("customer 123456789 not found", "customer <n> not found"),
    (
        "job_1234567 and job1234567 failed",
        "job_<n> and job<n> failed",
    ),
    (
        "session deadbeefcafebabe0123 rejected",
        "session <hex> rejected",
    ),
    (
        "pointer 0x7ffd5e8c1a20 misaligned",
        "pointer <hex> misaligned",
    ),
    // The user's own name, in any case, as a word.
    ("user alice has no access", "user <user> has no access"),
    ("Alice's key expired", "<user>'s key expired"),
    ("ALICE-laptop offline", "<user>-laptop offline"),
    // Non-ASCII text.
    (
        "ошибка: файл /home/alice/данные.txt не найден",
        "ошибка: файл <path:данные.txt> не найден",
    ),
    ("接続失敗 10.1.2.3 ✗", "接続失敗 <ip> ✗"),
    // Only the first line.
    ("first line\nsecond line 10.0.0.1", "first line"),
    // Untouched.
    (
        "index out of bounds: the len is 3 but the index is 5",
        "index out of bounds: the len is 3 but the index is 5",
    ),
    (
        "called `Option::unwrap()` on a `None` value",
        "called `Option::unwrap()` on a `None` value",
    ),
    (
        "called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }",
        "called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }",
    ),
    ("main.rs", "main.rs"),
    ("failed in src/main.rs:42", "failed in src/main.rs:42"),
    ("v1.2.3", "v1.2.3"),
    (
        "requires version 1.2.3 or later, got 1.2.3.4.5",
        "requires version 1.2.3 or later, got 1.2.3.4.5",
    ),
    (
        "config.toml: invalid key `listen`",
        "config.toml: invalid key `listen`",
    ),
    (
        "attempt to subtract with overflow",
        "attempt to subtract with overflow",
    ),
    (
        "timeout after 30s, retry 3/5",
        "timeout after 30s, retry 3/5",
    ),
    (
        "self.config.get failed at std::io::Error",
        "self.config.get failed at std::io::Error",
    ),
    (
        "alicex and malice are other words",
        "alicex and malice are other words",
    ),
    ("order #42 of 99999 failed", "order #42 of 99999 failed"),
    ("", ""),
];

#[test]
fn catalogue() {
    let ctx = alice();
    let mut wrong = Vec::new();
    for (input, want) in MESSAGES {
        let got = message(input, &ctx);
        if got != *want {
            wrong.push(format!("{input:?}\n   got  {got:?}\n   want {want:?}"));
        }
    }
    assert!(MESSAGES.len() >= 25);
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        MESSAGES.len(),
        wrong.join("\n")
    );
}

/// (file, what is sent) for the agent (alice) and the collector (no context).
const FILES: &[(&str, &str)] = &[
    (
        "/home/alice/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.1/src/de.rs",
        "serde-1.0.1/src/de.rs",
    ),
    (
        "/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/option.rs",
        "library/core/src/option.rs",
    ),
    ("/home/bob/work/app/src/main.rs", "app/src/main.rs"),
    (
        r"C:\Users\bob\.cargo\registry\src\index.crates.io-1949cf8c6b5b557f\tokio-1.54.1\src\runtime\mod.rs",
        "tokio-1.54.1/src/runtime/mod.rs",
    ),
    (r"C:\Users\bob\source\app\src\main.rs", "app/src/main.rs"),
    (
        "/home/bob/.cargo/git/checkouts/foo-0123abcd89ef/5e1f2a3/src/lib.rs",
        "foo/src/lib.rs",
    ),
    (
        "/home/bob/app/target/debug/build/myapp-0123456789abcdef/out/bindings.rs",
        "myapp/out/bindings.rs",
    ),
    (
        "crates/client/tests/panic_hook.rs",
        "crates/client/tests/panic_hook.rs",
    ),
    ("./src/main.rs", "src/main.rs"),
    ("/tmp/build-xyz/gen.rs", "gen.rs"),
    ("../../home/carol/lib/src/a.rs", "lib/src/a.rs"),
    ("/Users/dave/Library/x/src/y.rs", "x/src/y.rs"),
    ("/root/app/src/main.rs", "app/src/main.rs"),
    ("/srv/10.0.0.7/src/x.rs", "<ip>/src/x.rs"),
];

#[test]
fn files() {
    let mut wrong = Vec::new();
    for ctx in [alice(), Context::none()] {
        for (input, want) in FILES {
            let got = file(input, &ctx);
            if got != *want {
                wrong.push(format!(
                    "{input:?} ({ctx:?})\n   got  {got:?}\n   want {want:?}"
                ));
            }
        }
    }
    let ctx = alice();
    for (input, want) in [
        ("/home/alice/work/app/src/main.rs", "app/src/main.rs"),
        ("/home/alice/src/main.rs", "src/main.rs"),
        ("/data/alice/src/x.rs", "<user>/src/x.rs"),
    ] {
        let got = file(input, &ctx);
        if got != want {
            wrong.push(format!("{input:?}\n   got  {got:?}\n   want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn nothing_identifying_is_left() {
    let ctx = alice();
    // The texts that are meant to change.
    let all: Vec<String> = MESSAGES
        .iter()
        .filter(|(m, want)| m != want)
        .map(|(m, _)| message(m, &ctx))
        .chain(FILES.iter().map(|(f, _)| file(f, &ctx)))
        .collect();
    for out in &all {
        for secret in [
            "alice", "Alice", "bob", "carol", "dave", "/home", "Users", "example", "10.0.0",
            "hunter2", UUID,
        ] {
            assert!(!out.contains(secret), "{secret:?} left in {out:?}");
        }
    }
}

#[test]
fn a_second_pass_changes_nothing() {
    for ctx in [alice(), Context::none()] {
        for (m, _) in MESSAGES {
            let once = message(m, &ctx);
            assert_eq!(message(&once, &ctx), once, "from {m:?}");
            assert_eq!(message(&once, &Context::none()), once, "from {m:?}");
        }
        for (f, _) in FILES {
            let once = file(f, &ctx);
            assert_eq!(file(&once, &Context::none()), once, "from {f:?}");
        }
    }
}

#[test]
fn long_messages_are_capped_on_a_character_boundary() {
    let ctx = alice();
    let long = "é".repeat(1_000);
    let got = message(&long, &ctx);
    assert_eq!(got.chars().count(), 200);
    let ips = "10.0.0.1 ".repeat(1200);
    let got = message(&ips, &ctx);
    assert!(
        got.chars().count() <= 200 && got.starts_with("<ip> <ip>"),
        "{got}"
    );
    assert!(
        !got.contains("10.0") && got.trim_end().ends_with("<ip>"),
        "no mask is cut: {got:?}"
    );
    let secret = format!("{} bob@example.org", "x".repeat(195));
    assert!(
        !message(&secret, &ctx).contains("bob"),
        "cut after, not before, scrubbing"
    );
}

#[test]
fn a_long_line_is_read_up_to_the_word_that_crosses_its_first_bytes() {
    let ctx = Context::none();
    // Many words: the first 200 characters are those of the whole line.
    let words = "word 10.0.0.1 ".repeat(READ_MAX);
    let want = "word <ip> ".repeat(20);
    assert_eq!(message(&words, &ctx), want);
    // A word that crosses the first READ_MAX bytes is dropped, never shown in part: an
    // address at its end would have masked all of it.
    let cut = format!("failed for {}@example.org", "bob".repeat(READ_MAX / 3));
    assert_eq!(message(&cut, &ctx), "failed for ");
    assert_eq!(message(&"é".repeat(READ_MAX), &ctx), "");
    // A file keeps its last components within READ_MAX bytes.
    let deep = format!("/{}/src/main.rs", "dir/".repeat(READ_MAX));
    assert_eq!(file(&deep, &ctx), "dir/src/main.rs");
    let long_name = format!("/src/{}.rs", "a".repeat(READ_MAX));
    assert_eq!(file(&long_name, &ctx), "");
}

#[test]
fn action_data_and_properties() {
    let ctx = alice();
    assert_eq!(
        fatal_action_data("42@/home/alice/app/src/main.c:load_config/2", &ctx),
        "42@app/src/main.c:load_config/2"
    );
    assert_eq!(
        fatal_action_data("42@src/main.c:load_config/2", &ctx),
        "42@src/main.c:load_config/2"
    );
    assert_eq!(
        fatal_action_data(r"7@C:\Users\bob\app\src\x.rs:app::run/0", &Context::none()),
        "7@app/src/x.rs:app::run/0"
    );
    assert_eq!(
        fatal_action_data("read failed at 10.0.0.1", &ctx),
        "read failed at <ip>"
    );
    let fatal = Some("FATAL");
    assert_eq!(property("fatal_line", "7", fatal, &ctx), None);
    assert_eq!(
        property("action_result", "alice-daemon:worker", fatal, &ctx).unwrap(),
        "<user>-daemon:worker"
    );
    let run = property("action_data", UUID, Some("INCOMPLETE_SHUTDOWN"), &ctx);
    assert_eq!(
        run.as_deref(),
        Some(UUID),
        "the unfinished run's START is kept"
    );
    assert_eq!(
        property("action_data", UUID, Some("CLOUD_BUILD_FAIL"), &ctx).unwrap(),
        "<uuid>"
    );
    assert_eq!(
        property("fatal_thread", "worker-1234567", fatal, &ctx).unwrap(),
        "worker-<n>"
    );
}

/// Found by `scripts/fuzz.sh scrub`: a scheme after a character of more than one byte
/// cut that character in two.
#[test]
fn a_url_after_a_non_ascii_character_is_masked() {
    assert_eq!(message("café://x/y", &Context::none()), "café<url>");
    assert_eq!(
        message("a\u{fffd}https://x/y", &Context::none()),
        "a\u{fffd}<url:https>"
    );
}

/// Found by `scripts/fuzz.sh privacy`: a mask split a word, and what followed it was an
/// address of its own on the next pass.
#[test]
fn what_a_mask_leaves_of_a_word_is_scrubbed_too() {
    let ctx = Context::none();
    let once = message("ok for aliAce@$bbbbbbbbbbe40::1", &ctx);
    assert_eq!(message(&once, &ctx), once);
    assert!(!once.contains("::1"), "{once}");
}

/// Found by `scripts/fuzz.sh privacy`: the cap cut a word in two, and what was left read
/// as another word (a run of hex digits) on the next pass.
#[test]
fn a_word_cut_by_the_cap_is_scrubbed_as_what_is_left() {
    let ctx = Context::none();
    for long in [
        format!("cannot r{}fatal_{}g", "e".repeat(113), "e".repeat(100)),
        format!("see {}x", "ab12".repeat(60)),
        format!("x {}zz", "0".repeat(300)),
        format!("{} /home/bob/{}.rs", "w".repeat(180), "a".repeat(40)),
    ] {
        let once = message(&long, &ctx);
        assert!(once.chars().count() <= 200, "{once}");
        assert_eq!(message(&once, &ctx), once, "from {long:?}");
    }
}

/// Found by `scripts/fuzz.sh scrub`: a file whose last component begins with a space came
/// out with it, and the next pass trimmed it.
#[test]
fn a_file_ending_in_spaced_words_is_scrubbed_once() {
    let ctx = Context::none();
    let once = file("/tmp/build/x/ge//?/ ::1 [fe80::1%eth0];19999", &ctx);
    assert_eq!(file(&once, &ctx), once);
}

/// Found by `scripts/fuzz.sh scrub`: a lone carriage return ended no line.
#[test]
fn a_carriage_return_ends_the_line() {
    let ctx = Context::none();
    assert_eq!(message("first\rsecond", &ctx), "first");
    assert_eq!(file("src/a.rs\rx", &ctx), "src/a.rs");
}

/// Found by `scripts/fuzz.sh scrub`: a FATAL's `action_data` whose file and function a
/// second pass split differently.
#[test]
fn action_data_reaches_its_fixed_point_in_one_call() {
    let ctx = Context::new(Some("root"), Some("\u{fffd}"));
    let data = "12@C\\:Users\\carol\\src\\main\u{e}s/rs:ap/U:mc\u{fffd}n/-12";
    let once = anonstats_scrub::fatal_action_data(data, &ctx);
    assert_eq!(anonstats_scrub::fatal_action_data(&once, &ctx), once);
}
