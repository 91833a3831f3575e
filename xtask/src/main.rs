//! Project automation: cargo xtask <command>.

#[allow(dead_code)]
mod helm;

fn main() {}
