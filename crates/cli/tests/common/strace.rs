//! Reading an `strace -f` log of the collector: the tests that prove what it did before it
//! answered read its own system calls.

use std::collections::HashMap;

/// One traced call: its name, its arguments' text, its result, and where it began and
/// ended in the log.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: String,
    pub args: String,
    pub ret: i64,
    /// strace answered the call itself (`inject=`): it never reached the kernel.
    pub injected: bool,
    pub entry: usize,
    pub exit: usize,
}

impl Call {
    /// The first argument: the file descriptor, for the calls that take one.
    pub fn fd(&self) -> &str {
        self.args.split(',').next().unwrap_or("").trim()
    }
}

/// Reads an `strace -f` log, joining calls split across lines by thread switches. A call
/// without a number for its result (`= ?`) is left out.
pub fn calls(log: &str) -> Vec<Call> {
    let mut pending: HashMap<&str, (String, usize)> = HashMap::new();
    let mut out = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let (text, entry) = if let Some(start) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, (start.to_string(), i));
            continue;
        } else if let Some(at) = rest.find("resumed>") {
            let Some((start, entry)) = pending.remove(pid) else {
                continue;
            };
            (format!("{start}{}", &rest[at + "resumed>".len()..]), entry)
        } else {
            (rest.to_string(), i)
        };
        let Some((name, args)) = text.split_once('(') else {
            continue;
        };
        // strace pads short calls: `fsync(9)       = 0`.
        let Some((args, ret)) = args
            .rsplit_once(" = ")
            .and_then(|(a, r)| Some((a.trim_end().strip_suffix(')')?, r)))
        else {
            continue;
        };
        let injected = ret.contains("(INJECTED)");
        let Ok(ret) = ret.split_whitespace().next().unwrap_or("").parse::<i64>() else {
            continue;
        };
        out.push(Call {
            name: name.to_string(),
            args: args.to_string(),
            ret,
            injected,
            entry,
            exit: i,
        });
    }
    out
}
