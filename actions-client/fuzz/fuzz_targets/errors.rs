//! Decodes every input as an error answer of every endpoint (actions_client::fuzzing::run_errors);
//! any violation of the oracle, or a panic, is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = actions_client::fuzzing::run_errors(data) {
        panic!("{problem}");
    }
});
