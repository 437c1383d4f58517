//! The rules that remove identifying data from the free-text properties of crash and
//! action reports (`fatal_*`, `action_result`, `action_data`).
//!
//! The agent applies them before an event leaves the machine, with a [`Context`] that knows
//! the current user's name and home directory; the collector applies them again to what
//! arrives (an old agent, a hand-written request), with [`Context::none`]. Both use this
//! crate, so they agree; it has no dependencies, so that the agent library stays small.
//!
//! Masks are fixed tokens: `<ip>`, `<mac>`, `<email>`, `<host>`, `<url:SCHEME>`, `<path>` or
//! `<path:FILE.EXT>`, `<user>`, `<uuid>`, `<n>` (6 digits or more), `<hex>`. Scrubbing is
//! idempotent: a scrubbed value comes out of a second pass unchanged, so the collector
//! changes (and counts) only what an agent did not scrub.
//!
//! ```
//! use anonstats_scrub::{Context, file, message};
//! let ctx = Context::new(Some("alice"), Some("/home/alice"));
//! assert_eq!(
//!     message("cannot open /home/alice/app.toml from 10.0.0.7:8080 for bob@example.org", &ctx),
//!     "cannot open <path:app.toml> from <ip>:8080 for <email>"
//! );
//! assert_eq!(
//!     file("/home/alice/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.1/src/de.rs", &ctx),
//!     "serde-1.0.1/src/de.rs"
//! );
//! ```

use std::borrow::Cow;

/// Longest `fatal_message`, `action_result` and `action_data`, in characters (a FATAL's
/// `action_data`, which holds a file and a function: `MESSAGE_MAX + FILE_MAX`).
pub const MESSAGE_MAX: usize = 200;
/// Longest `fatal_file`, in characters (the end is kept).
pub const FILE_MAX: usize = 200;
/// Longest `fatal_function`, in characters.
pub const FUNCTION_MAX: usize = 200;
/// Longest `fatal_process` and `fatal_thread`, in characters.
pub const NAME_MAX: usize = 64;

/// The properties whose string values are scrubbed, agent and collector alike.
pub const PROPERTIES: &[&str] = &[
    "fatal_message",
    "fatal_file",
    "fatal_function",
    "fatal_thread",
    "fatal_process",
    "action_result",
    "action_data",
];

/// The words masks are made of; a user name equal to one of them is not masked (it would
/// make the masks themselves change on a second pass), nor are common service accounts.
const NOT_USER_NAMES: &[&str] = &[
    "ip", "email", "host", "url", "path", "user", "uuid", "hex", "mac", "root", "admin", "nobody",
    "daemon", "home", "users", "runner", "build", "test", "default", "system", "guest",
];

/// What only the agent knows: the current user's name and home directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    user: Option<String>,
    home: Option<String>,
}

impl Context {
    /// No user and no home directory: the collector's view.
    pub fn none() -> Context {
        Context::default()
    }

    /// A user name (masked as `<user>` wherever it appears as a word; ignored when shorter
    /// than 3 characters or a common account name such as `root`) and a home directory
    /// (replaced by `~` before the path rules run; ignored when it is `/`).
    pub fn new(user: Option<&str>, home: Option<&str>) -> Context {
        let user = user
            .map(str::trim)
            .filter(|u| u.chars().count() >= 3)
            .filter(|u| !NOT_USER_NAMES.iter().any(|n| n.eq_ignore_ascii_case(u)))
            .map(str::to_string);
        let home = home
            .map(|h| h.trim().replace('\\', "/"))
            .map(|h| h.trim_end_matches('/').to_string())
            .filter(|h| h.len() >= 2);
        Context { user, home }
    }

    /// From the environment: `$USER`, else `$LOGNAME`, else `%USERNAME%`; `$HOME`, else
    /// `%USERPROFILE%`.
    pub fn from_env() -> Context {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        Context::new(
            var(&["USER", "LOGNAME", "USERNAME"]).as_deref(),
            var(&["HOME", "USERPROFILE"]).as_deref(),
        )
    }

    fn is_user(&self, word: &str) -> bool {
        self.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(word))
    }
}

