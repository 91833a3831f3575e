//! `listener`: ARC-compatible scale-set listener. Reads `LISTENER_CONFIG_PATH`.
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 on a runtime failure, 2 on bad
//! configuration.

fn main() {
    std::process::exit(listener::app::main_exit_code());
}
