//! Controller manager running the four reconcilers.

fn main() {}