/// The scrubbed value of property `key`, or `None` when `key` is not scrubbed
/// ([`PROPERTIES`]). `action` is the event's `action` property: a FATAL's `action_data`
/// is scrubbed part by part (`LINE@FILE:FUNCTION/ERRNO`), and an INCOMPLETE_SHUTDOWN's,
/// which is the random uuid of the unfinished run's START, is kept when it is one.
pub fn property(key: &str, value: &str, action: Option<&str>, ctx: &Context) -> Option<String> {
    Some(match key {
        "fatal_message" => message(value, ctx),
        "fatal_file" => file(value, ctx),
        "fatal_function" => text(value, ctx, FUNCTION_MAX),
        "fatal_thread" | "fatal_process" => text(value, ctx, NAME_MAX),
        "action_result" => text(value, ctx, MESSAGE_MAX),
        "action_data" => match action {
            Some("FATAL") => fatal_action_data(value, ctx),
            Some("INCOMPLETE_SHUTDOWN") if uuid_at(value.as_bytes(), 0) == Some(value.len()) => {
                value.to_string()
            }
            _ => text(value, ctx, MESSAGE_MAX),
        },
        _ => return None,
    })
}

/// A crash message: its first line, scrubbed, at most [`MESSAGE_MAX`] characters.
pub fn message(text_in: &str, ctx: &Context) -> String {
    text(text_in, ctx, MESSAGE_MAX)
}

/// Free text: its first line, scrubbed, at most `max` characters (a mask is never cut).
pub fn text(text: &str, ctx: &Context, max: usize) -> String {
    settled(text, |t| text_once(t, ctx, max))
}

/// One rule applied until it changes nothing more. One pass can leave what another would
/// change again (a cargo registry path inside a registry path, a home reduced to `~`, a
/// separator that a mask moved): the collector scrubs what an agent already scrubbed, and
/// must change nothing of it.
fn settled(input: &str, rule: impl Fn(&str) -> String) -> String {
    let mut out = rule(input);
    if out == input {
        return out;
    }
    for _ in 0..8 {
        let again = rule(&out);
        if again == out {
            break;
        }
        out = again;
    }
    out
}

