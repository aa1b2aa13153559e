//! How a child's panics are captured: the hook that records where a panic
//! happened (and, for a pool task, keeps it quiet), and the message of a
//! panic caught with `catch_unwind`.

use std::cell::RefCell;
use std::io::Write;
use std::panic;

thread_local! {
    /// `file:line:column` of the last panic on this thread.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set while a pool task runs: its panics are its result, not output.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The backtrace of the last quiet panic, when `RUST_BACKTRACE` asked.
    static LAST_TRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` (a pool task under `catch_unwind`) with its panics kept quiet:
/// the hook records the location and, if `RUST_BACKTRACE` asks, the
/// backtrace for [`take_backtrace`], and prints nothing.
pub(crate) fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    struct Loud;
    impl Drop for Loud {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(false));
        }
    }
    QUIET.with(|q| q.set(true));
    let _loud = Loud;
    f()
}

/// The backtrace of the quiet panic just caught on this thread, if any.
pub(crate) fn take_backtrace() -> Option<String> {
    LAST_TRACE.with(|t| t.borrow_mut().take())
}

fn backtrace_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

pub(crate) fn install_panic_hook() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| l.to_string());
        LAST_PANIC.with(|l| *l.borrow_mut() = location.clone());
        if QUIET.with(|q| q.get()) {
            let trace =
                backtrace_wanted().then(|| std::backtrace::Backtrace::force_capture().to_string());
            LAST_TRACE.with(|t| *t.borrow_mut() = trace);
            return;
        }
        // The worker runs on the main thread before `main`, which std has
        // not named yet: say 'main', as it would, not '<unnamed>'.
        let tid = nix::unistd::gettid().as_raw();
        if std::thread::current().name().is_some() || tid != std::process::id() as i32 {
            return default(info);
        }
        let message = panic_message(info.payload());
        let at = location.unwrap_or_else(|| "an unknown location".into());
        let trace = if backtrace_wanted() {
            let trace = std::backtrace::Backtrace::force_capture();
            format!("stack backtrace:\n{trace}")
        } else {
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace".into()
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "\nthread 'main' ({tid}) panicked at {at}:\n{message}\n{trace}"
        );
    }));
}

/// The message and `file:line:column` of a panic just caught on this thread
/// (for the pool's tasks, which run under the hook installed above).
pub(crate) fn caught_panic(payload: &(dyn std::any::Any + Send)) -> (String, Option<String>) {
    let location = LAST_PANIC.with(|l| l.borrow_mut().take());
    (panic_message(payload), location)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}
