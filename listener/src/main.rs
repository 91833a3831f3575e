//! `listener`: ARC-compatible scale-set listener. Reads `LISTENER_CONFIG_PATH`.

fn main() {}