fn text_once(text: &str, ctx: &Context, max: usize) -> String {
    let line = window_start(first_line(text), max);
    let scrubbed = line_scrub(line, ctx);
    let capped = cap_start(&scrubbed, max);
    if capped.len() == scrubbed.len() {
        return capped;
    }
    // The cap may end inside a word, and what is left of it is another word (a run of
    // hex digits cut short): scrubbed as such, so that a second pass changes nothing.
    let again = line_scrub(&capped, ctx);
    if again.chars().count() <= max {
        return again;
    }
    // Its mask is longer than what was left of it: without that word.
    let whole = capped
        .char_indices()
        .rfind(|&(_, c)| is_delimiter(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    capped[..whole].to_string()
}

/// A source file: relative, without the home directory, the cargo registry or git
/// checkout, the toolchain's `/rustc/HASH/` or a build directory's prefix; an absolute
/// path keeps its part from the last `src` directory's parent on (else the file name);
/// `/` separators; the last [`FILE_MAX`] characters.
pub fn file(path: &str, ctx: &Context) -> String {
    settled(path, |p| file_once(p, ctx))
}

fn file_once(path: &str, ctx: &Context) -> String {
    let first = first_line(path);
    let mut p = first.trim().replace('\\', "/");
    if let Some(rest) = p.strip_prefix("//?/") {
        p = rest.to_string();
    }
    if let Some(home) = &ctx.home
        && let Some(rest) = p.strip_prefix(home.as_str())
        && (rest.is_empty() || rest.starts_with('/'))
    {
        p = format!("~{rest}");
    }
    let rel: String = if let Some(i) = p.find("/registry/src/") {
        skip_components(&p[i + "/registry/src/".len()..], 1)
    } else if let Some(i) = p.find("/git/checkouts/") {
        let rest = &p[i + "/git/checkouts/".len()..];
        let name = rest.split('/').next().unwrap_or("");
        format!("{}/{}", without_hash(name), skip_components(rest, 2))
    } else if let Some(rest) = p.strip_prefix("/rustc/") {
        skip_components(rest, 1)
    } else if let Some(out) = build_out(&p) {
        out
    } else if is_absolute(&p) || p.starts_with("../") {
        generic_path(&p)
    } else {
        p.clone()
    };
    let parts: Vec<String> = window_end(&rel)
        .into_iter()
        .map(|c| {
            if ctx.is_user(c) {
                "<user>".to_string()
            } else {
                line_scrub(c, ctx)
            }
        })
        .collect();
    cap_end(&parts.join("/"), FILE_MAX).trim().to_string()
}

/// A FATAL's `action_data` in the reference form `LINE@FILE:FUNCTION/ERRNO`, its file and
/// function scrubbed as `fatal_file` and `fatal_function` are; other text as free text.
pub fn fatal_action_data(data: &str, ctx: &Context) -> String {
    settled(data, |d| fatal_action_data_once(d, ctx))
}

fn fatal_action_data_once(data: &str, ctx: &Context) -> String {
    let data = first_line(data);
    let Some((line, rest)) = data.split_once('@') else {
        return text(data, ctx, MESSAGE_MAX);
    };
    if !line.trim().bytes().all(|b| b.is_ascii_digit()) {
        return text(data, ctx, MESSAGE_MAX);
    }
    let (rest, errno) = match rest.rsplit_once('/') {
        Some((r, e))
            if !e.is_empty()
                && e.trim()
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            (r, Some(e))
        }
        _ => (rest, None),
    };
    // A Windows drive's colon is not the separator.
    let drive =
        rest.len() >= 2 && rest.as_bytes()[0].is_ascii_alphabetic() && rest.as_bytes()[1] == b':';
    let split = rest[if drive { 2 } else { 0 }..]
        .find(':')
        .map(|i| i + if drive { 2 } else { 0 });
    let (f, function) = match split {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut out = format!("{}@{}", line.trim(), file(f, ctx));
    if let Some(function) = function {
        out.push(':');
        out.push_str(&text(function, ctx, FUNCTION_MAX));
    }
    if let Some(e) = errno {
        out.push('/');
        out.push_str(e.trim());
    }
    cap_start(&out, MESSAGE_MAX + FILE_MAX)
}

fn skip_components(p: &str, n: usize) -> String {
    let mut rest = p;
    for _ in 0..n {
        rest = rest.split_once('/').map(|(_, r)| r).unwrap_or("");
    }
    rest.to_string()
}

/// `.../build/CRATE-HASH/out/REST` (a build script's output) as `CRATE/out/REST`.
fn build_out(p: &str) -> Option<String> {
    let i = p.find("/build/")?;
    let after = &p[i + "/build/".len()..];
    let (krate, rest) = after.split_once('/')?;
    let rest = rest.strip_prefix("out/")?;
    Some(format!("{}/out/{rest}", without_hash(krate)))
}

/// `NAME-HEX` as `NAME`.
fn without_hash(s: &str) -> &str {
    match s.rsplit_once('-') {
        Some((n, h))
            if !n.is_empty() && h.len() >= 6 && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            n
        }
        _ => s,
    }
}

fn is_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || p.starts_with("~/")
        || p == "~"
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'/')
}

/// An absolute path without its home directory: from the last `src` directory's parent
/// on, else the file name.
fn generic_path(p: &str) -> String {
    let mut comps: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != ".." && *c != "~")
        .filter(|c| !(c.len() == 2 && c.ends_with(':')))
        .collect();
    if let Some(i) = comps
        .iter()
        .position(|c| c.eq_ignore_ascii_case("home") || c.eq_ignore_ascii_case("users"))
    {
        comps.drain(..(i + 2).min(comps.len()));
    } else if comps.first() == Some(&"root") {
        comps.remove(0);
    }
    let Some(last) = comps.last().copied() else {
        return String::new();
    };
    match comps[..comps.len() - 1].iter().rposition(|c| *c == "src") {
        Some(k) => comps[k.saturating_sub(1)..].join("/"),
        None => last.to_string(),
    }
}

/// Keep the first `max` characters, without ending inside a mask.
fn cap_start(s: &str, max: usize) -> String {
    let Some((end, _)) = s.char_indices().nth(max) else {
        return s.to_string();
    };
    let mut out = &s[..end];
    if let Some(lt) = out.rfind('<')
        && !out[lt..].contains('>')
        && MASK_STARTS
            .iter()
            .any(|m| m.starts_with(&out[lt..]) || out[lt..].starts_with(m))
    {
        out = &out[..lt];
    }
    out.to_string()
}

const MASKS: &[&str] = &[
    "<ip>", "<email>", "<host>", "<user>", "<uuid>", "<n>", "<hex>", "<path>", "<url>", "<mac>",
];

