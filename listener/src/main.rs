//! Per-scale-set listener: long-polls the Actions service and sets the runner count.

fn main() {}
