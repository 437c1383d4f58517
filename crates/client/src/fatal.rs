//! FATAL: the panic hook and the [`fatal!`](crate::fatal!) macro.
//!
//! The panicking function is found from a backtrace taken with
//! [`std::backtrace::Backtrace::force_capture`]: its text form lists frames as
//! `N: symbol` followed by `at file:line:column`. The frame whose file and line are the
//! panic's location is the function that panicked (this also holds for `#[track_caller]`
//! functions such as `Option::unwrap`, whose location is their caller's). Without debug
//! information, the first frame outside the standard library, the panic machinery and this
//! crate is taken instead. `::{{closure}}` suffixes and symbol hashes are removed.

use crate::Client;
use crate::event::{FatalSite, first_line};
use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Install the hook once per process; false if one was installed already.
pub(crate) fn install(client: Client) -> bool {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return false;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A panic inside the reporting itself is not reported again.
        let reentered = IN_HOOK.try_with(|f| f.replace(true)).unwrap_or(true);
        if !reentered {
            client.fatal(site_from_panic(info));
            let _ = IN_HOOK.try_with(|f| f.set(false));
        }
        previous(info);
    }));
    true
}

/// The FATAL site of a panic.
pub fn site_from_panic(info: &PanicHookInfo<'_>) -> FatalSite {
    let (file, line) = info
        .location()
        .map(|l| (l.file().to_string(), l.line()))
        .unwrap_or_default();
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    FatalSite {
        process: process_name(),
        thread: thread_name(),
        function: function_from_backtrace(&trace, &file, line),
        file,
        line,
        errno: 0,
        // Whole: cut before scrubbing, an address or a path could lose the part its
        // rule recognises it by. The scrubbed message is capped when the event is built.
        message: first_line(&message, usize::MAX),
    }
}

/// The process name: `/proc/self/comm`, else the file name of argv\[0\], else `unknown`.
pub fn process_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::args_os().next().and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The current thread's name: Rust's name, else `/proc/thread-self/comm`, else `unnamed`.
pub fn thread_name() -> String {
    if let Some(n) = std::thread::current().name() {
        return n.to_string();
    }
    std::fs::read_to_string("/proc/thread-self/comm")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unnamed".into())
}

const SKIP: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "backtrace::",
    "anonstats_client::",
    "<std::",
    "<core::",
    "<alloc::",
    "rust_begin_unwind",
    "__rustc::",
    "rust_panic",
    "__rust",
];

/// The function that panicked, from the text form of a backtrace (see the module docs).
pub fn function_from_backtrace(trace: &str, file: &str, line: u32) -> String {
    let mut frames: Vec<(String, Option<String>)> = Vec::new();
    for l in trace.lines() {
        let t = l.trim_start();
        if let Some(at) = t.strip_prefix("at ") {
            if let Some(last) = frames.last_mut() {
                last.1.get_or_insert_with(|| at.to_string());
            }
        } else if let Some((num, sym)) = t.split_once(": ")
            && num.chars().all(|c| c.is_ascii_digit())
        {
            frames.push((sym.to_string(), None));
        }
    }
    let want = format!(":{line}:");
    let at_site = |at: &str| {
        at.find(&want).is_some_and(|i| {
            let path = &at[..i];
            !file.is_empty()
                && (path.ends_with(file) || file.ends_with(path.trim_start_matches("./")))
        })
    };
    let found = frames
        .iter()
        .find(|(_, at)| at.as_deref().is_some_and(at_site))
        .or_else(|| {
            frames
                .iter()
                .find(|(sym, _)| !SKIP.iter().any(|p| sym.starts_with(p)))
        });
    found
        .map(|(sym, _)| clean_symbol(sym))
        .unwrap_or_else(|| "unknown".into())
}

/// Remove `::{{closure}}` parts and a trailing `::h<hash>`.
fn clean_symbol(sym: &str) -> String {
    let mut s = sym.replace("::{{closure}}", "");
    if let Some(i) = s.rfind("::h")
        && s.len() - i == 19
        && s[i + 3..].chars().all(|c| c.is_ascii_hexdigit())
    {
        s.truncate(i);
    }
    s
}

/// The function name of a `fn` item's type name, without `::__f` and closures; used by
/// [`fatal!`](crate::fatal!).
#[doc(hidden)]
pub fn function_of<T>(_: T) -> String {
    let name = std::any::type_name::<T>();
    clean_symbol(name.strip_suffix("::__anonstats_here").unwrap_or(name))
}

/// Report a fatal condition that is not a panic, then carry on (the caller decides whether
/// to exit). Captures the file, line, enclosing function and `errno`; waits at most the
/// client's timeout.
///
/// ```
/// # let client = anonstats_client::Client::builder().mode(anonstats_client::Mode::Off).build().unwrap();
/// if std::fs::metadata("/nonexistent/config").is_err() {
///     anonstats_client::fatal!(client, "cannot read the configuration");
/// }
/// ```
#[macro_export]
macro_rules! fatal {
    ($client:expr) => {
        $crate::fatal!($client, "")
    };
    ($client:expr, $($msg:tt)+) => {{
        let errno = ::std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        fn __anonstats_here() {}
        let site = $crate::FatalSite {
            process: $crate::fatal::process_name(),
            thread: $crate::fatal::thread_name(),
            function: $crate::fatal::function_of(__anonstats_here),
            file: file!().to_string(),
            line: line!(),
            errno,
            message: format!($($msg)+),
        };
        $client.fatal(site)
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "   0: anonstats_client::fatal::site_from_panic
             at ./crates/client/src/fatal.rs:50:17
   1: std::panicking::panic_with_hook
             at /rustc/x/library/std/src/panicking.rs:833:13
   2: core::option::unwrap_failed
   3: my_daemon::config::load::{{closure}}
             at ./src/config.rs:12:30
   4: my_daemon::main
             at ./src/main.rs:3:5
";

    #[test]
    fn function_found_by_location() {
        assert_eq!(
            function_from_backtrace(TRACE, "src/config.rs", 12),
            "my_daemon::config::load"
        );
        assert_eq!(
            function_from_backtrace(TRACE, "src/main.rs", 3),
            "my_daemon::main"
        );
    }

    #[test]
    fn function_found_without_locations() {
        let bare = "  0: std::x\n  1: core::y\n  2: anonstats_client::z\n  3: app::work::h0123456789abcdef\n";
        assert_eq!(function_from_backtrace(bare, "", 0), "app::work");
        assert_eq!(function_from_backtrace("", "a.rs", 1), "unknown");
    }

    #[test]
    fn names() {
        assert!(!process_name().is_empty());
        let t = std::thread::Builder::new()
            .name("probe-thread".into())
            .spawn(thread_name)
            .unwrap();
        assert_eq!(t.join().unwrap(), "probe-thread");
        fn __anonstats_here() {}
        assert_eq!(
            function_of(__anonstats_here),
            "anonstats_client::fatal::tests::names"
        );
    }
}