const MASK_STARTS: &[&str] = &[
    "<ip>", "<email>", "<host>", "<url", "<path", "<user>", "<uuid>", "<n>", "<hex>", "<mac>",
];

/// Keep the last `max` characters, from a `/` when there is one.
fn cap_end(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let start = s.char_indices().nth(n - max).map(|(i, _)| i).unwrap_or(0);
    let tail = &s[start..];
    match tail.find('/') {
        Some(i) if i + 1 < tail.len() => tail[i + 1..].to_string(),
        _ => tail.to_string(),
    }
}

/// Most bytes of a line the rules read: the collector scrubs what strangers send, and the
/// work of a scrub is bounded by what its capped output can show, not by the text's length.
pub const READ_MAX: usize = 4096;

/// Delimiters read past the cap: a user name or home directory with fewer of them that
/// spans the end of the window would have been masked past the cap anyway.
const WINDOW_SLACK: usize = 64;

/// The start of `line` that decides its first `max` scrubbed characters. Every rule gives
/// a word at least one character and keeps each delimiter, so a window that ends after
/// `max + WINDOW_SLACK` delimiters scrubs to the same first `max` characters as the whole
/// line. Past [`READ_MAX`] bytes it ends before the word that crosses them: the text
/// after it is dropped, never shown unscrubbed.
fn window_start(line: &str, max: usize) -> &str {
    let mut delimiters = 0;
    let mut end = 0;
    for (i, c) in line.char_indices() {
        let next = i + c.len_utf8();
        if next > READ_MAX {
            return &line[..end];
        }
        if is_delimiter(c) {
            end = next;
            delimiters += 1;
            if delimiters > max + WINDOW_SLACK {
                return &line[..end];
            }
        }
    }
    line
}

/// The components of a relative path that decide its last `FILE_MAX` characters: at most
/// `FILE_MAX` of them (each is one character or more, with a `/` between), within the
/// last [`READ_MAX`] bytes; a component that crosses them is dropped with what precedes it.
fn window_end(rel: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut bytes = 0;
    for c in rel.rsplit('/').filter(|c| !c.is_empty() && *c != ".") {
        bytes += c.len() + 1;
        if bytes > READ_MAX || parts.len() == FILE_MAX {
            break;
        }
        parts.push(c);
    }
    parts.reverse();
    parts
}

/// Up to the first line break; a lone carriage return counts, as it does on a terminal.
fn first_line(text: &str) -> &str {
    // Both are ASCII, so a byte search ends on a character boundary.
    let end = text
        .bytes()
        .position(|b| b == b'\n' || b == b'\r')
        .unwrap_or(text.len());
    &text[..end]
}

fn is_delimiter(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ';' | '|'
    ) || c.is_whitespace()
}

/// One line, scrubbed until a pass changes nothing more: a mask holds `<` and `>`, which
/// split words, so what was one word on a pass may be several on the next (the `::1`
/// left after `<hex>` in `dead::1` is an address of its own).
fn line_scrub(line: &str, ctx: &Context) -> String {
    let mut out = scrub_pass(line, ctx);
    if out == line {
        return out;
    }
    // Each pass only replaces text by masks, which the rules leave alone: two or three
    // passes settle it; the bound is for safety.
    for _ in 0..8 {
        let next = scrub_pass(&out, ctx);
        if next == out {
            break;
        }
        out = next;
    }
    out
}

/// One pass over a line: the home directory as `~`, then each word by the rules, then
/// the user name.
fn scrub_pass(line: &str, ctx: &Context) -> String {
    let line = match &ctx.home {
        Some(h) => replace_home(line, h),
        None => Cow::Borrowed(line),
    };
    let mut out = String::with_capacity(line.len());
    let mut start = None;
    // A word right after a mask (`<ip>/8`, `<user>/x`) is not an absolute path: the mask
    // replaced its first part.
    let push_word = |out: &mut String, w: &str| {
        let after_mask = out.ends_with('>') && MASKS.iter().any(|m| out.ends_with(m));
        out.push_str(&word(w, ctx, after_mask));
    };
    for (i, c) in line.char_indices() {
        if is_delimiter(c) {
            if let Some(s) = start.take() {
                push_word(&mut out, &line[s..i]);
            }
            out.push(c);
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        push_word(&mut out, &line[s..]);
    }
    match &ctx.user {
        Some(u) => mask_user(&out, u),
        None => out,
    }
}

/// The home directory (with `/` or `\` separators) as `~` where it is a whole path prefix.
fn replace_home<'a>(line: &'a str, home: &str) -> Cow<'a, str> {
    let variants = [home.to_string(), home.replace('/', "\\")];
    let mut s = Cow::Borrowed(line);
    for h in variants.iter() {
        if !s.contains(h.as_str()) {
            continue;
        }
        let mut out = String::with_capacity(s.len());
        let mut rest: &str = &s;
        while let Some(i) = rest.find(h.as_str()) {
            let after = &rest[i + h.len()..];
            let whole = after
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'));
            out.push_str(&rest[..i]);
            out.push_str(if whole { "~" } else { h });
            rest = after;
        }
        out.push_str(rest);
        s = Cow::Owned(out);
    }
    s
}

