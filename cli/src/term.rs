//! Terminal output: names quoted with control characters escaped, stdout writes that end the
//! program quietly when the reader has gone (`lodcache info | head -1`), and Ctrl-C.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

/// A path in double quotes with every control character, quote and backslash escaped, and
/// bytes that are not UTF-8 as `\xNN`, so that a file name cannot forge a line of output or a
/// terminal colour.
pub(crate) fn quote(path: &Path) -> String {
    // Debug formatting of a path does exactly that (`"a\nb"`, `"\u{1b}[31m"`, `"\xFF"`).
    format!("{path:?}")
}

/// `text` with every control character escaped (`\n`, `\u{1b}`, ...): for messages
/// that embed names we did not quote ourselves (the library's errors and warnings).
pub(crate) fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes one line to stdout. When stdout is closed (the reader of a pipe has gone), the
/// program ends at once, quietly and with success, as `head` expects of the tools before it;
/// any other write error ends it with status 1.
pub(crate) fn out_line(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // stderr may be gone too; nothing more can be said then.
        let _ = writeln!(std::io::stderr(), "error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes one line to stderr, ignoring failures (there is nowhere left to report them).
pub(crate) fn err_line(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `println!` that never panics: see [`out_line`].
macro_rules! say {
    ($($arg:tt)*) => { $crate::term::out_line(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics: see [`err_line`].
macro_rules! tell {
    ($($arg:tt)*) => { $crate::term::err_line(format_args!($($arg)*)) };
}

pub(crate) use {say, tell};

/// Set by the first Ctrl-C (or SIGTERM); long subcommands hand it to the library, which stops
/// at the next slice boundary.
static INTERRUPT: OnceLock<lodcache::Cancel> = OnceLock::new();

/// The flag that Ctrl-C sets.
pub(crate) fn interrupt() -> lodcache::Cancel {
    INTERRUPT.get_or_init(lodcache::Cancel::new).clone()
}

/// Whether Ctrl-C was pressed.
pub(crate) fn interrupted() -> bool {
    interrupt().is_cancelled()
}

/// Installs the Ctrl-C / SIGTERM handler of the blocking subcommands: the first sets
/// [`interrupt`], a second exits at once with status 130 (blobs are written whole, so the
/// cache stays valid).
pub(crate) fn catch_interrupt() -> Result<(), String> {
    let flag = interrupt();
    ctrlc::set_handler(move || {
        if flag.is_cancelled() {
            std::process::exit(130);
        }
        flag.cancel();
    })
    .map_err(|e| format!("installing the Ctrl-C handler: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_newlines_and_escapes_stay_on_one_quoted_line() {
        let q = quote(Path::new("a\nerror: b\u{1b}[31m"));
        assert_eq!(q, "\"a\\nerror: b\\u{1b}[31m\"");
        assert!(!q.contains('\n') && !q.contains('\u{1b}'));
        assert_eq!(clean("x\ny\u{1b}z"), "x\\ny\\u{1b}z");
    }

    #[cfg(unix)]
    #[test]
    fn bytes_that_are_not_utf8_are_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"s\xff.tif"));
        assert_eq!(quote(p), "\"s\\xFF.tif\"");
    }
}