/// The user name as `<user>` wherever it is a word (case-insensitive).
fn mask_user(s: &str, user: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let u = user.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(i) = lower[from..].find(&u).map(|i| i + from) {
        let end = i + u.len();
        let before = lower[..i].chars().next_back();
        let after = lower[end..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if edge(before) && edge(after) {
            out.push_str(&s[last..i]);
            out.push_str("<user>");
            last = end;
        }
        from = end;
    }
    out.push_str(&s[last..]);
    out
}

/// One word (text between delimiters).
fn word<'a>(tok: &'a str, ctx: &Context, after_mask: bool) -> Cow<'a, str> {
    #[cfg(test)]
    tests::WORDS.with(|n| n.set(n.get() + 1));
    if is_ipv6(tok) {
        return "<ip>".into();
    }
    let core = tok.trim_end_matches(['.', ':', '!', '?']);
    let tail = &tok[core.len()..];
    if core.is_empty() {
        return tok.into();
    }
    match classify(core, ctx, after_mask) {
        // Unchanged: the word as it came, its tail included.
        Cow::Borrowed(c) if c.len() == core.len() && c.as_ptr() == core.as_ptr() => tok.into(),
        mut out => {
            out.to_mut().push_str(tail);
            out
        }
    }
}

fn classify<'a>(core: &'a str, ctx: &Context, after_mask: bool) -> Cow<'a, str> {
    // Each rule needs one of these bytes: a word without them skips the rule's search.
    let has = |b: u8| core.as_bytes().contains(&b);
    let (colon, slash) = (has(b':'), has(b'/'));
    if colon
        && slash
        && let Some(i) = core.find("://")
    {
        let before = &core[..i];
        let s = before
            .char_indices()
            .rfind(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |(j, c)| j + c.len_utf8());
        let scheme = &before[s..];
        if core.len() == i + 3 {
            return core.into();
        }
        let prefix = inner(&before[..s]);
        return if scheme.is_empty() || scheme.len() > 16 {
            format!("{prefix}<url>").into()
        } else {
            format!("{prefix}<url:{}>", scheme.to_ascii_lowercase()).into()
        };
    }
    if !after_mask && is_path_start(core) {
        return path_word(core, ctx).into();
    }
    // A path inside a word: `config:/etc/x.conf`, `../../home/bob/x`.
    for marker in [":/", ":~/", "=/", "=~/", "/home/", "/Users/", "/root/"] {
        if !slash {
            break;
        }
        if let Some(i) = core.find(marker) {
            let at = if marker.starts_with([':', '=']) {
                i + 1
            } else {
                i
            };
            let rest = &core[at..];
            if rest.chars().any(|c| c.is_alphanumeric()) {
                return format!("{}{}", inner(&core[..at]), path_word(rest, ctx)).into();
            }
        }
    }
    if colon && is_ipv6(core) {
        return "<ip>".into();
    }
    if (colon || has(b'-')) && is_mac(core) {
        return "<mac>".into();
    }
    let (addr, port) = match core.rsplit_once(':') {
        Some((a, p)) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            (a, Some(p))
        }
        _ => (core, None),
    };
    let with_port = |mask: &'static str| match port {
        Some(p) => format!("{mask}:{p}").into(),
        None => Cow::Borrowed(mask),
    };
    if has(b'@') && is_email(addr) {
        return with_port("<email>");
    }
    if addr.contains('.') && is_host(addr) {
        return with_port("<host>");
    }
    inner(core)
}

fn is_path_start(s: &str) -> bool {
    let b = s.as_bytes();
    let abs = (s.starts_with('/') && !s.starts_with("//"))
        || s.starts_with("~/")
        || s.starts_with("~\\")
        || s.starts_with("\\\\")
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'\\' || b[2] == b'/'));
    abs && s.chars().any(|c| c.is_alphabetic())
}

/// An absolute path: `<path:NAME.EXT>` when its last part is a plain file name, else
/// `<path>`.
fn path_word(p: &str, ctx: &Context) -> String {
    let norm = p.replace('\\', "/");
    let name = norm.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
    let plain = name.len() <= 64
        && name.contains('.')
        && name.chars().any(|c| c.is_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "._-+".contains(c))
        && !name.contains("..")
        && !is_host(name)
        && inner(name) == name
        && mask_user(name, ctx.user.as_deref().unwrap_or("\u{0}")) == name;
    if plain {
        format!("<path:{name}>")
    } else {
        "<path>".into()
    }
}

fn is_ipv6(s: &str) -> bool {
    let s = s.split('%').next().unwrap_or("");
    if s.matches(':').count() < 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return false;
    }
    let groups = s.split(':').filter(|g| !g.is_empty()).count();
    let digit = s.bytes().any(|b| b.is_ascii_digit());
    (digit || groups >= 3) && s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// A MAC address: six pairs of hex digits joined by `:` or `-`.
fn is_mac(s: &str) -> bool {
    let sep = if s.contains(':') { ':' } else { '-' };
    let mut parts = 0;
    s.split(sep).all(|p| {
        parts += 1;
        parts <= 6 && p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())
    }) && parts == 6
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "._%+-".contains(c))
        && (is_host(domain) || domain.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Top-level domains that are also common words of crash text are left out; two-letter
/// labels count as country codes unless they are file extensions.
const TLDS: &[&str] = &[
    "com",
    "net",
    "org",
    "edu",
    "gov",
    "mil",
    "int",
    "info",
    "biz",
    "dev",
    "app",
    "cloud",
    "online",
    "site",
    "tech",
    "xyz",
    "local",
    "lan",
    "internal",
    "intranet",
    "corp",
    "home",
    "localdomain",
    "arpa",
    "onion",
    "store",
    "shop",
    "club",
    "name",
    "mobi",
    "asia",
    "page",
    "network",
    "systems",
    "services",
    "digital",
    "global",
    "space",
    "website",
    "email",
    "company",
    "solutions",
    "agency",
    "cluster",
    "svc",
    "host",
    "server",
    "priv",
    "lab",
];

/// File extensions that are two letters, or that a host name check could mistake.
const EXTENSIONS: &[&str] = &[
    "rs", "py", "md", "sh", "js", "ts", "go", "rb", "pl", "db", "so", "cc", "hh", "el", "ml", "hs",
    "kt", "cs", "fs", "vb", "gz", "xz", "bz", "ui", "mk", "pm", "ps", "rc", "in", "am", "ac", "mm",
    "pb", "sc", "gd", "lo", "la", "hpp", "txt",
];

fn is_host(s: &str) -> bool {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let (mut labels, mut tld) = (0, "");
    for l in s.split('.') {
        if !ok_label(l) {
            return false;
        }
        labels += 1;
        tld = l;
    }
    let known = |list: &[&str]| list.iter().any(|t| t.eq_ignore_ascii_case(tld));
    labels >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
        && (known(TLDS) || (tld.len() == 2 && !known(EXTENSIONS)))
}

/// 8-4-4-4-12 hex digits at `i`, ending at a word boundary: the length.
fn uuid_at(b: &[u8], i: usize) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut j = i;
    for (n, g) in GROUPS.iter().enumerate() {
        if n > 0 {
            if b.get(j) != Some(&b'-') {
                return None;
            }
            j += 1;
        }
        for _ in 0..*g {
            if !b.get(j)?.is_ascii_hexdigit() {
                return None;
            }
            j += 1;
        }
    }
    if b.get(j).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(j - i)
}

/// An IPv4 address at `i` (not part of a longer dotted number): the length.
fn ipv4_at(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for part in 0..4 {
        if part > 0 {
            if b.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() && j - start < 3 {
            j += 1;
        }
        if j == start {
            return None;
        }
        let n: u32 = std::str::from_utf8(&b[start..j]).ok()?.parse().ok()?;
        if n > 255 {
            return None;
        }
    }
    let next = b.get(j);
    if next.is_some_and(|c| c.is_ascii_alphanumeric())
        || (next == Some(&b'.') && b.get(j + 1).is_some_and(|c| c.is_ascii_digit()))
    {
        return None;
    }
    Some(j - i)
}

/// Inside a word: uuids, IPv4 addresses, `0x` and long hex strings, long numbers. The
/// word itself when none is there (no copy: most words have none).
fn inner(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    // What is written so far, up to `copied` in `s`; nothing until a mask is.
    let mut out: Vec<u8> = Vec::new();
    let mut copied = 0;
    let mut mask = |from: usize, to: usize, m: &[u8]| {
        out.extend_from_slice(&b[copied..from]);
        out.extend_from_slice(m);
        copied = to;
    };
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if boundary {
            if let Some(n) = uuid_at(b, i) {
                mask(i, i + n, b"<uuid>");
                i += n;
                continue;
            }
            if (i == 0 || b[i - 1] != b'.')
                && let Some(n) = ipv4_at(b, i)
            {
                mask(i, i + n, b"<ip>");
                i += n;
                continue;
            }
        }
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        let run = &b[i..j];
        let hex = |r: &[u8]| r.iter().all(|c| c.is_ascii_hexdigit());
        let digits = run.iter().filter(|c| c.is_ascii_digit()).count();
        if run.len() >= 10 && (run.starts_with(b"0x") || run.starts_with(b"0X")) && hex(&run[2..]) {
            mask(i, j, b"<hex>");
        } else if digits == run.len() {
            if run.len() >= 6 {
                mask(i, j, b"<n>");
            }
        } else if hex(run) && (run.len() >= 16 || (run.len() >= 12 && digits > 0)) {
            mask(i, j, b"<hex>");
        } else {
            // Long digit runs inside a word: `job1234567` -> `job<n>`.
            let mut k = i;
            while k < j {
                if b[k].is_ascii_digit() {
                    let mut e = k;
                    while e < j && b[e].is_ascii_digit() {
                        e += 1;
                    }
                    if e - k >= 6 {
                        mask(k, e, b"<n>");
                    }
                    k = e;
                } else {
                    k += 1;
                }
            }
        }
        i = j;
    }
    if copied == 0 {
        return Cow::Borrowed(s);
    }
    out.extend_from_slice(&b[copied..]);
    // Masks replace ASCII runs only, so the bytes stay valid UTF-8.
    Cow::Owned(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Words classified on this thread: the work a scrub does.
        pub(super) static WORDS: Cell<usize> = const { Cell::new(0) };
    }

    /// Words classified while scrubbing `input` with `f`.
    fn words(f: impl Fn(&str, &Context) -> String, input: &str) -> usize {
        WORDS.with(|n| n.set(0));
        f(input, &Context::none());
        WORDS.with(Cell::get)
    }

    /// The collector scrubs what strangers send, up to a megabyte a value: the work must
    /// not grow with the text past what its capped output can show.
    #[test]
    fn the_work_of_a_scrub_does_not_grow_with_the_text_past_its_cap() {
        let line = |unit: &str, n: usize| unit.repeat(n);
        type Rule = fn(&str, &Context) -> String;
        let cases: [(&str, Rule, &str); 6] = [
            ("message", message, "1 "),
            ("message", message, "a:b "),
            ("file", file, "a/"),
            ("file", file, "a b/"),
            ("fatal_action_data", fatal_action_data, "1 "),
            ("fatal_action_data", fatal_action_data, "12@a/"),
        ];
        for (name, f, unit) in cases {
            let (small, large) = (
                words(f, &line(unit, 1 << 12)),
                words(f, &line(unit, 1 << 16)),
            );
            assert!(
                large <= small,
                "{name} of {unit:?} repeated: {small} words classified at 4,096 repeats, {large} at 65,536"
            );
            assert!(
                small < 20 * MESSAGE_MAX,
                "{name} of {unit:?}: {small} words classified"
            );
        }
        // One word of a megabyte: read no further than the first bytes.
        for f in [message, file, fatal_action_data] {
            WORDS.with(|n| n.set(0));
            let out = f(&"a".repeat(1 << 20), &Context::none());
            assert!(out.len() <= MESSAGE_MAX, "{out}");
        }
    }
}
